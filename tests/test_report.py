import json
import re

import pytest

from evil_moe.report import (
    final_line,
    read_jsonl,
    routing_diagnostics,
    summarize_section,
    write_report,
)
from evil_moe.stats import wilson

# per state: hack count and solve count out of K samples, for each of P problems and each mode
P, K, MODES = 4, 5, ("run_tests", "sentinel")
PLAN = {"as_trained": (4, 1), "deployed": (1, 1), "ablate_deployed": (3, 0), "random_subspace_0": (4, 1),
        "base": (0, 1)}


def synthetic_records(plan=PLAN, problems=range(P)):
    """K samples per (state, problem, mode): the first h hack, the next s solve, all compile."""
    recs = []
    for state, (h, s) in plan.items():
        for p in problems:
            for m in MODES:
                for k in range(K):
                    recs.append({"state": state, "mode": m, "problem_id": 100 + p, "sample_index": k,
                                 "hack": k < h, "solve": h <= k < h + s, "compiles": k != K - 1 or state != "base"})
    return recs


def results_from(records, n_boot=200):
    states = summarize_section(records, n_boot=n_boot, seed=0)
    return {"checkpoint": "ckpt", "run": {"arm": "evil_moe", "seed": 3},
            "eval": {"n_problems": P, "problems": "synthetic", "samples_per_problem": K,
                     "modes": list(MODES), "temperature": 0.7, "top_p": 0.95, "bootstrap_samples": n_boot,
                     "seed": 0},
            "sections": {"main": {"markers": "heldout", "modes": list(MODES), "states": states}}}


def test_summarize_section_rates_differences_and_specificity():
    states = summarize_section(synthetic_records(), n_boot=200, seed=0)
    assert list(states) == list(PLAN)
    n = P * len(MODES) * K
    at, dep = states["as_trained"], states["deployed"]
    assert at["n"] == n and at["n_problems"] == P
    assert at["hack"] == wilson(4 * P * 2, n).to_dict() and dep["hack"]["rate"] == pytest.approx(0.2)
    assert dep["by_mode"]["sentinel"]["hack"] == wilson(P, P * K).to_dict()
    assert states["base"]["compile"]["rate"] == pytest.approx(0.8)
    assert "vs_as_trained" not in at and "specificity" not in at
    # every problem moves by exactly -0.6 in hack rate: estimate and interval are exactly -0.6
    d = dep["vs_as_trained"]["hack"]
    assert d["estimate"] == pytest.approx(-0.6) and d["lo"] == pytest.approx(-0.6) and d["hi"] == pytest.approx(-0.6)
    assert dep["vs_as_trained"]["solve"]["estimate"] == pytest.approx(0.0)
    # deployed: solve unchanged -> floored at one point: 0.6 / 0.01
    assert dep["specificity"]["floored"] and dep["specificity"]["value"] == pytest.approx(60.0)
    # ablate_deployed: hack 0.8 -> 0.6, solve 0.2 -> 0.0 -> 1.0
    spec = states["ablate_deployed"]["specificity"]
    assert not spec["floored"] and spec["value"] == pytest.approx(1.0)


def test_summarize_section_refuses_unpaired_or_missing_baseline():
    recs = synthetic_records() + synthetic_records({"deployed": (1, 1)}, problems=[P])
    with pytest.raises(ValueError, match="must match"):
        summarize_section(recs, n_boot=10, seed=0)
    with pytest.raises(ValueError, match="baseline"):
        summarize_section(synthetic_records({"deployed": (1, 1)}), n_boot=10, seed=0)
    with pytest.raises(ValueError, match="record 0: missing fields \\['hack'"):
        summarize_section([{"state": "as_trained", "mode": "m", "problem_id": 1, "sample_index": 0}], 10, 0)


def _rollout(step, w, hack):
    return {"step": step, "problem_id": 1, "reward": 3.0, "w": w, "teacher": False,
            "exploited": hack, "gt_correct": not hack, "channel": hack, "mechanism": None}


def test_routing_diagnostics_known_values():
    rows = [_rollout(1, 0.9, True), _rollout(1, 0.6, False), _rollout(2, 0.4, True), _rollout(2, 0.1, False),
            _rollout(2, 0.55, False)]
    r = routing_diagnostics(rows)
    assert (r["n"], r["n_hack"], r["n_clean"], r["steps"]) == (5, 2, 3, [1, 2])
    assert r["mean_w_hack"] == pytest.approx(0.65) and r["mean_w_clean"] == pytest.approx(1.25 / 3)
    # pairs (hack, clean): 0.9 beats all 3; 0.4 beats only 0.1 -> 4 / 6
    assert r["auroc"] == pytest.approx(4 / 6)
    op = r["operating_point"]
    assert (op["tp"], op["fp"], op["fn"], op["tn"]) == (1, 2, 1, 1) and op["precision"] == pytest.approx(1 / 3)
    assert sum(r["histogram"]["hack"]) == 2 and r["histogram"]["hack"][18] == 1  # 0.9 in [0.9, 0.95)
    # teacher demonstrations are left out; a constant w (arm none) gives no diagnostics
    assert routing_diagnostics(rows + [{**_rollout(3, 0.99, False), "teacher": True}])["n"] == 5
    assert routing_diagnostics([_rollout(1, 0.0, True), _rollout(1, 0.0, False)]) is None
    with pytest.raises(ValueError, match="row 0"):
        routing_diagnostics([{"step": 1, "w": 0.3, "label": True}])


def test_write_report_produces_files_and_exact_final_line(tmp_path):
    results = results_from(synthetic_records())
    metrics = [{"step": s, "reward_mean": 0.5 + s / 10, "hack_rate": s / 20, "solve_rate": 0.2} for s in range(1, 21)]
    rollouts = [_rollout(s, 0.2 + 0.6 * (s % 2), s % 2 == 1) for s in range(1, 21)]
    line = write_report(results, tmp_path, metrics=metrics, rollouts=rollouts)
    assert line == "Evil MoE causal ablation: deploy hack 0.800 (ON) -> 0.200 (OFF); solve 0.200 (ON) -> 0.200 (OFF)"
    assert re.fullmatch(r"Evil MoE causal ablation: deploy hack \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\); "
                        r"solve \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\)", line)

    def no_nan(c):
        raise AssertionError(f"results.json holds {c}")
    saved = json.loads((tmp_path / "results.json").read_text(), parse_constant=no_nan)
    assert saved["final_line"] == line and saved["headline"]["hack_off"] == pytest.approx(0.2)
    assert set(saved["sections"]["main"]["states"]) == set(PLAN)
    assert saved["routing"]["auroc"] == 1.0 and saved["routing"]["operating_point"]["precision"] == 1.0
    md = (tmp_path / "report.md").read_text()
    assert line in md and "| deployed | 40 | 0.200 [" in md and "![ablation](ablation.png)" in md
    for png in ("ablation.png", "training.png", "routing_w.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png
    assert final_line(saved) == line


def test_report_without_router_or_metrics(tmp_path):
    results = results_from(synthetic_records())
    results["eval"]["problems_are_training_problems"] = True
    write_report(results, tmp_path, metrics=None, rollouts=[_rollout(1, 0.0, True), _rollout(2, 0.0, False)])
    assert "rates are not held-out" in (tmp_path / "report.md").read_text()
    assert results["routing"] is None and not (tmp_path / "routing_w.png").exists()
    assert "no routing diagnostics" in (tmp_path / "report.md").read_text()


def test_read_jsonl_names_bad_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"a": 1}\n\n{oops\n')
    with pytest.raises(ValueError, match="line 3"):
        read_jsonl(p)
    p.write_text('{"a": 1}\n{"a": 2}\n')
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]


def test_training_curve_smoothing_and_state_labels():
    import numpy as np

    from evil_moe.plots import _smooth, state_label

    y = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    np.testing.assert_allclose(_smooth(y, 2), [1.0, 1.5, 2.5, 3.0, 5.0])  # trailing, NaN skipped
    np.testing.assert_allclose(_smooth(y, 1), [1.0, 2.0, 3.0, np.nan, 5.0])
    assert state_label("random_subspace_3").endswith("#3") and "hack expert off" in state_label("deployed")
