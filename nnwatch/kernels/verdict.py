"""The monitor's verdict on one batch, in one compiled call after onnxruntime.

:func:`verdict_pass` reads the logits and the sample-major activation buffer onnxruntime wrote
and, per sample ``b`` and detector column ``j``:

- ``STAGE_SCORES``: the predicted class (first maximum of the logits, as ``numpy.argmax``);
  the coverage scores against that class (:func:`nnwatch.kernels.coverage.cover_row`, full or
  compact tables); the logits' maximum and log-sum-exp; the squared Mahalanobis distance of
  the feature layer to the nearest class mean (:mod:`nnwatch.kernels.gaussian`);
- ``STAGE_DECIDE``: the score matrix. A column's score comes from the coverage scores
  (``sources[j] >= 0``: that column; ``SOURCE_COMBINED``: their mean, :mod:`~.rules`), the
  logits (``SOURCE_MSP``: ``-expm1(max - logsumexp)``, ``SOURCE_MAX_LOGIT``: ``-max``,
  ``SOURCE_ENERGY``: ``-logsumexp``), the Mahalanobis distance (``SOURCE_MAHALANOBIS``),
  a detector written in Python (``SOURCE_DETECTOR``: it filled ``scores_in[:, j]`` between
  the stages), or (``SOURCE_FUSED``, after every other column) the fused statistic of member
  columns (:mod:`nnwatch.kernels.fusion`). Then: a non-finite score, a coverage score of a
  sample with NaN/Inf activations and every score of a sample whose input held NaN/Inf become
  +inf; calibrated columns get the conformal p-value and flag (:mod:`~.conformal`,
  ``flag == (p <= alpha)``; a NaN/Inf input gets p = 0 and a flag); the verdict's ``flag`` is
  the decision column's flag or True for a NaN/Inf input, its ``confidence`` the decision
  column's p-value (0 for a NaN/Inf input, NaN uncalibrated); inactive columns are NaN and
  never flag. With a stream attached, each frame then takes one step of the stream tests
  (:mod:`nnwatch.kernels.martingale`).

State is packed once: the tables every thread shares in three arrays (:class:`VerdictTables`),
each thread's results for one batch size in two more (:class:`VerdictWorkspace`), a stream's
state in two (:class:`~nnwatch.kernels.martingale.StreamState`). A call unboxes those seven
arrays, the three buffers onnxruntime reads and writes (input, logits, taps) and three
integers, instead of some fifty arrays. :class:`VerdictTables` and :class:`VerdictWorkspace`
check every array when they are built (coverage scales included), :class:`VerdictPlan` checks
the buffers it binds and the stream's arrays (``StreamState.arrays_for``), so the kernel never
sees an unchecked size or index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_array
from ..errors import InputError
from ._jit import njit
from .compact import CompactTables
from .conformal import ConformalTables, count_at_least
from .coverage import SCORE_NAMES, CoverageTables, argmax_row, cover_row, table_arrays
from .fusion import FusionTables, member_evidence, strongest_half_sum
from .gaussian import class_distances
from .martingale import StreamState, stream_step
from .rules import coverage_score, finite_or_inf, logit_stats, top_places

SOURCE_DETECTOR = -1  # column filled by a detector written in Python
SOURCE_COMBINED = -2  # mean of the nc, kmnc, tknc and nbc coverage columns
SOURCE_FUSED = -3  # fused statistic of member columns (at most one such column)
SOURCE_MSP = -4  # 1 - max softmax probability
SOURCE_MAX_LOGIT = -5  # -max logit
SOURCE_ENERGY = -6  # -logsumexp of the logits
SOURCE_MAHALANOBIS = -7  # min over classes of the squared Mahalanobis distance of the feature layer
LOGIT_SOURCES = (SOURCE_MSP, SOURCE_MAX_LOGIT, SOURCE_ENERGY)  # the scores read from the logits alone
_LOWEST = SOURCE_MAHALANOBIS
_NONFINITE = SCORE_NAMES.index("nonfinite")



@njit()
def is_logit_source(source):
    """Whether a column's compiled source is one of :data:`LOGIT_SOURCES`; for use inside kernels."""
    return source == SOURCE_MSP or source == SOURCE_MAX_LOGIT or source == SOURCE_ENERGY


STAGE_SCORES, STAGE_DECIDE = 1, 2
STAGE_ALL = STAGE_SCORES | STAGE_DECIDE

# Slots of the shared int64 array's header: sizes, flags, then where each table starts.
(H_N, H_C, H_D, H_L, H_K, H_KTOP, H_TKT, H_COMPACT, H_NMASK, H_FUSED, H_NMEM, H_FLO, H_FHI, H_E, H_DC, H_R, H_RM, H_RF,
 I_OFF, I_SOURCES, I_CALROW, I_STARTS, I_ENDS, I_ALLOWED, I_MEMBERS, I_MSTARTS, I_MENDS, I_FSTARTS, I_FENDS,
 I_FALLOWED, I_MASKS,
 F_INVW, F_INVU, F_BASE, F_STEP, F_FB, F_REF, F_MREF, F_MSCALE, F_FREF, F_WHITEN, F_MEANS, F_NORMS,
 B_LO, B_HI, B_THR, B_SEC, B_ON, B_OFF, B_TOPK, B_CELLS, HEADER) = range(52)


class _Packer:
    """Concatenates arrays of one dtype into one flat array; remembers where each starts."""

    def __init__(self, dtype: type, align: int = 1) -> None:
        self.dtype = np.dtype(dtype)
        self.align = align
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> int:
        pad = -self.size % self.align
        if pad:
            self.parts.append(np.zeros(pad, self.dtype))
            self.size += pad
        start = self.size
        flat = np.ascontiguousarray(arr).reshape(-1)
        if self.dtype == np.uint8 and flat.dtype != np.uint8:
            flat = flat.view(np.uint8)
        self.parts.append(flat.astype(self.dtype, copy=False))
        self.size += flat.size
        return start

    def build(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, self.dtype)


@dataclass(frozen=True)
class Mahalanobis:
    """The compiled Mahalanobis column's model: the feature layer's columns and the whitened means.

    Attributes
    ----------
    lo, hi : int
        The feature layer's neurons are ``buf`` columns ``lo:hi``.
    whiten : numpy.ndarray
        float64 ``(hi - lo, E)``.
    means_t : numpy.ndarray
        float64 ``(E, C)`` whitened class means, transposed.
    norms : numpy.ndarray
        float64 ``(C,)`` their squared norms.
    """

    lo: int
    hi: int
    whiten: np.ndarray
    means_t: np.ndarray
    norms: np.ndarray


@dataclass(frozen=True)
class VerdictSpec:
    """What a verdict is computed from, as given (a :class:`VerdictTables` packs it for the kernel).

    Other compilations of the same definition (the ONNX verdict graph, :mod:`nnwatch.graphs`)
    read it from :attr:`VerdictTables.spec`. Fields as the :class:`VerdictTables` parameters.
    """

    n_classes: int
    n_neurons: int
    offsets: np.ndarray
    sources: np.ndarray
    masks: tuple
    coverage: object
    conformal: ConformalTables | None
    cal_row: np.ndarray | None
    fusion: tuple | None
    mahalanobis: Mahalanobis | None


class VerdictTables:
    """Everything a monitor's verdict reads besides the batch, packed in three arrays.

    Parameters
    ----------
    n_classes, n_neurons : int
        ``C`` (logit columns) and ``N`` (activation columns).
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets (``offsets[-1] == N``).
    sources : numpy.ndarray
        int64 ``(D,)``: per column, a coverage column (0-4) or one of the ``SOURCE_`` constants.
    masks : sequence of numpy.ndarray
        bool ``(D,)`` active-column masks a call chooses from (e.g. all, cheap only).
    coverage : CoverageTables, CompactTables or None
        Compiled signature; needed by coverage columns.
    conformal : ConformalTables or None
        Calibration of some columns.
    cal_row : numpy.ndarray or None
        int64 ``(D,)``: row of ``conformal.ref`` of each column, -1 = uncalibrated.
    fusion : tuple or None
        ``(FusionTables, one-row ConformalTables of the fused statistic)`` for the
        ``SOURCE_FUSED`` column; None: that column (if any) is NaN.
    mahalanobis : Mahalanobis or None
        Needed by a ``SOURCE_MAHALANOBIS`` column.

    Raises
    ------
    InputError
        Any array of the wrong dtype, shape or range.
    """

    def __init__(self, n_classes: int, n_neurons: int, offsets: np.ndarray, sources: np.ndarray,
                 masks: list[np.ndarray], coverage: CoverageTables | CompactTables | None = None,
                 conformal: ConformalTables | None = None, cal_row: np.ndarray | None = None,
                 fusion: tuple[FusionTables, ConformalTables] | None = None,
                 mahalanobis: Mahalanobis | None = None) -> None:
        C, N = int(n_classes), int(n_neurons)
        offsets = check_array(offsets, "offsets", np.int64, (None,))
        if C < 1 or N < 1 or offsets.size < 2 or offsets[0] != 0 or offsets[-1] != N or (np.diff(offsets) < 1).any():
            raise InputError("need at least one class and one neuron, and offsets from 0 to N growing by >= 1")
        sources = check_array(sources, "sources", np.int64, (None,))
        D = sources.shape[0]
        if D < 1 or ((sources < _LOWEST) | (sources >= _NONFINITE)).any() or (sources == SOURCE_FUSED).sum() > 1:
            raise InputError(f"sources must name coverage columns 0-{_NONFINITE - 1} or one of the SOURCE_ constants "
                             f"(SOURCE_FUSED at most once), got {sources.tolist()}")
        masks = [check_array(m, "mask", np.bool_, (D,)) for m in masks]
        if not masks:
            raise InputError("give at least one column mask")
        if ((sources >= 0) | (sources == SOURCE_COMBINED)).any():
            if not isinstance(coverage, (CoverageTables, CompactTables)):
                raise InputError("coverage columns need coverage tables")
            if coverage.n_classes != C or coverage.n_neurons != N or not np.array_equal(coverage.offsets, offsets):
                raise InputError(f"coverage tables must cover {C} classes and the {N} neurons of these layers")
        if (sources == SOURCE_MAHALANOBIS).any():
            self._check_mahalanobis(mahalanobis, C, N)
        ints, f64, narrow = _Packer(np.int64), _Packer(np.float64), _Packer(np.uint8, align=8)
        head = np.zeros(HEADER, np.int64)
        ints.add(head)
        head[H_N], head[H_C], head[H_D], head[H_L] = N, C, D, offsets.size - 1
        head[I_OFF] = ints.add(offsets)
        head[I_SOURCES] = ints.add(sources)
        head[H_NMASK] = len(masks)
        head[I_MASKS] = ints.add(np.stack(masks).astype(np.int64))
        self._pack_coverage(coverage, head, f64, narrow, ints)
        self._pack_conformal(conformal, cal_row, head, ints, f64, C, D)
        self._pack_fusion(fusion, sources, masks, head, ints, f64, C)
        m = mahalanobis if (sources == SOURCE_MAHALANOBIS).any() else None
        head[H_FLO], head[H_FHI] = (m.lo, m.hi) if m is not None else (0, 0)
        head[H_E] = m.whiten.shape[1] if m is not None else 0
        head[F_WHITEN] = f64.add(m.whiten if m is not None else np.zeros(0))
        head[F_MEANS] = f64.add(m.means_t if m is not None else np.zeros(0))
        head[F_NORMS] = f64.add(m.norms if m is not None else np.zeros(0))
        self.ints = ints.build()
        self.ints[:HEADER] = head
        self.floats = f64.build()
        self.narrow = narrow.build()
        self.coverage = self._coverage_views(coverage, head) if coverage is not None else None
        self.n_classes, self.n_neurons, self.n_columns = C, N, D
        self.k_top = int(head[H_KTOP])
        self.width = int(head[H_E])
        self.sources = sources
        self.masks = masks
        self.fused = int(head[H_FUSED])
        self.spec = VerdictSpec(C, N, offsets, sources, tuple(masks), self.coverage, conformal,
                                None if conformal is None else check_array(cal_row, "cal_row", np.int64, (D,)),
                                fusion if self.fused >= 0 else None, m)

    @staticmethod
    def _check_mahalanobis(m: Mahalanobis | None, C: int, N: int) -> None:
        if not isinstance(m, Mahalanobis) or not 0 <= m.lo < m.hi <= N:
            raise InputError("a Mahalanobis column needs its feature layer's column range inside the buffer")
        w = check_array(m.whiten, "whiten", np.float64, (m.hi - m.lo, None))
        check_array(m.means_t, "means_t", np.float64, (w.shape[1], C))
        check_array(m.norms, "norms", np.float64, (C,))

    @staticmethod
    def _pack_coverage(tables, head, f64, narrow, ints) -> None:  # type: ignore[no-untyped-def]
        if tables is None:
            head[H_K], head[H_KTOP], head[H_COMPACT], head[H_TKT] = 1, 1, 0, 1
            for slot in (F_INVW, F_INVU, F_BASE, F_STEP, F_FB):
                head[slot] = f64.add(np.zeros(0))
            for slot in (B_CELLS, B_LO, B_HI, B_THR, B_SEC, B_ON, B_OFF, B_TOPK):
                head[slot] = narrow.add(np.zeros(0, np.uint8))
            return
        (compact, lo, hi, inv_w, inv_u, thr, sec, on, off, topk, cells, base, step, fb, k, k_top) = table_arrays(tables)
        head[H_K], head[H_KTOP], head[H_COMPACT] = k, k_top, int(compact)
        head[H_TKT] = top_places(tables.offsets, k_top)
        head[B_CELLS] = narrow.add(cells)  # first: uint16 at an aligned offset
        head[F_INVW], head[F_INVU] = f64.add(inv_w), f64.add(inv_u)
        head[F_BASE], head[F_STEP], head[F_FB] = f64.add(base), f64.add(step), f64.add(fb)
        head[B_LO], head[B_HI], head[B_THR] = narrow.add(lo), narrow.add(hi), narrow.add(thr)
        head[B_SEC], head[B_ON], head[B_OFF], head[B_TOPK] = narrow.add(sec), narrow.add(on), narrow.add(off), \
            narrow.add(topk)

    @staticmethod
    def _pack_conformal(conformal, cal_row, head, ints, f64, C, D) -> None:  # type: ignore[no-untyped-def]
        if conformal is None:
            rows, ref = np.full(D, -1, np.int64), np.zeros((1, 1))
            starts, ends, allowed = np.zeros(C, np.int64), np.ones(C, np.int64), np.zeros(C, np.int64)
        else:
            if not isinstance(conformal, ConformalTables) or conformal.n_classes != C:
                raise InputError(f"conformal tables must cover the model's {C} classes")
            rows = check_array(cal_row, "cal_row", np.int64, (D,))
            if ((rows < -1) | (rows >= conformal.n_detectors)).any():
                raise InputError(f"cal_row entries must be -1 or rows of the {conformal.n_detectors} calibrated "
                                 "detectors")
            ref, starts, ends, allowed = conformal.ref, conformal.starts, conformal.ends, conformal.allowed
        head[I_CALROW] = ints.add(rows)
        head[H_DC], head[H_R] = ref.shape[0], ref.shape[1]
        head[F_REF] = f64.add(ref)
        head[I_STARTS], head[I_ENDS], head[I_ALLOWED] = ints.add(starts), ints.add(ends), ints.add(allowed)

    @staticmethod
    def _pack_fusion(fusion, sources, masks, head, ints, f64, C) -> None:  # type: ignore[no-untyped-def]
        fused = int(np.flatnonzero(sources == SOURCE_FUSED)[0]) if (sources == SOURCE_FUSED).any() else -1
        if fusion is None or fused < 0:
            head[H_FUSED], head[H_NMEM], head[H_RM], head[H_RF] = -1, 0, 1, 1
            zeros, ones = np.zeros(C, np.int64), np.ones(C, np.int64)
            head[I_MEMBERS] = ints.add(np.zeros(0, np.int64))
            head[I_MSTARTS], head[I_MENDS] = ints.add(zeros), ints.add(ones)
            head[I_FSTARTS], head[I_FENDS], head[I_FALLOWED] = ints.add(zeros), ints.add(ones), ints.add(zeros)
            head[F_MREF], head[F_MSCALE], head[F_FREF] = f64.add(np.zeros(1)), f64.add(np.zeros(0)), f64.add(np.zeros(1))
            return
        members, cal = fusion
        if not isinstance(members, FusionTables) or members.n_classes != C:
            raise InputError(f"fusion member tables must be FusionTables over the model's {C} classes")
        if not isinstance(cal, ConformalTables) or cal.n_classes != C or cal.n_detectors != 1:
            raise InputError(f"the fused statistic's calibration must be one-row ConformalTables over {C} classes")
        cols = members.members
        if (cols >= sources.shape[0]).any() or (sources[cols] == SOURCE_FUSED).any():
            raise InputError(f"fusion members {cols.tolist()} must be other columns of the score matrix")
        if any(not m[cols].all() for m in masks if m[fused]):
            raise InputError("a mask that runs the fused column must run all its members")
        head[H_FUSED], head[H_NMEM], head[H_RM], head[H_RF] = fused, cols.shape[0], members.ref.shape[1], \
            cal.ref.shape[1]
        head[I_MEMBERS] = ints.add(cols)
        head[I_MSTARTS], head[I_MENDS] = ints.add(members.starts), ints.add(members.ends)
        head[I_FSTARTS], head[I_FENDS], head[I_FALLOWED] = ints.add(cal.starts), ints.add(cal.ends), \
            ints.add(cal.allowed)
        head[F_MREF], head[F_MSCALE], head[F_FREF] = f64.add(members.ref), f64.add(members.scale), f64.add(cal.ref)

    def _coverage_views(self, tables, head):  # type: ignore[no-untyped-def]
        # The same tables, their large arrays now views of the packed storage (one copy in memory).
        from dataclasses import replace

        C, N = int(head[H_C]), int(head[H_N])
        if isinstance(tables, CompactTables):
            cells = self.narrow[head[B_CELLS] : head[B_CELLS] + 6 * C * N].view(np.uint16).reshape(C, N, 3)
            return replace(tables, cells=cells)
        k = int(head[H_K])

        def narrow(slot: int, n: int, dtype: type) -> np.ndarray:
            size = np.dtype(dtype).itemsize
            return self.narrow[head[slot] : head[slot] + size * n].view(dtype)

        f = self.floats
        return replace(tables, lo=narrow(B_LO, C * N, np.float32).reshape(C, N),
                       hi=narrow(B_HI, C * N, np.float32).reshape(C, N),
                       inv_width=f[head[F_INVW] : head[F_INVW] + C * N].reshape(C, N),
                       inv_unit=f[head[F_INVU] : head[F_INVU] + C * N].reshape(C, N),
                       section_rare=narrow(B_SEC, C * N * k, np.uint8).reshape(C, N, k),
                       on_rare=narrow(B_ON, C * N, np.uint8).reshape(C, N),
                       off_rare=narrow(B_OFF, C * N, np.uint8).reshape(C, N),
                       topk_rare=narrow(B_TOPK, C * N, np.uint8).reshape(C, N))

    @property
    def nbytes(self) -> int:
        """Bytes of the packed tables."""
        return int(self.ints.nbytes + self.floats.nbytes + self.narrow.nbytes)


@njit()
def workspace_layout(B, D, C, k_top, E):
    """Where each part of a workspace's int64 and float64 arrays starts, and their sizes.

    The verdict is one contiguous float64 block at the start of the float array (``n_verdict``
    values): ``scores (B, D) | p-values (B, D) | confidence (B) | flags (B, D) | flag (B) |
    NaN/Inf input (B) | predicted class (B) | logits (B, C) | stream p (B) | stream statistic
    (B) | class p (B) | class statistic (B) | stream alarm (B) | class alarm (B)``, flags as
    0/1, so a caller copies one block per call. Then scratch. Returns ``(i_pred, i_nonfinite,
    i_best, n_ints, n_verdict, f_cov, f_top, f_lse, f_maha, f_in, f_best, f_z, f_dots,
    n_floats)``; used by the kernel and by :class:`VerdictWorkspace`.
    """
    i_pred = 1
    i_nonfinite = i_pred + B
    i_best = i_nonfinite + B
    n_ints = i_best + k_top
    n_verdict = 3 * B * D + 10 * B + B * C
    f_cov = n_verdict
    f_top = f_cov + B * 6
    f_lse = f_top + B
    f_maha = f_lse + B
    f_in = f_maha + B
    f_best = f_in + B * D
    f_z = f_best + k_top
    f_dots = f_z + E
    n_floats = f_dots + C
    return i_pred, i_nonfinite, i_best, n_ints, n_verdict, f_cov, f_top, f_lse, f_maha, f_in, f_best, f_z, f_dots, n_floats


@njit()
def verdict_parts(B, D, C):
    """Start of each part of the verdict block (see :func:`workspace_layout`).

    Returns ``(scores, p, confidence, flags, flag, bad, pred, logits, stream_p, stream_stat,
    class_p, class_stat, stream_alarm, class_alarm)``.
    """
    scores = 0
    p = scores + B * D
    conf = p + B * D
    flags = conf + B
    flag = flags + B * D
    bad = flag + B
    pred = bad + B
    logits = pred + B
    sp = logits + B * C
    sstat = sp + B
    cp = sstat + B
    cstat = cp + B
    salarm = cstat + B
    calarm = salarm + B
    return scores, p, conf, flags, flag, bad, pred, logits, sp, sstat, cp, cstat, salarm, calarm


class VerdictWorkspace:
    """One thread's verdict buffers for one batch size (everything a call writes).

    Parameters
    ----------
    tables : VerdictTables
        The shared tables the workspace is sized for.
    batch : int
        ``B``.

    Attributes
    ----------
    pred, nonfinite : numpy.ndarray
        int64 ``(B,)``: predicted classes; NaN/Inf count of each input sample.
    coverage : numpy.ndarray
        float64 ``(B, 6)`` coverage scores.
    scores_in : numpy.ndarray
        float64 ``(B, D)``: detectors written in Python fill their column between the stages.
    verdict : numpy.ndarray
        float64: the verdict block (:func:`workspace_layout`); ``scores``, ``p_values`` and
        ``confidence`` are views of it.
    """

    def __init__(self, tables: VerdictTables, batch: int) -> None:
        if not isinstance(tables, VerdictTables) or int(batch) < 1:
            raise InputError("a workspace needs VerdictTables and a batch size >= 1")
        B, D, C = int(batch), tables.n_columns, tables.n_classes
        (i_pred, i_nf, _, n_ints, n_verdict, f_cov, f_top, f_lse, f_maha, f_in, _, _, _, n_floats) = workspace_layout(
            B, D, C, tables.k_top, tables.width)
        self.batch, self.n_columns, self.n_classes = B, D, C
        self.tables = tables
        self.ints = np.zeros(n_ints, np.int64)
        self.ints[0] = B
        self.floats = np.zeros(n_floats, np.float64)
        self.pred = self.ints[i_pred : i_pred + B]
        self.nonfinite = self.ints[i_nf : i_nf + B]
        self.coverage = self.floats[f_cov : f_cov + 6 * B].reshape(B, 6)
        self.scores_in = self.floats[f_in : f_in + B * D].reshape(B, D)
        self.verdict = self.floats[:n_verdict]
        self.parts = parts = verdict_parts(B, D, C)
        self.scores = self.verdict[parts[0] : parts[0] + B * D].reshape(B, D)
        self.p_values = self.verdict[parts[1] : parts[1] + B * D].reshape(B, D)
        self.confidence = self.verdict[parts[2] : parts[2] + B]

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self.ints.nbytes + self.floats.nbytes)


@njit()
def _p_value(ref, r, lo, hi, allowed_c, s, b, j, pvals, flags):
    n_ge = count_at_least(ref, r, lo, hi, s)
    pvals[b, j] = (1.0 + n_ge) / (hi - lo + 1.0)
    flags[b, j] = 1.0 if n_ge < allowed_c else 0.0


@njit()
def _scores_stage(ti, tf, t8, logits, buf, active, sources, pred, cov, top, lse, maha, best_v, best_i, z, dots):
    N, C, D = ti[H_N], ti[H_C], ti[H_D]
    B = pred.shape[0]
    uses_cov = False
    uses_logits = False
    uses_maha = False
    for j in range(D):
        if active[j]:
            s = sources[j]
            uses_cov |= s >= 0 or s == SOURCE_COMBINED
            uses_logits |= is_logit_source(s)
            uses_maha |= s == SOURCE_MAHALANOBIS
    for b in range(B):
        pred[b] = argmax_row(logits, b)
    if uses_cov:
        k, k_top = ti[H_K], ti[H_KTOP]
        compact = ti[H_COMPACT] != 0
        off = ti[ti[I_OFF] : ti[I_OFF] + ti[H_L] + 1]
        cn = C * N if not compact else 0
        cc = C * N if compact else 0
        lo = t8[ti[B_LO] : ti[B_LO] + 4 * cn].view(np.float32).reshape((cn // N if cn else 0, N))
        hi = t8[ti[B_HI] : ti[B_HI] + 4 * cn].view(np.float32).reshape((cn // N if cn else 0, N))
        thr = t8[ti[B_THR] : ti[B_THR] + 4 * N].view(np.float32)
        sec = t8[ti[B_SEC] : ti[B_SEC] + cn * k].reshape((cn // N if cn else 0, N, k))
        on = t8[ti[B_ON] : ti[B_ON] + cn].reshape((cn // N if cn else 0, N))
        off_r = t8[ti[B_OFF] : ti[B_OFF] + cn].reshape((cn // N if cn else 0, N))
        topk = t8[ti[B_TOPK] : ti[B_TOPK] + cn].reshape((cn // N if cn else 0, N))
        cells = t8[ti[B_CELLS] : ti[B_CELLS] + 6 * cc].view(np.uint16).reshape((cc // N if cc else 0, N, 3))
        inv_w = tf[ti[F_INVW] : ti[F_INVW] + cn].reshape((cn // N if cn else 0, N))
        inv_u = tf[ti[F_INVU] : ti[F_INVU] + cn].reshape((cn // N if cn else 0, N))
        nb = N if compact else 0
        base = tf[ti[F_BASE] : ti[F_BASE] + nb]
        step = tf[ti[F_STEP] : ti[F_STEP] + nb]
        fb = tf[ti[F_FB] : ti[F_FB] + nb]
        for b in range(B):
            cover_row(buf, b * N, off, pred[b], compact, lo, hi, inv_w, inv_u, thr, sec, on, off_r, topk, cells,
                      base, step, fb, k, k_top, cov, b, best_v, best_i)
    if uses_logits:
        for b in range(B):
            top[b], lse[b] = logit_stats(logits, b)
    if uses_maha:
        flo, fhi, E = ti[H_FLO], ti[H_FHI], ti[H_E]
        width = fhi - flo
        whiten = tf[ti[F_WHITEN] : ti[F_WHITEN] + width * E].reshape((width, E))
        means_t = tf[ti[F_MEANS] : ti[F_MEANS] + E * C].reshape((E, C))
        norms = tf[ti[F_NORMS] : ti[F_NORMS] + C]
        for b in range(B):
            class_distances(buf[b * N + flo : b * N + fhi], whiten, means_t, norms, z, dots)
            m = np.inf
            for c in range(C):
                d = dots[c]
                if d != d:
                    m = d
                    break
                if d < m:
                    m = d
            maha[b] = m


@njit(exact=True)
def _decide_stage(ti, tf, active, decision, sources, pred, nonfinite, cov, top, lse, maha, scores_in, scores, pvals,
                  flags, flag, conf, bad, fpred):
    C, D = ti[H_C], ti[H_D]
    n_total, tk_total = np.float64(ti[H_N]), np.float64(ti[H_TKT])
    B = pred.shape[0]
    cal_row = ti[ti[I_CALROW] : ti[I_CALROW] + D]
    DC, R = ti[H_DC], ti[H_R]
    ref = tf[ti[F_REF] : ti[F_REF] + DC * R].reshape((DC, R))
    starts = ti[ti[I_STARTS] : ti[I_STARTS] + C]
    ends = ti[ti[I_ENDS] : ti[I_ENDS] + C]
    allowed = ti[ti[I_ALLOWED] : ti[I_ALLOWED] + C]
    fused = ti[H_FUSED]
    n_mem = ti[H_NMEM]
    members = ti[ti[I_MEMBERS] : ti[I_MEMBERS] + n_mem]
    mstarts = ti[ti[I_MSTARTS] : ti[I_MSTARTS] + C]
    mends = ti[ti[I_MENDS] : ti[I_MENDS] + C]
    fstarts = ti[ti[I_FSTARTS] : ti[I_FSTARTS] + C]
    fends = ti[ti[I_FENDS] : ti[I_FENDS] + C]
    fallowed = ti[ti[I_FALLOWED] : ti[I_FALLOWED] + C]
    RM, RF = ti[H_RM], ti[H_RF]
    mref = tf[ti[F_MREF] : ti[F_MREF] + max(n_mem, 1) * RM].reshape((max(n_mem, 1), RM))
    mscale = tf[ti[F_MSCALE] : ti[F_MSCALE] + n_mem * C].reshape((n_mem, C))
    fref = tf[ti[F_FREF] : ti[F_FREF] + RF].reshape((1, RF))
    mev = np.empty(max(n_mem, 1))  # the members' evidence of one row
    for b in range(B):
        c = pred[b]
        fpred[b] = c
        bad_in = nonfinite[b] > 0
        bad[b] = 1.0 if bad_in else 0.0
        for j in range(D):
            if not active[j] or sources[j] == SOURCE_FUSED:
                scores[b, j] = np.nan
                pvals[b, j] = np.nan
                flags[b, j] = 0.0
                continue
            src = sources[j]
            if src >= 0 or src == SOURCE_COMBINED:
                s = coverage_score(cov, b, src if src >= 0 else -1, n_total, tk_total)
            elif src == SOURCE_MSP:
                s = -np.expm1(top[b] - lse[b])
            elif src == SOURCE_MAX_LOGIT:
                s = -top[b]
            elif src == SOURCE_ENERGY:
                s = -lse[b]
            elif src == SOURCE_MAHALANOBIS:
                s = maha[b]
            else:
                s = scores_in[b, j]
            s = np.inf if bad_in else finite_or_inf(s)
            scores[b, j] = s
            r = cal_row[j]
            if r < 0:
                pvals[b, j] = np.nan
                flags[b, j] = 0.0
            elif bad_in:
                pvals[b, j] = 0.0
                flags[b, j] = 1.0
            else:
                _p_value(ref, r, starts[c], ends[c], allowed[c], s, b, j, pvals, flags)
        if fused >= 0 and active[fused]:
            for k in range(n_mem):
                mev[k] = member_evidence(mref, k, mstarts[c], mends[c], mscale[k, c], scores[b, members[k]])
            t = strongest_half_sum(mev, n_mem)
            scores[b, fused] = np.inf if bad_in else t
            if bad_in:
                pvals[b, fused] = 0.0
                flags[b, fused] = 1.0
            else:
                _p_value(fref, 0, fstarts[c], fends[c], fallowed[c], scores[b, fused], b, fused, pvals, flags)
        flag[b] = 1.0 if (flags[b, decision] != 0.0 or bad_in) else 0.0
        conf[b] = 0.0 if bad_in else pvals[b, decision]


@njit()
def _count_inputs(inputs, nonfinite):
    # NaN/Inf count of each input sample, from the bound float32 input buffer.
    B = nonfinite.shape[0]
    width = inputs.shape[0] // B
    for b in range(B):
        n = 0
        for i in range(b * width, (b + 1) * width):
            n += not np.isfinite(inputs[i])
        nonfinite[b] = n


@njit()
def verdict_pass(ti, tf, t8, logits, buf, inputs, wi, wf, si, sf, stage, mask, decision):
    """The compiled verdict of one batch (see the module docstring); arrays from the classes above.

    ``inputs`` is the bound float32 input buffer, flattened, whose NaN/Inf are counted in
    ``STAGE_SCORES``; empty when the caller counted them (other input types).
    """
    C, D = ti[H_C], ti[H_D]
    B = wi[0]
    (i_pred, i_nf, i_best, _, _, f_cov, f_top, f_lse, f_maha, f_in, f_best, f_z, f_dots, _) = workspace_layout(
        B, D, C, ti[H_KTOP], ti[H_E])
    (o_scores, o_p, o_conf, o_flags, o_flag, o_bad, o_pred, o_logits, o_sp, o_sstat, o_cp, o_cstat, o_salarm,
     o_calarm) = verdict_parts(B, D, C)
    sources = ti[ti[I_SOURCES] : ti[I_SOURCES] + D]
    active = ti[ti[I_MASKS] + mask * D : ti[I_MASKS] + mask * D + D]
    pred = wi[i_pred : i_pred + B]
    nonfinite = wi[i_nf : i_nf + B]
    cov = wf[f_cov : f_cov + 6 * B].reshape((B, 6))
    top = wf[f_top : f_top + B]
    lse = wf[f_lse : f_lse + B]
    maha = wf[f_maha : f_maha + B]
    if stage & STAGE_SCORES:
        if inputs.shape[0] > 0:
            _count_inputs(inputs, nonfinite)
        _scores_stage(ti, tf, t8, logits, buf, active, sources, pred, cov, top, lse, maha,
                      wf[f_best : f_best + ti[H_KTOP]], wi[i_best : i_best + ti[H_KTOP]], wf[f_z : f_z + ti[H_E]],
                      wf[f_dots : f_dots + C])
    if stage & STAGE_DECIDE:
        scores = wf[o_scores : o_scores + B * D].reshape((B, D))
        _decide_stage(ti, tf, active, decision, sources, pred, nonfinite, cov, top, lse, maha,
                      wf[f_in : f_in + B * D].reshape((B, D)), scores, wf[o_p : o_p + B * D].reshape((B, D)),
                      wf[o_flags : o_flags + B * D].reshape((B, D)), wf[o_flag : o_flag + B], wf[o_conf : o_conf + B],
                      wf[o_bad : o_bad + B], wf[o_pred : o_pred + B])
        out_logits = wf[o_logits : o_logits + B * C]
        for b in range(B):
            for k in range(C):
                out_logits[b * C + k] = logits[b, k]
        if si.shape[0] > 0:
            stream_step(si, sf, scores, pred, wf[o_sp : o_sp + B], wf[o_sstat : o_sstat + B], wf[o_cp : o_cp + B],
                        wf[o_cstat : o_cstat + B], wf[o_salarm : o_salarm + B], wf[o_calarm : o_calarm + B])


NO_STREAM = (np.zeros(0, np.int64), np.zeros(0, np.float64))


class VerdictPlan:
    """One thread's compiled verdict call for one batch size, every array bound and checked once.

    Parameters
    ----------
    tables : VerdictTables
        Shared tables.
    batch : int
        ``B``.
    logits, buf : numpy.ndarray
        float32 C-contiguous ``(B, C)`` and ``(B * N,)``: the buffers onnxruntime writes.
    inputs : numpy.ndarray, optional
        float32 C-contiguous ``(B, ...)``: the bound input buffer, whose NaN/Inf the pass
        counts; without it the caller fills ``ws.nonfinite`` before each call.

    Attributes
    ----------
    ws : VerdictWorkspace
        What a call writes.

    Raises
    ------
    InputError
        Buffers that do not fit the tables.
    """

    def __init__(self, tables: VerdictTables, batch: int, logits: np.ndarray, buf: np.ndarray,
                 inputs: np.ndarray | None = None) -> None:
        if not isinstance(tables, VerdictTables):
            raise InputError(f"tables: expected VerdictTables, got {type(tables).__name__}")
        self.ws = VerdictWorkspace(tables, batch)
        self.tables = tables
        self.logits = check_array(logits, "logits", np.float32, (self.ws.batch, tables.n_classes))
        self.buf = check_array(buf, "buf", np.float32, (self.ws.batch * tables.n_neurons,))
        if inputs is None:
            flat = np.zeros(0, np.float32)
        else:
            inputs = check_array(inputs, "inputs", np.float32, (self.ws.batch,) + inputs.shape[1:])
            flat = inputs.reshape(-1)
        self.counts_inputs = flat.shape[0] > 0
        self._args = (tables.ints, tables.floats, tables.narrow, logits, buf, flat, self.ws.ints, self.ws.floats)
        self._active = [frozenset(np.flatnonzero(m).tolist()) for m in tables.masks]

    def __call__(self, stage: int, mask: int, decision: int, stream: StreamState | None = None) -> None:
        """Run the compiled pass on the current contents of the bound buffers.

        Parameters
        ----------
        stage : int
            ``STAGE_SCORES``, ``STAGE_DECIDE`` or ``STAGE_ALL``.
        mask : int
            Index of the active-column mask.
        decision : int
            Column that decides; active under ``mask``.
        stream : StreamState, optional
            A stream to advance (with ``STAGE_DECIDE``); its arrays are checked against these
            tables and sized for this batch here.

        Raises
        ------
        InputError
            A stage, mask or decision out of range, or a stream built for other tables.
        """
        if not 0 < stage <= STAGE_ALL or not 0 <= mask < len(self._active) or decision not in self._active[mask]:
            raise InputError(f"stage {stage}, mask {mask} or decision column {decision} is not valid here")
        if stream is not None and not isinstance(stream, StreamState):
            raise InputError(f"stream: expected a StreamState or None, got {type(stream).__name__}")
        si, sf = NO_STREAM if stream is None else stream.arrays_for(self.tables, self.ws.batch)
        verdict_pass(*self._args, si, sf, stage, mask, decision)

    def validate(self, mask: int, decision: int) -> tuple:
        """Check ``mask``/``decision`` once; return the bound arrays for direct calls.

        A monitor builds its masks and decision columns itself: it validates them here when it
        builds a plan, then calls ``verdict_pass(*arrays, si, sf, stage, mask, decision)``
        without the per-call checks of :meth:`__call__`.

        Parameters
        ----------
        mask : int
            Index of the active-column mask.
        decision : int
            Column that decides.

        Returns
        -------
        tuple
            The pass's arrays before the stream's.

        Raises
        ------
        InputError
            ``decision`` is not active under ``mask``.
        """
        if not 0 <= mask < len(self._active) or decision not in self._active[mask]:
            raise InputError(f"mask {mask} or decision column {decision} is not valid here")
        return self._args

    @property
    def nbytes(self) -> int:
        """Bytes this plan allocated (not the tables or the onnxruntime buffers)."""
        return self.ws.nbytes
