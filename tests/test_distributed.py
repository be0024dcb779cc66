"""Two CPU processes (gloo) train like one: identical parameters on both ranks, equal to a
one-process run with the same global batch (to 1e-6)."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from evil_moe.trainer import Dist
from tests.test_trainer import make_trainer, tiny_cfg, trained_state

ARMS = ("evil_moe", "route_a")  # the router + pin loss path, and the all-gathered quantile path


def _cfg(tmp_path, arm):
    # prompts_per_step=2: one prompt (one whole group of 4) per rank; micro-batches are groups
    return tiny_cfg(tmp_path / arm / "two", arm=arm, steps=2, prompts_per_step=2, micro_batch_size=4)


def _worker(rank: int, world: int, tmp_path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=rank, world_size=world)
    try:
        for arm in ARMS:
            trainer = make_trainer(_cfg(tmp_path, arm), dist=Dist())
            trainer.train()
            torch.save({"state": trained_state(trainer), "steps": trainer.step_index},
                       os.path.join(tmp_path / arm, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(2, tmp_path), nprocs=2, join=True)
    return tmp_path


@pytest.mark.parametrize("arm", ARMS)
def test_two_processes_match_one(two_process_runs, arm):
    tmp_path = two_process_runs
    cfg = _cfg(tmp_path, arm)
    r0, r1 = (torch.load(tmp_path / arm / f"rank{r}.pt") for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 2
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k

    one = make_trainer(dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path / arm / "one"))))
    one.train()
    ref = trained_state(one)
    init = trained_state(make_trainer(cfg))
    assert any(not torch.equal(ref[k], init[k]) for k in ref)  # the runs moved the parameters
    for k in ref:
        torch.testing.assert_close(r0["state"][k], ref[k], atol=1e-6, rtol=0)
    # only rank 0 wrote logs and checkpoints, with every rollout of both ranks
    rows = (tmp_path / arm / "two" / "rollouts.jsonl").read_text().splitlines()
    assert len(rows) == 2 * 2 * 4
    assert (tmp_path / arm / "two" / "metrics.jsonl").read_text().count("\n") == 2
