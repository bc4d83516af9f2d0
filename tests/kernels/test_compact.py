"""Compact coverage tables: exactly the full tables of the outward-rounded profile, and small.

The definition checked: ``compile_compact_tables(p)`` scores every sample exactly as the
full tables ``rounded_tables(p)`` do (the profile's ranges rounded outward, point ranges
keeping a point's section and unit; all six scores, NaN/Inf included, at range ends and
section boundaries), and the rounded ranges contain the profile's and exceed them by at most
one grid step. (The 1,000-class memory check is tests/monitor/test_compact_monitor.py.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels.compact import GRID, CompactTables, decode
from nnwatch.kernels.coverage import coverage_scores, make_scratch
from nnwatch.kernels.reference import coverage_scores as reference_scores
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import compile_compact_tables, compile_tables, rounded_edges, rounded_tables

SIZES = (20, 31, 7)


def make_profile(rng, n_classes=6, k_sections=10, n=600):
    builder = ProfileBuilder(SIZES, n_classes, k_sections=k_sections, k_top=3)
    labels = rng.integers(0, n_classes, n)
    layers = [np.maximum(rng.normal(labels[:, None] * 0.3, 1.0 + 3 * i, (n, s)), 0).astype(np.float32)
              for i, s in enumerate(SIZES)]
    layers[1][:, 0] = 2.5  # a constant neuron: a point range
    layers[2] *= 1e4  # another scale
    builder.update_ranges(layers, labels).finish_ranges().update_sections(layers, labels)
    return builder.build("0" * 64, [f"l{i}" for i in range(len(SIZES))]), layers, labels


def probes(profile, rng, per_class=40):
    """Samples with values at range ends, one float32 step either side, section boundaries, NaN, Inf."""
    s = profile.sections
    c = profile.n_classes
    lo, hi = s.edges_lo[:c], s.edges_hi[:c]
    pred = rng.integers(0, c, per_class * c)
    n = lo.shape[1]
    k = s.section_hits.shape[2]
    frac = rng.integers(0, k + 1, (len(pred), n)) / k
    v = lo[pred] + (hi[pred] - lo[pred]) * frac.astype(np.float32)
    pick = rng.random(v.shape)
    v = np.where(pick < 0.1, np.nextafter(lo[pred], -np.inf), v)
    v = np.where((pick >= 0.1) & (pick < 0.2), np.nextafter(hi[pred], np.inf), v)
    v = np.where((pick >= 0.2) & (pick < 0.3), rng.normal(0, 10, v.shape), v).astype(np.float32)
    v[0, 0], v[1, 1], v[2, 2] = np.nan, np.inf, -np.inf
    return v, pred.astype(np.int64)


def flat(v):
    """(B, N) sample-major -> the flat buffer the kernels read."""
    return np.ascontiguousarray(v, np.float32).reshape(-1)


@pytest.mark.parametrize("k_sections", [1, 10, 12])
def test_compact_scores_equal_full_tables_of_rounded_profile(rng, k_sections):
    profile, _, _ = make_profile(rng, k_sections=k_sections)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compact = compile_compact_tables(profile, rare_rate=0.05, min_class_samples=5)
        full = rounded_tables(profile, rare_rate=0.05, min_class_samples=5)
    v, pred = probes(profile, rng)
    buf = flat(v)
    want = coverage_scores(buf, len(pred), pred, full, parallel=False)
    for parallel in (False, True):
        got = coverage_scores(buf, len(pred), pred, compact, parallel=parallel,
                              scratch=make_scratch(len(pred) if parallel else 1, 3))
        np.testing.assert_array_equal(got, want)
    # and the definition through the plain numpy oracle, not the compiled kernel
    oracle = reference_scores(np.split(v, np.cumsum(SIZES)[:-1], axis=1), pred, full)
    np.testing.assert_allclose(got, oracle, rtol=1e-12, atol=0)  # the oracle divides its counts its own way


def test_rounded_ranges_contain_the_profile_and_stay_within_a_step(rng):
    profile, _, _ = make_profile(rng)
    lo_codes, hi_codes, base, step = rounded_edges(profile)
    lo, hi = profile.sections.edges_lo, profile.sections.edges_hi
    dlo, dhi = decode(base, step, lo_codes), decode(base, step, hi_codes)
    assert (dlo <= lo).all() and (dhi >= hi).all()
    # one grid step, plus one float32 rounding of the decoded value
    slack = step + np.abs(hi).max(axis=0) * 2.0**-23
    assert ((lo - dlo) <= slack).all() and ((dhi - hi) <= slack).all()
    assert lo_codes.max() <= GRID and hi_codes.max() <= GRID


def test_compact_scores_stay_close_to_the_unrounded_profile(rng):
    # The rounding moves a range end by at most a step: scores of data away from the edges agree,
    # nb_excess included (a point range keeps the global unit instead of one grid step).
    profile, layers, labels = make_profile(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compact = compile_compact_tables(profile, rare_rate=0.05, min_class_samples=5)
        full = compile_tables(profile, rare_rate=0.05, min_class_samples=5)
    v = np.concatenate(layers, axis=1)[:200] * 1.01 + 0.001
    pred = labels[:200].astype(np.int64)
    buf = flat(v)
    a = coverage_scores(buf, 200, pred, compact)
    b = coverage_scores(buf, 200, pred, full)
    n = sum(SIZES)
    assert np.abs(a[:, :4] - b[:, :4]).max() <= 2 / n + 1e-12  # at most two neurons change state
    assert (a[:, :4] == b[:, :4]).mean() >= 0.9
    np.testing.assert_allclose(a[:, 4], b[:, 4], rtol=1e-3, atol=1e-6)


def test_compact_refusals(rng):
    profile, _, _ = make_profile(rng, k_sections=13)
    with pytest.raises(InputError, match="at most 12 k-sections"):
        compile_compact_tables(profile)
    profile, _, _ = make_profile(rng)
    profile.sections.edges_hi[0, 0] = np.inf
    with pytest.raises(InputError, match="finite"):
        compile_compact_tables(profile)
    good = compile_compact_tables(make_profile(rng)[0], min_class_samples=1, warn=False)
    with pytest.raises(InputError, match="cells"):
        CompactTables(good.offsets, good.base, good.step, good.fallback_unit, good.threshold,
                      good.cells[:, :-1], good.k_sections, good.k_top)
    with pytest.raises(InputError, match="class index|pred"):
        coverage_scores(np.zeros(sum(SIZES), np.float32), 1, np.array([99]), good)
