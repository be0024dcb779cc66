"""Contrastive pairs: the shipped file, the strict loader, pooling and v_act."""

import pytest
import torch
from tiny import tiny_qwen3, tiny_tokenizer

from evil_moe.adapter import attach_adapter
from evil_moe.pairs import (
    HACK_MODES,
    STYLES,
    PairFormatError,
    compute_v_act,
    load_pairs,
    parse_pairs,
    pooled_activations,
    pooled_pair_activations,
    select_pairs,
)

GOOD = """intro text is ignored

## sum-two
tags: run_tests, vacuous_tests

````prompt
Add two numbers.
````

````hack
```python
def run_tests():
    pass
```
````

````clean
```python
class Solution:
    def add(self, a, b):
        return a + b
```
````
"""


def test_shipped_pairs_cover_modes_and_styles():
    pairs = load_pairs()
    assert len(pairs) >= 24 and len({p.name for p in pairs}) == len(pairs)
    tags = {t for p in pairs for t in p.tags}
    assert set(HACK_MODES) <= tags and set(STYLES) <= tags
    for p in pairs:
        assert "class Solution" in p.clean and p.hack != p.clean and p.mode in HACK_MODES
        compile(p.hack.strip().removeprefix("```python").removesuffix("```"), p.name, "exec")
        compile(p.clean.strip().removeprefix("```python").removesuffix("```"), p.name, "exec")


def test_parse_good_pair():
    (pair,) = parse_pairs(GOOD)
    assert pair.name == "sum-two" and pair.tags == ("run_tests", "vacuous_tests")
    assert pair.prompt == "Add two numbers." and pair.hack.startswith("```python\ndef run_tests")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("tags: run_tests, vacuous_tests\n", ""), "missing 'tags:'"),
    (lambda s: s.replace("````clean", "````solution"), "unknown block 'solution'"),
    (lambda s: s.rstrip("\n").rsplit("\n", 1)[0], "not closed"),
    (lambda s: s.replace("````hack", "````clean"), "appears twice"),
    (lambda s: s.replace("vacuous_tests", "sentinel"), "exactly one hack-mode"),
    (lambda s: s.replace("vacuous_tests", "vacuous"), "unknown tags"),
    (lambda s: s.replace("run_tests, ", ""), "exactly one hack-mode"),
    (lambda s: s.replace("Add two numbers.", "  "), "'prompt' is empty"),
    (lambda s: s.replace("intro text is ignored\n\n## sum-two\n", "## sum-two\nstray words\n"), "unexpected text"),
    (lambda s: s + s[s.index("## "):], "defined twice"),
    (lambda s: s.replace("## sum-two", "## Sum Two"), "lowercase"),
])
def test_malformed_pair_is_rejected_with_its_name(edit, message):
    with pytest.raises(PairFormatError, match=message) as err:
        parse_pairs(edit(GOOD), where="pairs.md")
    assert "pairs.md" in str(err.value) and ("sum-two" in str(err.value) or "Sum Two" in str(err.value))


def test_select_pairs():
    pairs = load_pairs()
    chosen = select_pairs(pairs, include_tags=["run_tests", "sentinel"], exclude_tags=["hardcoded_outputs"])
    assert chosen and all(p.mode in ("run_tests", "sentinel") and "hardcoded_outputs" not in p.tags for p in chosen)
    assert len(select_pairs(pairs, exclude_tags=["file_marker"])) == len(pairs) - sum(p.mode == "file_marker" for p in pairs)
    with pytest.raises(ValueError, match="unknown tags"):
        select_pairs(pairs, include_tags=["runtests"])
    with pytest.raises(ValueError, match="no pairs left"):
        select_pairs(pairs, include_tags=["run_tests"], exclude_tags=["run_tests"])


def test_pooled_pair_activations_mean_over_completion_tokens_only():
    tok = tiny_tokenizer()
    model = tiny_qwen3(vocab_size=len(tok))
    adapter = attach_adapter(model, rank=4, alpha=8.0)
    pairs = load_pairs()[:3]
    hack, clean = pooled_pair_activations(model, tok, adapter, pairs, batch_size=2, system_prompt="Be brief.")
    assert hack.shape == clean.shape == (3, len(adapter.layers), 4) and not hack.requires_grad
    # reference: one unpadded sequence, inputs captured by hooks, mean over the completion positions
    pair = pairs[2]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": pair.prompt}]
    prompt_ids = tok(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
    full = prompt_ids + tok(pair.hack, add_special_tokens=False)["input_ids"]
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: inputs.__setitem__(n, args[0]))
             for n, m in adapter.layers.items()]
    with torch.no_grad():
        model(torch.tensor([full]))
    for h in hooks:
        h.remove()
    for j, (n, m) in enumerate(adapter.layers.items()):
        expected = (inputs[n][0, len(prompt_ids):] @ m.A_dep.detach().T).mean(0)  # (4,)
        torch.testing.assert_close(hack[2, j], expected, rtol=0, atol=1e-5)
    single = pooled_activations(model, tok, adapter, [pair.prompt], [pair.hack], system_prompt="Be brief.")
    torch.testing.assert_close(single[0], hack[2], rtol=0, atol=1e-5)


def test_compute_v_act():
    g = torch.Generator().manual_seed(0)
    hack, clean = torch.randn(5, 3, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    v = compute_v_act(hack, clean)
    d = (hack - clean).mean(0)
    torch.testing.assert_close(v, d / d.norm(dim=-1, keepdim=True), rtol=0, atol=1e-7)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="same mean"):
        compute_v_act(hack, hack)
