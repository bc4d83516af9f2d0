"""Detector output layouts and decoding against hand-built outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels import roi_reference as ref
from nnwatch.objects.detections import class_logits, clean_boxes, decode
from nnwatch.objects.layouts import PRESETS, OutputLayout, fitting_presets, load_layout


def yolo_head(rng, batch, classes, n, size):
    """A raw (B, 4 + C, N) head with cx, cy, w, h in pixels and sigmoid scores."""
    head = np.zeros((batch, 4 + classes, n), np.float32)
    head[:, 0:2] = rng.uniform(0, size, (batch, 2, n))
    head[:, 2:4] = rng.uniform(4, size / 3, (batch, 2, n))
    head[:, 4:] = rng.uniform(0, 1, (batch, classes, n)) ** 4
    return head


def test_presets_fit_the_shapes_they_describe():
    assert fitting_presets([(1, 14, 8400)]) == ["yolov8"]
    # 6 values per candidate: 4 + 1 objectness + 1 class is a raw head too (never 100 values on 6 candidates)
    assert fitting_presets([("batch", 100, 6)]) == ["yolov5", "yolox", "nms"]
    assert fitting_presets([(1, 3549, 85)]) == ["yolov5", "yolox"]
    assert fitting_presets([(1, 100, 4), (1, 100), (1, 100)]) == ["boxes-scores-classes"]
    assert fitting_presets([(1, 10)]) == []


def test_raw_decoding_is_threshold_then_per_class_nms():
    rng = np.random.default_rng(0)
    head = yolo_head(rng, 3, 5, 200, 96)
    layout = PRESETS["yolov8"]
    det = decode([head], layout, (96, 96))
    for f in range(3):
        cs = head[f, 4:].T
        score, cls = cs.max(1), cs.argmax(1)
        cx, cy, w, h = head[f, :4]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        boxes = np.clip(boxes, 0, 96).astype(np.float32)
        idx = np.flatnonzero(score >= layout.score_threshold)
        idx = idx[(boxes[idx, 2] > boxes[idx, 0]) & (boxes[idx, 3] > boxes[idx, 1])]
        kept = idx[ref.nms(boxes[idx], score[idx], cls[idx], layout.iou, layout.max_det)]
        mine = det.frame == f
        np.testing.assert_allclose(det.boxes[mine], boxes[kept], atol=1e-4)
        np.testing.assert_array_equal(det.cls[mine], cls[kept])
        np.testing.assert_allclose(det.class_scores[mine], cs[kept])
    assert det.per_frame().sum() == len(det)


def test_objectness_heads_score_objectness_times_class_probability():
    rng = np.random.default_rng(1)
    n, classes = 300, 4
    head = np.zeros((2, n, 5 + classes), np.float32)
    head[..., 0:2] = rng.uniform(0, 64, (2, n, 2))
    head[..., 2:4] = rng.uniform(4, 20, (2, n, 2))
    head[..., 4:] = rng.uniform(0, 1, (2, n, 1 + classes)) ** 2
    layout = PRESETS["yolov5"]
    det = decode([head], layout, (64, 64))
    for f in range(2):
        cs = head[f, :, 5:]
        score, cls = cs.max(1) * head[f, :, 4], cs.argmax(1)
        cx, cy, w, h = head[f, :, :4].T
        boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), 0, 64).astype(np.float32)
        idx = np.flatnonzero(score >= layout.score_threshold)
        idx = idx[(boxes[idx, 2] > boxes[idx, 0]) & (boxes[idx, 3] > boxes[idx, 1])]
        kept = idx[ref.nms(boxes[idx], score[idx].astype(np.float32), cls[idx], layout.iou, layout.max_det)]
        mine = det.frame == f
        np.testing.assert_allclose(det.score[mine], score[kept], rtol=1e-6)
        np.testing.assert_allclose(det.boxes[mine], boxes[kept], atol=1e-4)
        np.testing.assert_allclose(det.class_scores[mine], cs[kept])  # class probabilities, without objectness


def test_grid_offsets_decode_to_the_boxes_they_encode():
    """YOLOX: boxes written as offsets on the grids of strides 8, 16, 32 come back in pixels."""
    size, strides = 64, (8, 16, 32)
    cells = [(s, y, x) for s in strides for y in range(size // s) for x in range(size // s)]
    head = np.zeros((1, len(cells), 5 + 3), np.float32)
    head[..., 4] = 0.0  # no objects but the ones written below
    wanted = {}
    for k, (cx, cy, w, h, c) in enumerate([(12.0, 20.0, 10.0, 14.0, 0), (40.0, 24.0, 30.0, 20.0, 2)]):
        i = [i for i, (s, y, x) in enumerate(cells) if s == strides[k] and y == int(cy // s) and x == int(cx // s)][0]
        s = strides[k]
        head[0, i, :4] = [cx / s - cells[i][2], cy / s - cells[i][1], np.log(w / s), np.log(h / s)]
        head[0, i, 4], head[0, i, 5 + c] = 0.9, 0.8
        wanted[c] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    det = decode([head], PRESETS["yolox"], (size, size))
    assert sorted(det.cls.tolist()) == [0, 2]
    for b, c in zip(det.boxes, det.cls):
        np.testing.assert_allclose(b, wanted[int(c)], atol=1e-4)
    np.testing.assert_allclose(det.score, 0.72, rtol=1e-6)
    with pytest.raises(InputError, match="grids of strides"):
        decode([head[:, :-1]], PRESETS["yolox"], (size, size))


def test_boxes_outside_the_image_are_clipped_or_skipped_and_counted():
    boxes = np.array([[-5, 10, 20, 30], [10, 10, 10, 30], [100, 100, 120, 120], [np.nan, 0, 4, 4], [1, 1, 5, 5]])
    fixed, keep, changed = clean_boxes(boxes, 96, 96)
    assert keep.tolist() == [True, False, False, False, True]
    assert changed == 1
    np.testing.assert_array_equal(fixed[0], [0, 10, 20, 30])
    table = np.zeros((1, 5, 6), np.float32)
    table[0, :, :4] = np.nan_to_num(boxes, nan=0.0)
    table[0, 3, :4] = [np.nan, 0, 4, 4]
    table[0, :, 4] = [0.9, 0.8, 0.7, 0.6, 0.0]  # last row: padding
    det = decode([table], PRESETS["nms"], (96, 96))
    assert len(det) == 1 and det.clipped == 1 and det.skipped == 3 and det.class_scores is None


def test_a_frame_without_objects_is_kept_in_the_count():
    sep = [np.zeros((2, 4, 4), np.float32), np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)]
    sep[0][1, 0] = [1, 1, 9, 9]
    sep[1][1, 0] = 0.5
    det = decode(sep, PRESETS["boxes-scores-classes"], (16, 16))
    assert det.per_frame().tolist() == [0, 1]


def test_normalized_cxcywh_boxes():
    layout = load_layout({"kind": "nms", "box_format": "cxcywh", "normalized": True})
    table = np.array([[[0.5, 0.5, 0.5, 0.25, 0.9, 2]]], np.float32)
    det = decode([table], layout, (100, 200))
    np.testing.assert_allclose(det.boxes[0], [50, 37.5, 150, 62.5])


def test_class_logits_invert_sigmoid_and_softmax():
    z = np.array([[-2.0, 0.5, 3.0]])
    np.testing.assert_allclose(class_logits(1 / (1 + np.exp(-z)), "sigmoid"), z, atol=1e-5)
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(class_logits(p, "softmax"), z - np.log(np.exp(z).sum()), atol=1e-5)


def test_spec_files(tmp_path):
    spec = tmp_path / "mine.json"
    spec.write_text(json.dumps({"preset": "yolov8", "score_threshold": 0.4, "outputs": ["output0"]}))
    layout = load_layout(str(spec))
    assert layout.kind == "raw" and layout.score_threshold == 0.4 and layout.outputs == ("output0",)
    assert OutputLayout(**layout.to_dict()) == layout
    assert OutputLayout(**PRESETS["yolox"].to_dict()) == PRESETS["yolox"]  # JSON lists read back as the tuples


@pytest.mark.parametrize("spec, message", [
    ("yolov9", "layout 'yolov9' not found; available: .*yolov8"),
    ({"kind": "raw", "colour": 1}, "unknown layout field\\(s\\) \\['colour'\\]"),
    ({"box_format": "xyxy"}, "needs 'kind'"),
    ({"kind": "separate", "outputs": ["a"]}, "names 3 output\\(s\\)"),
    ({"kind": "raw", "iou": 2}, "must lie in \\[0, 1\\]"),
    ({"preset": "ssd"}, "layout preset 'ssd' not found"),
    ({"preset": "yolox", "grid_strides": [8, 0]}, "grid_strides must be whole numbers >= 1"),
    ({"preset": "nms", "objectness": True}, "describe raw heads"),
    ({"preset": "yolox", "box_format": "xyxy"}, "set box_format 'cxcywh'"),
    ({"preset": "yolov8", "iou": "high"}, "layout iou must be a number in \\[0, 1\\], got 'high'"),
    ({"preset": "yolov8", "score_threshold": None}, "layout score_threshold must be a number"),
    ({"preset": "yolov8", "values_last": "yes"}, "layout values_last must be true or false, got 'yes'"),
    ({"preset": "yolov8", "max_det": True}, "max_det must be an integer >= 1"),
    ({"preset": "yolov8", "outputs": [3]}, "layout name and outputs must be text"),
])
def test_bad_layouts_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        load_layout(spec)


def test_outputs_that_do_not_fit_are_refused_with_their_shapes():
    with pytest.raises(InputError, match="needs one \\(B, K, 6\\) output, got \\(1, 10, 5\\)"):
        decode([np.zeros((1, 10, 5), np.float32)], PRESETS["nms"], (32, 32))


def test_object_features_pool_each_map_at_its_own_stride():
    from nnwatch.objects.detections import Detections
    from nnwatch.objects.object_features import object_features

    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(2, 3, 12, 12)).astype(np.float32), rng.normal(size=(2, 5, 6, 6)).astype(np.float32)]
    det = Detections(frame=np.array([0, 1, 1]), boxes=np.array([[0, 0, 96, 96], [10, 20, 40, 50], [50, 5, 60, 90]],
                                                                   np.float32),
                     score=np.ones(3, np.float32), cls=np.zeros(3, np.int64), class_scores=None, n_frames=2)
    got = object_features(maps, det, (96, 96))
    np.testing.assert_allclose(got[0], ref.roi_average(maps[0], det.boxes, det.frame, (8.0, 8.0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], ref.roi_average(maps[1], det.boxes, det.frame, (16.0, 16.0)), rtol=1e-5,
                               atol=1e-6)
