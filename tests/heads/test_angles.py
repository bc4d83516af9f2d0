"""Numpy side of the head score, against plain reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnwatch.heads.angles import angle_degrees, rank_heads
from nnwatch.heads.prompts import length_matched, plan_prefixes


def common_prefix(a, b):
    """Length of the longest common prefix, written plainly (the reference)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _angle_ref(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return math.degrees(math.acos(max(-1.0, min(1.0, dot / (na * nb)))))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_angle_matches_reference(d, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=d), rng.normal(size=d)
    assert angle_degrees(a, b) == pytest.approx(_angle_ref(a, b), abs=1e-9)
    assert angle_degrees(a, 3.0 * a) == pytest.approx(0.0, abs=1e-5)
    assert angle_degrees(a, -a) == pytest.approx(180.0, abs=1e-5)


def test_rank_heads_follows_the_published_rule():
    rng = np.random.default_rng(0)
    safe = rng.uniform(1, 2, size=(20, 4, 5))
    unsafe = safe + rng.uniform(0, 0.1, size=safe.shape)
    unsafe[:, 2, 3] += 3.0  # a clear gap on a head with ordinary safe angles
    unsafe[:, 0, 0] += 9.0
    safe[:, 0, 0] += 50.0  # a larger gap, but safe angles above the 80th percentile: excluded
    ranking = rank_heads(unsafe, safe, 80.0)
    assert ranking[0][:2] == (2, 3)
    assert (0, 0) not in [r[:2] for r in ranking]
    mu = safe.mean(0)
    kept = {(a, b) for a in range(4) for b in range(5) if mu[a, b] <= np.percentile(mu, 80)}
    assert {r[:2] for r in ranking} == kept
    gaps = [r[2] for r in ranking]
    assert gaps == sorted(gaps, reverse=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=12), st.integers(1, 4))
def test_planned_prefixes_are_shared_and_leave_a_token(seqs, min_gain):
    plens = plan_prefixes(seqs, min_gain)
    for i, p in enumerate(plens):
        assert 0 <= p < len(seqs[i])
        if p:  # someone else starts with the same p tokens
            assert any(j != i and common_prefix(seqs[i], seqs[j]) >= p for j in range(len(seqs)))


def test_planned_prefixes_find_template_groups():
    system = [9] * 5
    a = [[*system, *([1] * 40), i] for i in range(3)]
    b = [[*system, *([2] * 40), i, 7] for i in range(3)]
    assert plan_prefixes(a + b + [[*system, 3]], min_gain=8) == [45] * 6 + [0]


def test_length_matched_pairs_are_balanced_and_close():
    rng = np.random.default_rng(2)
    lengths = rng.integers(5, 60, 200)
    labels = rng.integers(0, 2, 200)
    idx = length_matched(lengths, labels, tolerance=2)
    assert (labels[idx] == 0).sum() == (labels[idx] == 1).sum() > 20
    a = np.sort(lengths[idx][labels[idx] == 0])
    b = np.sort(lengths[idx][labels[idx] == 1])
    assert np.abs(a.mean() - b.mean()) <= 2
