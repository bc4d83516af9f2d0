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

One pass over the sample-major buffer (:mod:`nnwatch.kernels.layout`) computes all of them.
The serial kernel serves batch 1 (latency); the parallel one splits the batch over threads.

Non-finite activations have one definition, shared with :mod:`nnwatch.kernels.reference`:
a NaN neuron is inactive for ``nc``, outside its range for ``kmnc`` and ``nbc``, adds +inf
to ``nb_excess`` and never enters the top-k; +/-inf are ordinary values outside every range.
(The monitor scores any sample with a non-finite activation +inf on every coverage detector.)

:func:`coverage_scores` validates every argument before the compiled kernel runs; the kernels
themselves (leading underscore) trust their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from .._validate import check_array, check_classes
from ..errors import InputError
from ._jit import njit, parallel_guard
from .compact import OFF_BIT, ON_BIT, POINT_BIT, TOPK_BIT, CompactTables, decode_cell
from .rules import count_ratio
from .topk import topk_insert

SCORE_NAMES = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "nonfinite")
# Below this many neuron evaluations per call, starting threads costs more than it saves.
# benchmarks/kernels.py measures serial vs parallel around it: on 2 cores with nothing else
# running, parallel overtook serial between 8k and 32k evaluations.
PARALLEL_MIN_WORK = 1 << 14


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

    def __post_init__(self) -> None:
        off = check_array(self.offsets, "tables.offsets", np.int64, (None,))
        if off.size < 2 or off[0] != 0 or (np.diff(off) < 1).any():
            raise InputError("tables.offsets must start at 0 and increase by at least 1 per layer")
        n = int(off[-1])
        rows = self.lo.shape[0] if isinstance(self.lo, np.ndarray) and self.lo.ndim == 2 else None
        if rows is None or rows < 1:
            raise InputError("tables.lo must be a (classes, neurons) array with at least one class")
        for name, dtype in (("lo", np.float32), ("hi", np.float32), ("inv_width", np.float64),
                            ("inv_unit", np.float64), ("on_rare", np.uint8), ("off_rare", np.uint8),
                            ("topk_rare", np.uint8)):
            check_array(getattr(self, name), f"tables.{name}", dtype, (rows, n))
        check_array(self.threshold, "tables.threshold", np.float32, (n,))
        sec = check_array(self.section_rare, "tables.section_rare", np.uint8, (rows, n, None))
        if sec.shape[2] < 1:
            raise InputError("tables.section_rare needs at least one section")
        if int(self.k_top) < 1:
            raise InputError(f"tables.k_top must be >= 1, got {self.k_top}")
        # the kernel turns (v - lo) * inv_width into a section index and scales distances by inv_unit
        for name in ("inv_width", "inv_unit"):
            arr = getattr(self, name)
            if not (np.isfinite(arr) & (arr >= 0)).all():
                raise InputError(f"tables.{name} must be finite and >= 0 everywhere (a section index is computed "
                                 "from it)")

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


# Empty stand-ins for the table set a call does not use (the reader never touches them).
_NO_F32 = np.zeros((0, 0), np.float32)
_NO_F64 = np.zeros((0, 0), np.float64)
_NO_U8 = np.zeros((0, 0), np.uint8)
_NO_SECTIONS = np.zeros((0, 0, 0), np.uint8)
_NO_CELLS = np.zeros((0, 0, 3), np.uint16)
_NO_GRID = np.zeros(0, np.float64)


@njit()
def _read_cell(compact, c, n, lo, hi, inv_w, inv_u, on_rare, off_rare, cells, base, step, fb_unit, k):
    """Class ``c``'s signature of neuron ``n`` from full or compact tables (the one cell reader).

    Returns ``(low, high, inv_width, inv_unit, on_rare, off_rare, bits)``; ``bits`` holds the
    compact row's section and top-k bits (0 for full tables, which keep those in arrays).
    """
    if compact:
        bits = cells[c, n, 2]
        low, high, iw, iu = decode_cell(base[n], step[n], cells[c, n, 0], cells[c, n, 1], (bits >> POINT_BIT) & 1,
                                        k, fb_unit[n])
        return low, high, iw, iu, (bits >> ON_BIT) & 1, (bits >> OFF_BIT) & 1, bits
    return lo[c, n], hi[c, n], inv_w[c, n], inv_u[c, n], on_rare[c, n], off_rare[c, n], 0


@njit()
def cover_row(buf, row, off, c, compact, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare, topk_rare, cells,
              base, step, fb_unit, k, k_top, out, ob, best_v, best_i):
    """The six coverage scores of one sample (neurons ``buf[row : row + N]``) against class ``c``.

    The one coverage loop, for full and compact tables alike (:func:`_read_cell`); writes
    ``out[ob, :6]`` in :data:`SCORE_NAMES` order. ``best_v``/``best_i`` hold ``k_top`` entries.
    """
    n_layers = off.shape[0] - 1
    n_total = off[n_layers]
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
        base_pos = row + start
        kk = min(k_top, n_l)
        filled = 0
        for j in range(n_l):
            n = start + j
            v = buf[base_pos + j]
            low, high, iw, iu, on, off_r, bits = _read_cell(compact, c, n, lo, hi, inv_w, inv_u, on_rare, off_rare,
                                                            cells, base, step, fb_unit, k)
            if not np.isfinite(v):
                nonfinite += 1
            if v > thr[n]:  # NaN: inactive
                nc += on
            else:
                nc += off_r
            if v >= low and v <= high:
                s = int((np.float64(v) - np.float64(low)) * iw)
                if s >= k:
                    s = k - 1
                km += ((bits >> s) & 1) if compact else sec_rare[c, n, s]
            else:
                km += 1
                nb += 1
                if v < low:
                    excess += (np.float64(low) - np.float64(v)) * iu
                elif v > high:
                    excess += (np.float64(v) - np.float64(high)) * iu
                else:  # NaN
                    excess = np.inf
            if v == v:  # NaN never enters the top-k
                filled = topk_insert(v, j, filled, kk, best_v, best_i)
        for t in range(filled):
            n = start + best_i[t]
            tk += ((cells[c, n, 2] >> TOPK_BIT) & 1) if compact else topk_rare[c, n]
        tk_total += kk
    out[ob, 0] = count_ratio(nc, n_total)  # correctly rounded: the counts come back exactly (rules)
    out[ob, 1] = count_ratio(km, n_total)
    out[ob, 2] = count_ratio(tk, tk_total) if tk_total > 0 else 0.0
    out[ob, 3] = count_ratio(nb, n_total)
    out[ob, 4] = excess / n_total
    out[ob, 5] = nonfinite


@njit()
def _cover_serial(buf, batch, off, pred, compact, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare, topk_rare,
                  cells, base, step, fb_unit, k, k_top, out, best_v, best_i):
    n_total = off[off.shape[0] - 1]
    for b in range(batch):
        cover_row(buf, b * n_total, off, pred[b], compact, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare,
                  topk_rare, cells, base, step, fb_unit, k, k_top, out, b, best_v[0], best_i[0])


@njit(parallel=True)
def _cover_parallel(buf, batch, off, pred, compact, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare,
                    topk_rare, cells, base, step, fb_unit, k, k_top, out, best_v, best_i):
    n_total = off[off.shape[0] - 1]
    for b in prange(batch):
        cover_row(buf, b * n_total, off, pred[b], compact, lo, hi, inv_w, inv_u, thr, sec_rare, on_rare, off_rare,
                  topk_rare, cells, base, step, fb_unit, k, k_top, out, b, best_v[b], best_i[b])


def table_arrays(tables: CoverageTables | CompactTables) -> tuple:
    """The cell reader's arguments for a table set: ``(compact, lo, ..., k, k_top)``.

    Parameters
    ----------
    tables : CoverageTables or CompactTables
        Compiled signature.

    Returns
    -------
    tuple
        ``compact, lo, hi, inv_width, inv_unit, threshold, section_rare, on_rare, off_rare,
        topk_rare, cells, base, step, fallback_unit, k_sections, k_top``, with empty arrays
        for the other table kind.
    """
    if isinstance(tables, CompactTables):
        return (True, _NO_F32, _NO_F32, _NO_F64, _NO_F64, tables.threshold, _NO_SECTIONS, _NO_U8, _NO_U8, _NO_U8,
                tables.cells, tables.base, tables.step, tables.fallback_unit, int(tables.k_sections),
                int(tables.k_top))
    return (False, tables.lo, tables.hi, tables.inv_width, tables.inv_unit, tables.threshold, tables.section_rare,
            tables.on_rare, tables.off_rare, tables.topk_rare, _NO_CELLS, _NO_GRID, _NO_GRID, _NO_GRID,
            int(tables.section_rare.shape[2]), int(tables.k_top))


def coverage_scores(
    buf: np.ndarray, batch: int, pred: np.ndarray, tables: CoverageTables,
    out: np.ndarray | None = None, parallel: bool | None = None,
    scratch: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Score a sample-major activation buffer; every argument is checked before compiled code runs.

    Parameters
    ----------
    buf : numpy.ndarray
        float32 C-contiguous ``(B * N,)`` sample-major activations.
    batch : int
        ``B`` >= 1.
    pred : numpy.ndarray
        int64 ``(B,)`` class row of each sample, in ``[0, C)``.
    tables : CoverageTables or CompactTables
        Compiled signature (validated when it was built).
    out : numpy.ndarray, optional
        float64 C-contiguous writeable ``(B, 6)`` output buffer.
    parallel : bool or None
        Force the parallel (True) or serial (False) kernel; None picks parallel when
        ``batch * neurons >= PARALLEL_MIN_WORK``.
    scratch : tuple of numpy.ndarray, optional
        Top-k work arrays from :func:`make_scratch`: at least ``B`` rows for the parallel
        kernel (1 for the serial one) and ``tables.k_top`` columns.

    Returns
    -------
    numpy.ndarray
        float64 ``(B, 6)`` in :data:`SCORE_NAMES` order.

    Raises
    ------
    InputError
        A wrong dtype, shape, layout, size or class index (nothing is computed then).
    """
    if not isinstance(tables, (CoverageTables, CompactTables)):
        raise InputError(f"tables: expected CoverageTables or CompactTables, got {type(tables).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise InputError(f"batch must be an integer >= 1, got {batch!r}")
    batch = int(batch)
    check_array(buf, "buf", np.float32, (batch * tables.n_neurons,))
    check_array(pred, "pred", np.int64, (batch,), contiguous=False)
    check_classes(pred, tables.n_classes)
    if out is None:
        out = np.empty((batch, len(SCORE_NAMES)), dtype=np.float64)
    else:
        check_array(out, "out", np.float64, (batch, len(SCORE_NAMES)), writeable=True)
    if parallel is None:
        parallel = batch > 1 and batch * tables.n_neurons >= PARALLEL_MIN_WORK
    rows = batch if parallel else 1
    if scratch is None:
        scratch = make_scratch(rows, tables.k_top)
    else:
        check_scratch(scratch, rows, tables.k_top)
    _run_coverage(buf, batch, pred, tables, out, bool(parallel), scratch)
    return out


def check_scratch(scratch: object, rows: int, k_top: int) -> None:
    """Check top-k work arrays: large enough for ``rows`` kernel threads and ``k_top``.

    Parameters
    ----------
    scratch : object
        Expected: ``(float32 (>= rows, >= k_top), int64 (same shape))``, C-contiguous.
    rows : int
        Rows the kernel will use.
    k_top : int
        k of top-k coverage.

    Raises
    ------
    InputError
        Wrong type, dtype, layout or too small.
    """
    if not isinstance(scratch, tuple) or len(scratch) != 2:
        raise InputError("scratch: expected a (values, indices) tuple from make_scratch(rows, k_top)")
    vals, idx = scratch
    check_array(vals, "scratch[0]", np.float32, (None, None), writeable=True)
    check_array(idx, "scratch[1]", np.int64, vals.shape, writeable=True)
    if vals.shape[0] < rows or vals.shape[1] < k_top:
        raise InputError(f"scratch: shape {vals.shape} is too small; need at least ({rows}, {k_top}): "
                         f"use make_scratch({rows}, {k_top})")


def _run_coverage(buf, batch, pred, tables, out, parallel, scratch):  # type: ignore[no-untyped-def]
    # Callers have validated every argument (coverage_scores, or a plan that owns its arrays).
    best_v, best_i = scratch
    args = (buf, batch, tables.offsets, pred, *table_arrays(tables), out, best_v, best_i)
    if parallel:
        with parallel_guard():
            _cover_parallel(*args)
    else:
        _cover_serial(*args)


@njit()
def argmax_row(logits, b):
    """First index of row ``b``'s maximum; a row with NaN gives its first NaN, like ``numpy.argmax``."""
    best = 0
    bv = logits[b, 0]
    if not np.isnan(bv):
        for k in range(1, logits.shape[1]):
            v = logits[b, k]
            if np.isnan(v):
                return k
            if v > bv:
                bv = v
                best = k
    return best


@njit()
def _argmax_rows(logits, pred):
    for b in range(logits.shape[0]):
        pred[b] = argmax_row(logits, b)


def argmax_rows(logits: np.ndarray) -> np.ndarray:
    """Predicted class of each row, exactly as ``numpy.argmax(logits, axis=1)``.

    Parameters
    ----------
    logits : numpy.ndarray
        float32 C-contiguous ``(B, K)``, ``K >= 1``.

    Returns
    -------
    numpy.ndarray
        int64 ``(B,)``.
    """
    check_array(logits, "logits", np.float32, (None, None))
    if logits.shape[1] < 1:
        raise InputError("logits: need at least one class column")
    pred = np.empty(logits.shape[0], np.int64)
    _argmax_rows(logits, pred)
    return pred


def make_scratch(rows: int, k_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k work arrays for :func:`coverage_scores`.

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
