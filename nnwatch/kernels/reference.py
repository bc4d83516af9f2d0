"""Definition-literal numpy versions of every kernel: the oracle for tests and benchmarks.

Written for clarity, not speed. Do not optimize.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .coverage import CoverageTables


def topk_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values; ties go to the lower index; NaN is never chosen.

    Parameters
    ----------
    values : numpy.ndarray
        1-D values.
    k : int
        How many.

    Returns
    -------
    numpy.ndarray
        int64 indices, largest first.
    """
    order = np.argsort(-values.astype(np.float64), kind="stable")[: min(k, values.size)]
    return order[~np.isnan(values[order])]


def section_index(v: float, lo: float, inv_width: float, k: int) -> int:
    """k-section of ``v`` inside ``[lo, hi]`` (caller checks the range).

    Parameters
    ----------
    v, lo : float
        Value and lower bound.
    inv_width : float
        ``k / (hi - lo)``, 0 when ``hi == lo``.
    k : int
        Number of sections.

    Returns
    -------
    int
        Section in ``[0, k)``.
    """
    return min(int((np.float64(v) - np.float64(lo)) * np.float64(inv_width)), k - 1)


def pass1(layers: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, k_top: int) -> dict:
    """Reference pass-1 statistics over one dataset.

    Parameters
    ----------
    layers : sequence of numpy.ndarray
        ``(B, n_l)`` per layer.
    labels : numpy.ndarray
        ``(B,)`` class per sample, -1 = skip.
    n_classes : int
        Number of classes ``C`` (the global row is added as row ``C``).
    k_top : int
        k of top-k.

    Returns
    -------
    dict
        count, min, max, mean, m2, topk_count.
    """
    acts = np.concatenate([np.asarray(a, dtype=np.float32) for a in layers], axis=1)
    sizes = [a.shape[1] for a in layers]
    n = acts.shape[1]
    rows = n_classes + 1
    out = {
        "count": np.zeros(rows, np.int64),
        "min": np.full((rows, n), np.inf, np.float32),
        "max": np.full((rows, n), -np.inf, np.float32),
        "mean": np.zeros((rows, n), np.float64),
        "m2": np.zeros((rows, n), np.float64),
        "topk_count": np.zeros((rows, n), np.int64),
    }
    for row in range(rows):
        mask = labels >= 0 if row == n_classes else labels == row
        x = acts[mask].astype(np.float64)
        out["count"][row] = x.shape[0]
        if x.shape[0] == 0:
            continue
        out["min"][row] = acts[mask].min(axis=0)
        out["max"][row] = acts[mask].max(axis=0)
        out["mean"][row] = x.mean(axis=0)
        out["m2"][row] = ((x - x.mean(axis=0)) ** 2).sum(axis=0)
        for sample in acts[mask]:
            start = 0
            for size in sizes:
                for j in topk_indices(sample[start : start + size], k_top):
                    out["topk_count"][row, start + j] += 1
                start += size
    return out


def pass2(layers: Sequence[np.ndarray], labels: np.ndarray, lo: np.ndarray, hi: np.ndarray,
          inv_width: np.ndarray, threshold: np.ndarray, k: int) -> dict:
    """Reference pass-2 statistics (section hits, active and outside counts).

    Parameters
    ----------
    layers : sequence of numpy.ndarray
        ``(B, n_l)`` per layer.
    labels : numpy.ndarray
        ``(B,)`` class per sample, -1 = skip.
    lo, hi, inv_width : numpy.ndarray
        ``(C + 1, N)`` ranges from pass 1 and ``k / (hi - lo)``.
    threshold : numpy.ndarray
        ``(N,)`` activation thresholds.
    k : int
        Number of sections.

    Returns
    -------
    dict
        section_hits ``(C+1, N, k)``, active_count and outside_count ``(C+1, N)``.
    """
    acts = np.concatenate([np.asarray(a, dtype=np.float32) for a in layers], axis=1)
    rows, n = lo.shape
    hits = np.zeros((rows, n, k), np.int64)
    active = np.zeros((rows, n), np.int64)
    outside = np.zeros((rows, n), np.int64)
    for b, c in enumerate(labels):
        if c < 0:
            continue
        for row in (c, rows - 1):
            for j in range(n):
                v = acts[b, j]
                active[row, j] += v > threshold[j]
                if lo[row, j] <= v <= hi[row, j]:
                    hits[row, j, section_index(v, lo[row, j], inv_width[row, j], k)] += 1
                else:
                    outside[row, j] += 1
    return {"section_hits": hits, "active_count": active, "outside_count": outside}


def coverage_scores(layers: Sequence[np.ndarray], pred: np.ndarray, tables: CoverageTables) -> np.ndarray:
    """Reference per-sample coverage scores, columns as ``SCORE_NAMES``.

    A NaN neuron is inactive (``nc``), outside its range (``kmnc``, ``nbc``), adds +inf to
    ``nb_excess`` and is never in the top-k; the top-k share's denominator is
    ``min(k_top, layer size)`` per layer whatever the NaNs.

    Parameters
    ----------
    layers : sequence of numpy.ndarray
        ``(B, n_l)`` per layer.
    pred : numpy.ndarray
        ``(B,)`` class row per sample.
    tables : CoverageTables
        Compiled signature.

    Returns
    -------
    numpy.ndarray
        float64 ``(B, 6)``.
    """
    acts = np.concatenate([np.asarray(a, dtype=np.float32) for a in layers], axis=1)
    sizes = [a.shape[1] for a in layers]
    batch, n = acts.shape
    k = tables.section_rare.shape[2]
    out = np.zeros((batch, 6))
    for b in range(batch):
        c = int(pred[b])
        v = acts[b]
        lo, hi = tables.lo[c], tables.hi[c]
        active = v > tables.threshold
        nc = np.where(active, tables.on_rare[c], tables.off_rare[c]).astype(bool)
        inside = (v >= lo) & (v <= hi)
        km = np.ones(n, dtype=bool)
        idx = np.flatnonzero(inside)
        sec = np.minimum(((v[idx].astype(np.float64) - lo[idx]) * tables.inv_width[c, idx]).astype(np.int64), k - 1)
        km[idx] = tables.section_rare[c, idx, sec].astype(bool)
        below = v < lo
        above = v > hi
        missing = np.isnan(v)
        excess = np.where(below, (lo.astype(np.float64) - v) * tables.inv_unit[c], 0.0)
        excess = excess + np.where(above, (v.astype(np.float64) - hi) * tables.inv_unit[c], 0.0)
        excess = np.where(missing, np.inf, excess)
        rare_top = 0
        top_total = 0
        start = 0
        for size in sizes:
            idx = topk_indices(v[start : start + size], tables.k_top)
            rare_top += int(tables.topk_rare[c, start + idx].sum())
            top_total += min(tables.k_top, size)
            start += size
        out[b] = (
            nc.mean(),
            km.mean(),
            rare_top / top_total if top_total else 0.0,
            (~inside).mean(),
            excess.sum() / n,
            (~np.isfinite(v)).sum(),
        )
    return out


def reduce_maps(maps: np.ndarray, use_max: bool) -> np.ndarray:
    """Reference spatial reduction ``(B, C, ...) -> (B, C)``.

    Parameters
    ----------
    maps : numpy.ndarray
        Feature maps.
    use_max : bool
        Max instead of mean.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, C)``.
    """
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1).astype(np.float64)
    return (flat.max(axis=2) if use_max else flat.mean(axis=2)).astype(np.float32)


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
