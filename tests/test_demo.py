"""The reduced demo end to end: the pipeline's invariants, never any arm's outcome."""

import json
import re

import pytest

from evil_moe.config import ConfigError
from evil_moe.demo import (
    DEMO_ARMS,
    DEMO_SETTINGS,
    QUICK_SETTINGS,
    Criteria,
    demo_config,
    main,
    run_demo,
)

FINAL = re.compile(r"^Evil MoE causal ablation: deploy hack \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\); "
                   r"solve \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\)$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(out, seeds=1, arms=DEMO_ARMS, quick=True)
    return out, summary


def test_demo_writes_every_artifact(demo):
    out, summary = demo
    for name in ("results.json", "report.md", "compare.md", "compare.png", "compare.json"):
        assert (out / name).is_file(), name
    for arm in DEMO_ARMS:
        run = out / "seed0" / arm
        assert (run / "metrics.jsonl").is_file() and (run / "rollouts.jsonl").is_file()
        for name in ("results.json", "report.md", "ablation.png", "training.png", "samples.jsonl"):
            assert (run / "eval" / name).is_file(), (arm, name)
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"step_{QUICK_SETTINGS['grpo']['steps']:06d}"]
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(summary, default=str))


def test_every_arm_is_evaluated_on_the_same_cells(demo):
    out, summary = demo
    cfg = demo_config(quick=True)
    n_heldout = sum(1 for _ in open(out / "seed0" / "toy" / "problems_heldout.jsonl"))
    n = n_heldout * cfg.eval.samples_per_problem
    assert [r["arm"] for r in summary["runs"]] == list(DEMO_ARMS)
    for r in summary["runs"]:
        for state in ("as_trained", "deployed"):
            for metric in ("hack", "solve", "compile"):
                rate = r[state][metric]
                assert rate["n"] == n and 0 <= rate["lo"] <= rate["rate"] <= rate["hi"] <= 1
        assert r["uses_oracle"] == (r["arm"] == "oracle")
    # the warm start is the base state, evaluated once (with the first arm) on the same cells
    first = json.loads((out / "seed0" / DEMO_ARMS[0] / "eval" / "results.json").read_text())
    assert summary["warm_start"]["seed0"]["solve"] == first["sections"]["main"]["states"]["base"]["solve"]
    other = json.loads((out / "seed0" / DEMO_ARMS[1] / "eval" / "results.json").read_text())
    assert "base" not in other["sections"]["main"]["states"]


def test_criteria_are_checked_and_reported(demo):
    out, summary = demo
    checks = summary["criteria"]["seed0"]
    assert set(checks) == {"warm_start_solve_rate", "warm_start_hack_rate", "samples_per_cell",
                           "none_as_trained_hack_rate"}
    none = next(r for r in summary["runs"] if r["arm"] == "none")
    assert checks["none_as_trained_hack_rate"]["value"] == none["as_trained"]["hack"]["rate"]
    assert checks["none_as_trained_hack_rate"]["held"] == (none["as_trained"]["hack"]["rate"] >= 0.5)
    assert summary["criteria_held"] == all(c["held"] for c in checks.values())
    report = (out / "report.md").read_text()
    assert "Quick run (CI)" in report and "Test-bed criteria" in report
    for arm in DEMO_ARMS:
        assert f"](seed0/{arm}/eval/report.md)" in report


def test_final_line_is_the_method_arm_and_last_in_the_report(demo):
    out, summary = demo
    method = next(r for r in summary["runs"] if r["arm"] == "evil_moe")
    assert summary["final_line"] == method["final_line"] and FINAL.match(summary["final_line"])
    assert (out / "report.md").read_text().rstrip().splitlines()[-1] == summary["final_line"]


def test_criteria_check_thresholds():
    rate = lambda r: {"rate": r}  # noqa: E731
    c = Criteria().check({"solve": rate(0.3), "hack": rate(0.2)}, {"hack": rate(0.5)}, 200)
    assert all(v["held"] for v in c.values())
    c = Criteria().check({"solve": rate(0.29), "hack": rate(0.21)}, {"hack": rate(0.49)}, 199)
    assert not any(v["held"] for v in c.values())
    assert "none_as_trained_hack_rate" not in Criteria().check({"solve": rate(1), "hack": rate(0)}, None, 200)


def test_demo_config_and_bad_arguments(capsys):
    assert demo_config().grpo.steps == DEMO_SETTINGS["grpo"]["steps"] and demo_config(quick=True).grpo.steps == QUICK_SETTINGS["grpo"]["steps"]
    assert demo_config(sets=["grpo.steps=7"]).grpo.steps == 7
    with pytest.raises(ConfigError, match="subset"):
        run_demo("/nonexistent", arms=("best",))
    assert main(["--arms", "best", "--out", "/nonexistent"]) == 2
    assert "subset" in capsys.readouterr().err


def test_per_arm_reports_name_their_checkpoint_and_seeds_read_alike(demo):
    out, summary = demo
    steps = QUICK_SETTINGS["grpo"]["steps"]
    for arm in DEMO_ARMS:
        ckpt = out / "seed0" / arm / "checkpoints" / f"step_{steps:06d}"
        assert json.loads((out / "seed0" / arm / "eval" / "results.json").read_text())["checkpoint"] == str(ckpt)
        assert f"Checkpoint: `{ckpt}`" in (out / "seed0" / arm / "eval" / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "| seed0 |" not in report and "| 0 | warm start (base) |" in report
