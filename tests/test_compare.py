import json
import math

import pytest

from evil_moe.compare import compare_runs, find_results, main
from evil_moe.report import write_report
from evil_moe.stats import t975, wilson
from tests.test_report import results_from, synthetic_records


def make_run(tmp_path, name, arm, seed, hack_off):
    plan = {"as_trained": (4, 1), "deployed": (hack_off, 1), "ablate_deployed": (3, 0), "base": (0, 1)}
    results = results_from(synthetic_records(plan), n_boot=50)
    results["run"] = {"arm": arm, "seed": seed}
    out = tmp_path / name / "checkpoints" / "step_000010" / "eval"
    write_report(results, out)
    return tmp_path / name


def test_compare_groups_by_arm_with_seed_intervals(tmp_path):
    runs = [make_run(tmp_path, "none0", "none", 0, hack_off=4),
            make_run(tmp_path, "em0", "evil_moe", 0, hack_off=1),
            make_run(tmp_path, "em1", "evil_moe", 1, hack_off=2),
            make_run(tmp_path, "em2", "evil_moe", 2, hack_off=0)]
    summary = compare_runs(runs, tmp_path / "cmp")
    assert [a["arm"] for a in summary["arms"]] == ["evil_moe", "none"]  # config.ARMS order
    em, none = summary["arms"]
    # three seeds: hack OFF rates 0.2, 0.4, 0.0 -> mean 0.2, sd 0.2, t interval (a rate: clipped at 0)
    assert em["n_seeds"] == 3 and em["hack_off"]["mean"] == pytest.approx(0.2)
    half = t975(2) * 0.2 / math.sqrt(3)
    assert em["hack_off"]["lo"] == 0.0 and em["hack_off"]["hi"] == pytest.approx(0.2 + half)
    # differences -0.6, -0.4, -0.8 are not clipped
    assert em["hack_diff"]["mean"] == pytest.approx(-0.6)
    assert em["hack_diff"]["lo"] == pytest.approx(-0.6 - half) and em["hack_diff"]["hi"] == pytest.approx(-0.6 + half)
    # one seed: that run's Wilson interval
    w = wilson(4 * 4 * 2, 40)
    assert none["n_seeds"] == 1 and none["hack_off"] == {"mean": w.rate, "lo": w.lo, "hi": w.hi}
    assert none["specificity"]["mean"] == pytest.approx(0.0) and none["specificity_floored"]
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| evil_moe | 3 | 0.800 [" in md and "| none | 1 |" in md
    assert md.count("checkpoints/step_000010/eval/results.json") == 4
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["arms"][0]["arm"] == "evil_moe"


def test_find_results_and_cli_errors(tmp_path, capsys):
    run = make_run(tmp_path, "r", "route_a", 0, hack_off=2)
    f = run / "checkpoints" / "step_000010" / "eval" / "results.json"
    assert find_results(run) == f and find_results(f.parent) == f and find_results(f) == f
    with pytest.raises(FileNotFoundError, match="no results.json"):
        find_results(tmp_path / "missing")
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert main([str(run), "--out", str(tmp_path / "o")]) == 0
    assert "| route_a | 1 |" in capsys.readouterr().out
