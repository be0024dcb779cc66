import itertools
import math

import numpy as np
import pytest

from evil_moe.stats import (
    Z95,
    auroc,
    empirical_rank,
    mean_interval,
    min_detectable_difference,
    paired_bootstrap_diff,
    paired_comparison,
    paired_t_power,
    precision_recall,
    seeds_needed,
    sign_flip_p,
    t975,
    wilson,
    wilson_interval,
)


def _wilson_by_quadratic(k, n, z=Z95):
    """Independent form: the bounds are the roots p of (p - k/n)^2 = z^2 p (1 - p) / n."""
    ph, c = k / n, z * z / n
    roots = np.roots([1 + c, -(2 * ph + c), ph * ph])
    return float(min(roots.real)), float(max(roots.real))


@pytest.mark.parametrize("k,n,expected", [
    (0, 10, (0.0, 0.277533)),
    (5, 10, (0.236593, 0.763407)),
    (10, 10, (0.722467, 1.0)),
])
def test_wilson_known_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(expected[0], abs=1e-4) and hi == pytest.approx(expected[1], abs=1e-4)
    qlo, qhi = _wilson_by_quadratic(k, n)
    assert lo == pytest.approx(max(qlo, 0.0), abs=1e-9) and hi == pytest.approx(min(qhi, 1.0), abs=1e-9)


def test_wilson_matches_quadratic_roots_on_a_grid():
    for n in (1, 3, 17, 200):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            qlo, qhi = _wilson_by_quadratic(k, n)
            assert lo == pytest.approx(max(qlo, 0.0), abs=1e-9)
            assert hi == pytest.approx(min(qhi, 1.0), abs=1e-9)
            assert lo <= k / n <= hi


def test_wilson_rate_fields_and_bad_input():
    r = wilson(3, 12)
    assert (r.k, r.n, r.rate) == (3, 12, 0.25) and r.to_dict()["lo"] == r.lo
    with pytest.raises(ValueError, match="k=5, n=4"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_bootstrap_degenerate_when_every_problem_moves_the_same():
    # every problem: 8/10 on a, 3/10 on b -> every replicate differs by exactly -0.5
    d = paired_bootstrap_diff([8] * 6, [10] * 6, [3] * 6, [10] * 6, n_boot=500, seed=1)
    assert d.estimate == pytest.approx(-0.5) and d.lo == pytest.approx(-0.5) and d.hi == pytest.approx(-0.5)
    assert (d.n_problems, d.n_boot) == (6, 500)


def test_bootstrap_is_paired_over_problems():
    # problems differ wildly in difficulty, but each problem's rate is the same in both states:
    # a paired bootstrap gives exactly zero width; an unpaired one would not.
    ka = [0, 10, 2, 9, 5, 1, 10, 0]
    d = paired_bootstrap_diff(ka, [10] * 8, ka, [10] * 8, n_boot=1000, seed=0)
    assert (d.estimate, d.lo, d.hi) == (0.0, 0.0, 0.0)


def test_bootstrap_distribution_of_a_half_and_half_case():
    # P problems, half move by +1 (0/1 -> 1/1) and half by 0: a replicate's difference is
    # Binomial(P, 1/2) / P, with mean 1/2 and sd 1/(2 sqrt(P)); 95% interval about 0.5 +- 1.96 sd.
    P = 50
    ka, na = [0] * P, [1] * P
    kb = [1] * (P // 2) + [0] * (P // 2)
    d = paired_bootstrap_diff(ka, na, kb, na, n_boot=20000, seed=3)
    sd = 1 / (2 * math.sqrt(P))
    assert d.estimate == 0.5
    assert d.lo == pytest.approx(0.5 - Z95 * sd, abs=0.02)
    assert d.hi == pytest.approx(0.5 + Z95 * sd, abs=0.02)


def test_bootstrap_pools_unequal_counts_and_is_seeded():
    d = paired_bootstrap_diff([1, 4], [2, 8], [0, 8], [1, 9], n_boot=10)
    assert d.estimate == pytest.approx(8 / 10 - 5 / 10)
    rng = np.random.default_rng(0)
    ka, kb = rng.integers(0, 11, 30), rng.integers(0, 11, 30)
    args = (ka, [10] * 30, kb, [10] * 30)
    d = paired_bootstrap_diff(*args, n_boot=300, seed=7)
    assert d == paired_bootstrap_diff(*args, n_boot=300, seed=7)
    assert d != paired_bootstrap_diff(*args, n_boot=300, seed=8)
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap_diff([1], [2], [1, 1], [2, 2])
    with pytest.raises(ValueError, match="0 <= k <= n"):
        paired_bootstrap_diff([3], [2], [1], [2])


def _auroc_brute(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    total = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


def test_auroc_matches_brute_force_pair_count_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 5, size=n).astype(float)  # many ties
        labels = rng.random(n) < 0.4
        labels[0], labels[1] = True, False
        assert auroc(scores, labels) == pytest.approx(_auroc_brute(scores, labels), abs=1e-12), trial


def test_auroc_extremes_and_missing_class():
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [1, 0, 0]) == 0.5
    assert auroc([0.1, 0.2], [1, 1]) is None


def test_precision_recall_at_operating_point():
    scores = [0.9, 0.6, 0.5, 0.4, 0.7, 0.1]
    labels = [1, 1, 1, 0, 0, 0]
    pr = precision_recall(scores, labels, threshold=0.5)  # 0.5 itself is not "> 0.5"
    assert (pr.tp, pr.fp, pr.fn, pr.tn) == (2, 1, 1, 2)
    assert pr.precision == pytest.approx(2 / 3) and pr.recall == pytest.approx(2 / 3)
    none = precision_recall([0.1, 0.2], [0, 0])
    assert none.precision is None and none.recall is None


def test_t_quantiles_and_mean_interval():
    assert t975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t975(10) == pytest.approx(2.2281, abs=1e-4)
    assert t975(31) == pytest.approx(2.0395134, abs=1e-5)
    assert t975(120) == pytest.approx(1.9799304, abs=1e-5)
    m = mean_interval([1.0, 2.0, 3.0])  # sd 1, half width t975(2) / sqrt(3)
    assert m.mean == 2.0 and m.std == pytest.approx(1.0)
    assert m.hi - m.mean == pytest.approx(4.302652730 / math.sqrt(3))
    one = mean_interval([0.4])
    assert (one.lo, one.hi, one.n) == (0.4, 0.4, 1)


def test_t_quantiles_against_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 29, 30, 31, 45, 100, 1000):
        assert t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-5)


# -- across seeds -----------------------------------------------------------------------------

def _sign_flip_brute(diffs):
    """Independent enumeration: every +-1 pattern from itertools, in exact rational arithmetic."""
    from fractions import Fraction

    d = [Fraction(x).limit_denominator(10**6) for x in diffs]
    observed = abs(sum(d))
    patterns = list(itertools.product((1, -1), repeat=len(d)))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed for signs in patterns)
    return hits / len(patterns)


def test_sign_flip_hand_values():
    assert sign_flip_p([0.3, 0.2, 0.1]).p == pytest.approx(2 / 8)  # only all-plus and all-minus reach 0.6
    assert sign_flip_p([0.5]).p == 1.0  # one pair: both patterns are as extreme
    assert sign_flip_p([1.0, -1.0]).p == 1.0  # observed sum 0: every pattern is as extreme
    t = sign_flip_p([-0.35, -0.16, -0.05, -0.09, -0.46, -0.37])  # all six negative: 2 / 64
    assert (t.p, t.exact, t.patterns) == (pytest.approx(2 / 64), True, 64)
    with pytest.raises(ValueError):
        sign_flip_p([])


def test_sign_flip_matches_brute_force_enumeration():
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 11))
        diffs = np.round(rng.normal(0.1, 0.3, n), 2)  # rounded: ties between patterns happen
        if trial % 5 == 0:
            diffs = rng.choice([-0.25, 0.25, 0.5], n)  # many exact ties
        assert sign_flip_p(diffs).p == pytest.approx(_sign_flip_brute(diffs), abs=1e-12), (trial, diffs)


def test_sign_flip_monte_carlo_above_sixteen_pairs():
    # d = +-1 with a plus signs and b minus: a random pattern's sum is n - 2K, K ~ Binomial(n, 1/2),
    # so the exact p is P(|n - 2K| >= |a - b|), from binomial coefficients.
    a, b = 15, 5
    n = a + b
    exact = sum(math.comb(n, k) for k in range(n + 1) if abs(n - 2 * k) >= a - b) / 2 ** n
    t = sign_flip_p([1.0] * a + [-1.0] * b, seed=3)
    assert not t.exact and t.n == n
    se = math.sqrt(exact * (1 - exact) / t.patterns)
    assert abs(t.p - exact) < 5 * se  # 5 SE of the Monte Carlo share (seeded, so no flake)
    assert t == sign_flip_p([1.0] * a + [-1.0] * b, seed=3)


def test_paired_comparison_hand_values():
    c = paired_comparison([-0.35, -0.16, -0.05])
    assert c.n == 3 and c.mean == pytest.approx(-0.56 / 3)
    sd = math.sqrt(sum((x + 0.56 / 3) ** 2 for x in (-0.35, -0.16, -0.05)) / 2)
    assert c.sd == pytest.approx(sd)
    assert c.hi - c.mean == pytest.approx(t975(2) * sd / math.sqrt(3))
    assert c.p == pytest.approx(0.25) and c.p_exact
    one = paired_comparison([0.2])
    assert (one.lo, one.hi, one.sd, one.p) == (None, None, None, 1.0)


def _simulated_power(difference, sd, n, sims, seed):
    """Share of simulated experiments whose paired t test rejects at two-sided 0.05."""
    rng = np.random.default_rng(seed)
    d = rng.normal(difference, sd, size=(sims, n))  # (sims, n) per-seed differences
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    return float((np.abs(t) > t975(n - 1)).mean())


@pytest.mark.parametrize("n", [3, 5, 8])
def test_power_formula_against_simulation(n):
    sims = 40_000
    se = math.sqrt(0.8 * 0.2 / sims)  # SE of a simulated power near 0.8: 0.002
    sd = 0.155
    mdd = min_detectable_difference(sd, n)
    # 4.5 SE: the seeded simulation's sampling error alone; the formula itself is exact
    assert _simulated_power(mdd, sd, n, sims, seed=n) == pytest.approx(0.8, abs=4.5 * se)
    assert _simulated_power(0.0, sd, n, sims, seed=100 + n) == pytest.approx(0.05, abs=4.5 * math.sqrt(0.05 * 0.95 / sims))
    assert paired_t_power(mdd, sd, n) == pytest.approx(0.8, abs=1e-9)


def test_power_against_noncentral_t_when_scipy_is_there():
    scipy_stats = pytest.importorskip("scipy.stats")
    for n in (2, 3, 6, 15, 30):
        for diff in (0.05, 0.15, 0.3):  # scipy's nct returns nan where the power is ~1
            df, ncp = n - 1, diff * math.sqrt(n) / 0.3
            c = scipy_stats.t.ppf(0.975, df)
            ref = scipy_stats.nct.sf(c, df, ncp) + scipy_stats.nct.cdf(-c, df, ncp)
            assert paired_t_power(diff, 0.3, n) == pytest.approx(ref, abs=2e-6), (n, diff)


def test_min_detectable_difference_and_seeds_needed_agree():
    sd = 0.155
    assert min_detectable_difference(sd, 1) is None
    mdds = [min_detectable_difference(sd, n) for n in range(2, 12)]
    assert all(a > b for a, b in zip(mdds, mdds[1:], strict=False))  # more seeds, smaller difference
    n = seeds_needed(sd, 0.2)
    assert paired_t_power(0.2, sd, n) >= 0.8 > paired_t_power(0.2, sd, n - 1)
    assert min_detectable_difference(sd, n) <= 0.2 < min_detectable_difference(sd, n - 1)
    assert n == 7  # the BACKGROUND's "about 7 to 8 paired seeds" at SD 0.155
    assert seeds_needed(1.0, 0.001, max_n=50) is None
    # the effect scales with sd: the same n detects twice the difference at twice the sd
    assert min_detectable_difference(2 * sd, 5) == pytest.approx(2 * min_detectable_difference(sd, 5), rel=1e-9)


def test_empirical_rank_hand_values():
    r = empirical_rank(-0.3, [-0.25, -0.1, 0.0, -0.3])  # ties count as at least as extreme
    assert (r.n_null, r.at_most, r.p) == (4, 1, pytest.approx(2 / 5))
    assert empirical_rank(-0.5, [-0.25, -0.1]).p == pytest.approx(1 / 3)  # below every null: 1/(m+1)
    assert empirical_rank(0.2, [-0.25, -0.1]).p == 1.0
    assert empirical_rank(0.0, []) is None
