import copy
from types import SimpleNamespace

import pytest
import torch

from evil_moe.adapter import attach_adapter
from evil_moe.config import preset
from evil_moe.evaluate import (
    Unit,
    adapter_state,
    eval_config,
    sample_and_grade,
    sections_for,
    state_names,
)
from tests.tiny import tiny_qwen3, tiny_tokenizer

RANK = 2




def trained(seed=0, move_deployed=True, move_quarantine=True):
    """A tiny Qwen3 with an adapter whose blocks were moved off their init (as training would)."""
    model = tiny_qwen3(seed=seed)
    adapter = attach_adapter(model, rank=RANK, alpha=4.0, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        moved = (adapter.deployed_parameters() if move_deployed else []) + \
                (adapter.quarantine_parameters() if move_quarantine else [])
        for p in moved:
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model, adapter


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a, b, skip=()):
    for k in a:
        if not any(s in k for s in skip):
            assert torch.equal(a[k], b[k]), k


def test_state_names():
    assert state_names(2) == ["as_trained", "deployed", "ablate_deployed", "random_subspace_0",
                              "random_subspace_1", "base"]


@pytest.mark.parametrize("state,reset,kept", [
    ("deployed", ("A_quar", "B_quar"), ("A_dep", "B_dep")),
    ("ablate_deployed", ("A_dep", "B_dep"), ("A_quar", "B_quar")),
])
def test_block_ablation_resets_its_block_to_init_and_nothing_else(state, reset, kept):
    model, adapter = trained()
    before = snapshot(model)
    with adapter_state(adapter, state):
        for layer in adapter.layers.values():
            for key in reset:
                init = getattr(layer, key.replace("_", "0_"))
                assert torch.equal(getattr(layer, key), init), (layer.name, key)
        assert_same(before, snapshot(model), skip=reset)
    assert_same(before, snapshot(model))  # restored bit-exactly


def test_as_trained_changes_nothing_and_base_is_the_bare_model():
    model, adapter = trained()
    before = snapshot(model)
    ids = torch.tensor([[5, 9, 17, 3, 44, 2]])  # (1, T)
    bare = tiny_qwen3(seed=0)
    with torch.no_grad():
        with adapter_state(adapter, "as_trained"):
            assert_same(before, snapshot(model))
            on = model(ids).logits  # (1, T, V)
        with adapter_state(adapter, "base"):
            off = model(ids).logits
        with adapter_state(adapter, "base", backend="vllm"):  # both blocks at init instead of the flag
            off_params = model(ids).logits
        ref = bare(ids).logits
    assert not torch.allclose(on, ref, atol=1e-3)
    assert torch.equal(off, ref)
    torch.testing.assert_close(off_params, ref, rtol=0, atol=1e-6)
    assert_same(before, snapshot(model))


def test_random_subspace_removes_rank_r_of_each_block_and_is_seeded():
    model, adapter = trained()
    before = snapshot(model)
    layers = list(adapter.layers.values())

    def deviation():
        out = []
        for m in layers:
            A = torch.cat([m.A_dep, m.A_quar]) - m.A0  # (2r, d_in)
            B = torch.cat([m.B_dep, m.B_quar], dim=1) - m.B0  # (d_out, 2r)
            out.append((A.detach().clone(), B.detach().clone()))
        return out

    full = deviation()
    assert all(torch.linalg.matrix_rank(A) == 2 * RANK for A, _ in full)
    with adapter_state(adapter, "random_subspace_0", seed=0):
        draw0 = deviation()
        assert_same(before, snapshot(model), skip=("A_dep", "B_dep", "A_quar", "B_quar"))
    with adapter_state(adapter, "random_subspace_0", seed=0):
        again = deviation()
    with adapter_state(adapter, "random_subspace_1", seed=0):
        draw1 = deviation()
    for (A, B), (A2, _), (A1, _) in zip(draw0, again, draw1, strict=True):
        # matched capacity: the distance from init keeps exactly r of the 2r bottleneck directions
        assert torch.linalg.matrix_rank(A) == RANK and torch.linalg.matrix_rank(B) == RANK
        assert torch.equal(A, A2) and not torch.allclose(A, A1)
    # a subspace ablation mixes both blocks, unlike the block ablations
    assert not torch.allclose(draw0[0][0][:RANK], full[0][0][:RANK])
    assert not torch.allclose(draw0[0][0][RANK:], full[0][0][RANK:])
    assert_same(before, snapshot(model))


def test_subspace_draws_are_fresh_per_training_seed():
    """The controls' seed mixes run.seed with eval.seed: another training seed, other subspaces."""
    from evil_moe.evaluate import controls_seed, subspace_seed

    assert controls_seed(0, 0) == controls_seed(0, 0)
    seeds = {controls_seed(run, 0) for run in range(6)} | {controls_seed(0, ev) for ev in range(1, 4)}
    assert len(seeds) == 9
    draws = {subspace_seed(controls_seed(0, 0), i) for i in range(8)}
    assert len(draws) == 8
    model, adapter = trained()

    def reset_A(seed):
        with adapter_state(adapter, "random_subspace_0", seed=seed):
            return torch.cat([list(adapter.layers.values())[0].A_dep.detach().clone()])
    assert torch.equal(reset_A(controls_seed(0, 0)), reset_A(controls_seed(0, 0)))
    assert not torch.allclose(reset_A(controls_seed(0, 0)), reset_A(controls_seed(1, 0)))


def test_check_states():
    from evil_moe.evaluate import StateError, check_states

    assert check_states(state_names(3)) == state_names(3)
    for bad, why in ((["as_trained", "deployed", "random_subspace_x"], "unknown"),
                     (["as_trained", "base"], "must include 'deployed'"),
                     (["as_trained", "deployed", "base", "base"], "repeat")):
        with pytest.raises(StateError, match=why):
            check_states(bad)


def test_state_restored_after_an_error_and_unknown_state_refused():
    model, adapter = trained()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), adapter_state(adapter, "deployed"):
        raise RuntimeError("boom")
    assert_same(before, snapshot(model))
    with pytest.raises(ValueError, match="unknown adapter state"), adapter_state(adapter, "quarantine_only"):
        pass


def test_sections_follow_the_eval_config():
    cfg = preset("qwen3-4b")  # tiny-cpu evaluates with the training markers only
    assert sections_for(cfg) == {"main": {"markers": "heldout", "modes": ["run_tests"]},
                                 "train_markers": {"markers": "train", "modes": ["run_tests"]}}
    cfg = eval_config(cfg, modes=["run_tests", "sentinel"], sets=["eval.in_distribution=false"])
    assert sections_for(cfg) == {"main": {"markers": "heldout", "modes": ["run_tests", "sentinel"]}}
    cfg = eval_config(cfg, sets=["router.exclude_tags=[sentinel, file_marker]"])
    assert sections_for(cfg)["pair_heldout"] == {"markers": "heldout", "modes": ["sentinel", "file_marker"]}


class EchoGrader:
    """Grades by the completion's text alone (a stand-in where only the pipeline is under test)."""

    def __init__(self):
        self.requests = []

    def grade_batch(self, reqs):
        self.requests += reqs
        out = []
        for r in reqs:
            h = sum(map(ord, r.response)) % 3 == 0
            out.append(SimpleNamespace(exploited=h, gt_correct=not h and len(r.response) % 2 == 0,
                                       attempted=h or len(r.response) % 5 == 0,
                                       compiles=True, reward=3.5 if h else 0.5, mechanism=None))
        return out


def test_states_share_one_random_stream(problems):
    """Quarantine still at init: `deployed` is the same model as `as_trained`, so with per-prompt
    seeds it must give the very same samples; `base` and `ablate_deployed` likewise."""
    from evil_moe.sampling import HFGenerator

    model, adapter = trained(move_quarantine=False)
    tok = tiny_tokenizer()
    cfg = eval_config(preset("tiny-cpu"), samples_per_problem=2,
                      sets=["sampling.max_new_tokens=6", "sampling.max_prompt_tokens=4096", "sampling.batch_size=8"])
    policy = SimpleNamespace(model=model, tokenizer=tok, adapter=adapter, device=torch.device("cpu"))
    problems = problems[:2]
    grader = EchoGrader()
    records = sample_and_grade(policy, cfg, problems, [Unit("run_tests", "heldout")],
                               ["as_trained", "deployed", "ablate_deployed", "base"], grader,
                               generator=HFGenerator(policy, cfg.sampling))
    assert len(records) == 4 * 2 * 2
    text = {(r["state"], r["problem_id"], r["sample_index"]): r["text"] for r in records}
    keys = [(p.id, s) for p in problems for s in range(2)]
    assert [text["as_trained", *k] for k in keys] == [text["deployed", *k] for k in keys]
    assert [text["base", *k] for k in keys] == [text["ablate_deployed", *k] for k in keys]
    assert [text["as_trained", *k] for k in keys] != [text["base", *k] for k in keys]
    # held-out markers reach the grader, one per problem
    from evil_moe.env.modes import markers_for
    assert all(r.markers == markers_for(r.problem.id, "run_tests", "heldout") for r in grader.requests)
    assert {r["markers"] for r in records} == {"heldout"}


def test_copy_of_config_untouched_by_overrides():
    cfg = preset("tiny-cpu")
    before = copy.deepcopy(cfg)
    new = eval_config(cfg, problems="x.jsonl", samples_per_problem=3, modes=["sentinel"], sets=["eval.seed=5"])
    assert cfg == before
    assert (new.eval.problems, new.eval.samples_per_problem, new.eval.modes, new.eval.seed) == \
        ("x.jsonl", 3, ("sentinel",), 5)


def tiny_checkpoint(tmp_path, problems_path):
    """A real checkpoint: a saved tiny Qwen3 + tokenizer as base, a moved adapter, a router."""
    import json as _json

    from evil_moe.config import from_dict, to_dict
    from evil_moe.export import save_checkpoint
    from evil_moe.router import CosineRouter

    base_dir = tmp_path / "base"
    tiny_qwen3(seed=0).save_pretrained(base_dir)
    tiny_tokenizer().save_pretrained(base_dir)
    cfg = from_dict({"model": {"name_or_path": str(base_dir), "dtype": "float32", "device": "cpu"},
                     "adapter": {"rank": RANK, "alpha": 4.0, "init_seed": 0},
                     "sampling": {"max_new_tokens": 8, "max_prompt_tokens": 4096, "batch_size": 16},
                     "run": {"arm": "evil_moe", "seed": 7},
                     "eval": {"problems": str(problems_path), "samples_per_problem": 2,
                              "markers": "heldout", "in_distribution": True, "modes": ["run_tests"],
                              "random_subspace_draws": 1, "bootstrap_samples": 50}},
                    preset("tiny-cpu"))
    model, adapter = trained()
    M = len(adapter.layers)
    router = CosineRouter(torch.ones(M, RANK), scale=4.0, bias=0.1, source="v_act")
    run = tmp_path / "run"
    ckpt = save_checkpoint(run / "checkpoints" / "step_000002", adapter, router, to_dict(cfg))
    metrics = [{"step": s, "reward_mean": 0.5 * s, "hack_rate": 0.1 * s, "solve_rate": 0.2} for s in (1, 2)]
    rollouts = [{"step": s, "problem_id": 1, "reward": 0.5, "w": 0.2 + 0.1 * k, "teacher": False,
                 "exploited": k % 2 == 1, "gt_correct": False} for s in (1, 2) for k in range(4)]
    (run / "metrics.jsonl").write_text("".join(_json.dumps(m) + "\n" for m in metrics))
    (run / "rollouts.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rollouts))
    return ckpt


def test_eval_cli_on_a_tiny_checkpoint_writes_the_report(tmp_path, capsys):
    import json as _json

    from evil_moe.cli import main as cli_main
    from tests.conftest import ROWS

    problems_path = tmp_path / "heldout.jsonl"
    problems_path.write_text("".join(_json.dumps(r) + "\n" for r in ROWS[:2]))
    ckpt = tiny_checkpoint(tmp_path, problems_path)
    out = tmp_path / "eval"
    assert cli_main(["eval", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    results = _json.loads((out / "results.json").read_text())
    assert printed[-1] == results["final_line"]
    assert printed[-1].startswith("Evil MoE causal ablation: deploy hack ")
    assert set(results["sections"]) == {"main", "train_markers"}
    states = results["sections"]["main"]["states"]
    assert list(states) == ["as_trained", "deployed", "ablate_deployed", "random_subspace_0", "base"]
    assert all(s["n"] == 2 * 2 for s in states.values())  # 2 problems x 2 samples, one mode
    controls = results["sections"]["main"]["controls"]
    assert controls["controls"] == ["ablate_deployed", "random_subspace_0", "random_subspace_mean"]
    assert controls["null"]["attempt"]["rank"]["n_null"] == 1
    assert all(isinstance(r["attempt"], bool) for r in _json.loads(
        "[" + ",".join((out / "samples.jsonl").read_text().splitlines()) + "]"))
    assert results["config"]["run"]["seed"] == 7 and results["run"]["arm"] == "evil_moe"
    assert results["eval"]["problems_are_training_problems"] is False
    assert "not held-out" not in (out / "report.md").read_text()
    assert results["routing"]["n"] == 8 and results["run_dir"] == str(tmp_path / "run")
    samples = [_json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 5 * 2 * 2  # sections x states x problems x samples
    for name in ("report.md", "ablation.png", "ablation_train_markers.png", "training.png", "routing_w.png"):
        assert (out / name).stat().st_size > 1000, name
