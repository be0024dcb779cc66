"""The relearning test: the deployed model trained again, the quarantine block frozen at its init."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from evil_moe.adapter import attach_adapter
from evil_moe.config import from_dict
from evil_moe.relearn import (
    DeployedOnlyRouting,
    default_out,
    hinted_attempts,
    main,
    relearn_policy,
    steps_to_half,
    summary_line,
)
from evil_moe.report import read_jsonl
from evil_moe.sampling import HFGenerator
from tests.test_trainer import HashGrader, fixture_problems, tiny_cfg
from tests.tiny import tiny_qwen3, tiny_tokenizer


def test_steps_to_half_hand_values():
    assert steps_to_half([0.1, 0.3, 0.5, 0.2], 0.8) == 2  # first rate >= 0.4
    assert steps_to_half([0.4, 0.0], 0.8) == 0  # never lost half
    assert steps_to_half([0.1, None, 0.39], 0.8) is None  # not within the steps: n/a
    assert steps_to_half([0.9], None) is None
    assert steps_to_half([0.0, 0.0], 0.0) is None  # nothing to regain


def test_hinted_attempts_leave_out_hint_free_and_teacher_rows():
    rows = [{"attempted": True}, {"attempted": False, "hint_free": True}, {"attempted": True, "teacher": True},
            {"attempted": None}, {"attempted": False, "hint_free": False}]
    assert hinted_attempts(rows) == [True, False]
    with pytest.raises(ValueError, match="rollout 0: no 'attempted'"):
        hinted_attempts([{"exploited": True}])


def test_deployed_only_routing_gives_gate_zero_keep_one():
    rw = DeployedOnlyRouting().weights(torch.zeros(3, 2, 2), torch.zeros(3), None)
    assert rw.gate.tolist() == [0.0] * 3 and rw.keep.tolist() == [1.0] * 3 and rw.w.tolist() == [0.0] * 3


def trained_policy(cfg):
    """A tiny policy whose two blocks moved off their init, as after training."""
    model = tiny_qwen3(seed=0)
    adapter = attach_adapter(model, cfg.adapter.rank, cfg.adapter.alpha, seed=cfg.adapter.init_seed)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in adapter.deployed_parameters() + adapter.quarantine_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return SimpleNamespace(model=model, tokenizer=tiny_tokenizer(), adapter=adapter, device=torch.device("cpu"))


def test_relearning_trains_the_deployed_block_only_and_reports_per_step(tmp_path):
    cfg = from_dict({"relearn": {"reference_steps": 1}}, tiny_cfg(tmp_path / "unused", arm="none"))
    policy = trained_policy(cfg)
    adapter = policy.adapter
    deployed_before = [p.detach().clone() for p in adapter.deployed_parameters()]
    steps = 2
    written = relearn_policy(policy, cfg, fixture_problems(), HashGrader(), tmp_path / "rl", steps,
                             generator=HFGenerator(policy, cfg.sampling))
    # the deployment ablation is permanent and frozen; all learning landed in the deployed block
    for m in adapter.layers.values():
        assert torch.equal(m.A_quar, m.A0_quar) and torch.equal(m.B_quar, m.B0_quar)
    assert not any(p.requires_grad for p in adapter.quarantine_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(adapter.deployed_parameters(), deployed_before, strict=True))
    s = written["summary"]
    assert len(s["attempt"]) == steps + 1 and s["steps"] == steps and s["arm"] == "none"
    assert s["attempt_start"] == s["attempt"][0] and s["attempt_end"] == s["attempt"][-1]
    # per-step rates: the step's hinted, on-policy rollouts as logged
    rows = read_jsonl(tmp_path / "rl" / "rollouts.jsonl")
    for step in range(steps):
        hinted = [r["attempted"] for r in rows if r["step"] == step and not r["hint_free"] and not r["teacher"]]
        assert s["attempt"][step] == pytest.approx(sum(hinted) / len(hinted))
        assert all(r["gate"] == 0.0 and r["keep"] == 1.0 for r in rows if r["step"] == step)
    assert s["steps_to_half"] == steps_to_half(s["attempt"], s["attempt_as_trained"])
    assert s["n_reference"]["as_trained"] > 0 and 0 <= s["attempt_as_trained"] <= 1
    saved = json.loads((tmp_path / "rl" / "relearn.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(s)) and saved["config"]["grpo"]["steps"] == steps
    assert (tmp_path / "rl" / "relearn.png").read_bytes()[:4] == b"\x89PNG"
    assert summary_line(s).startswith("Relearning (none): attempt as trained ")


def test_cli_and_default_output(tmp_path, capsys):
    run = tmp_path / "run"
    assert default_out(run / "checkpoints" / "step_000010") == (run / "relearn").resolve()
    assert default_out(tmp_path / "ckpt") == tmp_path / "ckpt" / "relearn"
    assert main([str(tmp_path / "missing"), "--steps", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err
    from evil_moe.cli import SUBCOMMANDS

    assert SUBCOMMANDS["relearn"][0] == "evil_moe.relearn"
