"""kNN and box detectors against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.kernels.layout import layer_offsets, pack_layers
from nnwatch.monitor.detector import BatchView
from nnwatch.monitor.detectors.features import kmeans
from nnwatch.monitor.registry import make_detector
from nnwatch.profile.builder import ProfileBuilder


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(3)
    n = 300
    labels = rng.integers(0, 3, n)
    feats = (rng.normal(size=(n, 5)) + labels[:, None] * 2.0).astype(np.float32)
    layers = [rng.normal(size=(n, 4)).astype(np.float32), feats]
    b = ProfileBuilder([4, 5], 3, feature_layer=1, feature_sample=120).update_ranges(layers, labels).finish_ranges()
    return b.update_sections(layers, labels).build("d" * 64, ["a", "b"])


def view_for(feats, pred):
    other = np.zeros((len(feats), 4), np.float32)
    logits = np.eye(3, dtype=np.float32)[pred]
    return BatchView(logits, pack_layers([other, feats.astype(np.float32)]), layer_offsets([4, 5]), None)


def test_knn_is_kth_neighbour_distance(profile):
    det = make_detector("knn").fit(profile)
    bank = profile.ranges.sample_feats.astype(np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    assert det.k_ == max(1, round(50 * 120 / profile.ranges.count[-1]))
    probe = np.random.default_rng(0).normal(size=(7, 5)) * 3
    got = det.score(view_for(probe, np.zeros(7, int)))
    for i, x in enumerate(probe):
        z = x / np.linalg.norm(x)
        d = np.sort([np.linalg.norm(z - b) for b in bank])
        assert got[i] == pytest.approx(d[det.k_ - 1], abs=1e-6)


def test_boxes_brute_force_and_zero_inside(profile):
    det = make_detector("boxes").fit(profile)
    probe = np.random.default_rng(1).normal(size=(9, 5)) * 4
    pred = np.arange(9) % 3
    got = det.score(view_for(probe, pred))
    for i, (x, c) in enumerate(zip(probe, pred)):
        best = np.inf
        for j in np.flatnonzero(det.owner_ == c):
            excess = np.maximum(np.maximum(det.lo_[j] - x, x - det.hi_[j]), 0) * det.inv_width_[j]
            best = min(best, excess.max())
        assert got[i] == pytest.approx(best)
    # Every sampled training vector lies inside a box of its own class.
    r = profile.ranges
    inside = det.score(view_for(r.sample_feats, r.sample_class))
    assert (inside == 0).all()


def test_kmeans_separates_obvious_clusters():
    x = np.r_[np.zeros((10, 2)), np.full((10, 2), 10.0)]
    labels = kmeans(x, 2)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[10]
