"""Kill and resume: a run stopped after a checkpoint and resumed in fresh objects ends bit-identical
to an uninterrupted run, and the logs hold each step exactly once."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.test_trainer import make_trainer, tiny_cfg, trained_state


def _cfg(path, arm, merge):
    cfg = tiny_cfg(path, arm=arm, steps=4)  # checkpoint_every = 2
    return dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, merge_adapter=merge))


@pytest.mark.parametrize("arm, merge", [("evil_moe", False), ("route_a", False), ("evil_moe", True)])
def test_resume_after_interruption_is_exact(tmp_path, arm, merge):
    straight = make_trainer(_cfg(tmp_path / "straight", arm, merge))
    straight.train()

    cfg = _cfg(tmp_path / "cut", arm, merge)
    first = make_trainer(cfg)
    first.train(stop_after=3)  # steps 0-2 logged, last checkpoint after step 2: step 2 is redone
    assert first.latest_checkpoint().name == "step_000002"
    second = make_trainer(cfg)  # fresh model, adapter, router, optimizer: as after a kill
    second.train()

    a, b = trained_state(straight), trained_state(second)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    if arm == "route_a":
        assert torch.equal(straight.routing.buffer, second.routing.buffer) and straight.routing.seen == second.routing.seen
    metrics = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    keys = ("reward_mean", "loss", "pin_loss", "w_mean", "grad_norm", "lr_deployed")
    assert [[m[k] for k in keys] for m in metrics] == [[m[k] for k in keys] for m in ref]
    rows = (tmp_path / "cut" / "rollouts.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [s for s in range(4) for _ in range(8)]


def test_resume_refuses_a_checkpoint_of_another_arm(tmp_path):
    make_trainer(tiny_cfg(tmp_path, arm="none", steps=2)).train()
    cfg = tiny_cfg(tmp_path, arm="evil_moe", steps=2)
    with pytest.raises(ValueError, match="checkpoint of arm 'none'"):
        make_trainer(cfg).resume()
    fresh = make_trainer(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path / "new"))))
    assert fresh.resume() is False and fresh.step_index == 0
