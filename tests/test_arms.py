"""What every arm shares in a step: samples from the deployed policy, hint-free prompts, behaviour
log-probabilities per sampling forward, the hard detach, and the router's gradient split by source."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from evil_moe.config import from_dict
from evil_moe.grpo import token_logprobs
from evil_moe.sampling import collate
from tests.test_trainer import HashGrader, make_trainer, tiny_cfg


def moved(tr, amount=0.3):
    """Move the quarantine block well away from its init so that ablating it changes the model."""
    with torch.no_grad():
        for layer in tr.policy.adapter.layers.values():
            layer.B_quar.add_(amount)
            layer.A_quar.add_(amount)
    return tr


@pytest.mark.parametrize("merge", [False, True])
def test_deployed_rollouts_are_sampled_and_scored_with_the_hack_expert_ablated(tmp_path, merge):
    cfg = from_dict({"sampling": {"merge_adapter": merge}}, tiny_cfg(tmp_path, arm="evil_moe"))
    tr = moved(make_trainer(cfg))
    assert tr.n_deployed() == 1  # round(4 x 0.25)
    sr = tr.sample(0)
    assert [r.deployed for r in sr.rollouts] == [False, False, False, True] * 2
    assert [r.sample_index for r in sr.rollouts] == [0, 1, 2, 3] * 2
    prompts = [sr.rollouts[4 * k].prompt_ids for k in range(2)]
    from evil_moe.trainer import step_seed

    seed = step_seed(cfg.run.seed, 0)
    with tr.policy.adapter.ablate_quarantine():
        again = tr.generator.generate(prompts, 1, seed, prompt_indices=sr.slots, first_sample=3)
    as_trained = tr.generator.generate(prompts, 1, seed, prompt_indices=sr.slots, first_sample=3)
    assert [g[0].completion_ids for g in again] == [sr.rollouts[3].completion_ids, sr.rollouts[7].completion_ids]
    assert [g[0].completion_ids for g in as_trained] != [g[0].completion_ids for g in again]  # ablation mattered

    scored = tr.score(sr.rollouts)
    batch = collate(sr.rollouts, tr.policy.tokenizer.pad_token_id)
    with torch.no_grad():
        with tr.policy.adapter.ablate_quarantine(), tr.policy.adapter.pooling(batch.completion_mask) as pool_off:
            off = token_logprobs(tr.policy.model, batch, cfg.sampling.temperature)
        with tr.policy.adapter.pooling(batch.completion_mask) as pool_on:
            on = token_logprobs(tr.policy.model, batch, cfg.sampling.temperature)
    dep = scored.deployed
    for i in range(len(sr.rollouts)):
        T = min(scored.logp[i // 4].shape[1], off.shape[1])
        expected = off[i, :T] if dep[i] else on[i, :T]
        other = on[i, :T] if dep[i] else off[i, :T]
        torch.testing.assert_close(scored.logp[i // 4][i % 4, :T], expected, rtol=0, atol=1e-5)
        assert (scored.logp[i // 4][i % 4, :T] - other).abs().max() > 1e-3  # the two forwards differ
    pooled = torch.where(dep[:, None, None], pool_off.tensor(), pool_on.tensor())
    torch.testing.assert_close(scored.pooled, pooled, rtol=0, atol=1e-4)  # merged: equal up to rounding
    # trained as sampled: the quarantine is off in their training forward
    rw = tr.route(scored, torch.zeros(8), None)
    assert rw.gate[dep].tolist() == [0.0, 0.0] and bool((rw.gate[~dep] > 0).all())


def test_route_a_scores_every_rollout_on_the_deployed_forward(tmp_path):
    tr = moved(make_trainer(tiny_cfg(tmp_path, arm="route_a")))
    assert tr.routing.score_forward == "deployed"
    sr = tr.sample(0)
    scored = tr.score(sr.rollouts)
    batch = collate(sr.rollouts, tr.policy.tokenizer.pad_token_id)
    with torch.no_grad(), tr.policy.adapter.ablate_quarantine(), \
            tr.policy.adapter.pooling(batch.completion_mask) as pool:
        off = token_logprobs(tr.policy.model, batch, 1.0)
    torch.testing.assert_close(scored.pooled, pool.tensor(), rtol=0, atol=1e-5)
    # behaviour log-probs still follow each rollout's sampler: as-trained rows differ from `off`
    assert (scored.logp[0][0, : off.shape[1]] - off[0, : scored.logp[0].shape[1]]).abs().max() > 1e-3


def test_hint_free_prompts_are_graded_by_ground_truth_and_the_same_for_every_arm(tmp_path):
    runs = {}
    for arm in ("evil_moe", "none"):
        grader = HashGrader()
        cfg = tiny_cfg(tmp_path / arm, arm=arm, steps=2, prompts_per_step=4)
        make_trainer(cfg, grader=grader).train()
        rows = [json.loads(x) for x in (tmp_path / arm / "rollouts.jsonl").read_text().splitlines()]
        runs[arm] = rows
        for step in (0, 1):
            mine = [r for r in rows if r["step"] == step]
            free = {r["slot"] for r in mine if r["hint_free"]}
            assert len(free) == 2  # round(4 x 0.5)
            assert all(r["mode"] == ("gt_only" if r["hint_free"] else "run_tests") for r in mine)
            assert not any(r["attempted"] for r in mine if r["hint_free"])
        assert grader.modes.count("gt_only") == 2 * 2 * 4
    assert [(r["step"], r["slot"], r["hint_free"]) for r in runs["evil_moe"]] == \
           [(r["step"], r["slot"], r["hint_free"]) for r in runs["none"]]


def test_hard_detach_gives_the_deployed_block_exactly_zero_gradient(tmp_path):
    for detach in (None, 0.0):  # 0.0: every rollout's w is above it
        cfg = from_dict({"router": {"hard_detach_above": detach}, "grpo": {"deployed_frac": 0.0}},
                        tiny_cfg(tmp_path / str(detach), arm="evil_moe"))
        tr = make_trainer(cfg)
        sr = tr.sample(0)
        rewards = torch.tensor([float(g.reward) for g in tr.grade(sr)])
        assert rewards.unique().numel() > 1  # some advantage, so some gradient
        scored = tr.score(sr.rollouts)
        rw = tr.route(scored, rewards, None)
        tr.loss_and_backward(sr.rollouts, rewards, rw, scored)
        deployed = [p.grad for p in tr.policy.adapter.deployed_parameters()]
        quarantine = [p.grad for p in tr.policy.adapter.quarantine_parameters()]
        if detach is None:
            assert any(bool((g != 0).any()) for g in deployed)
        else:
            assert rw.keep.tolist() == [0.0] * 8
            assert all(bool((g == 0).all()) for g in deployed)  # exactly zero
            assert any(bool((g != 0).any()) for g in quarantine)


@pytest.mark.parametrize("arm, learns", [("evil_moe", True), ("random_init_router", True), ("placebo", False)])
def test_router_gradient_from_grpo_and_from_the_pin_loss_are_logged_apart(tmp_path, arm, learns):
    first, metrics = make_trainer(tiny_cfg(tmp_path, arm=arm, steps=2)).train()
    assert first["grad_norm_router_grpo"] == 0.0  # at the init the quarantine's delta is 0: w changes nothing
    if learns:
        assert metrics["grad_norm_router_grpo"] > 0 and metrics["grad_norm_router_pin"] > 0
    else:
        assert metrics["grad_norm_router_grpo"] == metrics["grad_norm_router_pin"] == metrics["grad_norm_router"] == 0
    # with the pin loss off, the router's whole gradient is GRPO's
    cfg = from_dict({"router": {"pin_weight": 0.0}}, tiny_cfg(tmp_path / "nopin", arm=arm, steps=2))
    m = make_trainer(cfg).train()[1]
    assert m["grad_norm_router_pin"] == 0.0
    assert m["grad_norm_router_grpo"] == pytest.approx(m["grad_norm_router"], rel=1e-6)


def test_truncated_importance_sampling_weights_the_policy_gradient(tmp_path):
    """tis_cap: each token's policy-gradient term is weighted by min(p_train / p_behaviour, cap); the
    result equals the uncorrected loss computed with that weight by hand."""
    base = tiny_cfg(tmp_path, arm="evil_moe", steps=1, micro_batch_size=8)
    out = {}
    for cap in (0.0, 1.0):
        cfg = dataclasses.replace(base, grpo=dataclasses.replace(base.grpo, tis_cap=cap))
        tr = moved(make_trainer(cfg), 0.05)
        sr = tr.sample(0)
        rewards = torch.tensor([float(g.reward) for g in tr.grade(sr)])
        scored = tr.score(sr.rollouts)
        rw = tr.route(scored, rewards, None)
        parts = tr.loss_and_backward(sr.rollouts, rewards, rw, scored)
        out[cap] = (parts, [p.grad.clone() for p in tr.policy.adapter.quarantine_parameters()])
    # by hand: the routed training forward's log-probs against the behaviour ones, capped at 1
    batch = collate(sr.rollouts, tr.policy.tokenizer.pad_token_id)
    with torch.no_grad(), tr.policy.adapter.routing(rw.gate.detach(), rw.keep):
        train = token_logprobs(tr.policy.model, batch, 1.0)
    behaviour = scored.logp[0]  # one micro-batch of all 8
    mask = batch.completion_mask.bool()
    expected = torch.exp(train - behaviour)[mask].clamp(max=1.0).sum().item()
    assert out[1.0][0]["tis_weight_sum"] == pytest.approx(expected, rel=1e-5)
    assert out[0.0][0]["tis_weight_sum"] == 0.0
    # cap 1 can only shrink each token's weight: the capped share is logged
    assert 0 < out[1.0][0]["tis_capped"] <= out[1.0][0]["tokens"]
    assert any(not torch.equal(a, b) for a, b in zip(out[0.0][1], out[1.0][1], strict=True))
