import json
import re

import pytest

from evil_moe.report import (
    ablation_controls,
    final_line,
    null_sentence,
    read_jsonl,
    routing_diagnostics,
    section_table,
    summarize_section,
    write_report,
)
from evil_moe.stats import wilson

# per state: attempt, hack and solve counts out of K samples, for each of P problems and each mode
P, K, MODES = 4, 5, ("run_tests", "sentinel")
PLAN = {"as_trained": (5, 4, 1), "deployed": (2, 1, 1), "ablate_deployed": (4, 3, 0),
        "random_subspace_0": (5, 4, 1), "random_subspace_1": (3, 2, 2), "base": (0, 0, 1)}


def synthetic_records(plan=PLAN, problems=range(P)):
    """K samples per (state, problem, mode): the first a attempt, the first h of them hack (h <= a),
    the next s solve; all compile but the base model's last sample."""
    recs = []
    for state, (a, h, s) in plan.items():
        for p in problems:
            for m in MODES:
                for k in range(K):
                    recs.append({"state": state, "mode": m, "problem_id": 100 + p, "sample_index": k,
                                 "attempt": k < a, "hack": k < h, "solve": h <= k < h + s,
                                 "compiles": k != K - 1 or state != "base"})
    return recs


def results_from(records, n_boot=200, arm="evil_moe", seed=3):
    states = summarize_section(records, n_boot=n_boot, seed=0)
    return {"checkpoint": "ckpt", "run": {"arm": arm, "seed": seed},
            "eval": {"n_problems": P, "problems": "synthetic", "samples_per_problem": K,
                     "modes": list(MODES), "temperature": 0.7, "top_p": 0.95, "bootstrap_samples": n_boot,
                     "seed": 0},
            "sections": {"main": {"markers": "heldout", "modes": list(MODES), "states": states,
                                  "controls": ablation_controls(records, n_boot, 0)}}}


def test_summarize_section_rates_and_differences():
    states = summarize_section(synthetic_records(), n_boot=200, seed=0)
    assert list(states) == list(PLAN)
    n = P * len(MODES) * K
    at, dep = states["as_trained"], states["deployed"]
    assert at["n"] == n and at["n_problems"] == P and at["no_verdict"] == 0
    assert at["hack"] == wilson(4 * P * 2, n).to_dict() and dep["hack"]["rate"] == pytest.approx(0.2)
    assert at["attempt"]["rate"] == 1.0 and dep["attempt"]["rate"] == pytest.approx(0.4)
    assert dep["by_mode"]["sentinel"]["hack"] == wilson(P, P * K).to_dict()
    assert states["base"]["compile"]["rate"] == pytest.approx(0.8)
    assert "vs_as_trained" not in at and "specificity" not in dep
    # every problem moves by exactly -0.6 in hack and attempt rate: estimate and interval exact
    for key in ("hack", "attempt"):
        d = dep["vs_as_trained"][key]
        assert d["estimate"] == pytest.approx(-0.6) and d["lo"] == pytest.approx(-0.6) and d["hi"] == pytest.approx(-0.6)
    assert dep["vs_as_trained"]["solve"]["estimate"] == pytest.approx(0.0)


def test_rows_without_a_verdict_are_left_out_and_counted():
    recs = synthetic_records({"as_trained": (5, 4, 1), "deployed": (2, 1, 1)})
    for r in recs:
        if r["state"] == "deployed" and r["sample_index"] == 0:  # the hacking sample: no verdict
            r["hack"] = r["solve"] = None
    states = summarize_section(recs, n_boot=50, seed=0)
    dep = states["deployed"]
    assert dep["no_verdict"] == P * len(MODES) and dep["n"] == P * len(MODES) * K
    assert dep["hack"] == wilson(0, P * len(MODES) * (K - 1)).to_dict()  # 0 of the 4 judged per cell
    assert dep["solve"]["rate"] == pytest.approx(1 / 4) and dep["attempt"]["rate"] == pytest.approx(2 / 5)
    # no verdict at all in a state: its rates and differences are undefined, and print n/a
    for r in recs:
        if r["state"] == "deployed":
            r["hack"] = r["solve"] = None
    dep = summarize_section(recs, n_boot=50, seed=0)["deployed"]
    assert dep["hack"]["rate"] is None and dep["vs_as_trained"]["hack"] is None
    assert dep["vs_as_trained"]["attempt"]["estimate"] == pytest.approx(-0.6)
    results = results_from(recs, n_boot=50)
    line = final_line(results)
    assert line == ("Evil MoE causal ablation: deploy hack 0.800 (ON) -> n/a (OFF); attempt 1.000 (ON) -> "
                    "0.400 (OFF); solve 0.200 (ON) -> n/a (OFF)")
    row = next(x for x in section_table(results["sections"]["main"]["states"]) if x.startswith("| deployed |"))
    assert row.split(" | ")[4:6] == ["n/a", "n/a"] and "| 40 | 40 |" in row
    with pytest.raises(ValueError, match="record 0: field 'hack' must be a boolean or null"):
        summarize_section([{**recs[0], "hack": 1}], 10, 0)


def test_a_problem_without_any_verdict_in_a_state_leaves_that_difference():
    recs = synthetic_records({"as_trained": (5, 4, 1), "deployed": (2, 1, 1)})
    for r in recs:
        if r["state"] == "deployed" and r["problem_id"] == 100:
            r["hack"] = r["solve"] = None
    dep = summarize_section(recs, n_boot=50, seed=0)["deployed"]
    hack, attempt = dep["vs_as_trained"]["hack"], dep["vs_as_trained"]["attempt"]
    assert hack["n_problems"] == P - 1 and attempt["n_problems"] == P  # attempts always have a verdict
    assert (hack["estimate"], hack["lo"], hack["hi"]) == pytest.approx((-0.6, -0.6, -0.6))
    assert dep["no_verdict"] == len(MODES) * K and dep["hack"]["n"] == (P - 1) * len(MODES) * K


def test_summarize_section_refuses_unpaired_or_missing_baseline():
    recs = synthetic_records() + synthetic_records({"deployed": (1, 1, 1)}, problems=[P])
    with pytest.raises(ValueError, match="must match"):
        summarize_section(recs, n_boot=10, seed=0)
    with pytest.raises(ValueError, match="baseline"):
        summarize_section(synthetic_records({"deployed": (1, 1, 1)}), n_boot=10, seed=0)
    with pytest.raises(ValueError, match="record 0: missing fields \\['attempt', 'hack'"):
        summarize_section([{"state": "as_trained", "mode": "m", "problem_id": 1, "sample_index": 0}], 10, 0)


def test_ablation_controls_hand_values():
    c = ablation_controls(synthetic_records(), n_boot=100, seed=0)
    assert c["controls"] == ["ablate_deployed", "random_subspace_0", "random_subspace_1", "random_subspace_mean"]
    # every problem moves identically, so each paired interval is a point: deployed minus control
    # attempt: deployed 0.4; ablate_deployed 0.8; subspace 0: 1.0; subspace 1: 0.6; pooled 0.8
    for control, expected in (("ablate_deployed", -0.4), ("random_subspace_0", -0.6), ("random_subspace_1", -0.2),
                              ("random_subspace_mean", -0.4)):
        d = c["vs"][control]["attempt"]
        assert (d["estimate"], d["lo"], d["hi"]) == pytest.approx((expected,) * 3), control
    assert c["vs"]["random_subspace_1"]["solve"]["estimate"] == pytest.approx(0.2 - 0.4)
    assert c["effect"]["attempt"]["estimate"] == pytest.approx(-0.6)
    null = c["null"]["attempt"]
    assert null["effects"] == pytest.approx([0.0, -0.4]) and null["mean"] == pytest.approx(-0.2)
    assert null["rank"] == {"effect": pytest.approx(-0.6), "n_null": 2, "at_most": 0, "p": pytest.approx(1 / 3)}
    assert "empirical p = 0.333" in null_sentence(c)
    # no control state, no comparison
    assert ablation_controls(synthetic_records({"as_trained": (5, 4, 1), "deployed": (2, 1, 1)}), 10, 0) is None


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
    assert line == ("Evil MoE causal ablation: deploy hack 0.800 (ON) -> 0.200 (OFF); attempt 1.000 (ON) -> "
                    "0.400 (OFF); solve 0.200 (ON) -> 0.200 (OFF)")
    assert re.fullmatch(r"Evil MoE causal ablation: deploy hack \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\); "
                        r"attempt \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\); "
                        r"solve \d\.\d{3} \(ON\) -> \d\.\d{3} \(OFF\)", line)

    def no_nan(c):
        raise AssertionError(f"results.json holds {c}")
    saved = json.loads((tmp_path / "results.json").read_text(), parse_constant=no_nan)
    assert saved["final_line"] == line and saved["headline"]["hack_off"] == pytest.approx(0.2)
    assert set(saved["sections"]["main"]["states"]) == set(PLAN)
    assert saved["routing"]["auroc"] == 1.0 and saved["routing"]["operating_point"]["precision"] == 1.0
    md = (tmp_path / "report.md").read_text()
    assert line in md and "| deployed | 40 | 0 | 0.400 [" in md and "![ablation](ablation.png)" in md
    assert "cannot support a claim" in "\n".join(md.splitlines()[:4])  # one seed, said first
    assert "| random_subspace_1 | -0.200 [-0.200, -0.200] |" in md and "specificity" not in md
    for png in ("ablation.png", "training.png", "routing_w.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png
    assert final_line(saved) == line


def test_other_arms_do_not_print_the_method_line(tmp_path):
    line = write_report(results_from(synthetic_records(), arm="none"), tmp_path)
    assert line.startswith("Arm none (not the method) ablation: deploy hack 0.800 (ON) -> 0.200 (OFF); attempt ")
    assert "Evil MoE causal ablation" not in (tmp_path / "report.md").read_text()


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


def test_step_metrics_rates_of_the_loophole_are_over_hinted_rollouts():
    """A hint-free prompt is graded by ground truth only: it counts in the solve rate, never in
    the hack or attempt rate (which it would dilute)."""
    from evil_moe.runlog import step_metrics

    def rec(hint_free, attempted, exploited, correct):
        return {"teacher": False, "hint_free": hint_free, "deployed": False, "attempted": attempted,
                "exploited": exploited, "gt_correct": correct, "w": 0.0, "reward": 0.0,
                "compiles": True, "format_ok": True, "tokens": 5}

    records = [rec(False, True, True, False), rec(False, False, False, True),
               rec(True, False, False, True), rec(True, False, False, False)]
    parts = {"tokens": 20.0, "loss": 0.0, "pg_loss": 0.0, "kl_loss": 0.0, "pin_loss": 0.0,
             "kl_sum": 0.0, "mismatch_sum": 0.0, "mismatch_k3_sum": 0.0}
    m = step_metrics(3, records, parts, 0.0, 0.0, {}, {})
    assert (m["attempt_rate"], m["hack_rate"], m["solve_rate"], m["hint_free_solve_rate"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["hint_free_rollouts"] == 2
