"""Conformal p-values and flags against sorted clean calibration scores.

For a score ``s`` of a sample predicted as class ``c``, and the ``n`` clean calibration
scores of ``c``'s calibration group (``ref``, sorted ascending):

    p(s) = (1 + #{ref >= s}) / (n + 1)

and the sample is flagged at level ``alpha`` when ``p(s) <= alpha``. Equivalently, flagged
when ``#{ref >= s} < m`` with ``m`` the largest integer such that ``m / (n + 1) <= alpha``
(:func:`allowed_count`): the flag and the p-value come from the same count, so
``flag == (p <= alpha)`` holds exactly, also in floating point. As a threshold: flag when
``s > ref[n - m]`` (0-based), the ``ceil((n + 1)(1 - alpha))``-th smallest score; never when
``m == 0`` (fewer than ``1/alpha - 1`` calibration scores).

If clean test and calibration scores are exchangeable, ``P(p(s) <= alpha) <= alpha``: the
expected false-alarm rate is ``m / (n + 1) <= alpha`` (ties only lower it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import check_array, check_classes, check_probability
from ..errors import InputError
from ._jit import njit
from .rules import finite_or_inf


def allowed_count(n: int, alpha: float) -> int:
    """Largest ``m`` with ``m / (n + 1) <= alpha`` (computed as the kernels compare).

    Parameters
    ----------
    n : int
        Number of calibration scores (>= 0).
    alpha : float
        Target false-alarm rate in (0, 1).

    Returns
    -------
    int
        ``m``; a score is flagged when fewer than ``m`` calibration scores are >= it.
    """
    m = int(math.floor(alpha * (n + 1)))
    while m > 0 and m / (n + 1.0) > alpha:
        m -= 1
    while m < n and (m + 1) / (n + 1.0) <= alpha:
        m += 1
    return max(min(m, n), 0)


@dataclass(frozen=True)
class ConformalTables:
    """Sorted calibration scores in per-group blocks, and each class's block.

    Attributes
    ----------
    ref : numpy.ndarray
        float64 ``(D, R)``: row ``d`` holds detector ``d``'s calibration scores, one sorted
        block per calibration group.
    starts, ends : numpy.ndarray
        int64 ``(C,)``: class ``c`` is compared with ``ref[:, starts[c]:ends[c]]``.
    allowed : numpy.ndarray
        int64 ``(C,)``: :func:`allowed_count` of class ``c``'s block size.
    alpha : float
        Target false-alarm rate.
    """

    ref: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    allowed: np.ndarray
    alpha: float

    def __post_init__(self) -> None:
        check_probability(self.alpha, "alpha")
        ref = check_array(self.ref, "ref", np.float64, (None, None))
        starts = check_array(self.starts, "starts", np.int64, (None,))
        n_classes = starts.shape[0]
        ends = check_array(self.ends, "ends", np.int64, (n_classes,))
        allowed = check_array(self.allowed, "allowed", np.int64, (n_classes,))
        if n_classes < 1 or ref.shape[0] < 1:
            raise InputError("conformal tables need at least one class and one detector")
        if (starts < 0).any() or (ends > ref.shape[1]).any() or (ends - starts < 1).any():
            raise InputError("conformal blocks must be non-empty and inside ref")
        sizes = ends - starts
        if (allowed < 0).any() or (allowed > sizes).any():
            raise InputError("allowed counts must be in [0, block size]")
        if np.isnan(ref).any():
            raise InputError("calibration scores must not be NaN")
        for lo, hi in set(zip(starts.tolist(), ends.tolist())):
            if (np.diff(ref[:, lo:hi], axis=1) < 0).any():
                raise InputError("each calibration block must be sorted ascending")

    @property
    def n_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.starts.shape[0])

    @property
    def n_detectors(self) -> int:
        """Number of calibrated detectors ``D``."""
        return int(self.ref.shape[0])

    def thresholds(self) -> np.ndarray:
        """Score thresholds: flag when ``score > threshold[c, d]``.

        Returns
        -------
        numpy.ndarray
            float64 ``(C, D)``; +inf where a block is too small to flag anything.
        """
        out = np.full((self.n_classes, self.n_detectors), np.inf)
        for c in range(self.n_classes):
            m = int(self.allowed[c])
            if m > 0:
                out[c] = self.ref[:, int(self.ends[c]) - m]
        return out

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return int(self.ref.nbytes + self.starts.nbytes + self.ends.nbytes + self.allowed.nbytes)


@njit()
def count_at_least(ref, d, lo, hi, s):
    """Number of ``ref[d, lo:hi]`` (sorted) that are >= ``s``; for use inside kernels."""
    left, right = lo, hi
    while left < right:
        mid = (left + right) // 2
        if ref[d, mid] < s:
            left = mid + 1
        else:
            right = mid
    return hi - left


@njit()
def _p_values(scores, classes, ref, starts, ends, allowed, p_out, flag_out):
    for b in range(scores.shape[0]):
        c = classes[b]
        lo = starts[c]
        hi = ends[c]
        n = hi - lo
        for d in range(scores.shape[1]):
            s = finite_or_inf(scores[b, d])  # non-finite = maximal evidence
            n_ge = count_at_least(ref, d, lo, hi, s)
            p_out[b, d] = (1.0 + n_ge) / (n + 1.0)
            flag_out[b, d] = n_ge < allowed[c]


def conformal_p_values(scores: np.ndarray, classes: np.ndarray,
                       tables: ConformalTables) -> tuple[np.ndarray, np.ndarray]:
    """p-values and flags of a batch of scores (NaN/Inf scores count as +inf).

    Parameters
    ----------
    scores : numpy.ndarray
        float ``(B, D)`` scores, columns in the tables' detector order.
    classes : numpy.ndarray
        int ``(B,)`` predicted classes in ``[0, C)``.
    tables : ConformalTables
        Calibration.

    Returns
    -------
    tuple of numpy.ndarray
        ``(p float64 (B, D), flag bool (B, D))`` with ``flag == (p <= alpha)``.

    Raises
    ------
    InputError
        Wrong shapes or a class out of range.
    """
    if not isinstance(tables, ConformalTables):
        raise InputError(f"tables: expected ConformalTables, got {type(tables).__name__}")
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    classes = np.ascontiguousarray(classes, dtype=np.int64)
    check_array(scores, "scores", np.float64, (None, tables.n_detectors))
    check_array(classes, "classes", np.int64, (scores.shape[0],))
    check_classes(classes, tables.n_classes, "classes")
    p = np.empty(scores.shape)
    flags = np.empty(scores.shape, np.bool_)
    _p_values(scores, classes, tables.ref, tables.starts, tables.ends, tables.allowed, p, flags)
    return p, flags
