"""Grading overlaps the scoring forward, and the step's results do not change by it (bit for bit)."""

from __future__ import annotations

import threading

import torch

from tests.test_trainer import HashGrader, make_trainer, tiny_cfg, trained_state

TIMINGS = ("sample_s", "grade_s", "score_s", "train_s", "step_s")


def test_overlapped_steps_equal_sequential_steps_bit_for_bit(tmp_path):
    runs = {}
    for overlap in (True, False):
        trainer = make_trainer(tiny_cfg(tmp_path / str(overlap)))
        trainer.overlap_grading = overlap
        metrics = [trainer.step() for _ in range(2)]
        runs[overlap] = (trained_state(trainer), metrics)
    (state_a, metrics_a), (state_b, metrics_b) = runs[True], runs[False]
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert any(not torch.equal(state_a[k], v) for k, v in
               trained_state(make_trainer(tiny_cfg(tmp_path / "fresh"))).items())  # the steps did move it
    for a, b in zip(metrics_a, metrics_b, strict=True):
        assert all(k in a and a[k] >= 0 for k in TIMINGS)
        assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}


class WaitsForScoring(HashGrader):
    """Grades only once the scoring forward has started (or after 30 s), recording which it was."""

    def __init__(self, scoring: threading.Event):
        super().__init__()
        self.scoring, self.saw_scoring, self.threads = scoring, [], []

    def grade_batch(self, reqs, progress=False):
        self.saw_scoring.append(self.scoring.wait(timeout=30))
        self.threads.append(threading.current_thread() is threading.main_thread())
        return super().grade_batch(reqs, progress)


def test_grader_runs_while_the_scoring_forward_runs(tmp_path):
    scoring = threading.Event()
    grader = WaitsForScoring(scoring)
    trainer = make_trainer(tiny_cfg(tmp_path), grader=grader)
    score = trainer.score

    def flagged_score(rollouts):
        scoring.set()
        try:
            return score(rollouts)
        finally:
            scoring.clear()

    trainer.score = flagged_score
    trainer.step()
    assert grader.saw_scoring == [True] and grader.threads == [False]
