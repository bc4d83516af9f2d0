"""The verdict rules, once: a (batch x detectors) score matrix -> flags, p-values, decision.

Per sample ``b`` and detector column ``j`` (one compiled pass, :class:`Decision`):

- the score comes from the coverage kernel's output (``sources[j] >= 0``: that column;
  ``SOURCE_COMBINED``: the mean of ``nc, kmnc, tknc, nbc``), from the logits
  (``SOURCE_MSP``: ``-expm1(max - logsumexp)``, ``SOURCE_MAX_LOGIT``: ``-max``,
  ``SOURCE_ENERGY``: ``-logsumexp``, in float64), from a detector written in
  Python, which filled column ``j`` of :attr:`Decision.scores_in`, or (``SOURCE_FUSED``,
  computed after all other columns) is the fused statistic of :mod:`nnwatch.kernels.fusion`
  over member columns, with its own conformal tables (NaN when there is no fusion);
- a non-finite score, a coverage score of a sample with NaN/Inf activations, and every score
  of a sample whose input held NaN/Inf become +inf;
- calibrated columns get the conformal p-value and flag of :mod:`nnwatch.kernels.conformal`
  (``flag == (p <= alpha)``); a NaN/Inf input gets p = 0 and is flagged;
- the verdict's ``flag`` is the decision column's flag, or True for a NaN/Inf input; its
  ``confidence`` is the decision column's p-value (0 for a NaN/Inf input, NaN uncalibrated);
- inactive columns (skipped under the degrade policy) are NaN and never flag.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_array
from ..errors import InputError
from ._jit import njit
from .conformal import ConformalTables, count_at_least
from .coverage import SCORE_NAMES, CoverageRun
from .fusion import FusionTables, member_evidence

SOURCE_DETECTOR = -1  # column filled by a detector written in Python
SOURCE_COMBINED = -2  # mean of the nc, kmnc, tknc and nbc coverage columns
SOURCE_FUSED = -3  # fused statistic of member columns (at most one such column)
SOURCE_MSP = -4  # 1 - max softmax probability
SOURCE_MAX_LOGIT = -5  # -max logit
SOURCE_ENERGY = -6  # -logsumexp of the logits
_LOWEST = SOURCE_ENERGY
_NONFINITE = SCORE_NAMES.index("nonfinite")


@njit()
def _p_value(ref, r, lo, hi, allowed_c, s, b, j, pvals, flags):
    n_ge = count_at_least(ref, r, lo, hi, s)
    pvals[b, j] = (1.0 + n_ge) / (hi - lo + 1.0)
    flags[b, j] = n_ge < allowed_c


@njit()
def _logit_stats(logits, b):
    m = -np.inf
    for k in range(logits.shape[1]):
        v = np.float64(logits[b, k])
        if np.isnan(v):
            return v, v  # scored +inf, as numpy's NaN-propagating max gives
        if v > m:
            m = v
    total = 0.0
    for k in range(logits.shape[1]):
        total += np.exp(np.float64(logits[b, k]) - m)
    return m, m + np.log(total)


@njit(exact=True)
def _decide(cov, logits, pred, nonfinite, scores_in, sources, active, cal_row, ref, starts, ends, allowed, decision,
            fused, members, mref, mstarts, mends, mscale, fref, fstarts, fends, fallowed,
            scores, pvals, flags, flag, conf):
    n_det = sources.shape[0]
    uses_logits = False
    for j in range(n_det):
        if active[j] and sources[j] <= SOURCE_MSP:
            uses_logits = True
    for b in range(pred.shape[0]):
        c = pred[b]
        bad_in = nonfinite[b] > 0
        bad_acts = cov[b, _NONFINITE] > 0
        top, lse = _logit_stats(logits, b) if uses_logits else (0.0, 0.0)
        for j in range(n_det):
            if not active[j] or sources[j] == SOURCE_FUSED:
                scores[b, j] = np.nan
                pvals[b, j] = np.nan
                flags[b, j] = False
                continue
            src = sources[j]
            if src >= 0:
                s = np.inf if bad_acts else cov[b, src]
            elif src == SOURCE_COMBINED:
                s = np.inf if bad_acts else (cov[b, 0] + cov[b, 1] + cov[b, 2] + cov[b, 3]) * 0.25
            elif src == SOURCE_MSP:
                s = -np.expm1(top - lse)
            elif src == SOURCE_MAX_LOGIT:
                s = -top
            elif src == SOURCE_ENERGY:
                s = -lse
            else:
                s = scores_in[b, j]
            if bad_in or not np.isfinite(s):
                s = np.inf
            scores[b, j] = s
            r = cal_row[j]
            if r < 0:
                pvals[b, j] = np.nan
                flags[b, j] = False
            elif bad_in:
                pvals[b, j] = 0.0
                flags[b, j] = True
            else:
                _p_value(ref, r, starts[c], ends[c], allowed[c], s, b, j, pvals, flags)
        if fused >= 0 and active[fused]:
            t = 0.0
            for k in range(members.shape[0]):
                t += member_evidence(mref, k, mstarts[c], mends[c], mscale[k, c], scores[b, members[k]])
            scores[b, fused] = np.inf if bad_in else t
            if bad_in:
                pvals[b, fused] = 0.0
                flags[b, fused] = True
            else:
                _p_value(fref, 0, fstarts[c], fends[c], fallowed[c], scores[b, fused], b, fused, pvals, flags)
        flag[b] = flags[b, decision] or bad_in
        conf[b] = 0.0 if bad_in else pvals[b, decision]


class Decision:
    """Score matrix, flags and p-values for one batch size; arrays bound and checked once.

    Parameters
    ----------
    run : CoverageRun
        Supplies the predicted classes and coverage scores of each call.
    nonfinite : numpy.ndarray
        int64 ``(B,)``: NaN/Inf count of each input sample, filled before each call.
    sources : numpy.ndarray
        int64 ``(D,)``: per column, a coverage column (0-4), ``SOURCE_COMBINED`` or
        ``SOURCE_DETECTOR``.
    masks : sequence of numpy.ndarray
        bool ``(D,)`` active-column masks a call can choose from (e.g. all, cheap only).
    conformal : ConformalTables or None
        Calibration of some columns.
    cal_row : numpy.ndarray or None
        int64 ``(D,)``: row of ``conformal.ref`` for each column, -1 = uncalibrated.
    fusion : tuple or None
        ``(FusionTables, ConformalTables of the fused statistic)`` for the ``SOURCE_FUSED``
        column; None = that column (if any) is NaN.

    Attributes
    ----------
    scores_in : numpy.ndarray
        float64 ``(B, D)``: Python detectors write their column here before :meth:`__call__`.
    """

    def __init__(self, run: CoverageRun, nonfinite: np.ndarray, sources: np.ndarray, masks: list[np.ndarray],
                 conformal: ConformalTables | None = None, cal_row: np.ndarray | None = None,
                 fusion: tuple[FusionTables, ConformalTables] | None = None) -> None:
        if not isinstance(run, CoverageRun):
            raise InputError(f"run: expected CoverageRun, got {type(run).__name__}")
        batch, n_classes = run.batch, run.logits.shape[1]
        self.run = run
        self.nonfinite = check_array(nonfinite, "nonfinite", np.int64, (batch,))
        sources = check_array(sources, "sources", np.int64, (None,))
        n_det = sources.shape[0]
        if n_det < 1 or ((sources < _LOWEST) | (sources >= _NONFINITE)).any() or (sources == SOURCE_FUSED).sum() > 1:
            raise InputError(f"sources must name coverage columns 0-{_NONFINITE - 1} or one of the SOURCE_ constants "
                             f"(SOURCE_FUSED at most once), got {sources.tolist()}")
        if ((sources >= 0) | (sources == SOURCE_COMBINED)).any() and run.tables is None:
            raise InputError("coverage columns need a run built with coverage tables")
        self.sources = sources
        self.masks = [check_array(m, "mask", np.bool_, (n_det,)) for m in masks]
        if conformal is None:
            self._cal = (np.zeros((0, 1)), np.zeros(n_classes, np.int64), np.ones(n_classes, np.int64),
                         np.zeros(n_classes, np.int64))
            self.cal_row = np.full(n_det, -1, np.int64)
        else:
            if not isinstance(conformal, ConformalTables) or conformal.n_classes != n_classes:
                raise InputError(f"conformal tables must cover the model's {n_classes} classes")
            self.cal_row = check_array(cal_row, "cal_row", np.int64, (n_det,))
            if ((self.cal_row < -1) | (self.cal_row >= conformal.n_detectors)).any():
                raise InputError(f"cal_row entries must be -1 or rows of the {conformal.n_detectors} calibrated detectors")
            self._cal = (conformal.ref, conformal.starts, conformal.ends, conformal.allowed)
        self.fused = int(np.flatnonzero(sources == SOURCE_FUSED)[0]) if (sources == SOURCE_FUSED).any() else -1
        self._fusion = self._check_fusion(fusion, n_classes)
        self._fused_arg = self.fused if fusion is not None else -1  # without a fusion the column stays NaN
        self.scores_in = np.zeros((batch, n_det))

    def _check_fusion(self, fusion: tuple[FusionTables, ConformalTables] | None, n_classes: int) -> tuple:
        if fusion is None or self.fused < 0:
            empty = np.zeros((1, 1))
            ones = np.ones(n_classes, np.int64)
            return (np.zeros(0, np.int64), empty, np.zeros(n_classes, np.int64), ones, np.ones((0, n_classes)),
                    empty, np.zeros(n_classes, np.int64), ones, np.zeros(n_classes, np.int64))
        members, fused_cal = fusion
        if not isinstance(members, FusionTables) or members.n_classes != n_classes:
            raise InputError(f"fusion member tables must be FusionTables over the model's {n_classes} classes")
        if not isinstance(fused_cal, ConformalTables) or fused_cal.n_classes != n_classes or fused_cal.n_detectors != 1:
            raise InputError(f"the fused statistic's calibration must be one-row ConformalTables over {n_classes} classes")
        cols = members.members
        if (cols >= self.sources.shape[0]).any() or (self.sources[cols] == SOURCE_FUSED).any():
            raise InputError(f"fusion members {cols.tolist()} must be other columns of the score matrix")
        if any(not m[cols].all() for m in self.masks if m[self.fused]):
            raise InputError("a mask that runs the fused column must run all its members")
        return (cols, members.ref, members.starts, members.ends, members.scale,
                fused_cal.ref, fused_cal.starts, fused_cal.ends, fused_cal.allowed)

    def __call__(self, mask: int, decision: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply the verdict rules to the current call (after predict/cover/Python columns).

        Parameters
        ----------
        mask : int
            Index into ``masks``.
        decision : int
            Column whose flag and p-value decide; must be active under ``mask``.

        Returns
        -------
        tuple of numpy.ndarray
            Fresh arrays: ``scores (B, D)``, ``p_values (B, D)``, ``flags (B, D)``,
            ``flag (B,)``, ``confidence (B,)``.
        """
        active = self.masks[mask]
        if not 0 <= decision < active.shape[0] or not active[decision]:
            raise InputError(f"decision column {decision} is not active")
        batch, n_det = self.scores_in.shape
        scores = np.empty((batch, n_det))
        pvals = np.empty((batch, n_det))
        flags = np.empty((batch, n_det), np.bool_)
        flag = np.empty(batch, np.bool_)
        conf = np.empty(batch)
        ref, starts, ends, allowed = self._cal
        _decide(self.run.cov, self.run.logits, self.run.pred, self.nonfinite, self.scores_in, self.sources, active, self.cal_row,
                ref, starts, ends, allowed, decision, self._fused_arg, *self._fusion, scores, pvals, flags, flag, conf)
        return scores, pvals, flags, flag, conf

    @property
    def nbytes(self) -> int:
        """Bytes this decision allocated (the calibration tables are shared, not counted)."""
        return int(self.scores_in.nbytes + self.sources.nbytes + self.cal_row.nbytes
                   + sum(m.nbytes for m in self.masks))
