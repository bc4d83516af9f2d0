"""Fused per-sample coverage scores (Rossolini, Biondi, Buttazzo, IEEE TSE 2022).

For a sample with predicted class ``c`` and neuron values ``v_n`` (``N`` neurons over all
monitored layers), against class ``c``'s compiled signature (see ``docs/coverage.md``):

- ``nc``    share of neurons whose on/off state (``v_n > t_n``) is rare for class ``c``;
- ``kmnc``  share of neurons whose value lies in a k-section of ``[lo_cn, hi_cn]`` that is
            rare for class ``c`` (a value outside the range counts as rare);
- ``tknc``  share of this sample's per-layer top-k neurons that are rarely top-k for ``c``;
- ``nbc``   share of neurons outside ``[lo_cn, hi_cn]``;
- ``nb_excess`` mean distance outside the range, in units of the range width;
- ``nonfinite`` count of NaN/Inf neuron values.

One pass over the layer-blocked buffer (:mod:`nnwatch.kernels.layout`) computes all of them.
The serial kernel serves batch 1 (latency); the parallel one splits the batch over threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ._jit import njit, parallel_guard

SCORE_NAMES = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "nonfinite")
# Below this many neuron evaluations per call (about 0.5 ms serial), starting threads costs
# more than it saves (measured in benchmarks/kernels.py on 2 cores).
PARALLEL_MIN_WORK = 1 << 17


@dataclass(frozen=True)
class CoverageTables:
    """A profile compiled for scoring: per class, what is rare. Row index = class.

    Attributes
    ----------
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets.
    lo, hi : numpy.ndarray
        float32 ``(C, N)`` per-class neuron ranges.
    inv_width : numpy.ndarray
        float64 ``(C, N)``: ``k / (hi - lo)``, 0 where ``hi == lo``.
    inv_unit : numpy.ndarray
        float64 ``(C, N)``: 1 / range unit used by ``nb_excess``.
    threshold : numpy.ndarray
        float32 ``(N,)`` activation threshold ``t_n`` of neuron coverage.
    section_rare : numpy.ndarray
        uint8 ``(C, N, k)``: 1 where a k-section is rare for the class.
    on_rare, off_rare : numpy.ndarray
        uint8 ``(C, N)``: 1 where being active (resp. inactive) is rare for the class.
    topk_rare : numpy.ndarray
        uint8 ``(C, N)``: 1 where being in the layer's top-k is rare for the class.
    k_top : int
        k of top-k coverage.
    """

    offsets: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    inv_width: np.ndarray
    inv_unit: np.ndarray
    threshold: np.ndarray
    section_rare: np.ndarray
    on_rare: np.ndarray
    off_rare: np.ndarray
    topk_rare: np.ndarray
    k_top: int

    @property
    def n_classes(self) -> int:
        """Number of class rows."""
        return int(self.lo.shape[0])

    @property
    def n_neurons(self) -> int:
        """Total neurons over all layers."""
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        """Memory held by the tables, in bytes."""
        return sum(
            a.nbytes
            for a in (self.offsets, self.lo, self.hi, self.inv_width, self.inv_unit, self.threshold,
                      self.section_rare, self.on_rare, self.off_rare, self.topk_rare)
        )


@njit()
def _topk_insert(v, j, filled, kk, best_v, best_i):
    # Keeps best_v sorted descending; strict ">" keeps the earlier index on ties, which is
    # what a stable argsort of -v gives.
    if filled < kk:
        pos = filled
        filled += 1
    elif v > best_v[kk - 1]:
        pos = kk - 1
    else:
        return filled
    while pos > 0 and v > best_v[pos - 1]:
        best_v[pos] = best_v[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_v[pos] = v
    best_i[pos] = j
    return filled


@njit()
def _score_one(buf, batch, b, off, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare,
               topk_rare, k_top, out, best_v, best_i):
    # lo, hi, ... are the predicted class's rows (1-D views): no per-neuron class indexing.
    n_layers = off.shape[0] - 1
    n_total = off[n_layers]
    k = sec_rare.shape[1]
    nc = 0
    km = 0
    nb = 0
    nonfinite = 0
    excess = 0.0
    tk = 0
    tk_total = 0
    for layer in range(n_layers):
        start = off[layer]
        n_l = off[layer + 1] - start
        base = batch * start + b * n_l
        kk = min(k_top, n_l)
        filled = 0
        for j in range(n_l):
            n = start + j
            v = buf[base + j]
            if not np.isfinite(v):
                nonfinite += 1
            if v > thr[n]:
                nc += on_rare[n]
            else:
                nc += off_rare[n]
            low = lo[n]
            high = hi[n]
            if v >= low and v <= high:
                s = int((np.float64(v) - np.float64(low)) * inv_w[n])
                if s >= k:
                    s = k - 1
                km += sec_rare[n, s]
            else:
                km += 1
                nb += 1
                if v < low:
                    excess += (np.float64(low) - np.float64(v)) * inv_u[n]
                else:
                    excess += (np.float64(v) - np.float64(high)) * inv_u[n]
            if kk > 0:
                filled = _topk_insert(v, j, filled, kk, best_v, best_i)
        for t in range(filled):
            tk += topk_rare[start + best_i[t]]
        tk_total += kk
    out[b, 0] = nc / n_total
    out[b, 1] = km / n_total
    out[b, 2] = tk / tk_total if tk_total > 0 else 0.0
    out[b, 3] = nb / n_total
    out[b, 4] = excess / n_total
    out[b, 5] = nonfinite


@njit()
def _coverage_serial(buf, batch, off, pred, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare,
                     topk_rare, k_top, out, best_v, best_i):
    for b in range(batch):
        c = pred[b]
        _score_one(buf, batch, b, off, lo[c], hi[c], inv_w[c], inv_u[c], thr, sec_rare[c], on_rare[c],
                   off_rare[c], topk_rare[c], k_top, out, best_v[0], best_i[0])


@njit(parallel=True)
def _coverage_parallel(buf, batch, off, pred, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare,
                       topk_rare, k_top, out, best_v, best_i):
    for b in prange(batch):
        c = pred[b]
        _score_one(buf, batch, b, off, lo[c], hi[c], inv_w[c], inv_u[c], thr, sec_rare[c], on_rare[c],
                   off_rare[c], topk_rare[c], k_top, out, best_v[b], best_i[b])


def coverage_scores_packed(
    buf: np.ndarray, batch: int, pred: np.ndarray, tables: CoverageTables,
    out: np.ndarray | None = None, parallel: bool | None = None,
    scratch: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Score a layer-blocked buffer (the monitor's zero-copy path; inputs are trusted).

    Parameters
    ----------
    buf : numpy.ndarray
        float32 ``(B * N,)`` layer-blocked activations.
    batch : int
        ``B``.
    pred : numpy.ndarray
        int64 ``(B,)`` class row of each sample, in ``[0, C)``.
    tables : CoverageTables
        Compiled signature.
    out : numpy.ndarray, optional
        float64 ``(B, 6)`` output buffer.
    parallel : bool or None
        Force the parallel (True) or serial (False) kernel; None picks parallel when
        ``batch * neurons >= PARALLEL_MIN_WORK``.
    scratch : tuple of numpy.ndarray, optional
        Preallocated top-k work arrays from :func:`make_scratch` (avoids allocating per call).

    Returns
    -------
    numpy.ndarray
        float64 ``(B, 6)`` in :data:`SCORE_NAMES` order.
    """
    if out is None:
        out = np.empty((batch, len(SCORE_NAMES)), dtype=np.float64)
    if parallel is None:
        parallel = batch > 1 and batch * tables.n_neurons >= PARALLEL_MIN_WORK
    rows = batch if parallel else 1
    if scratch is None or scratch[0].shape[0] < rows:
        scratch = make_scratch(rows, tables.k_top)
    best_v, best_i = scratch
    args = (buf, batch, tables.offsets, pred, tables.lo, tables.hi, tables.inv_width, tables.inv_unit,
            tables.threshold, tables.section_rare, tables.on_rare, tables.off_rare, tables.topk_rare,
            int(tables.k_top), out, best_v, best_i)
    if parallel:
        with parallel_guard():
            _coverage_parallel(*args)
    else:
        _coverage_serial(*args)
    return out


def make_scratch(rows: int, k_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k work arrays for :func:`coverage_scores_packed`.

    Parameters
    ----------
    rows : int
        1 for the serial kernel, the batch size for the parallel one.
    k_top : int
        k of top-k coverage.

    Returns
    -------
    tuple of numpy.ndarray
        ``(float32 (rows, k), int64 (rows, k))``.
    """
    k = max(int(k_top), 1)
    return np.empty((rows, k), dtype=np.float32), np.empty((rows, k), dtype=np.int64)
