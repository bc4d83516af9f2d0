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
