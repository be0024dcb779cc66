"""Statistics of the deployment-ablation evaluation, in plain numpy.

- `wilson`: a rate with its Wilson score 95% interval.
- `paired_bootstrap_diff`: the difference of two states' rates on the same problems, with a
  percentile interval from resampling problems (the unit that is shared between states).
- `auroc`: the Mann-Whitney area under the ROC curve, ties counted one half.
- `precision_recall`: precision and recall of `score > threshold` against binary labels.
- `mean_interval`: a mean across seeds with a Student-t 95% interval.
- `sign_flip_p`: the exact two-sided sign-flip permutation p-value of paired differences.
- `paired_comparison`: per-seed paired differences: mean, t interval, sign-flip p.
- `paired_t_power`, `min_detectable_difference`, `seeds_needed`: the power of a two-sided paired
  t test (alpha 0.05), computed exactly from the noncentral t distribution by quadrature.
- `empirical_rank`: where one ablation's effect falls among a null of matched-capacity controls.

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


# ---------------------------------------------------------------------------------------------
# Across seeds: paired differences, the sign-flip test, power

EXACT_MAX_N = 16  # sign_flip_p enumerates all 2^n sign patterns up to this many pairs
MC_FLIPS = 200_000  # above it: this many seeded random sign patterns


@dataclass(frozen=True)
class SignFlip:
    """Two-sided sign-flip permutation test of paired differences (H0: symmetric about zero)."""
    p: float
    n: int
    exact: bool  # True: all 2^n sign patterns enumerated; False: `patterns` random ones
    patterns: int

    def to_dict(self) -> dict:
        return asdict(self)


def sign_flip_p(diffs: Sequence[float], seed: int = 0) -> SignFlip:
    """P(|sum of s_i d_i| >= |sum of d_i|) over independent random signs s_i = +-1.

    Under H0 (each paired difference as likely positive as negative) every sign pattern is
    equally likely, so with n <= EXACT_MAX_N the p-value is the exact share of the 2^n patterns
    (the observed one included) whose absolute sum is at least the observed one. Above that,
    `MC_FLIPS` seeded random patterns give (1 + hits) / (1 + MC_FLIPS). Sums are compared with a
    relative tolerance of 1e-9 so that patterns equal up to rounding count as ties (>=).
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0 or not np.isfinite(d).all():
        raise ValueError(f"sign_flip_p: need a non-empty 1-D sequence of finite numbers, got {list(diffs)}")
    n = len(d)
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_MAX_N:
        codes = np.arange(2 ** n, dtype=np.int64)[:, None]  # (2^n, 1) one sign pattern per row
        signs = 1 - 2 * ((codes >> np.arange(n)) & 1)  # (2^n, n) of +-1
        sums = np.abs(signs @ d)  # (2^n,)
        return SignFlip(float((sums >= observed - tol).sum() / 2 ** n), n, True, 2 ** n)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, MC_FLIPS, 10_000):
        signs = rng.choice([-1.0, 1.0], size=(min(10_000, MC_FLIPS - start), n))  # (b, n)
        hits += int((np.abs(signs @ d) >= observed - tol).sum())
    return SignFlip((1 + hits) / (1 + MC_FLIPS), n, False, MC_FLIPS)


@dataclass(frozen=True)
class PairedComparison:
    """Per-seed paired differences (arm minus reference): their mean with a t 95% interval
    (None with one pair), SD (None with one pair) and the sign-flip p-value."""
    n: int
    mean: float
    lo: float | None
    hi: float | None
    sd: float | None
    p: float
    p_exact: bool
    diffs: tuple[float, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "diffs": list(self.diffs)}


def paired_comparison(diffs: Sequence[float]) -> PairedComparison:
    """Mean of paired differences with a t interval and the sign-flip p (see `sign_flip_p`)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired_comparison: need at least one paired difference")
    test = sign_flip_p(d)
    if len(d) == 1:
        return PairedComparison(1, float(d[0]), None, None, None, test.p, test.exact, (float(d[0]),))
    m = mean_interval(d)
    return PairedComparison(len(d), m.mean, m.lo, m.hi, m.std, test.p, test.exact, tuple(float(x) for x in d))


def _norm_sf(x: np.ndarray) -> np.ndarray:
    """1 - Phi(x), elementwise, accurate in the upper tail."""
    from math import erfc, sqrt

    return np.vectorize(lambda v: 0.5 * erfc(v / sqrt(2.0)))(x)


def paired_t_power(difference: float, sd: float, n: int) -> float:
    """Power of the two-sided paired t test at alpha 0.05 with `n` pairs, when the true mean
    difference is `difference` and the differences' SD is `sd`.

    Exact, up to quadrature error (< 1e-6): with df = n - 1, c = t975(df) and
    ncp = difference / (sd / sqrt(n)), the statistic is T = (Z + ncp) / S with S = sqrt(V / df),
    V ~ chi-square(df), so power = E_S[ P(Z > c S - ncp) + P(Z < -c S - ncp) ], integrated over
    the density of S on a fine grid.
    """
    if n < 2:
        raise ValueError(f"paired_t_power: need at least 2 pairs, got {n}")
    if not sd > 0:
        raise ValueError(f"paired_t_power: sd must be positive, got {sd}")
    df = n - 1
    c = t975(df)
    ncp = difference * math.sqrt(n) / sd
    s = np.linspace(1e-6, 1 + 12 / math.sqrt(df) + 6, 12001)  # (S,) S = sqrt(V/df); tail mass < 1e-12
    # density of S: 2 df s f_chi2(df s^2), in logs for large df
    log_f = (math.log(2 * df) + (df - 1) * np.log(s) + (df / 2 - 1) * math.log(df)
             - df * s * s / 2 - (df / 2) * math.log(2) - math.lgamma(df / 2))
    dens = np.exp(log_f)  # (S,)
    tail = _norm_sf(c * s - ncp) + _norm_sf(c * s + ncp)  # (S,) P(T > c) + P(T < -c) given S
    return float(_trapezoid(dens * tail, s) / _trapezoid(dens, s))


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum())


def min_detectable_difference(sd: float, n: int, power: float = 0.8) -> float | None:
    """Smallest true mean difference the two-sided paired t test (alpha 0.05) with `n` pairs
    detects with probability `power`, given the differences' SD; None with fewer than 2 pairs."""
    if n < 2:
        return None
    if not 0.05 < power < 1:
        raise ValueError(f"min_detectable_difference: power must be in (0.05, 1), got {power}")
    lo, hi = 0.0, sd
    while paired_t_power(hi, sd, n) < power:
        hi *= 2
    for _ in range(40):  # bisection to ~1e-12 of sd
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if paired_t_power(mid, sd, n) < power else (lo, mid)
    return hi


def seeds_needed(sd: float, difference: float = 0.2, power: float = 0.8, max_n: int = 10_000) -> int | None:
    """Fewest pairs (seeds) for which the two-sided paired t test (alpha 0.05) detects a true
    mean difference `difference` with probability `power`, given the SD; None if over `max_n`."""
    if not sd > 0:
        raise ValueError(f"seeds_needed: sd must be positive, got {sd}")
    lo, hi = 2, 2
    while paired_t_power(abs(difference), sd, hi) < power:
        if hi >= max_n:
            return None
        lo, hi = hi, min(2 * hi, max_n)
    while lo < hi:  # power increases with n: the first n that reaches it
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if paired_t_power(abs(difference), sd, mid) < power else (lo, mid)
    return hi


@dataclass(frozen=True)
class EmpiricalRank:
    """Where one effect falls among null effects: `at_most` nulls are <= it, of `n_null`;
    p = (1 + at_most) / (1 + n_null), the one-sided empirical p of an effect this low or lower."""
    effect: float
    n_null: int
    at_most: int
    p: float

    def to_dict(self) -> dict:
        return asdict(self)


def empirical_rank(effect: float, null: Sequence[float]) -> EmpiricalRank | None:
    """Rank of `effect` among `null` effects (lower = a larger drop); None with no null draw.

    With the ablation effect as state minus as trained, a hack expert that holds the behaviour
    gives a more negative effect than random matched-capacity ablations: a small p. The smallest
    p that m null draws can give is 1 / (m + 1).
    """
    v = np.asarray(null, dtype=np.float64)
    if len(v) == 0:
        return None
    at_most = int((v <= effect + 1e-12).sum())
    return EmpiricalRank(float(effect), len(v), at_most, (1 + at_most) / (1 + len(v)))
