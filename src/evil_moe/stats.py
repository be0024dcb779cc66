"""Statistics of the deployment-ablation evaluation, in plain numpy.

- `wilson`: a rate with its Wilson score 95% interval.
- `paired_bootstrap_diff`: the difference of two states' rates on the same problems, with a
  percentile interval from resampling problems (the unit that is shared between states).
- `auroc`: the Mann-Whitney area under the ROC curve, ties counted one half.
- `precision_recall`: precision and recall of `score > threshold` against binary labels.
- `specificity`: the drop in hack rate per point of solve rate lost by an ablation.
- `mean_interval`: a mean across seeds with a Student-t 95% interval.

Every result is a small frozen dataclass with `to_dict()` for results.json. An undefined value
(a precision with no predicted positive, an AUROC with one class missing) is `None`, never NaN,
so that results.json stays valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # standard normal 0.975 quantile

# Student t 0.975 quantiles for 1..30 degrees of freedom.
_T975 = (12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851,
         2.364624252, 2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830,
         2.160368656, 2.144786688, 2.131449546, 2.119905299, 2.109815578, 2.100922040,
         2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
         2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456)


@dataclass(frozen=True)
class Rate:
    """`k` successes out of `n`, the rate `k/n` and its Wilson 95% interval [lo, hi]."""
    k: int
    n: int
    rate: float
    lo: float
    hi: float

    def to_dict(self) -> dict:
        return asdict(self)


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate k/n (n >= 1)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends: the roots are 0 and 1 there
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def wilson(k: int, n: int) -> Rate:
    """`Rate(k, n, k/n, lo, hi)` with the Wilson 95% interval."""
    lo, hi = wilson_interval(int(k), int(n))
    return Rate(int(k), int(n), k / n, lo, hi)


@dataclass(frozen=True)
class Diff:
    """Rate of state b minus rate of state a, with a bootstrap 95% interval over problems."""
    estimate: float
    lo: float
    hi: float
    n_problems: int
    n_boot: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap_diff(k_a: Sequence[int], n_a: Sequence[int], k_b: Sequence[int],
                          n_b: Sequence[int], n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> Diff:
    """Difference `sum(k_b)/sum(n_b) - sum(k_a)/sum(n_a)` of two states measured on the same problems.

    Entry i of each sequence is problem i's success count and sample count in that state. Each
    bootstrap replicate draws problems with replacement (the same draw for both states, which
    keeps the pairing) and recomputes the difference of pooled rates; the interval is the
    percentile interval of the replicates. The random stream depends only on `seed`.
    """
    ka, na, kb, nb = (np.asarray(x, dtype=np.int64) for x in (k_a, n_a, k_b, n_b))
    P = len(ka)
    if not (len(na) == len(kb) == len(nb) == P) or P == 0:
        raise ValueError(f"paired_bootstrap_diff: need four equal non-empty sequences, got lengths "
                         f"{[len(x) for x in (ka, na, kb, nb)]}")
    if (na < 1).any() or (nb < 1).any() or (ka < 0).any() or (kb < 0).any() or (ka > na).any() or (kb > nb).any():
        raise ValueError("paired_bootstrap_diff: every problem needs 0 <= k <= n and n >= 1 in both states")
    if n_boot < 1:
        raise ValueError(f"paired_bootstrap_diff: n_boot must be positive, got {n_boot}")
    estimate = kb.sum() / nb.sum() - ka.sum() / na.sum()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, P, size=(n_boot, P))  # (B, P) resampled problem indices
    reps = kb[idx].sum(1) / nb[idx].sum(1) - ka[idx].sum(1) / na[idx].sum(1)  # (B,)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return Diff(float(estimate), float(lo), float(hi), P, int(n_boot))


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """P(score of a positive > score of a negative) + 0.5 P(tie); None if a class is empty.

    Computed from average ranks (the Mann-Whitney U statistic divided by n_pos * n_neg).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"auroc: scores and labels must be equal-length 1-D, got {s.shape} and {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


@dataclass(frozen=True)
class PrecisionRecall:
    """Classifier `score > threshold` against labels: counts, precision, recall (None if 0/0)."""
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def precision_recall(scores: Sequence[float], labels: Sequence[bool], threshold: float = 0.5) -> PrecisionRecall:
    """Precision and recall of predicting positive when `score > threshold` (strictly)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"precision_recall: scores and labels must be equal-length 1-D, got {s.shape} and {y.shape}")
    pred = s > threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return PrecisionRecall(float(threshold), tp, fp, fn, tn, precision, recall)


@dataclass(frozen=True)
class Specificity:
    """Hack-rate drop per point of solve rate lost by an ablation (both in percentage points).

    `value = hack_drop / max(solve_drop, floor)` with `floor` one percentage point (0.01) by
    default. When the measured solve drop is below the floor (solving did not drop, or rose),
    `floored` is True and `value` is a lower bound of an unbounded ratio: the hack-rate drop in
    points, as if one point of solve rate had been lost. A negative value means the ablation
    raised the hack rate.
    """
    hack_drop: float
    solve_drop: float
    floor: float
    floored: bool
    value: float

    def to_dict(self) -> dict:
        return asdict(self)


def specificity(hack_on: float, hack_off: float, solve_on: float, solve_off: float,
                floor: float = 0.01) -> Specificity:
    """Specificity of an ablation from the ON (as trained) and OFF (ablated) rates."""
    if not floor > 0:
        raise ValueError(f"specificity: floor must be positive, got {floor}")
    hack_drop, solve_drop = hack_on - hack_off, solve_on - solve_off
    floored = solve_drop < floor
    return Specificity(hack_drop, solve_drop, floor, floored, hack_drop / max(solve_drop, floor))


@dataclass(frozen=True)
class MeanInterval:
    """Mean of `n` values with a Student-t 95% interval (lo = hi = mean when n == 1)."""
    mean: float
    lo: float
    hi: float
    n: int
    std: float

    def to_dict(self) -> dict:
        return asdict(self)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t975: df must be positive, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95  # Cornish-Fisher expansion; error below 1e-5 for df > 30
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def mean_interval(values: Sequence[float]) -> MeanInterval:
    """Mean across seeds with the t interval mean +- t975(n-1) * sd / sqrt(n)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("mean_interval: need a non-empty 1-D sequence")
    m = float(v.mean())
    if len(v) == 1:
        return MeanInterval(m, m, m, 1, 0.0)
    sd = float(v.std(ddof=1))
    half = t975(len(v) - 1) * sd / math.sqrt(len(v))
    return MeanInterval(m, m - half, m + half, len(v), sd)
