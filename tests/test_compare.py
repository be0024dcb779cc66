import json
import math

import pytest

from evil_moe.compare import HACKED_THRESHOLD, compare_runs, find_results, main, placebo_arm
from evil_moe.report import write_report
from evil_moe.stats import min_detectable_difference, seeds_needed, t975, wilson
from tests.test_report import PLAN, results_from, synthetic_records

# deployed attempt count (of 5) per (arm, seed); as trained every sample attempts (PLAN)
DEPLOYED_ATTEMPTS = {("evil_moe", 0): 1, ("evil_moe", 1): 2, ("evil_moe", 2): 0,
                     ("none", 0): 4, ("none", 1): 4, ("none", 2): 3,
                     ("placebo", 0): 5, ("placebo", 1): 3}


def make_run(tmp_path, arm, seed, deployed_attempts, as_trained=(5, 4, 1), relearn=None):
    a = deployed_attempts
    plan = {**PLAN, "as_trained": as_trained, "deployed": (a, min(a, 1), 1)}
    results = results_from(synthetic_records(plan), n_boot=50, arm=arm, seed=seed)
    run = tmp_path / f"{arm}_{seed}"
    if relearn is not None:
        (run / "relearn").mkdir(parents=True)
        (run / "relearn" / "relearn.json").write_text(json.dumps({"summary": relearn}))
        results["run_dir"] = str(run)
    write_report(results, run / "checkpoints" / "step_000010" / "eval")
    return run


@pytest.fixture
def three_seeds(tmp_path):
    runs = [make_run(tmp_path, arm, seed, a) for (arm, seed), a in DEPLOYED_ATTEMPTS.items()]
    return compare_runs(runs, tmp_path / "cmp"), tmp_path / "cmp"


def test_paired_differences_across_seeds_by_hand(three_seeds):
    summary, _ = three_seeds
    assert [a["arm"] for a in summary["arms"]] == ["evil_moe", "placebo", "none"]  # config.ARMS order
    assert summary["placebo"] == "placebo"
    pair = next(p for p in summary["pairs"] if p["arm"] == "evil_moe" and p["reference"] == "none")
    # effects (OFF - ON): evil_moe -0.8, -0.6, -1.0; none -0.2, -0.2, -0.4 -> differences -0.6, -0.4, -0.6
    c = pair["attempt"]
    assert c["diffs"] == pytest.approx([-0.6, -0.4, -0.6]) and c["mean"] == pytest.approx(-1.6 / 3)
    sd = math.sqrt(((-0.6 + 1.6 / 3) ** 2 * 2 + (-0.4 + 1.6 / 3) ** 2) / 2)
    assert c["sd"] == pytest.approx(sd)
    assert c["hi"] - c["mean"] == pytest.approx(t975(2) * sd / math.sqrt(3))
    assert c["p"] == pytest.approx(2 / 8) and c["p_exact"]  # all three negative: 2 of 8 sign patterns
    assert c["min_detectable_80"] == pytest.approx(min_detectable_difference(sd, 3))
    assert c["seeds_for_target"] == seeds_needed(sd, 0.2)
    # the placebo ran seeds 0 and 1 only: the pairing uses the shared seeds
    vs_placebo = next(p for p in summary["pairs"] if p["arm"] == "evil_moe" and p["reference"] == "placebo")
    assert vs_placebo["seeds"] == [0, 1] and vs_placebo["attempt"]["diffs"] == pytest.approx([-0.8, -0.2])
    assert vs_placebo["attempt"]["p"] == pytest.approx(2 / 4)
    # every arm against none and the placebo, no arm against itself; the power table and the plot
    # leave out none - placebo, the mirror image of placebo - none
    assert {(p["arm"], p["reference"]) for p in summary["pairs"]} == {
        ("evil_moe", "none"), ("evil_moe", "placebo"), ("placebo", "none"), ("none", "placebo")}
    mirror = next(p for p in summary["pairs"] if p["arm"] == "none")["attempt"]
    assert mirror["mean"] == pytest.approx(-next(p for p in summary["pairs"] if p["arm"] == "placebo")["attempt"]["mean"])
    assert "| `none` - `placebo` |" not in summary["markdown"] and "| `placebo` - `none` |" in summary["markdown"]


def test_controls_and_hacked_counts(three_seeds):
    summary, _ = three_seeds
    em = summary["arms"][0]
    assert em["runs_hacked"] == 3 and HACKED_THRESHOLD == 0.5
    # random subspaces of PLAN: attempt 1.0 and 0.6 -> mean effect -0.2 in every run
    assert em["attempt_effect_subspaces"]["mean"] == pytest.approx(-0.2)
    # hack expert minus the pooled subspaces (rate 0.8): 0.2 - 0.8, 0.4 - 0.8, 0.0 - 0.8
    assert em["attempt_minus_subspaces"]["diffs"] == pytest.approx([-0.6, -0.4, -0.8])
    assert em["attempt_effect"]["mean"] == pytest.approx(-0.8)
    # ablate_deployed of PLAN: attempt 4/5 -> effect -0.2, the same in every seed: a zero-width interval
    assert em["attempt_effect_ablate_deployed"] == {"mean": pytest.approx(-0.2), "lo": pytest.approx(-0.2),
                                                    "hi": pytest.approx(-0.2), "n": 3}
    # warm start: PLAN's base state attempts nowhere
    assert summary["warm_start"]["attempt"]["mean"] == 0.0


def test_markdown_shows_every_effect_beside_its_controls(three_seeds):
    summary, out = three_seeds
    md = (out / "compare.md").read_text()
    assert "cannot support a claim" not in md and "specificity" not in md
    assert "| evil_moe (the method) | 3 | 3 / 3 |" in md
    row = next(x for x in md.splitlines() if x.startswith("| evil_moe (the method) | -0.800"))
    # beside the arm's effect: both controls, none's and the placebo's effects and the paired differences
    assert "-0.533 [" in row and "p = 0.250 (n = 3)" in row and "p = 0.500 (n = 2)" in row
    assert "| `evil_moe` - `none` | 3 |" in md
    for name in ("compare.png", "compare_effects.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "compare.json").read_text())
    assert saved["pairs"][0]["attempt"]["n"] >= 2


def test_one_seed_says_so_first_and_prints_n_a(tmp_path):
    runs = [make_run(tmp_path, "evil_moe", 0, 1), make_run(tmp_path, "none", 0, 4)]
    summary = compare_runs(runs, tmp_path / "cmp")
    md = summary["markdown"]
    assert md.splitlines()[0].startswith("**One seed per arm: this cannot support a claim")
    pair = summary["pairs"][0]["attempt"]
    assert (pair["lo"], pair["hi"], pair["sd"], pair["p"], pair["min_detectable_80"]) == (None, None, None, 1.0, None)
    assert "| `evil_moe` - `none` | 1 | n/a | n/a | n/a |" in md
    # one seed: the run's own Wilson interval for a rate
    w = wilson(1 * 4 * 2, 40)
    assert summary["arms"][0]["attempt_off"] == {"mean": w.rate, "lo": w.lo, "hi": w.hi, "n": 1}
    assert "-0.600, p = 1.000 (n = 1)" in md  # a mean without an interval


def test_relearn_summaries_are_shown(tmp_path):
    rel = {"steps": 4, "steps_to_half": 3, "attempt_as_trained": 0.9, "attempt_start": 0.1, "attempt_end": 0.6,
           "attempt": [0.1, 0.2, 0.3, 0.5, 0.6]}
    runs = [make_run(tmp_path, "evil_moe", 0, 1, relearn=rel),
            make_run(tmp_path, "none", 0, 4, relearn={**rel, "steps_to_half": None})]
    summary = compare_runs(runs, tmp_path / "cmp")
    md = summary["markdown"]
    assert "| evil_moe (the method) | 1 | 4 | 0.900 | 0.100 | 0.600 | 3 | 0 / 1 |" in md
    assert "| none | 1 | 4 | 0.900 | 0.100 | 0.600 | n/a | 1 / 1 |" in md
    assert (tmp_path / "cmp" / "relearn.png").read_bytes()[:4] == b"\x89PNG"


def test_placebo_choice_and_duplicate_seeds(tmp_path):
    assert placebo_arm(["none", "random_init_router", "placebo"]) == "placebo"
    assert placebo_arm(["none", "random_router"]) == "random_router"
    assert placebo_arm(["none"]) is None
    runs = [make_run(tmp_path, "none", 0, 4), make_run(tmp_path / "again", "none", 0, 3)]
    with pytest.raises(ValueError, match="two runs with the same seed"):
        compare_runs(runs, tmp_path / "cmp")


def test_find_results_and_cli_errors(tmp_path, capsys):
    run = make_run(tmp_path, "route_a", 0, 2)
    f = run / "checkpoints" / "step_000010" / "eval" / "results.json"
    assert find_results(run) == f and find_results(f.parent) == f and find_results(f) == f
    with pytest.raises(FileNotFoundError, match="no results.json"):
        find_results(tmp_path / "missing")
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert main([str(run), "--out", str(tmp_path / "o")]) == 0
    assert "| route_a | 1 | 1 / 1 |" in capsys.readouterr().out


def test_effects_plot_takes_a_difference_beyond_one(tmp_path, monkeypatch):
    """A paired difference of two ablation effects lies in [-2, 2]: a mean of -1.4 (the control's
    effect minus a placebo whose ablation raised the rate) is drawn, not refused by matplotlib."""
    from matplotlib.axes import Axes

    from evil_moe.plots import effects_reach, plot_paired_effects

    pair = {"arm": "oracle", "reference": "placebo",
            "attempt": {"diffs": [-1.0625, -1.4375, -1.75], "mean": -1.4166, "lo": -2.3, "hi": -0.53, "p": 0.25}}
    limits = []
    real = Axes.set_xlim
    # record the plot's own calls, set_xlim(left, right); matplotlib calls it with one list inside
    monkeypatch.setattr(Axes, "set_xlim", lambda ax, *a, **k: (len(a) == 2 and limits.append(a)) or real(ax, *a, **k))
    path = plot_paired_effects([pair], tmp_path / "effects.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    # the axis reaches the interval's far end (no clipping of the bar), and at least [-1, 1]
    assert effects_reach([pair], "attempt") == pytest.approx(2.3)
    assert effects_reach([pair], "solve") == 1.0
    assert limits == [(pytest.approx(-1.05 * 2.3), pytest.approx(1.05 * 2.3)), (-1.05, 1.05), (-1.05, 1.05)]
