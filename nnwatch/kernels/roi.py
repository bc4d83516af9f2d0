"""Per-object kernels: a raw head's candidates, average of feature maps over boxes (RoIAlign,
one bin) and greedy NMS.

The definitions are :func:`nnwatch.kernels.roi_reference.raw_candidates`,
:func:`nnwatch.kernels.roi_reference.roi_average` and :func:`nnwatch.kernels.roi_reference.nms`;
these are their compilations, tested against them.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_array
from ..errors import InputError
from . import roi_reference
from ._jit import njit


@njit()
def _corners(h, w, y, x, cells, weights, at):
    """The four cells a bilinear sample at ``(y, x)`` reads and their weights, written at ``at``;
    False (nothing written) for a point more than one cell outside the plane, which reads 0.
    """
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return False
    if y < 0.0:
        y = 0.0
    if x < 0.0:
        x = 0.0
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = h - 1
        y1 = y0
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = w - 1
        x1 = x0
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    cells[at] = y0 * w + x0
    cells[at + 1] = y0 * w + x1
    cells[at + 2] = y1 * w + x0
    cells[at + 3] = y1 * w + x1
    weights[at] = hy * hx
    weights[at + 1] = hy * lx
    weights[at + 2] = ly * hx
    weights[at + 3] = ly * lx
    return True


@njit()
def _samples(extent, max_samples):
    n = int(np.ceil(extent))
    if n < 1:
        n = 1
    if n > max_samples:
        n = max_samples
    return n


@njit()
def _roi_average(maps, boxes, frame, sy, sx, max_samples, out):
    channels, h, w = maps.shape[1], maps.shape[2], maps.shape[3]
    planes = maps.reshape(maps.shape[0], channels, h * w)
    # each sample's four cells and weights are found once per box, then read in every channel
    cells = np.empty(4 * max_samples * max_samples, np.int64)
    weights = np.empty(4 * max_samples * max_samples, np.float64)
    for m in range(boxes.shape[0]):
        b = frame[m]
        ys = boxes[m, 1] / sy - 0.5
        xs = boxes[m, 0] / sx - 0.5
        hh = (boxes[m, 3] - boxes[m, 1]) / sy
        ww = (boxes[m, 2] - boxes[m, 0]) / sx
        ny, nx = _samples(hh, max_samples), _samples(ww, max_samples)
        inv = 1.0 / (ny * nx)
        n = 0
        for iy in range(ny):
            y = ys + (iy + 0.5) * hh / ny
            for ix in range(nx):
                if _corners(h, w, y, xs + (ix + 0.5) * ww / nx, cells, weights, 4 * n):
                    n += 1  # a sample outside adds 0 to the sum and still counts in 1 / (ny * nx)
        for c in range(channels):
            plane = planes[b, c]
            total = 0.0
            for s in range(n):
                a = 4 * s
                total += (weights[a] * plane[cells[a]] + weights[a + 1] * plane[cells[a + 1]]
                          + weights[a + 2] * plane[cells[a + 2]] + weights[a + 3] * plane[cells[a + 3]])
            out[m, c] = total * inv


def roi_average(maps: np.ndarray, boxes: np.ndarray, frame: np.ndarray, stride: tuple[float, float],
                max_samples: int = 8, out: np.ndarray | None = None) -> np.ndarray:
    """Average of each channel of ``maps`` over each box (see :func:`nnwatch.kernels.roi_reference.roi_average`).

    Parameters
    ----------
    maps : numpy.ndarray
        float32 C-contiguous ``(B, C, H, W)``.
    boxes : numpy.ndarray
        float32 ``(M, 4)`` finite boxes ``x1, y1, x2, y2`` in input pixels, ``x1 <= x2``, ``y1 <= y2``.
    frame : numpy.ndarray
        int64 ``(M,)`` batch index of each box, in ``[0, B)``.
    stride : tuple of float
        ``(sy, sx)`` input pixels per cell, both > 0.
    max_samples : int
        Most sample points per axis (>= 1).
    out : numpy.ndarray, optional
        float32 ``(M, C)`` destination.

    Returns
    -------
    numpy.ndarray
        float32 ``(M, C)``.

    Raises
    ------
    InputError
        Arrays of the wrong dtype, shape or layout, non-finite or inverted boxes, frame indices
        out of range, or a non-positive stride.
    """
    check_array(maps, "maps", np.float32, (None, None, None, None))
    m = boxes.shape[0] if isinstance(boxes, np.ndarray) else 0
    check_array(boxes, "boxes", np.float32, (m, 4))
    check_array(frame, "frame", np.int64, (m,))
    if m and not np.isfinite(boxes).all():
        raise InputError("boxes: non-finite coordinates; drop or clip them first (nnwatch.objects.boxes.clean_boxes)")
    if m and ((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()):
        raise InputError("boxes: x2 < x1 or y2 < y1; boxes must be x1, y1, x2, y2 with x1 <= x2 and y1 <= y2")
    if m and (frame.min() < 0 or frame.max() >= maps.shape[0]):
        raise InputError(f"frame: indices must lie in [0, {maps.shape[0]}), got {frame.min()}..{frame.max()}")
    sy, sx = (float(s) for s in stride)
    if not (sy > 0 and sx > 0 and np.isfinite(sy) and np.isfinite(sx)):
        raise InputError(f"stride must be two positive numbers (pixels per cell), got {stride!r}")
    if not (isinstance(max_samples, (int, np.integer)) and max_samples >= 1):
        raise InputError(f"max_samples must be an integer >= 1, got {max_samples!r}")
    if maps.shape[2] < 1 or maps.shape[3] < 1:
        raise InputError(f"maps: empty spatial extent {maps.shape[2:]}")
    if out is None:
        out = np.empty((m, maps.shape[1]), np.float32)
    check_array(out, "out", np.float32, (m, maps.shape[1]), writeable=True)
    _roi_average(maps, boxes, frame, sy, sx, int(max_samples), out)
    return out


@njit()
def _iou(boxes, i, j):
    iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
    ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    union = ((boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
             + (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter)
    return inter / union if union > 0.0 else 0.0


@njit()
def _nms(boxes, order, classes, iou, max_det, kept):
    n_kept = 0
    for t in range(order.shape[0]):
        if n_kept == max_det:
            break
        i = order[t]
        keep = True
        for u in range(n_kept):
            k = kept[u]
            if classes[k] == classes[i] and _iou(boxes, k, i) > iou:
                keep = False
                break
        if keep:
            kept[n_kept] = i
            n_kept += 1
    return n_kept


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy per-class non-maximum suppression (see :func:`nnwatch.kernels.roi_reference.nms`).

    Parameters
    ----------
    boxes : numpy.ndarray
        float32 ``(N, 4)`` finite candidates ``x1, y1, x2, y2``.
    scores : numpy.ndarray
        float32 ``(N,)`` finite scores.
    classes : numpy.ndarray
        int64 ``(N,)`` classes.
    iou : float
        IoU above which the lower-scored box of a class is dropped, in ``[0, 1]``.
    max_det : int
        Most boxes kept (>= 1).

    Returns
    -------
    numpy.ndarray
        int64 indices of the kept candidates, highest score first.

    Raises
    ------
    InputError
        Wrong arrays, non-finite values, ``iou`` outside ``[0, 1]`` or ``max_det < 1``.
    """
    n = boxes.shape[0] if isinstance(boxes, np.ndarray) else 0
    check_array(boxes, "boxes", np.float32, (n, 4))
    check_array(scores, "scores", np.float32, (n,))
    check_array(classes, "classes", np.int64, (n,))
    if n and not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise InputError("nms: boxes and scores must be finite; drop non-finite candidates first")
    if not (0.0 <= float(iou) <= 1.0):
        raise InputError(f"iou must lie in [0, 1], got {iou!r}")
    if not (isinstance(max_det, (int, np.integer)) and max_det >= 1):
        raise InputError(f"max_det must be an integer >= 1, got {max_det!r}")
    order = np.argsort(-scores.astype(np.float64), kind="stable").astype(np.int64)
    kept = np.empty(min(n, int(max_det)), np.int64)
    count = _nms(boxes, order, classes, float(iou), int(max_det), kept)
    return kept[:count].copy()


@njit()
def _best_classes_values_last(head, n_values, live, top, best, nan):
    # (B, N, V): each cell's class values are one contiguous row; cells not live are not read
    for b in range(head.shape[0]):
        for n in range(head.shape[1]):
            if not live[b, n]:
                continue
            row = head[b, n]
            t = row[n_values]
            k = 0
            bad = t != t
            for v in range(n_values + 1, row.shape[0]):
                q = row[v]
                bad |= q != q
                if q > t:  # strictly: the first maximum stays
                    t = q
                    k = v - n_values
            top[b, n], best[b, n], nan[b, n] = t, k, bad


@njit()
def _best_classes_values_first(head, n_values, live, top, best, nan):
    # (B, V, N): one contiguous row per value, every live cell updated along it
    for b in range(head.shape[0]):
        cells = np.flatnonzero(live[b])
        for n in cells:
            t = head[b, n_values, n]
            top[b, n], best[b, n], nan[b, n] = t, 0, t != t
        for v in range(n_values + 1, head.shape[1]):
            for n in cells:
                q = head[b, v, n]
                nan[b, n] |= q != q
                if q > top[b, n]:
                    top[b, n] = q
                    best[b, n] = v - n_values


@njit()
def _raw_candidates(head, values_last, n_values, objectness, threshold, frame, cell, score, cls):
    # class values are probabilities: float32 throughout, as the definition computes them
    batch = head.shape[0]
    n_cells = head.shape[1] if values_last else head.shape[2]
    live = np.ones((batch, n_cells), np.bool_)
    if objectness and threshold > 0:  # objectness below a positive threshold: dropped unread
        for b in range(batch):
            for n in range(n_cells):
                o = head[b, n, 4] if values_last else head[b, 4, n]
                live[b, n] = o >= threshold
    top = np.empty((batch, n_cells), np.float32)
    best = np.empty((batch, n_cells), np.int64)
    nan = np.empty((batch, n_cells), np.bool_)
    if values_last:
        _best_classes_values_last(head, n_values, live, top, best, nan)
    else:
        _best_classes_values_first(head, n_values, live, top, best, nan)
    kept = 0
    for b in range(batch):
        for n in range(n_cells):
            if not live[b, n] or nan[b, n]:  # NaN among the class values: the maximum is NaN, the cell is dropped
                continue
            s = top[b, n]
            if objectness:
                s = s * (head[b, n, 4] if values_last else head[b, 4, n])
            if not np.isfinite(s) or not s >= threshold:
                continue
            frame[kept] = b
            cell[kept] = n
            score[kept] = s
            cls[kept] = best[b, n]
            kept += 1
    return kept


def raw_candidates(head: np.ndarray, values_last: bool, n_values: int, logits: bool, objectness: bool,
                   threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A raw head's kept cells (see :func:`nnwatch.kernels.roi_reference.raw_candidates`), in one pass.

    Heads of probabilities are scanned by the compiled kernel, in float32 as the definition
    computes them; heads of logits (a float64 sigmoid of every class value) are left to the
    definition itself, whose vectorized ``exp`` a scalar one need not match to the last bit.

    Parameters
    ----------
    head : numpy.ndarray
        float32 C-contiguous ``(B, n_values + C, N)``, or ``(B, N, n_values + C)`` with ``values_last``.
    values_last : bool
        The values are the last axis.
    n_values : int
        Values before the class scores (4, or 5 with objectness), ``>= 4``.
    logits : bool
        The class values are logits.
    objectness : bool
        Value 4 is an objectness (then ``n_values >= 5``).
    threshold : float
        Lowest kept score (finite).

    Returns
    -------
    tuple of numpy.ndarray
        ``(frame int64, cell int64, score float64, class int64)`` of the kept cells, by frame then cell.

    Raises
    ------
    InputError
        A head of the wrong dtype, rank or layout, no class values, or bad settings.
    """
    check_array(head, "head", np.float32, (None, None, None))
    n_all = head.shape[2] if values_last else head.shape[1]
    if not (isinstance(n_values, (int, np.integer)) and 4 <= n_values < n_all):
        raise InputError(f"n_values must be at least 4 and leave class values in a head of {n_all} values, "
                         f"got {n_values!r}")
    if objectness and n_values < 5:
        raise InputError("an objectness head needs n_values >= 5 (box, objectness, then classes)")
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise InputError(f"threshold must be finite, got {threshold!r}")
    if logits:
        return roi_reference.raw_candidates(head, values_last, int(n_values), True, objectness, threshold)
    size = head.shape[0] * (head.shape[1] if values_last else head.shape[2])
    frame, cell = np.empty(size, np.int64), np.empty(size, np.int64)
    score, cls = np.empty(size, np.float64), np.empty(size, np.int64)
    # the definition compares float32 scores with the threshold as float32 (numpy's rule for a Python float)
    kept = _raw_candidates(head, bool(values_last), int(n_values), bool(objectness), np.float32(threshold),
                           frame, cell, score, cls)
    return frame[:kept].copy(), cell[:kept].copy(), score[:kept].copy(), cls[:kept].copy()
