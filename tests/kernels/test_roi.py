"""RoI averaging and NMS kernels against their numpy definitions (nnwatch.kernels.roi_reference)."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels import roi_reference as ref
from nnwatch.kernels import roi
from nnwatch.kernels.roi import nms, roi_average


def random_boxes(rng, m, size, margin=8.0):
    """Boxes of every kind: inside, across the border, outside, sub-cell, one pixel, whole image."""
    a = rng.uniform(-margin, size + margin, (m, 2))
    wh = rng.exponential(size / 4, (m, 2))
    boxes = np.concatenate([a, a + wh], axis=1)
    boxes[: m // 8] = [[0, 0, size, size]]
    boxes[m // 8: m // 4, 2:] = boxes[m // 8: m // 4, :2] + 0.3
    return boxes.astype(np.float32)


@pytest.mark.parametrize("shape, stride", [((2, 5, 12, 12), (8.0, 8.0)), ((1, 3, 7, 9), (4.0, 3.5)),
                                           ((3, 2, 1, 1), (32.0, 32.0)), ((1, 4, 24, 6), (2.0, 16.0))])
def test_roi_average_matches_the_definition(shape, stride):
    rng = np.random.default_rng(sum(shape))
    maps = rng.normal(size=shape).astype(np.float32)
    size = shape[2] * stride[0]
    boxes = random_boxes(rng, 64, size)
    frame = rng.integers(0, shape[0], 64).astype(np.int64)
    for cap in (1, 3, 8):
        np.testing.assert_allclose(roi_average(maps, boxes, frame, stride, cap),
                                   ref.roi_average(maps, boxes, frame, stride, cap), rtol=1e-5, atol=1e-5)


def test_roi_average_of_a_linear_map_is_its_value_at_the_box_centre():
    # Bilinear samples of an affine map are exact and a regular centred grid averages to the centre.
    h = w = 16
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = (0.5 * yy - 2.0 * xx + 3.0)[None, None].astype(np.float32)
    boxes = np.array([[8, 8, 40, 24], [20, 4, 100, 90], [33, 33, 35, 60]], np.float32)
    got = roi_average(maps, boxes, np.zeros(3, np.int64), (8.0, 8.0), max_samples=16)[:, 0]
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / 8 - 0.5
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / 8 - 0.5
    np.testing.assert_allclose(got, 0.5 * cy - 2.0 * cx + 3.0, rtol=1e-5, atol=1e-4)


def test_roi_average_of_the_whole_image_at_stride_one_is_the_plane_mean():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(1, 3, 6, 6)).astype(np.float32)
    got = roi_average(maps, np.array([[0, 0, 6, 6]], np.float32), np.zeros(1, np.int64), (1.0, 1.0))
    np.testing.assert_allclose(got[0], maps[0].mean(axis=(1, 2)), rtol=1e-5)


def test_roi_average_with_no_boxes():
    maps = np.zeros((1, 3, 4, 4), np.float32)
    assert roi_average(maps, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), (1.0, 1.0)).shape == (0, 3)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(maps=a["maps"].astype(np.float64)), "maps: dtype float64"),
    (lambda a: a.update(maps=a["maps"][0]), "maps: shape"),
    (lambda a: a.update(boxes=a["boxes"][:, :3]), "boxes: shape"),
    (lambda a: a.update(boxes=np.array([[0, 0, np.nan, 4]], np.float32)), "non-finite"),
    (lambda a: a.update(boxes=np.array([[5, 0, 4, 4]], np.float32)), "x2 < x1"),
    (lambda a: a.update(frame=np.array([2], np.int64)), "frame: indices must lie in \\[0, 2\\)"),
    (lambda a: a.update(frame=np.array([0], np.int32)), "frame: dtype int32"),
    (lambda a: a.update(stride=(0.0, 1.0)), "stride must be two positive numbers"),
    (lambda a: a.update(max_samples=0), "max_samples must be an integer >= 1"),
])
def test_roi_average_refuses_bad_arguments(change, message):
    args = {"maps": np.zeros((2, 3, 4, 4), np.float32), "boxes": np.array([[0, 0, 4, 4]], np.float32),
            "frame": np.zeros(1, np.int64), "stride": (1.0, 1.0), "max_samples": 4}
    change(args)
    with pytest.raises(InputError, match=message):
        roi_average(**args)


@pytest.mark.parametrize("seed", range(6))
def test_nms_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    centres = rng.uniform(0, 64, (n, 2))
    wh = rng.uniform(2, 24, (n, 2))
    boxes = np.concatenate([centres - wh / 2, centres + wh / 2], axis=1).astype(np.float32)
    scores = rng.choice(np.linspace(0.1, 1.0, 7), n).astype(np.float32)  # many ties
    classes = rng.integers(0, 3, n).astype(np.int64)
    for iou in (0.0, 0.3, 0.7, 1.0):
        for max_det in (1, 5, 300):
            np.testing.assert_array_equal(nms(boxes, scores, classes, iou, max_det),
                                          ref.nms(boxes, scores, classes, iou, max_det))


def test_nms_keeps_overlapping_boxes_of_different_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    kept = nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 0], np.int64), 0.5, 10)
    assert kept.tolist() == [0, 1]


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(scores=np.array([np.inf], np.float32)), "must be finite"),
    (lambda a: a.update(iou=1.5), "iou must lie in \\[0, 1\\]"),
    (lambda a: a.update(max_det=0), "max_det must be an integer >= 1"),
    (lambda a: a.update(classes=np.array([0.0])), "classes: dtype float64"),
])
def test_nms_refuses_bad_arguments(change, message):
    args = {"boxes": np.array([[0, 0, 4, 4]], np.float32), "scores": np.array([0.5], np.float32),
            "classes": np.array([0], np.int64), "iou": 0.5, "max_det": 10}
    change(args)
    with pytest.raises(InputError, match=message):
        nms(**args)


def _head(rng: np.random.Generator, batch: int, values: int, cells: int, values_last: bool) -> np.ndarray:
    """Class values on a coarse grid (ties), around the thresholds tested, with NaN and Inf here and there."""
    near = [np.float32(t) for t in (0.3, 0.7)]  # float32(0.3) lies above 0.3, float32(0.7) below 0.7
    near += [np.nextafter(t, np.float32(0)) for t in near] + [np.nextafter(t, np.float32(1)) for t in near]
    head = rng.choice(np.float32([0.1, 0.25, 0.5, 0.9, 1.0, -2.0, 3.0, *near]),
                      size=(batch, values, cells)).astype(np.float32)
    head[:, :4] = rng.normal(size=(batch, 4, cells)) * 10
    odd = rng.random(head.shape) < 0.02
    head[odd] = rng.choice(np.float32([np.nan, np.inf, -np.inf]), size=int(odd.sum()))
    return np.ascontiguousarray(np.moveaxis(head, 1, 2)) if values_last else head


@pytest.mark.parametrize("values_last", [False, True])
@pytest.mark.parametrize("objectness", [False, True])
@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("threshold", [0.25, 0.3, 0.7, 0.0, -1.0])
def test_raw_candidates_match_the_definition(values_last, objectness, logits, threshold):
    """Kept cells, their classes and their scores, bit for bit, on heads with ties, NaN, +-Inf and scores at,
    just below and just above the threshold in float32."""
    rng = np.random.default_rng(int(values_last) + 2 * objectness + 4 * logits)
    n_values = 5 if objectness else 4
    for _ in range(20):
        head = _head(rng, int(rng.integers(1, 4)), n_values + int(rng.integers(1, 8)), int(rng.integers(1, 60)),
                     values_last)
        got = roi.raw_candidates(head, values_last, n_values, logits, objectness, threshold)
        want = ref.raw_candidates(head, values_last, n_values, logits, objectness, threshold)
        for g, w, name in zip(got, want, ("frame", "cell", "score", "class")):
            assert g.dtype == w.dtype and np.array_equal(g, w), name


@pytest.mark.parametrize("values_last", [False, True])
@pytest.mark.parametrize("threshold", [0.25, 0.3, 0.7])
def test_dropping_low_objectness_unread_changes_nothing_for_probabilities(values_last, threshold):
    """With class values in [0, 1], skipping cells whose objectness is below a positive threshold
    keeps exactly the cells the plain formula (score = objectness x best class, kept at >= threshold) keeps."""
    rng = np.random.default_rng(7 + int(values_last))
    for _ in range(20):
        head = _head(rng, int(rng.integers(1, 4)), 5 + int(rng.integers(1, 8)), int(rng.integers(1, 60)), False)
        classes = head[:, 5:]
        head[:, 5:] = np.where(np.isfinite(classes), np.clip(classes, 0, 1), classes)  # probabilities (NaN stays)
        head[:, 4] = rng.choice(np.float32([-0.5, 0.0, 0.2, 0.3, 0.31, 0.7, 0.9, 1.0, 2.0, np.nan]), head.shape[2])
        values = np.moveaxis(head, 1, 2)
        with np.errstate(invalid="ignore"):  # inf x 0 is NaN, and dropped
            score = values[..., 5:].max(axis=2) * values[..., 4]
        frame, cell = np.nonzero(np.isfinite(score) & (score >= threshold))
        h = np.ascontiguousarray(values) if values_last else head
        for fn in (ref.raw_candidates, roi.raw_candidates):
            got = fn(h, values_last, 5, False, True, threshold)
            assert np.array_equal(got[0], frame) and np.array_equal(got[1], cell)
            assert np.array_equal(got[2], score[frame, cell].astype(np.float64))


def test_raw_candidates_keep_the_first_of_equal_classes():
    head = np.zeros((1, 4 + 3, 1), np.float32)
    head[0, 4:, 0] = [0.2, 0.7, 0.7]
    frame, cell, score, cls = roi.raw_candidates(head, False, 4, False, False, 0.5)
    assert frame.tolist() == [0] and cell.tolist() == [0] and cls.tolist() == [1] and score[0] == np.float32(0.7)


@pytest.mark.parametrize("change, message", [
    ({"head": np.zeros((1, 6, 3))}, "dtype float64"),
    ({"head": np.zeros((6, 3), np.float32)}, "shape"),
    ({"n_values": 6}, "leave class values"),
    ({"n_values": 3}, "at least 4"),
    ({"objectness": True, "n_values": 4}, "objectness head needs n_values >= 5"),
    ({"threshold": float("nan")}, "threshold must be finite"),
])
def test_raw_candidates_refuse_bad_arguments(change, message):
    kwargs = {"head": np.zeros((1, 6, 3), np.float32), "values_last": False, "n_values": 4, "logits": False,
              "objectness": False, "threshold": 0.25, **change}
    with pytest.raises(InputError, match=message):
        roi.raw_candidates(**kwargs)
