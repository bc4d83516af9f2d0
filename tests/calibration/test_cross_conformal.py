"""Cross-conformal (CV+) p-values: the definition by brute force, the guarantee by simulation."""

import numpy as np
import pytest

from nnwatch.calibration.cross_conformal import (
    cross_conformal_p_values,
    false_alarm_bound,
    fold_assignment,
)
from nnwatch.errors import InputError
from nnwatch.heads.logistic import fit_logistic


def brute_force_p(fold_calibration, fold_scores):
    """Vovk's cross-conformal p-value, one comparison at a time."""
    n = sum(len(c) for c in fold_calibration)
    out = []
    for row in fold_scores:
        count = 0
        for k, cal in enumerate(fold_calibration):
            s = row[k] if np.isfinite(row[k]) else np.inf
            for r in cal:
                r = r if np.isfinite(r) else np.inf
                count += r >= s
        out.append((1 + count) / (n + 1))
    return np.array(out)


def test_p_values_match_brute_force_with_ties_and_non_finite():
    rng = np.random.default_rng(0)
    cal = [rng.integers(0, 5, size=m).astype(float) for m in (7, 6, 6)]
    cal[1][0] = np.nan
    scores = rng.integers(-1, 7, size=(40, 3)).astype(float)
    scores[3, 1], scores[5, 2] = np.nan, -np.inf
    p, flags = cross_conformal_p_values(cal, scores, alpha=0.2)
    np.testing.assert_allclose(p, brute_force_p(cal, scores))
    np.testing.assert_array_equal(flags, p <= 0.2)


def test_folds_are_balanced_and_cover_every_sample():
    fold = fold_assignment(103, 5, seed=3)
    assert sorted(np.bincount(fold)) == [20, 20, 21, 21, 21]
    with pytest.raises(InputError, match="folds"):
        fold_assignment(3, 5)
    with pytest.raises(InputError, match="folds"):
        fold_assignment(10, 1)


def test_bound_is_the_theorem():
    # Barber et al. 2021, Theorem 4: 2 alpha + min(2(1 - 1/K)/(n/K + 1), (1 - K/n)/(K + 1))
    assert false_alarm_bound(0.05, 300, 5) == pytest.approx(0.1 + min(1.6 / 61, (1 - 5 / 300) / 6))


def simulate(rule, alpha, reps=150, n_clean=60, n_unsafe=60, dim=60, tests=100, folds=5, l2=1e-3, seed=0):
    """Realized false-alarm rate on fresh clean inputs, over fresh training sets.

    Clean inputs ~ N(0, I), unsafe training inputs ~ N(0.6, I): a logistic probe in 60
    dimensions on 120 samples, weakly regularized, overfits its training samples.
    """
    rng = np.random.default_rng(seed)
    flagged = []
    for _ in range(reps):
        clean = rng.normal(size=(n_clean, dim))
        unsafe = rng.normal(0.6, 1.0, size=(n_unsafe, dim))
        fresh = rng.normal(size=(tests, dim))
        if rule == "cross":
            fold = fold_assignment(n_clean, folds, seed=int(rng.integers(1 << 30)))
            cal, cols = [], []
            for k in range(folds):
                keep = fold != k
                x = np.concatenate([clean[keep], unsafe])
                y = np.r_[np.zeros(keep.sum()), np.ones(n_unsafe)].astype(np.int64)
                model = fit_logistic(x, y, l2=l2)
                cal.append(model.decision(clean[~keep]))
                cols.append(model.decision(fresh))
            _, f = cross_conformal_p_values(cal, np.stack(cols, 1), alpha)
        else:  # "in-sample": fit on everything, calibrate on the same clean samples (wrong)
            x = np.concatenate([clean, unsafe])
            y = np.r_[np.zeros(n_clean), np.ones(n_unsafe)].astype(np.int64)
            model = fit_logistic(x, y, l2=l2)
            _, f = cross_conformal_p_values([model.decision(clean)], model.decision(fresh)[:, None], alpha)
        flagged.append(f.mean())
    flagged = np.array(flagged)
    return flagged.mean(), flagged.std(ddof=1) / np.sqrt(reps)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_cross_fitting_keeps_its_guarantee_where_in_sample_calibration_fails(alpha):
    rate, se = simulate("cross", alpha)
    assert rate <= false_alarm_bound(alpha, 60, 5) + 3 * se  # the theorem
    assert rate <= 1.5 * alpha + 3 * se  # and near alpha, as the docs say for a stable fit
    wrong, wrong_se = simulate("in-sample", alpha)
    assert wrong - 3 * wrong_se > 2 * alpha  # the simulation tells a wrong rule: more than twice the target


def test_a_detector_with_nothing_fitted_is_split_conformal():
    # every fold scores with the same function: the rate is at most alpha
    rng = np.random.default_rng(5)
    alpha, rates = 0.1, []
    for _ in range(400):
        clean = rng.normal(size=49)
        fold = fold_assignment(49, 7, seed=int(rng.integers(1 << 30)))
        fresh = rng.normal(size=50)
        _, f = cross_conformal_p_values([clean[fold == k] for k in range(7)], np.repeat(fresh[:, None], 7, 1), alpha)
        rates.append(f.mean())
    assert np.mean(rates) <= alpha + 3 * np.std(rates, ddof=1) / np.sqrt(len(rates))
    assert np.mean(rates) >= 0.8 * alpha  # and not far below: m/(n+1) = 5/50
