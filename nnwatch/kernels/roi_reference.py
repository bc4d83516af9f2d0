"""Plain-numpy definitions of the per-object rules: RoIAlign's average over a box, box overlap,
and greedy per-class non-maximum suppression. :mod:`nnwatch.kernels.roi` compiles them and is
tested against them. Written for clarity, not speed.
"""

from __future__ import annotations

import numpy as np


def bilinear(plane: np.ndarray, y: float, x: float) -> float:
    """Bilinear sample of one ``(H, W)`` plane at ``(y, x)`` in cell coordinates (RoIAlign's rule).

    Cell ``(i, j)`` has its centre at ``(i, j)``. Points more than one cell outside the plane
    read 0; points in the border margin read the nearest edge.

    Parameters
    ----------
    plane : numpy.ndarray
        ``(H, W)`` values.
    y, x : float
        Sample position.

    Returns
    -------
    float
        The interpolated value.
    """
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    p = plane.astype(np.float64)
    return float((1 - ly) * (1 - lx) * p[y0, x0] + (1 - ly) * lx * p[y0, x1]
                 + ly * (1 - lx) * p[y1, x0] + ly * lx * p[y1, x1])


def roi_samples(extent: float, max_samples: int) -> int:
    """Sample points per axis over a box side of ``extent`` cells: ``ceil(extent)`` in ``[1, max_samples]``.

    Parameters
    ----------
    extent : float
        Box side in feature-map cells.
    max_samples : int
        Cap.

    Returns
    -------
    int
        Sample count.
    """
    return int(min(max(np.ceil(extent), 1), max_samples))


def roi_average(maps: np.ndarray, boxes: np.ndarray, frame: np.ndarray, stride: tuple[float, float],
                max_samples: int = 8) -> np.ndarray:
    """Average of each channel over each box: RoIAlign with one output bin, aligned, adaptive samples.

    A box ``(x1, y1, x2, y2)`` in input pixels covers ``[x1 / sx - 0.5, x2 / sx - 0.5]`` in cell
    coordinates of a map with stride ``(sy, sx)``; it is sampled on a regular
    ``ny x nx`` grid at the centres of equal sub-cells (``n = roi_samples(side)``) and the
    bilinear samples averaged. Equal to torchvision's ``roi_align(output_size=1,
    spatial_scale=1/s, sampling_ratio=0, aligned=True)`` for boxes up to ``max_samples`` cells.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(B, C, H, W)`` feature maps.
    boxes : numpy.ndarray
        ``(M, 4)`` boxes ``x1, y1, x2, y2`` in input pixels.
    frame : numpy.ndarray
        ``(M,)`` which map of the batch each box belongs to.
    stride : tuple of float
        ``(sy, sx)``: input pixels per cell.
    max_samples : int
        Most sample points per axis.

    Returns
    -------
    numpy.ndarray
        float32 ``(M, C)``.
    """
    out = np.zeros((len(boxes), maps.shape[1]), np.float64)
    for m, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        ys, xs = y1 / stride[0] - 0.5, x1 / stride[1] - 0.5
        hh, ww = (y2 - y1) / stride[0], (x2 - x1) / stride[1]
        ny, nx = roi_samples(hh, max_samples), roi_samples(ww, max_samples)
        points = [(ys + (iy + 0.5) * hh / ny, xs + (ix + 0.5) * ww / nx) for iy in range(ny) for ix in range(nx)]
        for c in range(maps.shape[1]):
            out[m, c] = np.mean([bilinear(maps[frame[m], c], y, x) for y, x in points])
    return out.astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes (0 when both are empty).

    Parameters
    ----------
    a, b : numpy.ndarray
        Boxes.

    Returns
    -------
    float
        IoU in ``[0, 1]``.
    """
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy per-class non-maximum suppression.

    Candidates are visited by score, highest first (ties: lower index first); one is kept
    unless a kept box of its class overlaps it with IoU above ``iou``. At most ``max_det``.

    Parameters
    ----------
    boxes : numpy.ndarray
        ``(N, 4)`` candidates.
    scores : numpy.ndarray
        ``(N,)`` scores.
    classes : numpy.ndarray
        ``(N,)`` classes.
    iou : float
        Overlap above which the lower-scored box is suppressed.
    max_det : int
        Most boxes kept.

    Returns
    -------
    numpy.ndarray
        int64 indices of kept candidates, by score.
    """
    kept: list[int] = []
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if len(kept) == max_det:
            break
        if all(classes[k] != classes[i] or box_iou(boxes[k], boxes[i]) <= iou for k in kept):
            kept.append(int(i))
    return np.asarray(kept, np.int64)


def raw_candidates(head: np.ndarray, values_last: bool, n_values: int, logits: bool, objectness: bool,
                   threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of a raw detection head: each cell's best class and score, kept at ``score >= threshold``.

    A cell's class probabilities are its values after the first ``n_values`` (box, then
    objectness where the head has it), read through a sigmoid when the head gives logits; its
    class is the first most probable one and its score that probability, times its objectness
    where the head has one. NaN anywhere among a cell's class values, or a non-finite score,
    drops the cell. With objectness and a positive threshold, a cell whose objectness is below
    the threshold (or NaN) is a candidate of no class, as YOLOv5's ``non_max_suppression``
    first keeps the cells whose objectness passes the threshold: for class probabilities in
    ``[0, 1]`` such a cell's score could not reach the threshold anyway, so the rule only
    decides for heads whose class values leave ``[0, 1]``.

    Parameters
    ----------
    head : numpy.ndarray
        float32 ``(B, n_values + C, N)`` (or ``(B, N, n_values + C)`` with ``values_last``).
    values_last : bool
        The values are the last axis.
    n_values : int
        Values before the class scores (4, or 5 with objectness).
    logits : bool
        The class values are logits (probability = sigmoid, in float64).
    objectness : bool
        Value 4 is an objectness multiplied into the score.
    threshold : float
        Lowest kept score.

    Returns
    -------
    tuple of numpy.ndarray
        ``(frame int64, cell int64, score float64, class int64)`` of the kept cells, by frame then cell.
    """
    threshold = float(threshold)  # a Python float: compared in the scores' own precision
    values = head if values_last else np.moveaxis(head, 1, 2)  # (B, N, V)
    cs = values[..., n_values:]
    probs = cs if not logits else 1 / (1 + np.exp(-cs.astype(np.float64)))
    score = probs.max(axis=2)
    cls = probs.argmax(axis=2).astype(np.int64)
    if objectness:
        score = score * values[..., 4]
    keep = np.isfinite(score) & (score >= threshold)
    if objectness and threshold > 0:
        keep &= values[..., 4] >= threshold  # float32 against the threshold in float32, as the scores
    frame, cell = np.nonzero(keep)
    return frame.astype(np.int64), cell.astype(np.int64), score[frame, cell].astype(np.float64), cls[frame, cell]
