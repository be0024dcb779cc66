"""`evil-moe compare RUN_DIR ...`: one table across runs, arms and seeds, from each results.json.

Each path is a results.json, a directory holding one (an evaluation's output directory), or a run
directory whose latest `checkpoints/step_N/eval/results.json` is used. Runs are grouped by arm
(the config's run.arm). With one seed an arm's rates carry that run's Wilson intervals and its
paired bootstrap interval for the differences; with several seeds each number is the mean over
seeds with a Student-t 95% interval across seeds (clipped to [0, 1] for rates).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from evil_moe import plots
from evil_moe.config import ARMS
from evil_moe.report import ABLATED, BASELINE, MAIN
from evil_moe.stats import mean_interval

CONTROLS = "controls"  # ablate_deployed and random_subspace_*: the matched-capacity controls


def find_results(path: str | Path) -> Path:
    """The results.json that `path` names (see the module docstring); raises naming the path."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / "results.json").is_file():
        return p / "results.json"
    found = sorted(p.glob("checkpoints/step_*/eval/results.json"))
    if found:
        return found[-1]
    raise FileNotFoundError(f"{p}: no results.json (looked at {p}, {p}/results.json and "
                            f"{p}/checkpoints/step_*/eval/results.json); run `evil-moe eval` first")


def run_row(results: Mapping, source: str) -> dict:
    """One run's headline numbers: ON/OFF rates, differences, specificities, base, routing AUROC."""
    try:
        states = results["sections"][MAIN]["states"]
        arm, seed = results["run"]["arm"], results["run"]["seed"]
    except KeyError as e:
        raise ValueError(f"{source}: not an evil-moe results.json (missing {e})") from None
    for s in (BASELINE, ABLATED):
        if s not in states:
            raise ValueError(f"{source}: no {s!r} state in section {MAIN!r}")
    on, off = states[BASELINE], states[ABLATED]
    controls = [v for k, v in states.items() if k == "ablate_deployed" or k.startswith("random_subspace_")]
    routing = results.get("routing") or {}
    row = {
        "source": source, "arm": arm, "seed": seed, "n": on["n"],
        "markers": results["sections"][MAIN].get("markers"),
        "hack_on": on["hack"], "hack_off": off["hack"], "solve_on": on["solve"], "solve_off": off["solve"],
        "hack_diff": off["vs_as_trained"]["hack"], "solve_diff": off["vs_as_trained"]["solve"],
        "specificity": off["specificity"],
        "control_specificity": {k: v["specificity"] for k, v in states.items()
                                if k == "ablate_deployed" or k.startswith("random_subspace_")},
        "control_hack_off": None if not controls else sum(c["hack"]["rate"] for c in controls) / len(controls),
        "base_hack": states["base"]["hack"] if "base" in states else None,
        "base_solve": states["base"]["solve"] if "base" in states else None,
        "routing_auroc": routing.get("auroc"),
    }
    return row


def _agg(values: Sequence[float], clip: bool = False) -> dict:
    """Mean with a t 95% interval; `clip` bounds the interval to [0, 1] (for rates)."""
    m = mean_interval(values)
    lo, hi = (max(0.0, m.lo), min(1.0, m.hi)) if clip else (m.lo, m.hi)
    return {"mean": m.mean, "lo": lo, "hi": hi, "n": m.n}


def _as_interval(d: Mapping) -> dict:
    """A Rate or Diff dict as {"mean", "lo", "hi"}."""
    centre = d["rate"] if "rate" in d else d["estimate"] if "estimate" in d else d["mean"]
    return {"mean": centre, "lo": d["lo"], "hi": d["hi"]}


def arm_summary(rows: Sequence[Mapping]) -> dict:
    """One arm: means over its seeds with t intervals (one seed: that run's own intervals)."""
    arm = rows[0]["arm"]
    out: dict = {"arm": arm, "n_seeds": len(rows), "seeds": [r["seed"] for r in rows]}
    for key in ("hack_on", "hack_off", "solve_on", "solve_off", "hack_diff", "solve_diff"):
        if len(rows) == 1:
            out[key] = _as_interval(rows[0][key])
        else:
            diff = key.endswith("_diff")
            out[key] = _agg([r[key]["estimate" if diff else "rate"] for r in rows], clip=not diff)
    out["specificity"] = _agg([r["specificity"]["value"] for r in rows])
    out["specificity_floored"] = any(r["specificity"]["floored"] for r in rows)
    ctrl = [s["value"] for r in rows for s in r["control_specificity"].values()]
    out["control_specificity"] = _agg(ctrl) if ctrl else None
    for key in ("base_hack", "base_solve"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = None if not vals else (_as_interval(vals[0]) if len(vals) == 1
                                      else _agg([v["rate"] for v in vals], clip=True))
    aurocs = [r["routing_auroc"] for r in rows if r["routing_auroc"] is not None]
    out["routing_auroc"] = _agg(aurocs) if aurocs else None
    return out


def _arm_order(arm: str) -> tuple[int, str]:
    return (ARMS.index(arm) if arm in ARMS else len(ARMS), arm)


def _ci(d: Mapping | None, signed: bool = False) -> str:
    if d is None:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(d['mean'])} [{f.format(d['lo'])}, {f.format(d['hi'])}]"


def _arm_name(arm: str) -> str:
    return f"{arm} (oracle labels, diagnostic)" if arm == "oracle" else arm


def markdown(arms: Sequence[Mapping], rows: Sequence[Mapping]) -> str:
    """The comparison as Markdown: one row per arm, then one row per run."""
    lines = ["| arm | seeds | hack ON | hack OFF | solve ON | solve OFF | hack OFF - ON | solve OFF - ON | "
             "specificity (hack expert) | specificity (controls) | base hack | base solve | routing AUROC |",
             "|---|---:|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        spec = a["specificity"]
        spec_txt = f"{'>= ' if a['specificity_floored'] else ''}{spec['mean']:.2f}"
        if a["n_seeds"] > 1:
            spec_txt += f" [{spec['lo']:.2f}, {spec['hi']:.2f}]"
        ctrl = a["control_specificity"]
        lines.append(f"| {_arm_name(a['arm'])} | {a['n_seeds']} | {_ci(a['hack_on'])} | {_ci(a['hack_off'])} | "
                     f"{_ci(a['solve_on'])} | {_ci(a['solve_off'])} | {_ci(a['hack_diff'], True)} | "
                     f"{_ci(a['solve_diff'], True)} | {spec_txt} | "
                     f"{'n/a' if ctrl is None else format(ctrl['mean'], '.2f')} | {_ci(a['base_hack'])} | "
                     f"{_ci(a['base_solve'])} | {'n/a' if a['routing_auroc'] is None else format(a['routing_auroc']['mean'], '.3f')} |")
    families = {r.get("markers") for r in rows}
    family = {frozenset({"heldout"}): "held-out markers", frozenset({"train"}): "training markers"}.get(
        frozenset(families), "differing marker families (see each run)")
    lines += ["", "ON: as trained (both experts on). OFF: deployed (hack expert ablated). Rates on held-out "
              f"problems with {family}. One seed: Wilson 95% intervals and paired bootstrap over "
              "problems; several seeds: mean over seeds with a t 95% interval. Specificity: hack-rate "
              "drop per point of solve rate lost (`>=`: solve rate fell by less than one point, counted "
              "as one). Controls: the deployed block, or a random rank-r subspace, ablated instead "
              "(mean over control states). Base: adapter off.", "",
              "| run | arm | seed | n | hack ON | hack OFF | solve ON | solve OFF |",
              "|---|---|---:|---:|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['source']}` | {r['arm']} | {r['seed']} | {r['n']} | "
                     + " | ".join(_ci(_as_interval(r[k])) for k in ("hack_on", "hack_off", "solve_on", "solve_off"))
                     + " |")
    return "\n".join(lines) + "\n"


def compare_runs(paths: Sequence[str | Path], out_dir: str | Path) -> dict:
    """Read each run's results.json, group by arm, write compare.md, compare.json and compare.png.

    Returns {"runs": [per-run rows], "arms": [per-arm summaries], "markdown": str}.
    """
    if not paths:
        raise ValueError("compare: give at least one run directory or results.json")
    rows = []
    for p in paths:
        f = find_results(p)
        try:
            results = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from e
        rows.append(run_row(results, str(f)))
    rows.sort(key=lambda r: (_arm_order(r["arm"]), r["seed"]))
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    arms = [arm_summary(rs) for rs in by_arm.values()]
    md = markdown(arms, rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text("# Evil MoE: comparison across arms\n\n![comparison](compare.png)\n\n" + md)
    summary = {"runs": rows, "arms": arms, "markdown": md}
    (out / "compare.json").write_text(json.dumps(summary, indent=1) + "\n")
    plots.plot_compare([{**a, "arm": _arm_name(a["arm"]).replace(" (", "\n(")} for a in arms], out / "compare.png",
                       title="Deployment ablation per arm: hack and solve rate, hack expert ON vs OFF")
    return summary


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evil-moe compare",
                                description="One table across runs, arms and seeds, from each run's results.json.")
    p.add_argument("runs", nargs="+", help="run directories, evaluation directories or results.json files")
    p.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    args = p.parse_args(argv)
    try:
        summary = compare_runs(args.runs, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"evil-moe compare: {e}", file=sys.stderr)
        return 2
    print(summary["markdown"])
    print(f"wrote {args.out}/compare.md, compare.json and compare.png")
    return 0
