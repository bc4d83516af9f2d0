"""Synthetic anomalous objects: alterations against their definitions, matching against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels.roi_reference import box_iou
from nnwatch.objects.detections import Detections
from nnwatch.objects.member_choice import KINDS, altered_frames, matches_altered


def _objects(boxes: list[tuple[int, list[float]]], n_frames: int) -> Detections:
    frame = np.array([f for f, _ in boxes], np.int64)
    return Detections(frame=frame, boxes=np.array([b for _, b in boxes], np.float32).reshape(-1, 4),
                      score=np.ones(len(boxes), np.float32), cls=np.zeros(len(boxes), np.int64), class_scores=None,
                      n_frames=n_frames)


@pytest.fixture()
def frames():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 40, 48)).astype(np.float32)
    det = _objects([(0, [2.2, 3.6, 17.9, 20.1]), (0, [20, 10, 47, 39]), (1, [-5, -5, 10, 12]),
                    (2, [30, 30, 70, 70]), (2, [5, 5, 7, 30])], 3)  # clipped, outside and too-thin boxes too
    return x, det


def _pixel(b):
    return int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3]))


def _regions(x, det, k):
    x0, y0, x1, y1 = (max(v, 0) for v in _pixel(det.boxes[k]))
    x1, y1 = min(x1, x.shape[3]), min(y1, x.shape[2])
    return (slice(None), slice(y0, y1), slice(x0, x1)), (x1 - x0, y1 - y0)


def test_every_alteration_stays_inside_the_boxes_and_leaves_the_input_alone(frames):
    x, det = frames
    before = x.copy()
    for kind in KINDS:
        y, which = altered_frames(x, det, kind, seed=3)
        np.testing.assert_array_equal(x, before)
        assert list(which) == [0, 1, 2, 3]  # the 2-pixel-wide box is left as it is
        inside = np.zeros(x.shape, bool)
        for k in which:
            sl, _ = _regions(x, det, k)
            inside[(int(det.frame[k]),) + sl] = True
        np.testing.assert_array_equal(y[~inside], x[~inside])
        assert not np.array_equal(y[inside], x[inside])


def test_shuffle_permutes_each_box_the_same_way_in_every_channel(frames):
    x, det = frames
    y, which = altered_frames(x, det, "shuffle", seed=1)
    for k in which:
        sl, _ = _regions(x, det, k)
        a, b = x[int(det.frame[k])][sl], y[int(det.frame[k])][sl]
        flat_a, flat_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        # one permutation: the position of each of channel 0's values maps channel 1 the same way
        order = np.array([np.flatnonzero(flat_a[0] == v)[0] for v in flat_b[0]])
        np.testing.assert_array_equal(flat_b[1], flat_a[1][order])


def test_swap_exchanges_the_quadrants_diagonally(frames):
    x, det = frames
    y, which = altered_frames(x, det, "swap")
    for k in which:
        sl, (w, h) = _regions(x, det, k)
        a, b = x[int(det.frame[k])][sl], y[int(det.frame[k])][sl]
        h2, w2 = h // 2, w // 2
        for i in range(h):
            for j in range(w):
                if i < 2 * h2 and j < 2 * w2:
                    si, sj = (i + h2) % (2 * h2), (j + w2) % (2 * w2)
                else:  # the odd last row or column stays
                    si, sj = i, j
                np.testing.assert_array_equal(b[:, i, j], a[:, si, sj])


def test_blend_is_the_mean_with_another_objects_content_at_the_nearest_pixel(frames):
    x, det = frames
    y, which = altered_frames(x, det, "blend", seed=7)
    rng = np.random.default_rng(7)  # the partners, drawn as the definition draws them
    for k in which:
        j = int(which[rng.integers(len(which))])
        sl, (w, h) = _regions(x, det, k)
        osl, (ow, oh) = _regions(x, det, j)
        other = x[int(det.frame[j])][osl]
        expect = np.empty((x.shape[1], h, w), np.float32)
        for i in range(h):
            for jj in range(w):
                expect[:, i, jj] = 0.5 * x[int(det.frame[k])][sl][:, i, jj] + 0.5 * other[:, i * oh // h, jj * ow // w]
        np.testing.assert_allclose(y[int(det.frame[k])][sl], expect, rtol=0, atol=1e-6)


def test_an_unknown_alteration_is_refused(frames):
    with pytest.raises(InputError, match="shuffle"):
        altered_frames(*frames, "rotate")


def test_matching_equals_a_plain_loop_over_box_iou():
    rng = np.random.default_rng(2)
    lo = rng.uniform(0, 50, (60, 2))
    altered = _objects([(int(f), [*p, *(p + s)]) for f, p, s in zip(rng.integers(0, 6, 60), lo,
                                                                      rng.uniform(2, 30, (60, 2)))], 6)
    order = np.argsort(altered.frame, kind="stable")
    altered = Detections(frame=altered.frame[order], boxes=altered.boxes[order], score=altered.score,
                         cls=altered.cls, class_scores=None, n_frames=6)
    jitter = altered.boxes + rng.normal(0, 4, altered.boxes.shape).astype(np.float32)
    found = Detections(frame=altered.frame.copy(), boxes=jitter, score=altered.score, cls=altered.cls,
                       class_scores=None, n_frames=6)
    which = np.flatnonzero(rng.random(60) < 0.5)
    got = matches_altered(found, altered, which)
    expect = [any(altered.frame[k] == found.frame[i] and box_iou(found.boxes[i], altered.boxes[k]) >= 0.5
                  for k in which) for i in range(len(found))]
    np.testing.assert_array_equal(got, expect)
    assert 0 < got.sum() < len(got)
