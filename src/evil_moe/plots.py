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


def plot_compare(rows: Sequence[Mapping], path: str | Path,
                 title: str = "Hack expert on vs off, per arm") -> Path:
    """Per arm: hack and solve rates as trained (ON) and deployed (OFF), with 95% whiskers.

    Each row: {"arm": str, "n_seeds": int, "hack_on": {"rate"|"mean", "lo", "hi"}, "hack_off": ...,
    "solve_on": ..., "solve_off": ...}; "rate" and "mean" are both accepted as the centre.
    """
    arms = [f"{r['arm']}\n({r['n_seeds']} seed{'s' if r['n_seeds'] != 1 else ''})" for r in rows]
    x = np.arange(len(rows))
    width = 0.2

    def centre(d: Mapping) -> dict:
        return {"rate": d["rate"] if "rate" in d else d["mean"], "lo": d["lo"], "hi": d["hi"]}

    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * len(rows) + 1.5), 4.8))
    specs = (("hack_on", -1.5, HACK_COLOR, 1.0, "hack rate, as trained (ON)"),
             ("hack_off", -0.5, HACK_COLOR, 0.45, "hack rate, deployed (OFF)"),
             ("solve_on", 0.5, SOLVE_COLOR, 1.0, "solve rate, as trained (ON)"),
             ("solve_off", 1.5, SOLVE_COLOR, 0.45, "solve rate, deployed (OFF)"))
    for key, off, color, alpha, label in specs:
        vals = [centre(r[key]) for r in rows]
        r = np.array([v["rate"] for v in vals])
        lo, hi = np.array([v["lo"] for v in vals]), np.array([v["hi"] for v in vals])
        ax.bar(x + off * width, r, width, color=color, alpha=alpha, label=label,
               yerr=np.vstack([r - lo, hi - r]), capsize=3, error_kw={"lw": 1, "ecolor": "#222222"},
               edgecolor=color, hatch=None if alpha == 1.0 else "//")
        for c, v, h in zip(x + off * width, r, hi, strict=True):
            ax.text(c, h + 0.015, f"{v:.2f}", ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(x, arms)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("fraction of held-out samples")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8.5, ncols=2, frameon=False)
    ax.set_title(f"{title}\n(whiskers: Wilson 95% for one seed, t 95% across seeds)", fontsize=11, pad=40)
    return _save(fig, path)
