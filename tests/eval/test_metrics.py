"""Metrics against brute-force definitions and known values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnwatch.errors import InputError
from nnwatch.eval.metrics import aupr, auroc, fpr_at_tpr, roc_curve, tpr_at_fpr

scores = st.lists(st.integers(0, 6).map(float), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(scores, scores)
def test_auroc_is_pairwise_probability(neg, pos):
    neg, pos = np.array(neg), np.array(pos)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(neg, pos) == pytest.approx(brute, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(scores, scores)
def test_thresholded_rates_by_brute_force(neg, pos):
    neg, pos = np.array(neg), np.array(pos)
    thresholds = np.unique(np.r_[neg, pos, np.inf])
    pts = [((neg >= t).mean(), (pos >= t).mean()) for t in thresholds]
    assert fpr_at_tpr(neg, pos, 0.95) == pytest.approx(min(f for f, t in pts if t >= 0.95))
    assert tpr_at_fpr(neg, pos, 0.05) == pytest.approx(max(t for f, t in pts if f <= 0.05))


def test_known_values():
    assert auroc([0, 1, 2], [3, 4]) == 1.0
    assert auroc([3, 4], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert aupr([0, 1], [2, 3]) == pytest.approx(1.0)
    assert auroc([0.0, 1.0], [np.inf, 0.5]) == 0.75
    fpr, tpr, _ = roc_curve([0, 1], [1, 2])
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1


def test_aupr_matches_average_precision_definition():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(size=50), rng.normal(1, 1, size=30)
    allv = np.r_[neg, pos]
    lab = np.r_[np.zeros(50), np.ones(30)]
    order = np.argsort(-allv)
    tp = np.cumsum(lab[order])
    prec = tp / np.arange(1, 81)
    ap = (prec * lab[order]).sum() / 30  # no ties in continuous data
    assert aupr(neg, pos) == pytest.approx(ap, rel=1e-12)


def test_needs_both_classes():
    with pytest.raises(InputError, match="both classes"):
        auroc([], [1.0])
    with pytest.raises(InputError, match="NaN"):
        auroc([np.nan], [1.0])


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (52, 1000), (100, 2000), (1, 1)])
def test_binomial_interval_is_clopper_pearson(k, n):
    from scipy.stats import beta

    from nnwatch.eval.metrics import binomial_interval

    low, high = binomial_interval(k, n)
    assert low == pytest.approx(beta.ppf(0.025, k, n - k + 1) if k else 0.0, abs=1e-9)
    assert high == pytest.approx(beta.ppf(0.975, k + 1, n - k) if k < n else 1.0, abs=1e-9)


def test_binomial_quantile_and_false_alarm_check():
    from scipy.stats import binom

    from nnwatch.eval.metrics import binomial_quantile, false_alarm_check

    for n, p in ((100, 0.05), (2000, 0.05), (670, 0.01)):
        assert binomial_quantile(0.975, n, p) == int(binom.ppf(0.975, n, p))
    flags = np.zeros(2000, bool)
    flags[:130] = True  # 6.5%: above what a 5% rule gives 97.5% of the time on 2,000 samples
    check = false_alarm_check(flags, 0.05)
    assert check["rate"] == 0.065 and not check["within_target"]
    assert false_alarm_check(flags[:1000] & False, 0.05)["within_target"]


def test_conformal_false_alarm_range_covers_simulated_calibrations():
    # Realized rates of real calibrations (library code) fall in the simulated interval 95% of the time.
    from nnwatch.calibration.groups import calibration_from_scores, compile_conformal
    from nnwatch.eval.metrics import conformal_false_alarm_range
    from nnwatch.kernels.conformal import conformal_p_values

    rng = np.random.default_rng(0)
    sizes, tests = [40, 80], [300, 200]
    low, high = conformal_false_alarm_range(sizes, tests, 0.05)
    outside = 0
    for _ in range(400):
        cal_c = np.repeat([0, 1], sizes)
        test_c = np.repeat([0, 1], tests)
        cal = calibration_from_scores(["s"], rng.random((cal_c.size, 1)), cal_c, 2, 0.05, 20, warn=False)
        tables, _ = compile_conformal(cal, ["s"], 2)
        _, flags = conformal_p_values(rng.random((test_c.size, 1)), test_c, tables)
        rate = flags.mean()
        outside += rate < low or rate > high
    assert outside / 400 < 0.09  # nominal 5%; the interval is not too narrow
    assert high - low > 0.03  # and calibration noise widens it beyond the binomial one
