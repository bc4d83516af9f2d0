"""Streaming equals batch, merges are exact, fallbacks are announced."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError, NotFittedError, ProfileError
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import FallbackWarning, class_gaussian, compile_tables


def data(rng, n, sizes=(6, 4), n_classes=3):
    layers = [rng.normal(size=(n, s)).astype(np.float32) * (i + 1) for i, s in enumerate(sizes)]
    return layers, rng.integers(-1, n_classes, n)


def one_shot(layers, labels, n_classes=3, edges_from=None):
    b = ProfileBuilder([a.shape[1] for a in layers], n_classes, k_sections=5, k_top=2, feature_layer=1,
                       feature_sample=40)
    b.update_ranges(layers, labels)
    if edges_from is None:
        b.finish_ranges()
    else:
        b.with_edges(edges_from)
    b.update_sections(layers, labels)
    return b.build("f" * 64, ["a", "b"])


def test_streaming_equals_batch(rng):
    layers, labels = data(rng, 200)
    whole = one_shot(layers, labels)
    b = ProfileBuilder([6, 4], 3, k_sections=5, k_top=2, feature_layer=1)
    for lo in range(0, 200, 7):  # odd batch sizes, one sample at a time at the end
        b.update_ranges([a[lo : lo + 7] for a in layers], labels[lo : lo + 7])
    b.finish_ranges()
    for i in range(200):
        b.update_sections([a[i : i + 1] for a in layers], labels[i : i + 1])
    streamed = b.build("f" * 64, ["a", "b"])
    for name in ("count", "min", "max", "topk_count"):
        np.testing.assert_array_equal(getattr(streamed.ranges, name), getattr(whole.ranges, name))
    np.testing.assert_allclose(streamed.ranges.mean, whole.ranges.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(streamed.ranges.m2, whole.ranges.m2, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(streamed.sections.section_hits, whole.sections.section_hits)


def test_merge_is_exact(rng):
    layers, labels = data(rng, 300)
    split = 130
    part_a = ([a[:split] for a in layers], labels[:split])
    part_b = ([a[split:] for a in layers], labels[split:])
    whole = one_shot(layers, labels)
    # Distributed recipe: pass 1 per part, merge ranges, pass 2 per part against merged ranges.
    ra = ProfileBuilder([6, 4], 3, k_sections=5, k_top=2, feature_layer=1, feature_sample=40).update_ranges(*part_a).ranges_
    rb = ProfileBuilder([6, 4], 3, k_sections=5, k_top=2, feature_layer=1, feature_sample=40).update_ranges(*part_b).ranges_
    merged_ranges = ra.merge(rb)
    pa = one_shot(*part_a, edges_from=merged_ranges)
    pb = one_shot(*part_b, edges_from=merged_ranges)
    merged = pa.merge(pb)
    for name in ("count", "min", "max", "topk_count"):
        np.testing.assert_array_equal(getattr(merged.ranges, name), getattr(whole.ranges, name))
    for name in ("mean", "m2", "feat_sum", "feat_outer"):
        np.testing.assert_allclose(getattr(merged.ranges, name), getattr(whole.ranges, name), rtol=1e-12, atol=1e-9)
    # The feature sample (bottom-k by hash) is the same set whichever way the data was split.
    assert len(whole.ranges.sample_keys) == 40
    for name in ("sample_keys", "sample_feats", "sample_class"):
        np.testing.assert_array_equal(getattr(merged.ranges, name), getattr(whole.ranges, name))
    for name in ("section_hits", "active_count", "outside_count", "edges_lo", "edges_hi", "threshold"):
        np.testing.assert_array_equal(getattr(merged.sections, name), getattr(whole.sections, name))
    # And the tables a monitor uses are identical.
    ta, tb = compile_tables(merged, warn=False), compile_tables(whole, warn=False)
    np.testing.assert_array_equal(ta.section_rare, tb.section_rare)
    np.testing.assert_array_equal(ta.topk_rare, tb.topk_rare)


def test_merge_refuses_different_edges(rng):
    layers, labels = data(rng, 100)
    a = one_shot([x[:50] for x in layers], labels[:50])
    b = one_shot([x[50:] for x in layers], labels[50:])
    with pytest.raises(ProfileError, match="different edges"):
        a.merge(b)


def test_merge_refuses_other_model(rng):
    layers, labels = data(rng, 60)
    a = one_shot(layers, labels)
    b = one_shot(layers, labels)
    b.header["fingerprint"] = "e" * 64
    with pytest.raises(ProfileError, match="fingerprint"):
        a.merge(b)


def test_mean_and_variance_are_per_class_moments(rng):
    layers, labels = data(rng, 150)
    p = one_shot(layers, labels)
    acts = np.concatenate(layers, axis=1).astype(np.float64)
    for c in range(3):
        x = acts[labels == c]
        np.testing.assert_allclose(p.ranges.mean[c], x.mean(0), rtol=1e-10)
        np.testing.assert_allclose(p.ranges.m2[c] / p.ranges.count[c], x.var(0), rtol=1e-9)


def test_class_without_samples_falls_back_with_warning(rng):
    layers, labels = data(rng, 100)
    labels[labels == 2] = 0
    p = one_shot(layers, labels)
    with pytest.warns(FallbackWarning, match=r"\[2\]"):
        tables = compile_tables(p, min_class_samples=5)
    np.testing.assert_array_equal(tables.lo[2], p.sections.edges_lo[-1])


def test_gaussian_matches_direct_estimate(rng):
    layers, labels = data(rng, 400)
    p = one_shot(layers, labels)
    means, precision = class_gaussian(p, ridge=0.0)
    feats = layers[1].astype(np.float64)
    keep = labels >= 0
    centred = np.concatenate([feats[keep & (labels == c)] - feats[keep & (labels == c)].mean(0) for c in range(3)])
    cov = centred.T @ centred / keep.sum()
    np.testing.assert_allclose(np.linalg.inv(precision), cov, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(means[1], feats[labels == 1].mean(0), rtol=1e-10)


def test_nonfinite_training_samples_are_skipped(rng):
    layers, labels = data(rng, 20)
    labels[:] = 0
    layers[0][3, 1] = np.nan
    b = ProfileBuilder([6, 4], 3).update_ranges(layers, labels)
    assert b.skipped_nonfinite_ == 1
    assert b.ranges_.count[0] == 19
    assert np.isfinite(b.ranges_.min[0]).all()


def test_errors_are_clear(rng):
    layers, labels = data(rng, 10)
    b = ProfileBuilder([6, 4], 3)
    with pytest.raises(InputError, match=r"layer 1: expected shape \(batch, 4\)"):
        b.update_ranges([layers[0], layers[0]], labels)
    with pytest.raises(InputError, match=r"labels must be in \[-1, 3\)"):
        b.update_ranges(layers, np.full(10, 7))
    with pytest.raises(NotFittedError):
        b.update_sections(layers, labels)
    with pytest.raises(ProfileError, match="no trusted sample"):
        ProfileBuilder([6, 4], 3).update_ranges(layers, np.full(10, -1)).finish_ranges()
    with pytest.raises(InputError):
        ProfileBuilder([], 3)
