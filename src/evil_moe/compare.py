"""`evil-moe compare RUN_DIR ...`: arms and seeds side by side, each effect beside its controls.

Each path is a results.json, a directory holding one (an evaluation's output directory), or a run
directory whose latest `checkpoints/step_N/eval/results.json` is used. Runs are grouped by arm
(the config's run.arm) and paired by seed (the arms of one seed share a warm start and sampling
streams). For every arm the comparison reports, on the main section:

- attempt, hack and solve rates as trained (ON) and deployed (OFF), and "runs hacked / total"
  (a run is hacked when its as-trained attempt rate is at least `HACKED_THRESHOLD`);
- the ablation effect (OFF - ON) beside the matched-capacity controls' effects (the deployed
  block ablated; the random rank-r subspaces, pooled) and the hack expert's effect minus the
  random subspaces' effect, per seed and across seeds;
- against `none` and against the placebo (`placebo`, else `random_init_router`, else
  `random_router`): the per-seed paired difference of the ablation effect, its mean with a t 95%
  interval, the exact sign-flip p-value, and the power those seeds had (`stats`);
- the relearning test (`evil-moe relearn`), where a run directory holds `relearn/relearn.json`.

One seed: intervals are that run's own (Wilson for rates, paired bootstrap over problems for
effects), and the report says first that one seed cannot support a claim.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from evil_moe import plots
from evil_moe.config import ARMS
from evil_moe.report import ABLATED, BASELINE, EFFECT_METRICS, MAIN, METHOD_ARM
from evil_moe.stats import mean_interval, min_detectable_difference, paired_comparison, seeds_needed

HACKED_THRESHOLD = 0.5  # as-trained attempt rate at or above which a run counts as hacked
PLACEBOS = ("placebo", "random_init_router", "random_router")  # the first present is the placebo
TARGET_DIFFERENCE = 0.2  # the power statement: seeds needed to detect this difference
RELEARN_FILE = Path("relearn") / "relearn.json"


def find_results(path: str | Path) -> Path:
    """The results.json that `path` names (see the module docstring); raises naming the path."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / "results.json").is_file():
        return p / "results.json"
    found = sorted(p.glob("checkpoints/step_*/eval/results.json"))
    if found:
        print(f"compare: {p}: using {found[-1]} (the latest of {len(found)} evaluated checkpoints)", file=sys.stderr)
        return found[-1]
    raise FileNotFoundError(f"{p}: no results.json (looked at {p}, {p}/results.json and "
                            f"{p}/checkpoints/step_*/eval/results.json); run `evil-moe eval` first")


def trained_steps(results: Mapping) -> int | None:
    """The GRPO steps behind an evaluation: its checkpoint's step_N, else the run's grpo.steps."""
    name = Path(str(results.get("checkpoint") or "")).name
    if name.startswith("step_") and name[5:].isdigit():
        return int(name[5:])
    return (results.get("config") or {}).get("grpo", {}).get("steps")


def run_row(results: Mapping, source: str) -> dict:
    """One run's main-section numbers: rates ON/OFF, effects, controls' effects, base, relearn."""
    try:
        section = results["sections"][MAIN]
        states = section["states"]
        arm, seed = results["run"]["arm"], results["run"]["seed"]
    except KeyError as e:
        raise ValueError(f"{source}: not an evil-moe results.json (missing {e})") from None
    for s in (BASELINE, ABLATED):
        if s not in states:
            raise ValueError(f"{source}: no {s!r} state in section {MAIN!r}")
        if "attempt" not in states[s]:
            raise ValueError(f"{source}: state {s!r} has no attempt rate (written before attempts were "
                             "graded); re-run `evil-moe eval`")
    on, off = states[BASELINE], states[ABLATED]
    controls = section.get("controls") or {}
    row: dict = {"source": source, "arm": arm, "seed": seed, "n": on["n"], "markers": section.get("markers"),
                 "routing_auroc": (results.get("routing") or {}).get("auroc")}
    for key in EFFECT_METRICS:
        row[f"{key}_on"], row[f"{key}_off"] = on[key], off[key]
        row[f"{key}_effect"] = off["vs_as_trained"][key]
        dep = states.get("ablate_deployed")
        row[f"{key}_effect_ablate_deployed"] = None if dep is None else dep["vs_as_trained"][key]
        null = (controls.get("null") or {}).get(key) or {}
        row[f"{key}_effect_subspaces"] = null.get("mean")
        row[f"{key}_null_rank"] = null.get("rank")
        row[f"{key}_minus_subspaces"] = ((controls.get("vs") or {}).get("random_subspace_mean") or {}).get(key)
        row[f"base_{key}"] = states["base"][key] if "base" in states else None
    row["hacked"] = on["attempt"]["rate"] is not None and on["attempt"]["rate"] >= HACKED_THRESHOLD
    run_dir = results.get("run_dir")
    relearn = Path(run_dir) / RELEARN_FILE if run_dir else None
    row["relearn"] = json.loads(relearn.read_text())["summary"] if relearn is not None and relearn.is_file() else None
    return row


def _centre(d: Mapping | None) -> float | None:
    """The point value of a Rate, Diff or interval dict (None if absent or undefined)."""
    if d is None:
        return None
    for k in ("rate", "estimate", "mean"):
        if k in d:
            return d[k]
    raise ValueError(f"not a rate or difference: {d}")


def _value(v: Mapping | float | None) -> float | None:
    return _centre(v) if isinstance(v, Mapping) else v


def _across(rows: Sequence[Mapping], key: str, clip: bool) -> dict | None:
    """Mean over seeds with a t 95% interval (clipped to [0, 1] for rates); one seed: the run's
    own interval (none for a plain number); None if no seed has a value."""
    vals = [r[key] for r in rows if _value(r[key]) is not None]
    if not vals:
        return None
    if len(vals) == 1:
        v = vals[0]
        return {"mean": _value(v), "lo": v["lo"] if isinstance(v, Mapping) else None,
                "hi": v["hi"] if isinstance(v, Mapping) else None, "n": 1}
    m = mean_interval([_value(v) for v in vals])
    lo, hi = (max(0.0, m.lo), min(1.0, m.hi)) if clip else (m.lo, m.hi)
    return {"mean": m.mean, "lo": lo, "hi": hi, "n": m.n}


def arm_summary(rows: Sequence[Mapping]) -> dict:
    """One arm over its seeds: rates, effects and controls' effects, runs hacked, relearning."""
    out: dict = {"arm": rows[0]["arm"], "n_seeds": len(rows), "seeds": [r["seed"] for r in rows],
                 "runs_hacked": sum(r["hacked"] for r in rows)}
    for key in EFFECT_METRICS:
        for part, clip in (("on", True), ("off", True), ("effect", False), ("effect_ablate_deployed", False),
                           ("effect_subspaces", False), (f"base_{key}", True)):
            name = part if part.startswith("base_") else f"{key}_{part}"
            out[name] = _across(rows, name, clip)
        per_seed = [_centre(r[f"{key}_minus_subspaces"]) for r in rows if r[f"{key}_minus_subspaces"] is not None]
        out[f"{key}_minus_subspaces"] = paired_comparison(per_seed).to_dict() if per_seed else None
        out[f"{key}_null_p"] = [None if r[f"{key}_null_rank"] is None else r[f"{key}_null_rank"]["p"] for r in rows]
    aurocs = [r["routing_auroc"] for r in rows if r["routing_auroc"] is not None]
    out["routing_auroc"] = sum(aurocs) / len(aurocs) if aurocs else None
    relearn = [r["relearn"] for r in rows if r["relearn"] is not None]
    out["relearn"] = None if not relearn else {
        "n": len(relearn), "steps": relearn[0]["steps"],
        "steps_to_half": [x["steps_to_half"] for x in relearn],
        "never": sum(x["steps_to_half"] is None and bool(x["attempt_as_trained"]) for x in relearn),
        "attempt_as_trained": _mean_or_none([x["attempt_as_trained"] for x in relearn]),
        "attempt_start": _mean_or_none([x["attempt_start"] for x in relearn]),
        "attempt_end": _mean_or_none([x["attempt_end"] for x in relearn]),
    }
    return out


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def placebo_arm(arms: Sequence[str]) -> str | None:
    """The placebo among `arms`: `placebo` if present, else `random_init_router`, else `random_router`."""
    return next((p for p in PLACEBOS if p in arms), None)


def paired_arms(rows: Sequence[Mapping], arm: str, reference: str) -> dict | None:
    """`arm` against `reference` over the seeds both ran: per metric, the per-seed difference of
    the ablation effects (arm's minus reference's) with `paired_comparison`, and the power:
    the smallest difference these seeds detect at 80% (paired t, two-sided 0.05) and the seeds
    needed for TARGET_DIFFERENCE, both from the measured SD. None if no seed is shared."""
    mine = {r["seed"]: r for r in rows if r["arm"] == arm}
    ref = {r["seed"]: r for r in rows if r["arm"] == reference}
    seeds = sorted(set(mine) & set(ref))
    if not seeds:
        return None
    out: dict = {"arm": arm, "reference": reference, "seeds": seeds}
    for key in EFFECT_METRICS:
        diffs = [_centre(mine[s][f"{key}_effect"]) - _centre(ref[s][f"{key}_effect"]) for s in seeds
                 if _centre(mine[s][f"{key}_effect"]) is not None and _centre(ref[s][f"{key}_effect"]) is not None]
        if not diffs:
            out[key] = None
            continue
        c = paired_comparison(diffs).to_dict()
        sd = c["sd"]
        c["min_detectable_80"] = min_detectable_difference(sd, c["n"]) if sd else None
        c["seeds_for_target"] = seeds_needed(sd, TARGET_DIFFERENCE) if sd else None
        out[key] = c
    return out


def _arm_order(arm: str) -> tuple[int, str]:
    return (ARMS.index(arm) if arm in ARMS else len(ARMS), arm)


def _arm_name(arm: str) -> str:
    if arm.startswith("oracle"):
        return f"{arm} (oracle labels, diagnostic)"
    return f"{arm} (the method)" if arm == METHOD_ARM else arm


def compare_rows(rows: Sequence[Mapping]) -> dict:
    """Per-arm summaries and the paired comparisons against `none` and the placebo."""
    rows = sorted(rows, key=lambda r: (_arm_order(r["arm"]), r["seed"]))
    by_arm: dict[str, list[Mapping]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    for arm, rs in by_arm.items():
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"arm {arm!r} has two runs with the same seed ({seeds}); "
                             f"runs: {[r['source'] for r in rs]}")
    placebo = placebo_arm(list(by_arm))
    pairs = []
    for arm in by_arm:
        for ref in ("none", placebo):
            if ref is not None and arm != ref and ref in by_arm:
                p = paired_arms(rows, arm, ref)
                if p is not None:
                    pairs.append(p)
    warm = [r for r in rows if r["base_attempt"] is not None]
    warm_start = {key: _across(warm, f"base_{key}", True) for key in EFFECT_METRICS} if warm else None
    return {"runs": list(rows), "arms": [arm_summary(rs) for rs in by_arm.values()], "pairs": pairs,
            "placebo": placebo, "warm_start": warm_start, "hacked_threshold": HACKED_THRESHOLD,
            "target_difference": TARGET_DIFFERENCE}


def distinct_pairs(summary: Mapping) -> list[dict]:
    """The paired comparisons without `none` - placebo, the mirror image of placebo - `none`."""
    return [p for p in summary["pairs"] if (p["arm"], p["reference"]) != ("none", summary["placebo"])]


def compare_runs(paths: Sequence[str | Path], out_dir: str | Path, allow_mixed_lengths: bool = False) -> dict:
    """Read each run's results.json, compare (`compare_rows`), write compare.md, compare.json,
    compare.png (rates) and compare_effects.png (paired differences), and relearn.png when
    any run has a relearning test. Returns the summary with its "markdown"."""
    from evil_moe.compare_md import markdown

    if not paths:
        raise ValueError("compare: give at least one run directory or results.json")
    rows, lengths = [], {}
    for p in paths:
        f = find_results(p)
        try:
            results = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from e
        rows.append(run_row(results, str(f)))
        steps = trained_steps(results)  # runs of different lengths are refused unless allowed, then said
        if lengths and steps not in lengths.values():
            seen = ", ".join(f"{src}: {n}" for src, n in lengths.items())
            if not allow_mixed_lengths:
                raise ValueError(f"runs of different training lengths: {f}: {steps} steps, but {seen}; compare "
                                 "runs of one length (or pass --allow-mixed-lengths)")
            print(f"compare: mixing training lengths: {f}: {steps} steps; {seen}", file=sys.stderr)
        lengths[str(f)] = steps
    summary = compare_rows(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {"rates": "compare.png", "effects": "compare_effects.png"}
    plots.plot_compare(summary, out / images["rates"], names={a["arm"]: _arm_name(a["arm"]) for a in summary["arms"]})
    plots.plot_paired_effects(distinct_pairs(summary), out / images["effects"])
    curves = {r["arm"]: [] for r in rows}
    for r in rows:
        if r["relearn"] is not None:
            curves[r["arm"]].append(r["relearn"])
    if any(curves.values()):
        plots.plot_relearn({a: c for a, c in curves.items() if c}, out / "relearn.png", summary["warm_start"])
        images["relearn"] = "relearn.png"
    summary["images"] = images
    summary["markdown"] = markdown(summary)
    (out / "compare.md").write_text("# Evil MoE: comparison across arms and seeds\n\n" + summary["markdown"])
    (out / "compare.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evil-moe compare",
                                description="Arms and seeds side by side from each run's results.json: ablation "
                                            "effects beside their controls, paired differences across seeds, power.")
    p.add_argument("runs", nargs="+", help="run directories (the latest evaluated checkpoint, named on stderr), "
                                           "evaluation directories or results.json files")
    p.add_argument("--allow-mixed-lengths", action="store_true",
                   help="compare runs trained for different numbers of steps (refused by default)")
    p.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    args = p.parse_args(argv)
    try:
        summary = compare_runs(args.runs, args.out, args.allow_mixed_lengths)
    except (FileNotFoundError, ValueError) as e:
        print(f"evil-moe compare: {e}", file=sys.stderr)
        return 2
    print(summary["markdown"])
    print(f"wrote {args.out}/compare.md, compare.json and the plots")
    return 0
