"""Coverage kernels and profile passes against the numpy reference (kernels/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnwatch.kernels import reference as ref
from nnwatch.kernels.coverage import SCORE_NAMES, coverage_scores
from nnwatch.kernels.layout import pack_layers
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import compile_tables


def random_case(seed: int, sizes: list[int], n_classes: int, batch: int, levels: int | None):
    """Activations; with ``levels`` values are quantized so ties and constant neurons occur."""
    r = np.random.default_rng(seed)
    layers = []
    for n in sizes:
        a = r.normal(size=(batch, n)).astype(np.float32)
        if levels is not None:
            a = np.round(a * levels / 3).astype(np.float32)
        if n > 1:
            a[:, 0] = 0.5  # a constant neuron: min == max
        layers.append(a)
    labels = r.integers(-1, n_classes, batch)
    return layers, labels


def build(layers, labels, n_classes, k, k_top, threshold="mean"):
    k_top = min(k_top, min(a.shape[1] for a in layers))
    b = ProfileBuilder([a.shape[1] for a in layers], n_classes, k_sections=k, k_top=k_top, threshold=threshold)
    half = len(labels) // 2
    b.update_ranges([a[:half] for a in layers], labels[:half]).update_ranges([a[half:] for a in layers], labels[half:])
    b.finish_ranges()
    b.update_sections([a[half:] for a in layers], labels[half:]).update_sections([a[:half] for a in layers], labels[:half])
    return b.build("0" * 64, [f"l{i}" for i in range(len(layers))])


cases = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "sizes": st.lists(st.integers(1, 9), min_size=1, max_size=4),
    "n_classes": st.integers(1, 4),
    "batch": st.integers(1, 40),
    "levels": st.one_of(st.none(), st.integers(1, 4)),
    "k": st.integers(1, 6),
    "k_top": st.integers(1, 4),
    "rate": st.sampled_from([0.0, 0.05, 0.3]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_profile_passes_match_reference(case):
    layers, labels = random_case(case["seed"], case["sizes"], case["n_classes"], case["batch"], case["levels"])
    if (labels < 0).all():
        labels[0] = 0
    p = build(layers, labels, case["n_classes"], case["k"], case["k_top"])
    want = ref.pass1(layers, labels, case["n_classes"], p.header["k_top"])
    for name in ("count", "min", "max", "topk_count"):
        np.testing.assert_array_equal(getattr(p.ranges, name), want[name], err_msg=name)
    np.testing.assert_allclose(p.ranges.mean, want["mean"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(p.ranges.m2, want["m2"], rtol=1e-8, atol=1e-8)
    s = p.sections
    want2 = ref.pass2(layers, labels, s.edges_lo, s.edges_hi, s.inv_width, s.threshold, case["k"])
    for name, value in want2.items():
        np.testing.assert_array_equal(getattr(s, name), value, err_msg=name)
    # Pass 2 sees the same data as pass 1: nothing can fall outside the ranges.
    assert s.outside_count.sum() == 0


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases, st.integers(1, 12), st.integers(0, 10_000))
def test_coverage_scores_match_reference(case, test_batch, test_seed):
    layers, labels = random_case(case["seed"], case["sizes"], case["n_classes"], case["batch"], case["levels"])
    if (labels < 0).all():
        labels[0] = 0
    p = build(layers, labels, case["n_classes"], case["k"], case["k_top"])
    tables = compile_tables(p, rare_rate=case["rate"], min_class_samples=1, warn=False)
    test_layers, _ = random_case(test_seed, case["sizes"], case["n_classes"], test_batch, case["levels"])
    test_layers = [a * 1.3 for a in test_layers]  # push some values outside the ranges
    pred = np.random.default_rng(test_seed).integers(0, case["n_classes"], test_batch)
    want = ref.coverage_scores(test_layers, pred, tables)
    buf = pack_layers(test_layers)
    for parallel in (False, True):
        got = coverage_scores(buf, test_batch, pred, tables, parallel=parallel)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"parallel={parallel}")
    assert ((want[:, :4] >= 0) & (want[:, :4] <= 1)).all()


def test_scores_on_training_data_are_low_and_bounded(rng):
    layers = [rng.normal(size=(300, 6)).astype(np.float32), rng.normal(size=(300, 4)).astype(np.float32)]
    labels = rng.integers(0, 2, 300)
    p = build(layers, labels, 2, 5, 2)
    tables = compile_tables(p, rare_rate=0.0, min_class_samples=1)
    got = coverage_scores(pack_layers(layers), 300, labels, tables)
    # With rare_rate 0 nothing a training sample does is rare, and nothing is out of range.
    assert (got[:, SCORE_NAMES.index("nbc")] == 0).all()
    assert (got[:, SCORE_NAMES.index("kmnc")] == 0).all()
    assert (got[:, SCORE_NAMES.index("nb_excess")] == 0).all()


def test_constant_neuron_sections():
    # min == max: the only value seen is section 0; anything else is out of range.
    layers = [np.full((5, 1), 2.0, np.float32)]
    labels = np.zeros(5, np.int64)
    p = build(layers, labels, 1, 4, 1)
    assert p.sections.section_hits[0, 0].tolist() == [5, 0, 0, 0]
    tables = compile_tables(p, rare_rate=0.5, min_class_samples=1)
    probe = [np.array([[2.0], [2.5], [1.0]], np.float32)]
    got = coverage_scores(pack_layers(probe), 3, np.zeros(3, np.int64), tables, parallel=False)
    assert got[:, SCORE_NAMES.index("nbc")].tolist() == [0.0, 1.0, 1.0]
    assert got[:, SCORE_NAMES.index("kmnc")].tolist() == [0.0, 1.0, 1.0]
    np.testing.assert_allclose(got, ref.coverage_scores(probe, np.zeros(3, np.int64), tables))


@pytest.mark.parametrize("position", [0, 3, -1])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_activations_match_reference(position, value, rng):
    # One definition of NaN/Inf neurons (kernels/coverage.py), kernel and oracle alike.
    layers = [rng.normal(size=(50, 7)).astype(np.float32), rng.normal(size=(50, 3)).astype(np.float32)]
    labels = rng.integers(0, 2, 50)
    tables = compile_tables(build(layers, labels, 2, 3, 2), rare_rate=0.2, min_class_samples=1)
    probe = [rng.normal(size=(4, 7)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)]
    probe[0][1, position] = value
    probe[1][2, :] = value  # a whole layer non-finite: fewer than k finite values
    probe[0][3, position] = value
    probe[1][3, min(position, 2)] = -value
    pred = np.array([0, 1, 0, 1], np.int64)
    for parallel in (False, True):
        got = coverage_scores(pack_layers(probe), 4, pred, tables, parallel=parallel)
        # rtol: the kernel divides by multiplying with a reciprocal (fastmath "arcp").
        np.testing.assert_allclose(got, ref.coverage_scores(probe, pred, tables), rtol=1e-12, atol=0)
    assert got[:, SCORE_NAMES.index("nonfinite")].tolist() == [0, 1, 3, 2]


def test_topk_ties_go_to_lower_index():
    values = np.array([1.0, 3.0, 3.0, 2.0, 3.0], np.float32)
    assert ref.topk_indices(values, 2).tolist() == [1, 2]
    # The kernel's top-k agrees: rare-ness of index 4 must not matter, of 1 and 2 must.
    layers = [np.tile(values, (4, 1))]
    p = build(layers, np.zeros(4, np.int64), 1, 2, 2)
    assert p.ranges.topk_count[0].tolist() == [0, 4, 4, 0, 0]


def test_permuting_the_batch_permutes_the_scores(rng):
    layers = [rng.normal(size=(80, 5)).astype(np.float32), rng.normal(size=(80, 3)).astype(np.float32)]
    labels = rng.integers(0, 3, 80)
    tables = compile_tables(build(layers, labels, 3, 4, 2), rare_rate=0.1, min_class_samples=1)
    probe = [rng.normal(size=(16, 5)).astype(np.float32) * 2, rng.normal(size=(16, 3)).astype(np.float32)]
    pred = rng.integers(0, 3, 16)
    perm = rng.permutation(16)
    a = coverage_scores(pack_layers(probe), 16, pred, tables)
    b = coverage_scores(pack_layers([p[perm] for p in probe]), 16, pred[perm], tables)
    np.testing.assert_array_equal(a[perm], b)
