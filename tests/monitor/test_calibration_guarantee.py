"""The calibration's promise, checked by simulation: P(false alarm) <= fpr on exchangeable data.

Each split draws calibration and test scores from one distribution, calibrates through the
library (calibration_from_scores -> compile_conformal -> conformal_p_values) and records the
realized false-alarm rate on the test scores. The mean over many splits must not exceed the
target beyond three standard errors. The old rule (numpy quantile, method="higher") is run
through the same check and fails it: the test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.calibration.groups import (
    CalibrationWarning,
    calibration_from_scores,
    calibration_groups,
    class_thresholds,
    compile_conformal,
    min_samples_for,
)
from nnwatch.errors import InputError
from nnwatch.kernels.conformal import allowed_count, conformal_p_values

ALPHA = 0.05
SPLITS = 1500
N_TEST = 200


def library_rule(cal_scores, cal_classes, test_scores, test_classes, n_classes, min_class_samples=20):
    cal = calibration_from_scores(["s"], cal_scores[:, None], cal_classes, n_classes, ALPHA, min_class_samples,
                                  warn=False)
    tables, _ = compile_conformal(cal, ["s"], n_classes)
    p, flags = conformal_p_values(test_scores[:, None], test_classes, tables)
    np.testing.assert_array_equal(flags[:, 0], p[:, 0] <= ALPHA)
    return flags[:, 0]


def old_quantile_rule(cal_scores, cal_classes, test_scores, test_classes, n_classes, min_class_samples=20):
    threshold = np.quantile(cal_scores, 1 - ALPHA, method="higher")
    return test_scores > threshold


def realized_rates(rule, n, seed, n_classes=1, shift=None):
    rng = np.random.default_rng(seed)
    shift = np.zeros(n_classes) if shift is None else np.asarray(shift)
    rates = np.empty((SPLITS, n_classes))
    for i in range(SPLITS):
        cal_classes = np.repeat(np.arange(n_classes), n)
        test_classes = np.repeat(np.arange(n_classes), N_TEST)
        cal = rng.standard_normal(cal_classes.size) + shift[cal_classes]
        test = rng.standard_normal(test_classes.size) + shift[test_classes]
        flags = rule(cal, cal_classes, test, test_classes, n_classes, min_class_samples=min(20, n))
        rates[i] = [flags[test_classes == c].mean() for c in range(n_classes)]
    return rates


@pytest.mark.parametrize("n", [20, 50, 200])
def test_realized_false_alarms_stay_below_the_target(n):
    rates = realized_rates(library_rule, n, seed=n)
    assert rates.mean() <= ALPHA + 3 * rates.std(ddof=1) / np.sqrt(SPLITS)
    # and the expected rate is the exact conformal one, m / (n + 1): not needlessly conservative
    assert abs(rates.mean() - allowed_count(n, ALPHA) / (n + 1)) < 4 * rates.std(ddof=1) / np.sqrt(SPLITS)


@pytest.mark.parametrize("n, expected", [(21, 2 / 22), (50, 3 / 51)])
def test_the_old_quantile_rule_fails_the_same_check(n, expected):
    rates = realized_rates(old_quantile_rule, n, seed=100 + n)
    assert rates.mean() > ALPHA + 3 * rates.std(ddof=1) / np.sqrt(SPLITS)
    assert abs(rates.mean() - expected) < 4 * rates.std(ddof=1) / np.sqrt(SPLITS)


def test_each_class_keeps_the_target_when_classes_differ():
    # Class 2's clean scores run higher: one global threshold would over-flag it.
    rates = realized_rates(library_rule, 40, seed=7, n_classes=3, shift=[0.0, 0.5, 2.0])
    assert (rates.mean(axis=0) <= ALPHA + 3 * rates.std(axis=0, ddof=1) / np.sqrt(SPLITS)).all()

    def one_group(cal, cal_classes, test, test_classes, n_classes, min_class_samples):
        return library_rule(cal, np.zeros_like(cal_classes), test, np.zeros_like(test_classes), 1)

    pooled = realized_rates(one_group, 40, seed=7, n_classes=3, shift=[0.0, 0.5, 2.0])
    assert pooled.mean(axis=0)[2] > 2 * ALPHA  # without per-class groups, class 2 is over-flagged


def test_pooled_classes_keep_the_target_as_a_group():
    # Classes 2 and 3 have 12 calibration samples each: below 20, they share one pooled group.
    rng = np.random.default_rng(3)
    rates = []
    for _ in range(SPLITS):
        cal_classes = np.repeat([0, 1, 2, 3], [60, 60, 12, 12])
        test_classes = np.repeat([0, 1, 2, 3], N_TEST)
        shift = np.array([0.0, 0.0, 1.5, 1.5])
        cal = rng.standard_normal(cal_classes.size) + shift[cal_classes]
        test = rng.standard_normal(test_classes.size) + shift[test_classes]
        flags = library_rule(cal, cal_classes, test, test_classes, 4)
        rates.append(flags[test_classes >= 2].mean())
    rates = np.array(rates)
    assert rates.mean() <= ALPHA + 3 * rates.std(ddof=1) / np.sqrt(SPLITS)


def test_groups_and_their_report():
    classes = np.repeat([0, 1, 2, 3], [60, 60, 12, 12])
    g = calibration_groups(classes, 5, ALPHA, 20)
    assert g.own == [0, 1] and g.pooled == [2, 3, 4] and not g.pooled_is_global
    assert "share one threshold over their 24 pooled samples" in g.describe()
    small = calibration_groups(np.repeat([0, 1, 2], [60, 5, 5]), 3, ALPHA, 20)
    assert small.pooled_is_global and "not guaranteed" in small.describe()
    with pytest.warns(CalibrationWarning, match="classes 1 \\(5\\), 2 \\(5\\)"):
        calibration_from_scores(["s"], np.random.default_rng(0).random((70, 1)), np.repeat([0, 1, 2], [60, 5, 5]), 3)
    # min_class_samples below what the target rate needs is raised to it
    assert calibration_groups(classes, 4, ALPHA, 1).n_min == min_samples_for(ALPHA) == 19


def test_thresholds_are_the_conformal_order_statistic():
    rng = np.random.default_rng(0)
    scores = rng.random(37)
    cal = calibration_from_scores(["s"], scores[:, None], np.zeros(37, np.int64), 1, ALPHA, 20)
    k = int(np.ceil((37 + 1) * (1 - ALPHA)))  # the k-th smallest
    assert class_thresholds(cal, 1)[0, 0] == np.sort(scores)[k - 1]


def test_flag_equals_p_at_most_alpha_with_ties():
    rng = np.random.default_rng(5)
    for alpha in (0.01, 0.05, 0.1, 0.2, 1 / 3):
        n = int(rng.integers(5, 300))
        scores = rng.integers(0, 6, (n, 2)).astype(float)  # heavy ties
        classes = rng.integers(0, 2, n)
        cal = calibration_from_scores(["a", "b"], scores, classes, 2, alpha, 1, warn=False)
        tables, _ = compile_conformal(cal, ["a", "b"], 2)
        test = rng.integers(-1, 8, (500, 2)).astype(float)
        test[0, 0] = np.nan
        p, flags = conformal_p_values(test, rng.integers(0, 2, 500), tables)
        np.testing.assert_array_equal(flags, p <= alpha)
        assert p[0, 0] == 1 / (tables.ends[0] - tables.starts[0] + 1) or p[0, 0] > 0  # NaN counts as +inf


def test_too_few_or_unclean_calibration_samples_are_refused():
    with pytest.raises(InputError, match="at least 19 are needed"):
        calibration_from_scores(["s"], np.zeros((10, 1)), np.zeros(10, np.int64), 1, ALPHA)
    scores = np.zeros((40, 1))
    scores[3] = np.inf
    with pytest.raises(InputError, match="1 calibration samples have non-finite scores"):
        calibration_from_scores(["s"], scores, np.zeros(40, np.int64), 1, ALPHA)
