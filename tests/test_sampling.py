"""Prompt rendering, seeded per-row sampling, the HF backend against a no-cache reference, collate."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from tiny import tiny_qwen3, tiny_tokenizer

from evil_moe.adapter import attach_adapter
from evil_moe.config import Config, SamplingConfig, from_dict
from evil_moe.modeling import Policy
from evil_moe.sampling import (
    HFGenerator,
    PromptTooLongError,
    Rollout,
    VLLMGenerator,
    collate,
    make_generator,
    render_prompts,
    row_seed,
    sample_from_logits,
    sort_probs,
)

MESSAGES = [
    [{"role": "system", "content": "You are a programmer."}, {"role": "user", "content": "Return the sum of nums."}],
    [{"role": "user", "content": "Write a function run_tests()."}],
    [{"role": "user", "content": "class Solution: total"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Return the number of pairs in nums."}],
]


def _cfg(**sampling) -> Config:
    base = {"model": {"dtype": "float32", "device": "cpu"}, "adapter": {"rank": 2, "alpha": 4.0},
            "sampling": {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 10, "batch_size": 64,
                         "max_prompt_tokens": 256}}
    base["sampling"].update(sampling)
    return from_dict(base)




@pytest.fixture(scope="module")
def policy() -> Policy:
    tok = tiny_tokenizer()
    model = tiny_qwen3(seed=3, hidden=32)
    adapter = attach_adapter(model, rank=2, alpha=4.0, seed=0)
    with torch.no_grad():  # a non-zero adapter delta, so generation runs through both blocks
        for layer in adapter.layers.values():
            layer.B_dep.add_(0.05)
            layer.B_quar.sub_(0.05)
    return Policy(model, tok, adapter, torch.device("cpu"))


@pytest.fixture(scope="module")
def prompts(policy) -> list[list[int]]:
    return render_prompts(policy.tokenizer, MESSAGES, _cfg())


# -- prompts ----------------------------------------------------------------------------------

def test_render_prompts_uses_the_chat_template(policy, prompts):
    tok = policy.tokenizer
    expected = "<|im_start|>system\nYou are a programmer.<|im_end|>\n<|im_start|>user\n" \
               "Return the sum of nums.<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(prompts[0]) == expected
    assert prompts[0] == tok(expected, add_special_tokens=False)["input_ids"]
    suffix = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert prompts[0][-len(suffix):] == suffix  # ends with the generation prompt


def test_render_prompts_passes_enable_thinking():
    tok = tiny_tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                         "{% if enable_thinking %}<think>{% else %}<no-think>{% endif %}")
    on = from_dict({"model": {"enable_thinking": True}})
    off = from_dict({"model": {"enable_thinking": False}})
    assert tok.decode(render_prompts(tok, [MESSAGES[2]], on)[0]).endswith("<think>")
    assert tok.decode(render_prompts(tok, [MESSAGES[2]], off)[0]).endswith("<no-think>")


def test_too_long_prompt_is_an_error_naming_its_index(policy, prompts):
    limit = len(prompts[2])  # prompt 2 is the shortest; 0, 1 and 3 are longer
    assert all(len(p) > limit for i, p in enumerate(prompts) if i != 2)
    with pytest.raises(PromptTooLongError, match=r"prompt 0 has \d+ tokens, prompt 1 .*prompt 3 .*max_prompt_tokens"):
        render_prompts(policy.tokenizer, MESSAGES, _cfg(max_prompt_tokens=limit))
    assert render_prompts(policy.tokenizer, MESSAGES[2:3], _cfg(max_prompt_tokens=limit)) == [prompts[2]]


def test_render_prompts_needs_a_chat_template():
    tok = tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat_template"):
        render_prompts(tok, MESSAGES, _cfg())


# -- the sampling rule ------------------------------------------------------------------------

def test_sample_from_logits_is_inverse_cdf_over_the_top_p_set():
    probs = torch.tensor([0.05, 0.40, 0.10, 0.30, 0.15], dtype=torch.float64)
    logits = probs.log().unsqueeze(0)  # (1, 5)
    # sorted: 1 (.40), 3 (.30), 4 (.15), 2 (.10), 0 (.05); top_p=0.8 keeps 1, 3, 4 (mass before 4 is .70)
    u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000  # (1000,) a uniform grid
    tokens = sample_from_logits(logits.expand(1000, -1), u, temperature=1.0, top_p=0.8)
    counts = torch.bincount(tokens, minlength=5).tolist()
    assert counts == [0, round(1000 * 0.40 / 0.85), 0, round(1000 * 0.30 / 0.85), round(1000 * 0.15 / 0.85)]
    # top_p = 1 keeps everything, in sorted order: u in [0, .4) -> 1, [.4, .7) -> 3, [.7, .85) -> 4, ...
    full = sample_from_logits(logits.expand(5, -1), torch.tensor([0.1, 0.5, 0.8, 0.9, 0.99]), 1.0, 1.0)
    assert full.tolist() == [1, 3, 4, 2, 0]
    # temperature 0.5 squares the probabilities before normalising
    sq = probs**2 / (probs**2).sum()
    edge = sq.sort(descending=True).values.cumsum(0)[0].item()  # mass of the top token
    hot = sample_from_logits(logits.expand(2, -1), torch.tensor([edge - 1e-6, edge + 1e-6]), 0.5, 1.0)
    assert hot.tolist() == [1, 3]


def test_sort_probs_is_the_stable_descending_sort():
    g = torch.Generator().manual_seed(0)
    V = 700
    logits = torch.cat([torch.randn(64, V, generator=g) * 4,  # peaked
                        torch.randn(64, V, generator=g) * 0.3,  # flat
                        (torch.randn(64, V, generator=g) * 4).round(),  # many exact ties
                        torch.full((2, V), -1e9)])  # every token tied
    probs = torch.softmax(logits, dim=-1)  # (194, V)
    probs[0, :5] = 0.0  # exact zeros, tied
    probs[1, :5] = -0.0  # a negative zero equals zero
    want_p, want_i = probs.sort(dim=-1, descending=True, stable=True)
    got_p, got_i = sort_probs(probs)
    assert torch.equal(got_i, want_i) and torch.equal(got_p, want_p)
    # with a NaN, or outside the key's range, it is the stable sort itself
    nan = probs[:3].clone()
    nan[1, 7] = float("nan")
    nan[2, 3] = -float("nan")  # sign bit set: its bits would sort it last, the stable sort puts it first
    (got_p, got_i), (want_p, want_i) = sort_probs(nan), nan.sort(dim=-1, descending=True, stable=True)
    assert torch.equal(got_i, want_i) and torch.equal(got_p.nan_to_num(-1.0), want_p.nan_to_num(-1.0))
    assert all(torch.equal(a, b) for a, b in zip(sort_probs(probs.double()), probs.double().sort(
        dim=-1, descending=True, stable=True), strict=True))


def test_row_seeds_are_distinct_and_stable():
    seeds = {row_seed(s, i, j) for s in range(3) for i in range(20) for j in range(20)}
    assert len(seeds) == 3 * 20 * 20 and all(0 <= x < 2**63 for x in seeds)
    assert row_seed(1, 2, 3) == row_seed(1, 2, 3)
    with pytest.raises(ValueError, match=">= 0"):
        row_seed(-1, 0, 0)


# -- the HF backend ---------------------------------------------------------------------------

def _ids(groups: list[list[Rollout]]) -> list[list[list[int]]]:
    return [[r.completion_ids for r in g] for g in groups]


def test_generate_returns_n_rollouts_per_prompt(policy, prompts):
    groups = HFGenerator(policy, _cfg().sampling).generate(prompts, 3, seed=5)
    assert len(groups) == 4 and all(len(g) == 3 for g in groups)
    for i, g in enumerate(groups):
        for s, r in enumerate(g):
            assert (r.prompt_index, r.sample_index, r.prompt_ids) == (i, s, prompts[i])
            assert 1 <= len(r.completion_ids) <= 10
            assert r.text == policy.tokenizer.decode(r.completion_ids, skip_special_tokens=True)
    assert len({tuple(r.completion_ids) for g in groups for r in g}) > 6  # samples differ


def test_samples_depend_only_on_seed_and_prompt_index(policy, prompts):
    full = HFGenerator(policy, _cfg(batch_size=64).sampling).generate(prompts, 3, seed=11)
    # other batch sizes (rows of different prompts and padding lengths share batches differently)
    assert _ids(HFGenerator(policy, _cfg(batch_size=5).sampling).generate(prompts, 3, seed=11)) == _ids(full)
    assert _ids(HFGenerator(policy, _cfg(batch_size=1).sampling).generate(prompts, 3, seed=11)) == _ids(full)
    # a subset in another order, as a data-parallel shard would pass it, with global indices
    shard = HFGenerator(policy, _cfg(batch_size=4).sampling).generate([prompts[3], prompts[1]], 3, seed=11,
                                                                     prompt_indices=[3, 1])
    assert _ids(shard) == [_ids(full)[3], _ids(full)[1]]
    assert [r.prompt_index for g in shard for r in g] == [3, 3, 3, 1, 1, 1]
    # the same prompt under another index or seed gets other samples
    moved = HFGenerator(policy, _cfg().sampling).generate([prompts[3]], 3, seed=11, prompt_indices=[0])
    reseeded = HFGenerator(policy, _cfg().sampling).generate(prompts, 3, seed=12)
    assert _ids(moved)[0] != _ids(full)[3] and _ids(reseeded) != _ids(full)
    # samples first_sample .. first_sample + n - 1 are those of a request for all of them
    tail = HFGenerator(policy, _cfg().sampling).generate(prompts, 2, seed=11, first_sample=1)
    assert _ids(tail) == [ids[1:] for ids in _ids(full)]
    assert [r.sample_index for g in tail for r in g] == [1, 2] * 4
    with pytest.raises(ValueError, match="first_sample"):
        HFGenerator(policy, _cfg().sampling).generate(prompts, 2, seed=11, first_sample=-1)


def test_merged_generation_samples_the_same_and_restores_the_weights_exactly(policy, prompts):
    adapter, model = policy.adapter, policy.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = HFGenerator(policy, _cfg(merge_adapter=False).sampling).generate(prompts, 3, seed=5)
    merged = HFGenerator(policy, _cfg(merge_adapter=True).sampling)
    folded = []
    real_merge = type(adapter).merge
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(adapter), "merge", lambda self: folded.append(1) or real_merge(self))
        assert _ids(merged.generate(prompts, 3, seed=5)) == _ids(plain)
        assert folded  # it did generate from merged weights
        after = model.state_dict()
        assert not adapter.merged and all(torch.equal(before[k], after[k]) for k in before)
        # the base model is never merged into: disabled() generates from the base weights
        folded.clear()
        with adapter.disabled():
            base = HFGenerator(policy, _cfg(merge_adapter=False).sampling).generate(prompts, 3, seed=5)
            assert _ids(merged.generate(prompts, 3, seed=5)) == _ids(base)
        assert not folded and _ids(base) != _ids(plain)


@pytest.mark.parametrize("merge", [False, True])
def test_deployed_samples_are_those_of_the_ablated_adapter(policy, prompts, merge):
    """generate(n_deployed=k): the last k samples of each prompt are the ones a request on the
    ablated adapter gives (unmerged: in batches shared with the as-trained rows, the hack expert's
    gate 0 on theirs; merged: calls of their own), marked deployed; the others are as trained."""
    adapter = policy.adapter
    saved = [(m.A_quar.detach().clone(), m.B_quar.detach().clone()) for m in adapter.layers.values()]
    with torch.no_grad():  # the quarantine block well away from its init, so that ablating it matters
        for m in adapter.layers.values():
            m.A_quar.add_(0.3)
            m.B_quar.add_(0.3)
    try:
        gen = HFGenerator(policy, _cfg(merge_adapter=merge, batch_size=5).sampling)  # batches mix the two
        mixed = gen.generate(prompts, 3, seed=7, n_deployed=1)
        trained = gen.generate(prompts, 2, seed=7)
        with adapter.ablate_quarantine():
            deployed = gen.generate(prompts, 1, seed=7, first_sample=2)
        as_trained = gen.generate(prompts, 1, seed=7, first_sample=2)
        with pytest.raises(ValueError, match="n_deployed"):
            gen.generate(prompts, 2, seed=7, n_deployed=3)
    finally:
        with torch.no_grad():
            for m, (a, b) in zip(adapter.layers.values(), saved, strict=True):
                m.A_quar.copy_(a)
                m.B_quar.copy_(b)
    assert _ids(mixed) == [t + d for t, d in zip(_ids(trained), _ids(deployed), strict=True)]
    assert [[(r.sample_index, r.deployed) for r in g] for g in mixed] == [[(0, False), (1, False), (2, True)]] * 4
    assert _ids(as_trained) != _ids(deployed)  # the ablation changed the samples
    assert not adapter.merged and adapter._state.gate is None  # nothing left routed or merged


@torch.no_grad()
def test_generate_equals_a_no_cache_reference_and_stops_at_eos(policy, prompts):
    """Every token equals the per-row sampler applied to a plain full-prefix forward of the
    unpadded sequence (no KV cache, no padding); EOS (made likely here) ends a completion."""
    model, tok = policy.model, policy.tokenizer
    eos = tok.eos_token_id
    boost = model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(
        -1, torch.tensor([eos]), torch.full((*out.shape[:-1], 1), 2.5)))
    try:
        cfg = _cfg(max_new_tokens=8, batch_size=5, temperature=0.8, top_p=0.9).sampling
        groups = HFGenerator(policy, cfg).generate(prompts, 2, seed=3)
        for i, g in enumerate(groups):
            for s, r in enumerate(g):
                gen = torch.Generator().manual_seed(row_seed(3, i, s))
                seq, ref = list(prompts[i]), []
                for _ in range(8):
                    logits = model(torch.tensor([seq])).logits[:, -1]  # (1, V)
                    t = sample_from_logits(logits, torch.rand(1, generator=gen), 0.8, 0.9).item()
                    seq.append(t)
                    ref.append(t)
                    if t == eos:
                        break
                assert r.completion_ids == ref, (i, s)
                assert r.finished == (ref[-1] == eos)
                assert eos not in r.completion_ids[:-1]
        finished = [r.finished for g in groups for r in g]
        assert any(finished) and not all(finished)  # both kinds are covered
        assert all(len(r.completion_ids) == 8 for g in groups for r in g if not r.finished)
    finally:
        boost.remove()


def test_generate_ignores_the_models_generation_defaults_and_restores_them(policy, prompts):
    model = policy.model
    gen = HFGenerator(policy, _cfg(max_new_tokens=6).sampling)
    plain = _ids(gen.generate(prompts[:2], 2, seed=0))
    saved = model.generation_config
    model.generation_config = saved.__class__(**saved.to_dict())
    model.generation_config.update(repetition_penalty=5.0, top_k=1, no_repeat_ngram_size=1)
    altered = model.generation_config
    model.train()
    try:
        assert _ids(gen.generate(prompts[:2], 2, seed=0)) == plain
        assert model.training and model.generation_config is altered
    finally:
        model.eval()
        model.generation_config = saved


def test_generate_rejects_bad_requests(policy, prompts):
    gen = HFGenerator(policy, _cfg().sampling)
    with pytest.raises(ValueError, match="n must be >= 1"):
        gen.generate(prompts, 0, seed=0)
    with pytest.raises(ValueError, match="2 prompts but 1 prompt_indices"):
        gen.generate(prompts[:2], 1, seed=0, prompt_indices=[0])
    with pytest.raises(ValueError, match="prompt 7 is empty"):
        gen.generate([[]], 1, seed=0, prompt_indices=[7])


def test_make_generator_and_vllm_import_guard(policy):
    assert isinstance(make_generator(policy, _cfg().sampling), HFGenerator)
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed; the guard only applies without it")
    with pytest.raises(ImportError, match=r"vllm.*backend='hf'"):
        make_generator(policy, SamplingConfig(backend="vllm"))
    with pytest.raises(ImportError, match="optional vllm package"):
        VLLMGenerator(policy, SamplingConfig(backend="vllm"))


# -- collate ----------------------------------------------------------------------------------

def test_collate_masks_exactly_the_completion_tokens():
    rollouts = [Rollout(0, 0, [5, 6, 7], [8, 9], "", True), Rollout(0, 1, [5, 6, 7], [10], "", False),
                Rollout(1, 0, [11], [12, 13, 14, 15], "", True)]
    b = collate(rollouts, pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 10, 0], [11, 12, 13, 14, 15]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert b.completion_mask.tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 0], [0, 1, 1, 1, 1]]
    assert b.input_ids.dtype == b.completion_mask.dtype == torch.long
    with pytest.raises(ValueError, match="no rollouts"):
        collate([], pad_id=0)


def test_collate_of_generated_rollouts(policy, prompts):
    groups = HFGenerator(policy, _cfg(max_new_tokens=6).sampling).generate(prompts, 2, seed=1)
    flat = [r for g in groups for r in g]
    b = collate(flat, policy.tokenizer.pad_token_id).to("cpu")
    for k, r in enumerate(flat):
        assert b.input_ids[k][b.attention_mask[k].bool()].tolist() == r.prompt_ids + r.completion_ids
        assert b.input_ids[k][b.completion_mask[k].bool()].tolist() == r.completion_ids
        n = len(r.prompt_ids) + len(r.completion_ids)
        assert b.attention_mask[k, :n].all() and not b.attention_mask[k, n:].any()
