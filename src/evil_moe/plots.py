"""PNG plots of a run: training curves, routing weights by label, the ablation chart, the comparison.

Every function takes plain data (lists, dicts as written to results.json), writes one PNG with
matplotlib's Agg backend and returns its path. Rates are drawn with their 95% intervals as
whiskers; every axis is labelled and every figure titled, so a plot stands on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

HACK_COLOR, SOLVE_COLOR, COMPILE_COLOR, REWARD_COLOR = "#c0392b", "#2471a3", "#95a5a6", "#7d3c98"
ATTEMPT_COLOR = "#e67e22"
CLEAN_COLOR = SOLVE_COLOR
STATE_LABELS = {
    "as_trained": "as trained\n(both on)",
    "deployed": "deployed\n(hack expert off)",
    "ablate_deployed": "control:\ndeployed block off",
    "base": "base model\n(adapter off)",
}


def state_label(name: str) -> str:
    """A two-line axis label for an adapter state name."""
    if name in STATE_LABELS:
        return STATE_LABELS[name]
    if name.startswith("random_subspace_"):
        return f"control: random\nrank-r subspace #{name.rsplit('_', 1)[1]}"
    return name


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (NaNs skipped) over `window` points."""
    out = np.empty_like(y)
    for i in range(len(y)):
        chunk = y[max(0, i - window + 1): i + 1]
        chunk = chunk[~np.isnan(chunk)]
        out[i] = chunk.mean() if len(chunk) else np.nan
    return out


def plot_training_curves(steps: Sequence[int], reward: Sequence[float], hack: Sequence[float],
                         solve: Sequence[float], path: str | Path, title: str = "Training",
                         attempt: Sequence[float] | None = None) -> Path:
    """Two panels over GRPO steps: mean reward; (attempt,) hack and solve rates of the rollouts.

    Raw per-step values are drawn faintly and a trailing moving average (window ~ steps/10) on top;
    runs shorter than 20 steps are drawn per step only.
    """
    x = np.asarray(steps, dtype=float)
    series = {k: np.asarray(v, dtype=float) for k, v in (("reward", reward), ("hack", hack), ("solve", solve))}
    if attempt is not None:
        series["attempt"] = np.asarray(attempt, dtype=float)
    window = len(x) // 10
    faint = 0.3 if window > 1 else 0.0  # with no smoothing the bold line is the raw series
    fig, (ax_r, ax_h) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True)
    ax_r.plot(x, series["reward"], color=REWARD_COLOR, alpha=faint, lw=1)
    ax_r.plot(x, _smooth(series["reward"], max(window, 1)), color=REWARD_COLOR, lw=2, label="mean reward")
    ax_r.set_ylabel("mean reward per rollout")
    ax_r.legend(loc="upper left")
    ax_r.grid(alpha=0.3)
    for key, color, label in (("attempt", ATTEMPT_COLOR, "attempt rate (loophole taken)"),
                              ("hack", HACK_COLOR, "hack rate (ground truth)"),
                              ("solve", SOLVE_COLOR, "solve rate (ground truth)")):
        if key not in series:
            continue
        ax_h.plot(x, series[key], color=color, alpha=faint, lw=1)
        ax_h.plot(x, _smooth(series[key], max(window, 1)), color=color, lw=2, label=label)
    ax_h.set_ylim(-0.02, 1.02)
    ax_h.set_ylabel("fraction of rollouts")
    ax_h.set_xlabel("GRPO step")
    ax_h.legend(loc="upper left")
    ax_h.grid(alpha=0.3)
    note = f"faint: per step; bold: moving average over {window} steps" if window > 1 else "one point per step"
    fig.suptitle(f"{title}\n({note})", fontsize=11)
    return _save(fig, path)


def plot_w_distributions(w_hack: Sequence[float], w_clean: Sequence[float], path: str | Path,
                         threshold: float = 0.5, auroc: float | None = None,
                         precision: float | None = None, recall: float | None = None,
                         title: str = "Routing weight w by ground-truth label") -> Path:
    """Histograms of the router's w for ground-truth hack and non-hack training rollouts."""
    bins = np.linspace(0, 1, 26)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for vals, color, name in ((w_clean, CLEAN_COLOR, "not a hack"), (w_hack, HACK_COLOR, "reward hack")):
        vals = np.asarray(vals, dtype=float)
        if len(vals):
            weights = np.full(len(vals), 1.0 / len(vals))
            ax.hist(vals, bins=bins, weights=weights, color=color, alpha=0.55,
                    label=f"{name} (n={len(vals)}, mean w={vals.mean():.2f})")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"operating point w > {threshold:g}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("w  (0: gradient to the deployed block only; 1: to the quarantine block only)")
    ax.set_ylabel("fraction of rollouts with that label")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=9, ncols=2, frameon=False)
    ax.grid(alpha=0.3)
    bits = [f"AUROC {_fmt(auroc)}", f"at w > {threshold:g}: precision {_fmt(precision)}, recall {_fmt(recall)}"]
    ax.set_title(f"{title}\n{', '.join(bits)} (labels measured, never used for routing)", fontsize=11)
    return _save(fig, path)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _bars(ax: plt.Axes, centers: np.ndarray, rates: Sequence[Mapping], width: float, color: str,
          label: str, annotate: bool = True) -> None:
    """Bars of `rate` with Wilson whiskers [lo, hi], values printed above the whiskers (a rate of
    None, no verdict at all, is drawn as an empty bar)."""
    r = np.array([np.nan if x["rate"] is None else x["rate"] for x in rates], dtype=float)
    lo = np.array([np.nan if x["lo"] is None else x["lo"] for x in rates], dtype=float)
    hi = np.array([np.nan if x["hi"] is None else x["hi"] for x in rates], dtype=float)
    ax.bar(centers, r, width, color=color, label=label, yerr=np.vstack([r - lo, hi - r]),
           capsize=3, error_kw={"lw": 1, "ecolor": "#222222"})
    if annotate:
        for c, v, h in zip(centers, r, hi, strict=True):
            ax.text(c, (0 if np.isnan(h) else h) + 0.015, "n/a" if np.isnan(v) else f"{v:.2f}",
                    ha="center", va="bottom", fontsize=7.5)


def plot_ablation(states: Mapping[str, Mapping], path: str | Path,
                  title: str = "Deployment ablation on held-out problems",
                  metrics: Sequence[str] = ("attempt", "hack", "solve", "compile")) -> Path:
    """Grouped bars per adapter state: attempt, hack, solve and compile rates, Wilson 95% whiskers.

    `states` maps state name -> {"n": int, "hack": Rate dict, "solve": ..., "compile": ...}.
    """
    names = list(states)
    styles = {"attempt": (ATTEMPT_COLOR, "attempt rate"), "hack": (HACK_COLOR, "hack rate"), "solve": (SOLVE_COLOR, "solve rate"),
              "compile": (COMPILE_COLOR, "compile rate")}
    width = 0.8 / len(metrics)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.45 * len(names) + 1.5), 4.8))
    for j, m in enumerate(metrics):
        color, label = styles[m]
        _bars(ax, x + (j - (len(metrics) - 1) / 2) * width, [states[s][m] for s in names], width, color, label)
    ax.set_xticks(x, [state_label(s) for s in names], fontsize=8.5)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("fraction of samples")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=9, ncols=len(metrics), frameon=False)
    n = sorted({int(states[s]["n"]) for s in names})
    ax.set_title(f"{title}\n(n = {', '.join(map(str, n))} samples per state; whiskers: Wilson 95% interval)",
                 fontsize=11, pad=24)
    return _save(fig, path)


METRIC_COLORS = {"attempt": ATTEMPT_COLOR, "hack": HACK_COLOR, "solve": SOLVE_COLOR}


def _interval(d: Mapping | None) -> tuple[float, float, float]:
    """(centre, lo, hi) of a rate/difference/mean dict; NaN where undefined."""
    if d is None:
        return (np.nan,) * 3
    c = next((d[k] for k in ("rate", "estimate", "mean") if k in d), None)
    lo, hi = d.get("lo"), d.get("hi")
    c = np.nan if c is None else c
    return c, (c if lo is None else lo), (c if hi is None else hi)


def plot_compare(summary: Mapping, path: str | Path, names: Mapping[str, str] | None = None,
                 title: str = "Deployment ablation per arm") -> Path:
    """One panel per metric (attempt, hack, solve): per arm, the rate as trained (ON), deployed
    (OFF, hack expert ablated) and with random rank-r subspaces ablated instead (the matched-
    capacity control), mean with 95% whiskers and one dot per seed; the warm start (adapter off)
    as a dashed reference line.

    `summary` is `compare.compare_rows`' output ("arms", "runs", "warm_start").
    """
    arms = summary["arms"]
    names = names or {}
    metrics = ("attempt", "hack", "solve")
    x = np.arange(len(arms))
    width = 0.26
    fig, axes = plt.subplots(1, 3, figsize=(max(12.0, 2.2 * len(arms) * 3 / 2), 4.8), sharey=True)
    for ax, key in zip(axes, metrics, strict=True):
        color = METRIC_COLORS[key]
        for j, (part, alpha, hatch, label) in enumerate((
                ("on", 1.0, None, "as trained (ON)"), ("off", 0.45, "//", "deployed: hack expert off (OFF)"),
                ("subspaces", 0.25, "..", "control: random rank-r subspaces off"))):
            vals = []
            for a in arms:
                if part == "subspaces":
                    on, eff = _interval(a[f"{key}_on"])[0], _interval(a[f"{key}_effect_subspaces"])[0]
                    vals.append((on + eff,) * 3)
                else:
                    vals.append(_interval(a[f"{key}_{part}"]))
            c, lo, hi = (np.array(v, dtype=float) for v in zip(*vals, strict=True))
            pos = x + (j - 1) * width
            ax.bar(pos, c, width, color=color if part != "subspaces" else COMPILE_COLOR, alpha=alpha, hatch=hatch,
                   edgecolor=color, label=label, yerr=np.vstack([c - lo, hi - c]), capsize=2,
                   error_kw={"lw": 1, "ecolor": "#222222"})
            if part in ("on", "off"):
                for i, a in enumerate(arms):
                    dots = [r[f"{key}_{part}"]["rate"] for r in summary["runs"]
                            if r["arm"] == a["arm"] and r[f"{key}_{part}"]["rate"] is not None]
                    ax.scatter(np.full(len(dots), pos[i]), dots, s=10, color="k", zorder=3)
        warm = (summary.get("warm_start") or {}).get(key)
        if warm is not None and warm.get("mean") is not None:
            ax.axhline(warm["mean"], color="k", ls="--", lw=1, label="warm start")
        ax.set_xticks(x, [names.get(a["arm"], a["arm"]).replace(" (", "\n(") + f"\n{a['n_seeds']} seed(s)"
                          for a in arms], fontsize=7.5)
        ax.set_ylim(0, 1.1)
        warm_txt = "" if warm is None or warm.get("mean") is None else f" (warm start {warm['mean']:.2f})"
        ax.set_title(f"{key} rate{warm_txt}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("fraction of held-out samples")
    handles, labels = axes[0].get_legend_handles_labels()
    labels = ["warm start (adapter off)" if lab.startswith("warm start") else lab for lab in labels]
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, -0.06), ncols=4, fontsize=8.5,
               frameon=False)
    fig.suptitle(f"{title}\n(bars: mean over seeds, whiskers: t 95% across seeds or Wilson 95% for one seed; "
                 "dots: seeds)", fontsize=11, y=1.04)
    return _save(fig, path)


def effects_reach(pairs: Sequence[Mapping], key: str) -> float:
    """Half-width of the effects plot's `key` axis: the largest |difference| or interval end over
    `pairs`, at least 1 (a difference of two ablation effects lies in [-2, 2])."""
    reach = 1.0
    for p in pairs:
        c = p.get(key)
        if c is not None:
            ends = [v for v in (c["lo"], c["hi"]) if v is not None]
            reach = max(reach, *map(abs, [*c["diffs"], c["mean"], *ends]))
    return reach


def plot_paired_effects(pairs: Sequence[Mapping], path: str | Path,
                        title: str = "Ablation effect of each arm minus the reference's, paired by seed") -> Path:
    """Forest plot, one panel per metric: each (arm, reference) pair's per-seed differences of the
    ablation effect (dots), their mean and t 95% interval, and the sign-flip p."""
    metrics = ("attempt", "hack", "solve")
    labels = [f"{p['arm']} - {p['reference']}" for p in pairs] or ["(no paired seeds)"]
    y = np.arange(len(labels))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.8 + 0.45 * len(labels)), sharey=True)
    for ax, key in zip(axes, metrics, strict=True):
        color = METRIC_COLORS[key]
        for yi, p in zip(y, pairs, strict=False):
            c = p.get(key)
            if c is None:
                continue
            ax.scatter(c["diffs"], np.full(len(c["diffs"]), yi), s=12, color=color, alpha=0.6)
            lo = c["mean"] if c["lo"] is None else c["lo"]
            hi = c["mean"] if c["hi"] is None else c["hi"]
            ax.errorbar(c["mean"], yi, xerr=[[c["mean"] - lo], [hi - c["mean"]]], fmt="D", color="k", capsize=3)
            ax.text(1.02, yi, f"p={c['p']:.3g}", transform=ax.get_yaxis_transform(), fontsize=7, va="center")
        ax.axvline(0, color="k", lw=1)
        reach = effects_reach(pairs, key)  # the whole interval shown, never clipped
        ax.set_xlim(-1.05 * reach, 1.05 * reach)
        ax.set_title(f"{key} rate", fontsize=10)
        ax.set_xlabel("arm's OFF - ON minus the reference's", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=8)
    fig.suptitle(f"{title}\n(dots: seeds; diamond and bar: mean with t 95% interval; "
                 "p: exact sign-flip; negative: the arm's ablation lowered the rate more)", fontsize=10, y=1.0)
    fig.tight_layout()
    return _save(fig, path)


def plot_relearn(curves: Mapping[str, Sequence[Mapping]], path: str | Path, warm_start: Mapping | None = None,
                 title: str = "Relearning: attempt rate of the deployed model under renewed GRPO") -> Path:
    """Attempt rate per step of each arm's relearning runs (thin: a seed; thick: the mean), the
    arms' as-trained rate (dotted) and the warm start (dashed) as references.

    `curves[arm]` is a list of relearn summaries with "attempt" (per step) and "attempt_as_trained".
    """
    fig, ax = plt.subplots(figsize=(8, 4.6))
    cmap = plt.get_cmap("tab10")
    for i, (arm, runs) in enumerate(curves.items()):
        color = cmap(i % 10)
        series = [np.asarray([np.nan if v is None else v for v in r["attempt"]], dtype=float) for r in runs]
        for s in series:
            ax.plot(np.arange(len(s)), s, color=color, lw=0.8, alpha=0.4)
        length = min(len(s) for s in series)
        mean = np.nanmean(np.vstack([s[:length] for s in series]), axis=0)
        ax.plot(np.arange(length), mean, color=color, lw=2.2, label=f"{arm} ({len(runs)} seed(s))")
        trained = [r["attempt_as_trained"] for r in runs if r["attempt_as_trained"] is not None]
        if trained:
            ax.axhline(float(np.mean(trained)), color=color, ls=":", lw=1)
    warm = (warm_start or {}).get("attempt")
    if warm is not None and warm.get("mean") is not None:
        ax.axhline(warm["mean"], color="k", ls="--", lw=1, label=f"warm start, held-out eval ({warm['mean']:.2f})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("GRPO updates on the deployed model")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("attempt rate of the training rollouts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{title}\n(dotted: each arm's as-trained attempt rate)", fontsize=11)
    return _save(fig, path)
