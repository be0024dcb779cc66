import itertools
import math

import numpy as np
import pytest

from evil_moe.stats import (
    Z95,
    auroc,
    mean_interval,
    paired_bootstrap_diff,
    precision_recall,
    specificity,
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


def test_specificity_conventions():
    s = specificity(hack_on=0.8, hack_off=0.2, solve_on=0.30, solve_off=0.20)
    assert s.value == pytest.approx(6.0) and not s.floored
    assert (s.hack_drop, s.solve_drop) == (pytest.approx(0.6), pytest.approx(0.1))
    # solve rate did not drop: the loss is floored at one point (0.01) and flagged
    s = specificity(hack_on=0.8, hack_off=0.2, solve_on=0.30, solve_off=0.35)
    assert s.floored and s.floor == 0.01 and s.value == pytest.approx(60.0)
    # a drop just under the floor is floored too; a custom floor is honoured
    assert specificity(0.5, 0.1, 0.3, 0.295).value == pytest.approx(40.0)
    assert specificity(0.5, 0.1, 0.3, 0.2, floor=0.2).value == pytest.approx(2.0)
    # the ablation raised hacking: negative
    assert specificity(0.2, 0.4, 0.3, 0.1).value == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        specificity(0.2, 0.4, 0.3, 0.1, floor=0.0)


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
