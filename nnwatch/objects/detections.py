"""A batch of detector outputs read through a layout: one row per object, boxes cleaned.

Boxes are clipped to the image; boxes with no area after clipping, or with non-finite
coordinates or scores, are skipped. Both are counted (``clipped``, ``skipped``) and never
raise: a detector emits such boxes in normal operation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..kernels.roi import nms, raw_candidates
from .layouts import OutputLayout


@dataclass
class Detections:
    """Objects of a batch of frames, one row each.

    Attributes
    ----------
    frame : numpy.ndarray
        int64 ``(M,)`` frame of each object, in ``[0, n_frames)``, non-decreasing.
    boxes : numpy.ndarray
        float32 ``(M, 4)`` ``x1, y1, x2, y2`` in input pixels, inside the image, positive area.
    score : numpy.ndarray
        float32 ``(M,)`` the detector's confidence.
    cls : numpy.ndarray
        int64 ``(M,)`` predicted class.
    class_scores : numpy.ndarray or None
        float32 ``(M, C)`` the class score vector as the model gives it (raw layouts only).
    n_frames : int
        Frames in the batch (frames without objects included).
    clipped, skipped : int
        Boxes clipped to the image, boxes dropped (no area or not finite).
    """

    frame: np.ndarray
    boxes: np.ndarray
    score: np.ndarray
    cls: np.ndarray
    class_scores: np.ndarray | None
    n_frames: int
    clipped: int = 0
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def per_frame(self) -> np.ndarray:
        """Objects in each frame, int64 ``(n_frames,)``."""
        return np.bincount(self.frame, minlength=self.n_frames).astype(np.int64)

    def top_classes(self, n_classes: int) -> np.ndarray:
        """Each frame's category for the stream's class test: the predicted class of its
        highest-scoring object (the first such row on a tie), or ``n_classes`` for a frame
        without objects.

        Parameters
        ----------
        n_classes : int
            Classes of the monitor; object classes are clipped to ``[0, n_classes)``.

        Returns
        -------
        numpy.ndarray
            int64 ``(n_frames,)`` in ``[0, n_classes]``.
        """
        out = np.full(self.n_frames, int(n_classes), np.int64)
        if len(self):
            order = np.lexsort((-self.score.astype(np.float64), self.frame))  # by frame, then highest score first
            frames = self.frame[order]
            first = np.ones(len(order), bool)
            first[1:] = frames[1:] != frames[:-1]
            out[frames[first]] = np.clip(self.cls[order[first]], 0, int(n_classes) - 1)
        return out


def class_logits(class_scores: np.ndarray, kind: str) -> np.ndarray:
    """Class scores as logits, for energy and MSP (sigmoid: ``log p / (1 - p)``; softmax: ``log p``).

    Parameters
    ----------
    class_scores : numpy.ndarray
        ``(M, C)`` scores.
    kind : {"sigmoid", "softmax", "logits"}
        What the scores are.

    Returns
    -------
    numpy.ndarray
        float32 ``(M, C)`` logits.
    """
    s = class_scores.astype(np.float64)
    if kind == "logits":
        return s.astype(np.float32)
    p = np.clip(s, 1e-7, 1 - 1e-7)
    return (np.log(p / (1 - p)) if kind == "sigmoid" else np.log(p)).astype(np.float32)


def clean_boxes(boxes: np.ndarray, height: float, width: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip ``x1, y1, x2, y2`` boxes to the image and mark the ones left with an area.

    Parameters
    ----------
    boxes : numpy.ndarray
        ``(N, 4)`` boxes (any float dtype; NaN and Inf allowed).
    height, width : float
        Image size in pixels.

    Returns
    -------
    tuple
        ``(clipped boxes float32 (N, 4), keep bool (N,), number of boxes changed by clipping
        among those kept)``.
    """
    b = np.asarray(boxes, np.float64)
    finite = np.isfinite(b).all(axis=1)
    lo = np.array([0.0, 0.0, 0.0, 0.0])
    hi = np.array([width, height, width, height])
    c = np.clip(np.where(finite[:, None], b, 0.0), lo, hi)
    keep = finite & (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
    changed = int((keep & (np.abs(c - np.where(finite[:, None], b, 0.0)) > 0).any(axis=1)).sum())
    return c.astype(np.float32), keep, changed


def _xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "xyxy":
        return boxes
    cx, cy, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


@functools.lru_cache(maxsize=16)
def _grids(strides: tuple[int, ...], h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell columns, rows and strides of every candidate, grids in stride order, row-major (read-only)."""
    gx, gy, st = [], [], []
    for s in strides:
        ys, xs = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
        gx.append(xs.ravel())
        gy.append(ys.ravel())
        st.append(np.full(xs.size, float(s)))
    out = (np.concatenate(gx).astype(np.float64), np.concatenate(gy).astype(np.float64), np.concatenate(st))
    for a in out:
        a.flags.writeable = False
    return out


def check_grid(n_candidates: int, strides: Sequence[int], image_size: tuple[int, int]) -> None:
    """Refuse a head whose candidates are not the cells of the grids of ``strides``.

    Parameters
    ----------
    n_candidates : int
        Candidates in the head.
    strides : sequence of int
        Grid strides.
    image_size : tuple of int
        ``(height, width)`` of the input.

    Raises
    ------
    InputError
        ``n_candidates`` is not the number of cells of the ``(H / s, W / s)`` grids.
    """
    h, w = image_size
    n = _grids(tuple(int(s) for s in strides), int(h), int(w))[0].size
    if int(n_candidates) != n:
        raise InputError(f"the head has {n_candidates} candidates; grids of strides {list(strides)} on a "
                         f"{h}x{w} input have {n}")


def grid_boxes(offsets: np.ndarray, strides: Sequence[int], image_size: tuple[int, int],
               cells: np.ndarray | None = None) -> np.ndarray:
    """``cx, cy, w, h`` in pixels from YOLOX's raw grid offsets.

    Candidates run over the grids of ``strides`` in order, each ``(H / s, W / s)`` row-major;
    ``cx = (t_x + g_x) s``, ``cy = (t_y + g_y) s``, ``w = exp(t_w) s``, ``h = exp(t_h) s``.

    Parameters
    ----------
    offsets : numpy.ndarray
        ``(B, N, 4)`` raw values (with ``cells``: ``(B, K, 4)``, the values of those cells).
    strides : sequence of int
        Grid strides.
    image_size : tuple of int
        ``(height, width)`` of the input.
    cells : numpy.ndarray, optional
        int ``(K,)`` which candidates ``offsets`` holds (default: all of them, in order).

    Returns
    -------
    numpy.ndarray
        float64 ``(B, N, 4)`` boxes ``cx, cy, w, h``.

    Raises
    ------
    InputError
        ``N`` is not the number of grid cells of these strides.
    """
    h, w = image_size
    x, y, stride = _grids(tuple(int(s) for s in strides), int(h), int(w))
    if cells is None:
        check_grid(offsets.shape[1], strides, image_size)
    else:
        x, y, stride = x[cells], y[cells], stride[cells]
    t = offsets.astype(np.float64)
    with np.errstate(over="ignore"):
        return np.stack([(t[..., 0] + x) * stride, (t[..., 1] + y) * stride,
                         np.exp(t[..., 2]) * stride, np.exp(t[..., 3]) * stride], axis=-1)


def _decode_raw(output: np.ndarray, layout: OutputLayout, image_size: tuple[int, int],
                scale: np.ndarray) -> Detections:
    """A raw head: its candidates in one compiled pass (:func:`nnwatch.kernels.roi.raw_candidates`;
    a head of logits is read as per-class sigmoid logits for the confidence), then boxes for
    those cells only, cleaned and suppressed per frame.
    """
    head = np.ascontiguousarray(output, np.float32)
    n_frames = head.shape[0]
    if layout.grid_strides:  # the grid must match the head whatever survives the threshold
        check_grid(head.shape[1] if layout.values_last else head.shape[2], layout.grid_strides, image_size)
    frame, cell, score, cls = raw_candidates(head, layout.values_last, layout.n_values,
                                             layout.class_scores == "logits", layout.objectness,
                                             layout.score_threshold)
    values = head if layout.values_last else np.moveaxis(head, 1, 2)  # (B, N, values)
    raw_boxes = values[frame, cell, :4].astype(np.float64)
    if layout.grid_strides:
        raw_boxes = grid_boxes(raw_boxes[None], layout.grid_strides, image_size, cells=cell)[0]
    boxes = _xyxy(raw_boxes, layout.box_format) * scale
    class_scores = values[frame, cell, layout.n_values:]
    h, w = (float(v) for v in image_size)
    starts = np.searchsorted(frame, np.arange(n_frames + 1))
    rows: list[tuple] = []
    clipped = skipped = 0
    for f in range(n_frames):
        lo, hi = starts[f], starts[f + 1]
        fixed, ok, changed = clean_boxes(boxes[lo:hi], h, w)
        skipped += int((~ok).sum())
        clipped += changed
        idx, fixed = np.flatnonzero(ok) + lo, fixed[ok]
        if layout.runs_nms and len(idx):
            kept = nms(fixed, score[idx].astype(np.float32), cls[idx], layout.iou, layout.max_det)
        else:
            kept = np.argsort(-score[idx], kind="stable")[: layout.max_det]
        idx, fixed = idx[kept], fixed[kept]
        rows.append((np.full(len(idx), f, np.int64), fixed, score[idx], cls[idx], class_scores[idx]))
    return _detections(rows, n_frames, clipped, skipped, class_scores.shape[1])


def _detections(rows: list[tuple], n_frames: int, clipped: int, skipped: int, n_class_scores: int | None) -> Detections:
    """One table from per-frame ``(frame, boxes, score, class, class scores or None)`` rows."""

    def cat(i: int, dt: type, shape: tuple) -> np.ndarray:
        return np.concatenate([r[i] for r in rows]).astype(dt) if rows else np.zeros(shape, dt)

    return Detections(
        frame=cat(0, np.int64, (0,)),
        boxes=cat(1, np.float32, (0, 4)).reshape(-1, 4),
        score=cat(2, np.float32, (0,)),
        cls=cat(3, np.int64, (0,)),
        class_scores=None if n_class_scores is None else cat(4, np.float32, (0, n_class_scores)).reshape(
            -1, n_class_scores),
        n_frames=n_frames, clipped=clipped, skipped=skipped)


def decode(outputs: Sequence[np.ndarray], layout: OutputLayout, image_size: tuple[int, int]) -> Detections:
    """Objects of a batch from the detector outputs the layout reads.

    Parameters
    ----------
    outputs : sequence of numpy.ndarray
        The outputs in the layout's role order (raw/nms: one; separate: boxes, scores, classes).
    layout : OutputLayout
        How to read them.
    image_size : tuple of int
        ``(height, width)`` of the model input, for clipping and normalized boxes.

    Returns
    -------
    Detections
        One row per kept object, frames in order.

    Raises
    ------
    InputError
        Outputs whose shapes do not fit the layout.
    """
    problem = layout.shape_problem([np.shape(o) for o in outputs])
    if problem is not None:
        raise InputError(f"detector outputs do not fit layout {layout.name!r}: {problem}")
    h, w = (float(v) for v in image_size)
    scale = np.array([w, h, w, h]) if layout.normalized else np.ones(4)
    if layout.kind == "raw":
        return _decode_raw(outputs[0], layout, image_size, scale)
    if layout.kind == "nms":
        table = np.asarray(outputs[0], np.float64)
        boxes = _xyxy(table[..., :4], layout.box_format) * scale
        score, cls = table[..., 4], np.nan_to_num(table[..., 5], nan=-1).astype(np.int64)
    else:
        boxes = _xyxy(np.asarray(outputs[0], np.float64), layout.box_format) * scale
        score = np.asarray(outputs[1], np.float64)
        cls = np.nan_to_num(np.asarray(outputs[2], np.float64), nan=-1).astype(np.int64)
    n_frames = boxes.shape[0]
    rows: list[tuple] = []
    clipped = skipped = 0
    for f in range(n_frames):
        cand = np.isfinite(score[f]) & (score[f] >= layout.score_threshold) & (cls[f] >= 0) & (score[f] > 0)
        idx = np.flatnonzero(cand)
        fixed, ok, changed = clean_boxes(boxes[f, idx], h, w)
        skipped += int((~ok).sum())
        clipped += changed
        idx, fixed = idx[ok], fixed[ok]
        if layout.runs_nms and len(idx):
            kept = nms(fixed, score[f, idx].astype(np.float32), cls[f, idx], layout.iou, layout.max_det)
        else:
            kept = np.argsort(-score[f, idx], kind="stable")[: layout.max_det]
        idx, fixed = idx[kept], fixed[kept]
        rows.append((np.full(len(idx), f, np.int64), fixed, score[f, idx], cls[f, idx], None))
    return _detections(rows, n_frames, clipped, skipped, None)
