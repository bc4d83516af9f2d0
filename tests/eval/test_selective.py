"""Risk-coverage, AURC and E-AURC against their definitions; DOCTOR against its formula."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnwatch.errors import InputError
from nnwatch.eval.selective import (
    at_flag,
    aurc,
    bootstrap_interval,
    excess_aurc,
    optimal_aurc,
    risk_coverage,
)


def brute_force_curve(scores, errors):
    """Risk after k accepted inputs, averaged over every order that sorts the scores (ties in any order)."""
    n = len(scores)
    curves = []
    for perm in itertools.permutations(range(n)):
        s = np.asarray(scores)[list(perm)]
        if (np.diff(s) < 0).any():
            continue
        e = np.asarray(errors, float)[list(perm)]
        curves.append(np.cumsum(e) / np.arange(1, n + 1))
    return np.mean(curves, axis=0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=6))
def test_risk_is_the_expectation_over_tie_orders(pairs):
    scores = np.array([p[0] for p in pairs], float)
    errors = np.array([p[1] for p in pairs])
    coverage, risk = risk_coverage(scores, errors)
    np.testing.assert_allclose(risk, brute_force_curve(scores, errors), atol=1e-12)
    np.testing.assert_allclose(coverage, np.arange(1, len(pairs) + 1) / len(pairs))
    assert aurc(scores, errors) == pytest.approx(brute_force_curve(scores, errors).mean())


def test_optimal_aurc_rejects_every_error_first():
    rng = np.random.default_rng(0)
    errors = rng.random(500) < 0.1
    m, n = errors.sum(), len(errors)
    # errors last: risk 0 until n - m accepted, then (k - (n - m)) / k
    k = np.arange(1, n + 1)
    want = np.where(k <= n - m, 0.0, (k - (n - m)) / k).mean()
    assert optimal_aurc(errors) == pytest.approx(want)
    assert excess_aurc(errors.astype(float), errors) == pytest.approx(0.0)
    # Geifman et al.'s continuous form r + (1 - r) ln(1 - r) is the large-N limit
    r = m / n
    assert optimal_aurc(errors) == pytest.approx(r + (1 - r) * np.log(1 - r), abs=2e-3)
    # a random order's AURC is the error rate on average; the worst order is at the top
    assert aurc(rng.random(n), errors) == pytest.approx(r, abs=0.03)
    assert aurc(-errors.astype(float), errors) > aurc(rng.random(n), errors)


def test_at_flag_counts_what_is_let_through():
    flags = np.array([1, 0, 0, 1, 0, 0], bool)
    errors = np.array([1, 1, 0, 0, 0, 0], bool)
    got = at_flag(flags, errors)
    assert got == {"coverage": 4 / 6, "selective_risk": 1 / 4, "errors_caught": 1 / 2, "risk": 2 / 6}
    assert np.isnan(at_flag(np.ones(3, bool), np.zeros(3, bool))["selective_risk"])


def test_bootstrap_interval_covers_the_mean_of_a_known_distribution():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(100):
        x = rng.normal(size=200)
        lo, hi = bootstrap_interval(np.mean, x, rounds=300, seed=trial)
        hits += lo <= 0.0 <= hi
    assert 88 <= hits <= 100  # a 95% interval: about 95 of 100


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="NaN"):
        aurc(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(InputError, match="one non-zero length"):
        aurc(np.array([0.1]), np.array([0, 1]))
    with pytest.raises(InputError, match="booleans"):
        aurc(np.array([0.1, 0.2]), np.array([0, 2]))


def test_doctor_follows_its_formula():
    from nnwatch.kernels.layout import layer_offsets
    from nnwatch.monitor.detector import BatchView
    from nnwatch.monitor.registry import make_detector
    from nnwatch.profile.builder import ProfileBuilder

    rng = np.random.default_rng(2)
    layers = [rng.normal(size=(60, 4)).astype(np.float32)]
    labels = rng.integers(0, 3, 60)
    profile = ProfileBuilder([4], 3).update_ranges(layers, labels).finish_ranges().update_sections(
        layers, labels).build("d" * 64, ["a"])
    logits = (rng.normal(size=(7, 3)) * 4).astype(np.float32)
    logits[0] = [1e4, 0, 0]  # a confident input: no overflow
    for t in (1.0, 2.5):
        det = make_detector("doctor", temperature=t).fit(profile)
        got = det.score(BatchView(logits, np.zeros(7 * 4, np.float32), layer_offsets([4])))
        z = logits.astype(np.float64) / t
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p ** 2).sum(axis=1)
        np.testing.assert_allclose(got, (1 - g) / g, rtol=1e-9, atol=1e-12)
    assert got[0] == pytest.approx(0.0)
