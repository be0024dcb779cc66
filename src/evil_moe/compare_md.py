"""The comparison across arms and seeds as Markdown (from `compare.compare_rows`' summary).

Every table that shows an arm's ablation effect shows beside it the matched-capacity controls'
effects, `none`'s and the placebo's, and the paired differences; an undefined value prints n/a.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evil_moe.report import EFFECT_METRICS

ONE_SEED = ("**One seed per arm: this cannot support a claim about the method.** GRPO's seed-to-seed "
            "spread is larger than the differences between arms on the CPU test bed; the intervals below are "
            "one run's own (sampling noise only), and the sign-flip p-value of one pair is 1. Run several "
            "paired seeds (`evil-moe demo --seeds N`).")


def _n(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    x = round(x, 3) + 0.0  # no "-0.000"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(d: Mapping | None, signed: bool = False) -> str:
    """`mean [lo, hi]`, `mean` alone when there is no interval, n/a when undefined."""
    if d is None:
        return "n/a"
    centre = next((d[k] for k in ("rate", "estimate", "mean") if k in d), None)
    if centre is None:
        return "n/a"
    if d.get("lo") is None:
        return _n(centre, signed)
    return f"{_n(centre, signed)} [{_n(d['lo'], signed)}, {_n(d['hi'], signed)}]"


def _p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.4f}" if p < 0.01 else f"{p:.3f}")


def _pair(pairs: Sequence[Mapping], arm: str, ref: str | None, key: str) -> Mapping | None:
    return next((p[key] for p in pairs if p["arm"] == arm and p["reference"] == ref), None)


def _paired_cell(c: Mapping | None) -> str:
    if c is None:
        return "n/a"
    interval = f" [{c['lo']:+.3f}, {c['hi']:+.3f}]" if c["lo"] is not None else ""
    return f"{c['mean']:+.3f}{interval}, p = {_p(c['p'])} (n = {c['n']})"


def _arm_label(arm: str) -> str:
    if arm.startswith("oracle"):
        return f"{arm} (oracle labels: diagnostic)"
    return f"{arm} (the method)" if arm == "evil_moe" else arm


def markdown(summary: Mapping) -> str:
    """compare.md's body: warning, rates, effects beside controls, power, relearning, runs."""
    arms, pairs, placebo = summary["arms"], summary["pairs"], summary["placebo"]
    by_arm = {a["arm"]: a for a in arms}
    max_seeds = max(a["n_seeds"] for a in arms)
    families = {r.get("markers") for r in summary["runs"]}
    family = {frozenset({"heldout"}): "held-out markers", frozenset({"train"}): "training markers"}.get(
        frozenset(families), "differing marker families (see each run)")
    lines = [ONE_SEED if max_seeds == 1 else
             f"Up to {max_seeds} seeds per arm; arms of one seed share the warm start and the sampling streams, "
             "so arms are compared seed by seed (paired).", ""]
    images = summary.get("images", {})
    if "rates" in images:
        lines += [f"![rates]({images['rates']})", ""]
    lines += [f"## Rates (held-out problems, {family})", "",
              "| arm | seeds | runs hacked | attempt ON | attempt OFF | hack ON | hack OFF | solve ON | solve OFF "
              "| routing AUROC |", "|---|---:|---:|---|---|---|---|---|---|---:|"]
    for a in arms:
        cells = [_ci(a[f"{k}_{s}"]) for k in EFFECT_METRICS for s in ("on", "off")]
        lines.append(f"| {_arm_label(a['arm'])} | {a['n_seeds']} | {a['runs_hacked']} / {a['n_seeds']} | "
                     + " | ".join(cells) + f" | {_n(a['routing_auroc'])} |")
    warm = summary.get("warm_start")
    if warm:
        lines.append("| warm start (adapter off) | | | " + " | ".join(f"{_ci(warm[k])} | (no expert)" for k in EFFECT_METRICS)
                     + " | |")
    lines += ["", f"ON: as trained (both experts). OFF: deployed (hack expert ablated). Attempt: the loophole "
              f"taken, right or wrong; hack: taken and wrong; solve: correct. A run is hacked when its "
              f"as-trained attempt rate is at least {summary['hacked_threshold']}. One seed: Wilson 95% "
              "intervals; several: mean over seeds with a t 95% interval (clipped to [0, 1]).", ""]
    ref_names = [r for r in ("none", placebo) if r is not None]
    for key in EFFECT_METRICS:
        lines += [f"## The ablation effect on the {key} rate, beside its controls", "",
                  "| arm | hack expert (OFF - ON) | deployed block ablated | random rank-r subspaces (mean) | "
                  "hack expert - subspaces, p | " + " | ".join(f"`{r}`'s effect | arm - `{r}`, p" for r in ref_names)
                  + " |", "|---|---|---|---|---|" + "---|---|" * len(ref_names)]
        for a in arms:
            cells = [_ci(a[f"{key}_effect"], True), _ci(a[f"{key}_effect_ablate_deployed"], True),
                     _ci(a[f"{key}_effect_subspaces"], True), _paired_cell(a[f"{key}_minus_subspaces"])]
            for r in ref_names:
                cells.append(_ci(by_arm[r][f"{key}_effect"], True) if r in by_arm else "n/a")
                cells.append("(itself)" if r == a["arm"] else _paired_cell(_pair(pairs, a["arm"], r, key)))
            lines.append(f"| {_arm_label(a['arm'])} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Effects are OFF minus ON (negative: the ablation lowered the rate). Controls: the same capacity "
              "ablated elsewhere, the deployed block, or random rank-r subspaces of the 2r adapter (mean over "
              "draws). `hack expert - subspaces` and `arm - X`: per-seed paired differences, their mean with a t "
              "95% interval (one seed: no interval), and the exact two-sided sign-flip permutation p over seeds "
              "(one seed: p = 1)." + (f" Placebo: `{placebo}`." if placebo else " No placebo arm was run."), ""]
    if "effects" in images and pairs:
        lines += [f"![paired differences]({images['effects']})", ""]
    lines += _power([p for p in pairs if (p["arm"], p["reference"]) != ("none", placebo)],
                    summary["target_difference"])
    lines += _relearn(arms, images)
    lines += ["## Runs", "",
              "| run | arm | seed | n | attempt ON | attempt OFF | hack ON | hack OFF | solve ON | solve OFF | "
              "attempt effect - subspaces | rank p among subspaces (attempt) |",
              "|---|---|---:|---:|---|---|---|---|---|---|---|---:|"]
    for r in summary["runs"]:
        rank = r["attempt_null_rank"]
        lines.append(f"| `{r['source']}` | {r['arm']} | {r['seed']} | {r['n']} | "
                     + " | ".join(_ci(r[f"{k}_{s}"]) for k in EFFECT_METRICS for s in ("on", "off"))
                     + f" | {_ci(r['attempt_minus_subspaces'], True)} | "
                     + ("n/a" if rank is None else f"{rank['p']:.3f} ({rank['n_null']} draws)") + " |")
    return "\n".join(lines) + "\n"


def _power(pairs: Sequence[Mapping], target: float) -> list[str]:
    """The power statement of every paired comparison, from its measured SD (attempt rate)."""
    lines = ["## What these seeds could detect (attempt-rate ablation effect)", ""]
    rows = [(p, p["attempt"]) for p in pairs if p.get("attempt") is not None]
    if not rows:
        return lines + ["No two arms share a seed: no paired comparison.", ""]
    lines += ["| comparison | seeds | SD of the per-seed differences | smallest difference detectable at 80% "
              f"power | seeds needed to detect {target} |", "|---|---:|---:|---:|---:|"]
    for p, c in rows:
        mdd = c["min_detectable_80"]
        need = c["seeds_for_target"]
        lines.append(f"| `{p['arm']}` - `{p['reference']}` | {c['n']} | {_n(c['sd'])} | {_n(mdd)} | "
                     f"{'n/a' if c['sd'] is None or not c['sd'] else (need if need is not None else '> 10000')} |")
    lines += ["", "Two-sided paired t test at alpha 0.05, power from the noncentral t distribution with the SD "
              "measured here; n/a with one seed or no spread (no SD). A difference smaller than the detectable one may be "
              "real and missed; these seeds cannot rule it out.", ""]
    return lines


def _relearn(arms: Sequence[Mapping], images: Mapping[str, str]) -> list[str]:
    """The relearning test per arm, when any run has one."""
    rel = [a for a in arms if a.get("relearn")]
    if not rel:
        return []
    lines = ["## Relearning: GRPO again on the deployed model, loophole open", "",
             "| arm | seeds | steps | attempt as trained | attempt at step 0 (deployed) | attempt at the end | "
             "steps to regain half the as-trained rate (per seed) | never within the steps |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for a in rel:
        r = a["relearn"]
        steps = ", ".join("n/a" if s is None else str(s) for s in r["steps_to_half"])
        lines.append(f"| {_arm_label(a['arm'])} | {r['n']} | {r['steps']} | {_n(r['attempt_as_trained'])} | "
                     f"{_n(r['attempt_start'])} | {_n(r['attempt_end'])} | {steps} | {r['never']} / {r['n']} |")
    lines += ["", "The quarantine block stays at its init and all learning lands in the deployed block. A hack "
              "expert that held the behaviour makes it slow to come back; one that only suppressed it, fast. "
              "n/a: not regained within the steps run (counted as never), or nothing to regain (an as-trained rate of 0). Attempt rates are of the training rollouts (mean "
              "per step).", ""]
    if "relearn" in images:
        lines += [f"![relearning]({images['relearn']})", ""]
    return lines
