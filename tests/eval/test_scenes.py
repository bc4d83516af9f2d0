"""Synthetic detection scenes: boxes are tight around what was drawn, anomalies are where they say."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.eval.scenes import make_scenes, resize


def glyphs(rng, n=20, side=8):
    g = np.zeros((n, side, side), np.float32)
    g[:, 2:6, 3:5] = 1.0
    return g + 0.0 * rng.random((n, side, side)), np.arange(n) % 4


def test_resize_keeps_constants_and_corners():
    np.testing.assert_allclose(resize(np.full((8, 8), 0.7), 20, 13), 0.7, rtol=1e-6)
    up = resize(np.arange(4.0).reshape(2, 2), 4, 4)
    assert up[0, 0] == 0.0 and up[-1, -1] == 3.0


def test_boxes_are_inside_the_canvas_and_cover_bright_pixels():
    rng = np.random.default_rng(0)
    g, y = glyphs(rng)
    s = make_scenes(g, y, 30, seed=1, clutter=0, noise=0.0)
    assert s.images.shape == (30, 1, 96, 96) and s.images.min() >= 0 and s.images.max() <= 1
    for img, boxes, labels in zip(s.images[:, 0], s.boxes, s.labels):
        assert 1 <= len(boxes) <= 4 and len(labels) == len(boxes)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
        inside = np.zeros_like(img, bool)
        for x1, y1, x2, y2 in boxes.astype(int):
            inside[y1:y2, x1:x2] = True
        assert (img[~inside] <= 0.2).all()  # nothing bright outside the boxes


@pytest.mark.parametrize("anomaly", ["unknown", "style", "noise"])
def test_each_frame_holds_one_anomalous_object(anomaly):
    rng = np.random.default_rng(0)
    g, y = glyphs(rng)
    s = make_scenes(g, y, 20, seed=2, anomaly=anomaly, others=g[:5] * 0.9)
    assert sum(a.sum() for a in s.anomalous) >= 18  # placement can fail on a crowded canvas
    assert all(a.sum() <= 1 for a in s.anomalous)
    if anomaly != "style":
        assert all((lab[a] == -1).all() for lab, a in zip(s.labels, s.anomalous))


def test_faults_mark_the_frame_not_the_objects():
    rng = np.random.default_rng(0)
    g, y = glyphs(rng)
    s = make_scenes(g, y, 10, seed=3, anomaly="fault")
    assert s.frame_anomalous.all() and not any(a.any() for a in s.anomalous)


def test_same_seed_same_scenes():
    rng = np.random.default_rng(0)
    g, y = glyphs(rng)
    np.testing.assert_array_equal(make_scenes(g, y, 5, seed=4).images, make_scenes(g, y, 5, seed=4).images)


def test_bad_arguments():
    rng = np.random.default_rng(0)
    g, y = glyphs(rng)
    with pytest.raises(InputError, match="anomaly must be one of"):
        make_scenes(g, y, 2, anomaly="rain")
    with pytest.raises(InputError, match="needs the unknown objects"):
        make_scenes(g, y, 2, anomaly="unknown")
    with pytest.raises(InputError, match="one label each"):
        make_scenes(g, y[:3], 2)


def test_detection_targets_decode_back_to_the_boxes():
    from nnwatch.eval.detector_model import BASE_SIDE, STRIDE, detection_targets
    from nnwatch.eval.scenes import Scenes

    boxes = np.array([[10, 20, 34, 40], [60, 5, 80, 31]], np.float32)
    s = Scenes(np.zeros((1, 1, 96, 96), np.float32), [boxes], [np.array([3, 7])], [np.zeros(2, bool)],
               np.zeros(1, bool))
    cls, box, pos = detection_targets(s, 10, 12)
    assert pos.sum() == 6  # each object: its centre cell and two neighbours
    for i, j in zip(*np.nonzero(pos[0])):
        ox, oy, lw, lh = box[0, :, i, j]
        assert -0.5 < ox < 1.5 and -0.5 < oy < 1.5
        cx, cy = (j + ox) * STRIDE, (i + oy) * STRIDE  # the forward pass's decoding
        w, h = BASE_SIDE * np.exp(lw), BASE_SIDE * np.exp(lh)
        got = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        k = int(np.argmax(cls[0, :, i, j]))
        np.testing.assert_allclose(got, boxes[0 if k == 3 else 1], atol=1e-4)
