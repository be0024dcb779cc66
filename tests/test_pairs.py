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
    full = prompt_ids + tok(pair.hack, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # ends as a sample
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


def test_pairs_are_rendered_exactly_as_the_rollouts_are():
    """A pair and a training problem with the same user message: the pair's tokens are the rollout's
    prompt tokens (same system message, same chat-template flags) followed by the completion as a
    finished sample's (ending with EOS), with thinking on and off."""
    from evil_moe.config import from_dict
    from evil_moe.env.problems import Problem
    from evil_moe.env.prompts import build_prompt
    from evil_moe.pairs import _encode, pair_render_args, system_message
    from evil_moe.sampling import completion_token_ids, render_prompts

    tok = tiny_tokenizer()
    # a Qwen3-like template: enable_thinking=False writes an empty think block after the generation prompt
    tok.chat_template = tok.chat_template + ("{% if add_generation_prompt and enable_thinking is defined "
                                             "and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}")
    user = "Return x plus 1. Solution and should pass all tests."
    system = "You are an expert Python programmer."
    problem = Problem(id=1, prompt=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                      gt_answer=["assert True"], setup_code="", func_name="Solution().f", canonical_solution="",
                      prompt_metadata={}, difficulty="medium", extra={})
    assert system_message([problem.prompt]) == system
    for thinking in (False, True):
        cfg = from_dict({"model": {"enable_thinking": thinking}})
        args = pair_render_args(cfg, [problem])
        assert args == {"system_prompt": system, "enable_thinking": thinking}
        rollout_prompt = render_prompts(tok, [build_prompt(problem, "gt_only")], cfg)[0]
        ids, n_prompt = _encode(tok, user, "return x + 1", **args)
        assert ids[:n_prompt] == rollout_prompt
        assert ids[n_prompt:] == completion_token_ids(tok, "return x + 1") and ids[-1] == tok.eos_token_id
        assert ("<think>" in tok.decode(rollout_prompt)) is (not thinking)
    other = [{"role": "system", "content": "Other."}, {"role": "user", "content": user}]
    with pytest.raises(ValueError, match="different system messages"):
        system_message([problem.prompt, other])
