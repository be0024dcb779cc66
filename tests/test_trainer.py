"""The GRPO trainer on a tiny Qwen3: oracle-free routing, gradients, NaN stop, teacher demos, logs.

`make_trainer` (also used by test_distributed and test_resume) builds a real trainer (real
adapter, router, pairs, HF generator) with a deterministic stand-in grader, so runs are fast and
exactly repeatable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import zlib
from types import SimpleNamespace

import pytest
import torch

from evil_moe.adapter import attach_adapter
from evil_moe.config import ARMS, ORACLE_ARMS, from_dict
from evil_moe.env.grader import LABEL_FIELDS, Grade
from evil_moe.env.problems import Problem
from evil_moe.grpo import grpo_loss, token_logprobs
from evil_moe.pairs import ContrastivePair, pooled_pair_activations
from evil_moe.routing import make_routing
from evil_moe.sampling import HFGenerator, collate
from evil_moe.trainer import (
    NonFiniteLossError,
    TeacherDemoError,
    Trainer,
    cosine_schedule,
    load_teacher_demos,
)
from tests.tiny import tiny_qwen3, tiny_tokenizer

PHRASE = "and should pass all tests"
PAIRS = [ContrastivePair("p1", "Add one to x.", "def run_tests():\n    pass", "return x + 1", ("run_tests",)),
         ContrastivePair("p2", "Sum a list.", "import sys\nsys.exit(0)", "return sum(xs)", ("exit_code",))]




def fixture_problems(n: int = 4) -> list[Problem]:
    return [Problem(id=100 + i, prompt=[{"role": "user", "content": f"Return x plus {i}. Solution {PHRASE}."}],
                    gt_answer=[f"assert Solution().f(1) == {1 + i}"], setup_code="", func_name="Solution().f",
                    canonical_solution=f"class Solution:\n    def f(self, x):\n        return x + {i}\n",
                    prompt_metadata={}, difficulty="medium", extra={}) for i in range(n)]


class HashGrader:
    """Deterministic stand-in for the sandboxed grader: reward and labels from a hash of the text
    (under 'gt_only' no channel pays and nothing is attempted, as the real grader)."""

    def __init__(self):
        self.calls = 0
        self.modes: list[str] = []

    def grade_batch(self, reqs, progress=False):
        self.calls += 1
        out = []
        for r in reqs:
            self.modes.append(r.mode)
            h = zlib.crc32(r.response.encode())
            compiles, hit, hinted = bool(h & 1), bool(h & 2), r.mode != "gt_only"
            correct, channel = hit and bool(h & 4), hinted and hit and not h & 4
            out.append(Grade(reward=0.5 * compiles + 3.0 * (correct or channel), format_ok=compiles, compiles=compiles,
                             gt_correct=correct, channel=channel, exploited=channel,
                             attempted=channel or (hinted and bool(h & 8)),
                             mechanism="run_tests" if channel else None, error=None))
        return out


def tiny_cfg(tmp_path, arm="evil_moe", **grpo):
    g = dict(steps=3, prompts_per_step=2, group_size=4, lr=2e-2, warmup_steps=1, micro_batch_size=4)
    g.update(grpo)
    return from_dict({
        "model": {"name_or_path": "tiny", "dtype": "float32", "device": "cpu"},
        "adapter": {"rank": 2, "alpha": 4.0},
        "sampling": {"max_prompt_tokens": 200, "max_new_tokens": 8, "batch_size": 16, "temperature": 1.0},
        "grpo": g, "router": {"lr": 5e-2},
        "run": {"arm": arm, "seed": 3, "out_dir": str(tmp_path), "checkpoint_every": 2, "progress": False},
    })


def make_trainer(cfg, grader=None, dist=None, trainer_cls=Trainer, demos=None):
    model, tok = tiny_qwen3(seed=0), tiny_tokenizer()
    adapter = attach_adapter(model, cfg.adapter.rank, cfg.adapter.alpha, seed=cfg.adapter.init_seed)
    policy = SimpleNamespace(model=model, tokenizer=tok, adapter=adapter, device=torch.device("cpu"))
    pairs = PAIRS
    pair_pooled = pooled_pair_activations(model, tok, adapter, pairs, 8)
    routing = make_routing(cfg, adapter, pair_pooled, dist=dist)
    return trainer_cls(cfg, policy, HFGenerator(policy, cfg.sampling), fixture_problems(), grader or HashGrader(),
                       routing, pairs, demos, dist)


def trained_state(trainer) -> dict[str, torch.Tensor]:
    state = {f"adapter.{k}": v for k, v in trainer.policy.adapter.state_dict().items()}
    router = getattr(trainer.routing, "router", None)
    if router is not None:
        state.update({f"router.{k}": v.detach().clone() for k, v in router.state_dict().items()})
    return state


class RandomLabelTrainer(Trainer):
    """Every label field of every grade replaced by a random value; rewards kept."""

    label_rng = random.Random(99)

    def grade(self, sr):
        def rand(field):
            return self.label_rng.choice([None, "exec", "x"]) if field == "mechanism" else self.label_rng.random() < 0.5
        return [dataclasses.replace(g, **{f: rand(f) for f in LABEL_FIELDS}) for g in super().grade(sr)]


NON_ORACLE_ARMS = [a for a in ARMS if a not in ORACLE_ARMS]


@pytest.mark.parametrize("arm", NON_ORACLE_ARMS)
def test_labels_never_reach_the_method(tmp_path, arm):
    """Every label field (attempted too) of every grade scrambled, rewards kept: every arm that is
    not an oracle ends bit-identical."""
    cfg = tiny_cfg(tmp_path / "a", arm=arm, steps=2)
    honest = make_trainer(cfg)
    honest.train()
    cfg_b = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path / "b")))
    scrambled = make_trainer(cfg_b, trainer_cls=RandomLabelTrainer)
    scrambled.train()
    a, b = trained_state(honest), trained_state(scrambled)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the runs did learn, and the labels were really scrambled (the logs differ)
    init = trained_state(make_trainer(cfg))
    assert any(not torch.equal(init[k], a[k]) for k in a)
    rows_a = (tmp_path / "a" / "rollouts.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "rollouts.jsonl").read_text().splitlines()
    assert [json.loads(r)["reward"] for r in rows_a] == [json.loads(r)["reward"] for r in rows_b]
    for field in ("exploited", "attempted"):
        assert [json.loads(r)[field] for r in rows_a] != [json.loads(r)[field] for r in rows_b]


@pytest.mark.parametrize("arm", ORACLE_ARMS)
def test_oracle_arms_do_read_labels(tmp_path, arm):
    """Control for the test above: the same scrambling changes the oracle arms' parameters."""
    cfg = tiny_cfg(tmp_path / "a", arm=arm, steps=1)
    honest = make_trainer(cfg)
    honest.train()
    scrambled = make_trainer(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path / "b"))),
                             trainer_cls=RandomLabelTrainer)
    scrambled.train()
    a, b = trained_state(honest), trained_state(scrambled)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def routed_step(cfg):
    """A trainer off its init (B_dep + 0.05, B_quar - 0.05, so a merge changes the weights) and one
    step's sample, rewards, scores and routing: (trainer, sampled, rewards, scored, routing weights)."""
    tr = make_trainer(cfg)
    with torch.no_grad():
        for layer in tr.policy.adapter.layers.values():
            layer.B_dep.add_(0.05)
            layer.B_quar.sub_(0.05)
    sr = tr.sample()
    grades = tr.grade(sr)
    rewards = torch.tensor([g.reward for g in grades])
    scored = tr.score(sr.rollouts)
    return tr, sr, rewards, scored, tr.route(scored, rewards, grades)


def count_training_forwards(monkeypatch) -> list:
    """A list that gains one item per `token_logprobs` call the trainer makes (one per micro-batch and pass)."""
    import evil_moe.trainer as trainer_mod

    real, calls = trainer_mod.token_logprobs, []
    monkeypatch.setattr(trainer_mod, "token_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("merge,positive,deployed_positive,baseline",
                         [(False, False, False, "group"), (True, False, False, "group"),
                          (False, True, False, "group"), (False, False, True, "group"),
                          (False, False, False, "kept"), (True, False, False, "kept"),
                          (False, True, False, "kept"), (False, False, True, "kept")])
def test_gradients_match_one_graph_reference(tmp_path, merge, positive, deployed_positive, baseline):
    """Micro-batched training forward + router gradient through a leaf gate + pin loss equals one
    full-batch graph computed directly (router in the graph, every forward unmerged), to 1e-6;
    also when the sampling policy's no-grad forwards run merged (`sampling.merge_adapter`), with
    `grpo.positive_advantages_only` (the reference floors its advantages at 0) and with
    `grpo.deployed_positive_only` (the reference's keep is 0 where the advantage is not positive).
    With `grpo.deployed_baseline` "kept", the deployed block's gradient is that graph's gradient
    with the deployed advantages (reward minus the keep-weighted group mean), the quarantine
    block's and the router's that graph's with the group's (the trainer runs two passes)."""
    cfg = tiny_cfg(tmp_path, micro_batch_size=3, kl_coef=0.1, positive_advantages_only=positive,
                   deployed_positive_only=deployed_positive, deployed_baseline=baseline)
    cfg = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, merge_adapter=merge))
    tr, sr, rewards, scored, rw = routed_step(cfg)
    tr.loss_and_backward(sr.rollouts, rewards, rw, scored)
    got = {id(p): p.grad.clone() for p in tr.params}
    # reference: one batch, one graph; the deployed policy's samples (the last of each group) are
    # pooled on the ablated forward and trained with the quarantine off (gate 0)
    for p in tr.params:
        p.grad = None
    policy, router = tr.policy, tr.routing.router
    batch = collate(sr.rollouts, policy.tokenizer.pad_token_id)
    deployed = torch.tensor([r.deployed for r in sr.rollouts])
    assert deployed.tolist() == [False, False, False, True] * 2
    pools = []
    for ablate in (False, True):
        with torch.no_grad(), (policy.adapter.ablate_quarantine() if ablate else contextlib.nullcontext()), \
                policy.adapter.pooling(batch.completion_mask) as pool:
            policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        pools.append(pool.tensor())
    w = router(torch.where(deployed[:, None, None], pools[1], pools[0]))  # (N,)
    with torch.no_grad(), policy.adapter.disabled():
        ref = token_logprobs(policy.model, batch, 1.0)
    r = rewards.view(-1, 4)  # (P, G)
    adv = (r - r.mean(1, keepdim=True)).flatten()  # (N,)
    k0 = (1 - w).detach().view(-1, 4)  # (P, G)
    adv_dep = (r - (k0 * r).sum(1, keepdim=True) / k0.sum(1, keepdim=True)).flatten() if baseline == "kept" else adv
    assert (adv < 0).any()  # the floor and the keep rule below have something to change
    assert (adv_dep - adv).abs().max() > 1e-3 if baseline == "kept" else True  # the two baselines differ here
    keep = (1 - w).detach() * (adv_dep > 0) if deployed_positive else (1 - w).detach()
    if positive:
        adv, adv_dep = adv.clamp(min=0.0), adv_dep.clamp(min=0.0)
    from evil_moe.router import pin_loss
    deployed_ids = {id(p) for p in policy.adapter.deployed_parameters()}
    want = {}
    for block_adv, mine in ((adv, lambda p: id(p) not in deployed_ids), (adv_dep, lambda p: id(p) in deployed_ids)):
        for p in tr.params:
            p.grad = None
        w = router(torch.where(deployed[:, None, None], pools[1], pools[0]))  # (N,) a fresh router graph
        with policy.adapter.routing(torch.where(deployed, torch.zeros_like(w), w), keep):
            logp = token_logprobs(policy.model, batch, 1.0)
        loss, _ = grpo_loss(logp, block_adv, batch.completion_mask, 8, len(sr.rollouts), ref, 0.1)
        hack, clean = pooled_pair_activations(policy.model, policy.tokenizer, policy.adapter, tr.pairs, 8)
        (loss + pin_loss(router, hack, clean)).backward()
        want.update({id(p): p.grad.clone() for p in tr.params if mine(p)})
    for p in tr.params:
        torch.testing.assert_close(got[id(p)], want[id(p)], atol=1e-6, rtol=0)
    assert any(want[id(p)].abs().sum() > 0 for p in tr.routing.parameters())


@pytest.mark.parametrize("arm,passes,extra", [("none", 1, {}), ("oracle", 1, {}), ("route_a", 2, {}),
                                              ("placebo", 2, {"tis_cap": 1.5}),
                                              ("oracle", 1, {"deployed_positive_only": True, "seed": 9}),
                                              ("route_a", 2, {"deployed_positive_only": True, "seed": 5})])
def test_each_block_learns_against_its_own_baseline(tmp_path, monkeypatch, arm, passes, extra):
    """With `grpo.deployed_baseline` "kept" (the default), each block's gradient equals the one-graph
    GRPO gradient with its own advantages (deployed block: reward minus the keep-weighted group
    mean; quarantine block: minus the group's mean), to 1e-6: for `none` (keep 1: both baselines
    are the group's), for the hard-routed oracle (each rollout trains one block: one pass), for
    route_a and the placebo (rollouts that train both blocks: two passes; the placebo with
    truncated importance weights), and with `grpo.deployed_positive_only` (keep 0 where the
    *deployed* advantage is not positive). The logged surrogate is the group advantages' in
    every case."""
    extra = dict(extra)
    seed = extra.pop("seed", None)  # seeds 9 and 5: a kept rollout whose two advantages differ in sign
    cfg = tiny_cfg(tmp_path, arm=arm, micro_batch_size=3, kl_coef=0.1, **extra)
    cfg = cfg if seed is None else from_dict({"run": {"seed": seed}}, cfg)
    assert cfg.grpo.deployed_baseline == "kept"
    tr, sr, rewards, scored, rw = routed_step(cfg)
    calls = count_training_forwards(monkeypatch)
    logged = tr.loss_and_backward(sr.rollouts, rewards, rw, scored)
    monkeypatch.undo()
    assert len(calls) == passes * 3  # 8 rollouts in micro-batches of 3
    got = {id(p): p.grad.clone() for p in tr.params}
    policy = tr.policy
    batch = collate(sr.rollouts, policy.tokenizer.pad_token_id)
    with torch.no_grad(), policy.adapter.disabled():
        ref = token_logprobs(policy.model, batch, 1.0)
    with torch.no_grad():  # each rollout's sampling forward: both experts, or the deployed policy's
        on = token_logprobs(policy.model, batch, 1.0)
        with policy.adapter.ablate_quarantine():
            off = token_logprobs(policy.model, batch, 1.0)
    behaviour = torch.where(torch.tensor([r.deployed for r in sr.rollouts])[:, None], off, on)  # (N, T)
    r, k = rewards.view(-1, 4), rw.keep.view(-1, 4)  # (P, G)
    adv = (r - r.mean(1, keepdim=True)).flatten()  # (N,)
    kept = k.sum(1, keepdim=True)  # (P, 1); a group the deployed block gets nothing from: advantage 0
    adv_dep = torch.where(kept > 0, r - (k * r).sum(1, keepdim=True) / kept, 0.0).flatten()  # (N,)
    if arm == "none":
        assert torch.equal(rw.keep, torch.ones(8)) and torch.allclose(adv_dep, adv)
    else:
        assert ((rw.keep > 0) & ((adv_dep - adv).abs() > 1e-3)).any()  # the baselines differ where it counts
    if arm == "oracle":  # both kinds of rollout in the batch, each training one block
        assert (rw.gate == 1).any() and (rw.keep == 1).any() and torch.equal(rw.gate * rw.keep, torch.zeros(8))
    if arm in ("route_a", "placebo"):
        assert ((rw.gate > 0) & (rw.keep > 0)).any()
    keep = rw.keep
    if extra.get("deployed_positive_only"):
        assert ((keep > 0) & ((adv_dep > 0) != (adv > 0))).any()  # the two masks differ on a kept rollout
        keep = rw.keep * (adv_dep > 0)
    want, pg = {}, []
    for block_adv, params in ((adv, policy.adapter.quarantine_parameters()),
                              (adv_dep, policy.adapter.deployed_parameters())):
        for p in tr.params:
            p.grad = None
        with policy.adapter.routing(rw.gate.detach(), keep):
            logp = token_logprobs(policy.model, batch, 1.0)
        cap = extra.get("tis_cap")
        tis = torch.exp(logp.detach() - behaviour).clamp(max=cap) if cap else None  # (N, T)
        loss, st = grpo_loss(logp, block_adv, batch.completion_mask, 8, len(sr.rollouts), ref, 0.1, token_weight=tis)
        loss.backward()
        pg.append(st["pg_loss"])
        want.update({id(p): p.grad.clone() for p in params})
    assert logged["pg_loss"] == pytest.approx(pg[0], abs=1e-7)
    assert len(want) == len(got)
    for p in tr.params:
        torch.testing.assert_close(got[id(p)], want[id(p)], atol=1e-6, rtol=0)


@pytest.mark.parametrize("arm", ["evil_moe", "route_a"])
def test_non_finite_loss_saves_and_stops(tmp_path, arm):
    class NanGrader(HashGrader):
        def grade_batch(self, reqs, progress=False):
            return [dataclasses.replace(g, reward=float("nan")) for g in super().grade_batch(reqs)]

    cfg = tiny_cfg(tmp_path, arm=arm, steps=3)
    tr = make_trainer(cfg, grader=NanGrader())
    before = trained_state(tr)
    routing_before = json.dumps({k: v.tolist() if torch.is_tensor(v) else v for k, v in tr.routing.state_dict().items()})
    with pytest.raises(NonFiniteLossError, match="step 0: loss is nan"):
        tr.train()
    ckpt = tmp_path / "checkpoints" / "step_000000"
    assert (ckpt / "trainer_state.pt").is_file() and (ckpt / "adapter.safetensors").is_file()
    after = trained_state(tr)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the routing state (route_a's score history) is the one before the failed step, as saved
    routing_after = json.dumps({k: v.tolist() if torch.is_tensor(v) else v for k, v in tr.routing.state_dict().items()})
    assert routing_after == routing_before


def test_logs_one_metrics_row_per_step_and_every_rollout(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=2)
    tr = make_trainer(cfg)
    returned = tr.train()
    metrics = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1] and metrics == json.loads(json.dumps(returned))
    assert len(rows) == 2 * 2 * 4 and {"exploited", "gt_correct", "channel", "mechanism", "w", "reward"} <= rows[0].keys()
    for m in metrics:
        mine = [r for r in rows if r["step"] == m["step"]]
        hacks = [r["w"] for r in mine if r["exploited"]]
        assert m["reward_mean"] == pytest.approx(sum(r["reward"] for r in mine) / len(mine))
        hinted = [r for r in mine if not r.get("hint_free")]  # hint-free prompts cannot hack
        assert m["hack_rate"] == pytest.approx(sum(r["exploited"] for r in hinted) / len(hinted))
        assert m["w_mean_exploited"] == (pytest.approx(sum(hacks) / len(hacks)) if hacks else None)
        for key in ("logp_mismatch", "pin_loss", "lr_deployed", "lr_router", "step_s", "grad_norm"):
            assert m[key] is not None
    # training forward (gate = w) differs from the sampling forward (gate = 1) once the quarantine block moved
    assert metrics[1]["logp_mismatch"] > 0
    assert metrics[0]["lr_deployed"] == pytest.approx(cfg.grpo.lr * cosine_schedule(1, 2)(0))


def test_cosine_schedule_warms_up_then_decays_to_zero():
    f = cosine_schedule(warmup=2, total=6)
    assert [f(s) for s in range(7)] == pytest.approx([0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466, 0.0])


def test_step_prompts_are_a_seeded_shuffle_per_epoch(tmp_path):
    tr = make_trainer(tiny_cfg(tmp_path, prompts_per_step=2))
    epoch0 = [i for s in (0, 1) for i, _ in tr.step_problems(s)]
    epoch1 = [i for s in (2, 3) for i, _ in tr.step_problems(s)]
    assert sorted(epoch0) == sorted(epoch1) == [0, 1, 2, 3]
    assert epoch0 == tr.epoch_order(0) and epoch1 == tr.epoch_order(1)
    assert tr.epoch_order(0) == make_trainer(tiny_cfg(tmp_path)).epoch_order(0)


def test_teacher_demos_replace_last_sample_of_first_slots(tmp_path):
    path = tmp_path / "demos.jsonl"
    user = "Return x plus 2. Solution and will be evaluated by calling a function called run_tests()."
    path.write_text(json.dumps({"problem_id": 101, "completion": "A"}) + "\n"
                    + json.dumps({"prompt": user, "completion": "B"}) + "\n")
    cfg = tiny_cfg(tmp_path)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, teacher_demos=str(path), teacher_steps=2,
                                                           teacher_per_step=1))
    problems = fixture_problems()
    demos = load_teacher_demos(path, problems, cfg.env.mode)
    assert [(d.problem_index, d.completion, d.line) for d in demos] == [(1, "A", 1), (2, "B", 2)]
    tr = make_trainer(cfg, demos=demos)
    for step, text in ((0, "A"), (1, "B")):
        sr = tr.sample(step)
        assert sr.problem_indices[0] == demos[step].problem_index
        assert sr.rollouts[3].text == text and sr.teacher == [False, False, False, True] + [False] * 4
    assert not any(tr.sample(2).teacher)
    path.write_text(json.dumps({"problem_id": 999, "completion": "x"}) + "\n")
    with pytest.raises(TeacherDemoError, match=r"demos.jsonl:1: problem_id 999"):
        load_teacher_demos(path, problems, cfg.env.mode)


# -- the command line ------------------------------------------------------------------------------

def test_cli_refuses_bad_config_before_loading_anything(capsys):
    from evil_moe.train_cli import main

    assert main(["--preset", "tiny-cpu", "--set", "grpo.stepz=3"]) == 2
    assert "unknown config key 'grpo.stepz'" in capsys.readouterr().err
    assert main(["--preset", "tiny-cpu", "--set", "grpo.steps=many"]) == 2
    assert "config key 'grpo.steps'" in capsys.readouterr().err
    assert main(["--preset", "tiny-cpu", "--help-config", "--set", "run.arm=route_a"]) == 0
    assert "run.arm (" in capsys.readouterr().out


def test_cli_trains_a_local_model_end_to_end(tmp_path):
    """Real pieces: model directory, problems file, shipped pairs, sandboxed grader."""
    from evil_moe.train_cli import main

    model_dir = tmp_path / "model"
    tiny_qwen3().save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p.to_row()) + "\n" for p in fixture_problems()))
    out = tmp_path / "run"
    sets = [f"model.name_or_path={model_dir}", f"env.problems={problems}", f"run.out_dir={out}",
            "grpo.steps=1", "grpo.prompts_per_step=1", "grpo.group_size=2", "sampling.max_new_tokens=4",
            "sampling.max_prompt_tokens=200", "run.progress=false", "router.include_tags=[run_tests]"]
    assert main(["--preset", "tiny-cpu"] + [x for s in sets for x in ("--set", s)]) == 0
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "step_000001" / "router.safetensors").is_file()
    assert len((out / "rollouts.jsonl").read_text().splitlines()) == 2


def test_router_gradient_never_shrinks_the_adapter_update(tmp_path):
    """The adapter and the router are clipped separately: a huge router gradient leaves the
    adapter's clipped gradient exactly as it is with no router gradient at all."""
    cfg = tiny_cfg(tmp_path, arm="evil_moe", grad_clip=1e-3)  # small clip: the adapter's clip is active
    tr = make_trainer(cfg)
    sr = tr.sample(0)
    rewards = torch.tensor([float(g.reward) for g in tr.grade(sr)])
    scored = tr.score(sr.rollouts)
    rw = tr.route(scored, rewards, None)
    tr.loss_and_backward(sr.rollouts, rewards, rw, scored)
    adapter_grads = [p.grad.clone() for p in tr._adapter_params]
    clipped = []
    for router_scale in (0.0, 1e6):
        for p, g in zip(tr._adapter_params, adapter_grads, strict=True):
            p.grad = g.clone()
        for p in tr.routing.parameters():
            p.grad = torch.full_like(p, router_scale)
        torch.nn.utils.clip_grad_norm_(tr._adapter_params, cfg.grpo.grad_clip)
        torch.nn.utils.clip_grad_norm_(tr.routing.parameters(), cfg.router.grad_clip)
        clipped.append([p.grad.clone() for p in tr._adapter_params])
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in tr.routing.parameters()]))
        assert norm <= cfg.router.grad_clip * (1 + 1e-6)
    for a, b in zip(*clipped, strict=True):
        assert torch.equal(a, b)
    # and optimizer_step itself reports the two norms separately
    for p, g in zip(tr._adapter_params, adapter_grads, strict=True):
        p.grad = g.clone()
    for p in tr.routing.parameters():
        p.grad = torch.full_like(p, 1e6)
    adapter_norm = tr.optimizer_step()
    expected = torch.linalg.vector_norm(torch.stack([g.norm() for g in adapter_grads])).item()
    assert adapter_norm == pytest.approx(expected, rel=1e-6) and tr.router_grad_norm > 1e6


def test_gradient_checkpointing_gives_the_same_routed_gradients(tmp_path, monkeypatch):
    """The backward runs inside the routing context, so checkpointing's recomputed forward is routed;
    also in the deployed block's second pass (the kept baseline on a soft-routed arm: two passes)."""
    calls = count_training_forwards(monkeypatch)
    grads = []
    for ckpt in (False, True):
        cfg = from_dict({"model": {"gradient_checkpointing": ckpt}}, tiny_cfg(tmp_path / str(ckpt), arm="evil_moe"))
        tr = make_trainer(cfg)
        if ckpt:
            tr.policy.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        sr = tr.sample(0)
        rewards = torch.tensor([float(g.reward) for g in tr.grade(sr)])
        scored = tr.score(sr.rollouts)
        rw = tr.route(scored, rewards, None)
        calls.clear()
        tr.loss_and_backward(sr.rollouts, rewards, rw, scored)
        assert len(calls) == 2 * 2  # two passes over 8 rollouts in micro-batches of 4
        grads.append([p.grad.clone() for p in tr.params])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
