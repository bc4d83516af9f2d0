"""The fused statistic: the sum of the strongest half of the members' conformal evidence.

For member detector ``k`` with score ``s_k``, and the ``n`` sorted clean scores of the member
half of the calibration data (all classes pooled):

    e_k = -log((1 + #{ref >= s_k}) / (n + 1))                   if some ref >= s_k
    e_k = log(n + 1) + (s_k - max ref) / scale_k                 beyond the largest ref

i.e. minus the log conformal p-value, continued by an exponential tail beyond the largest
calibration score (``scale_k``: the max minus the 90th percentile), so inputs beyond every clean
score keep their order instead of tying at ``p = 1/(n+1)``. The statistic is the sum of the
``ceil(m / 2)`` largest of the ``m`` evidences (a truncated Fisher combination: Zaykin et al.
2002, "Truncated product method for combining p-values"), so members that see nothing in an
input, or see it as cleaner than usual, do not dilute the members that do. A NaN/Inf member
score counts as +inf. The evidence is pooled over classes: the per-class calibration happens
once, in the final stage, where ``T`` is compared conformally with ``T`` of the other (held-out)
half of the calibration data of the predicted class's group, which gives the fused flag its
per-class guarantee (:mod:`nnwatch.calibration.fused_verdict`). Why this rule, and the evidence:
docs/coverage.md and benchmarks/fusion_study.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_array, check_classes
from ..errors import InputError
from ._jit import njit
from .conformal import count_at_least
from .rules import finite_or_inf

TAIL_QUANTILE = 0.9  # the tail scale is max - this quantile of the group's calibration scores


@dataclass(frozen=True)
class FusionTables:
    """Member calibration of a fused statistic.

    Attributes
    ----------
    members : numpy.ndarray
        int64 ``(m,)``: score-matrix column of each member.
    ref : numpy.ndarray
        float64 ``(m, R)``: member scores of the member half, sorted blocks (the fused verdict
        uses one block, all classes pooled).
    starts, ends : numpy.ndarray
        int64 ``(C,)``: class ``c`` is compared with ``ref[:, starts[c]:ends[c]]`` (pooled: the
        same block for every class).
    scale : numpy.ndarray
        float64 ``(m, C)``: positive tail scale of each member and class.
    """

    members: np.ndarray
    ref: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        members = check_array(self.members, "members", np.int64, (None,))
        ref = check_array(self.ref, "ref", np.float64, (members.shape[0], None))
        starts = check_array(self.starts, "starts", np.int64, (None,))
        n_classes = starts.shape[0]
        ends = check_array(self.ends, "ends", np.int64, (n_classes,))
        scale = check_array(self.scale, "scale", np.float64, (members.shape[0], n_classes))
        if members.shape[0] < 1 or n_classes < 1 or (members < 0).any() or len(set(members.tolist())) != len(members):
            raise InputError("a fusion needs at least one class and distinct, non-negative member columns")
        if (starts < 0).any() or (ends > ref.shape[1]).any() or (ends - starts < 1).any():
            raise InputError("fusion blocks must be non-empty and inside ref")
        if not np.isfinite(ref).all() or not (np.isfinite(scale) & (scale > 0)).all():
            raise InputError("fusion reference scores must be finite and tail scales finite and positive")
        for lo, hi in set(zip(starts.tolist(), ends.tolist())):
            if (np.diff(ref[:, lo:hi], axis=1) < 0).any():
                raise InputError("each fusion block must be sorted ascending")

    @property
    def n_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.starts.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return int(self.members.nbytes + self.ref.nbytes + self.starts.nbytes + self.ends.nbytes + self.scale.nbytes)


def tail_scales(ref: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Tail scale of each member and class: block max minus its :data:`TAIL_QUANTILE` quantile.

    A block without spread (all scores tied) gets a scale of ``1e-9 * (1 + |max|)``: any score
    beyond it is then far outside everything clean, as it should be.

    Parameters
    ----------
    ref : numpy.ndarray
        float64 ``(m, R)`` sorted blocks.
    starts, ends : numpy.ndarray
        int64 ``(C,)`` block of each class.

    Returns
    -------
    numpy.ndarray
        float64 ``(m, C)``.
    """
    out = np.empty((ref.shape[0], starts.shape[0]))
    for c, (lo, hi) in enumerate(zip(starts.tolist(), ends.tolist())):
        block = ref[:, lo:hi]
        top = block[:, -1]
        q = block[:, int(TAIL_QUANTILE * (hi - lo - 1))]
        out[:, c] = np.maximum(top - q, 1e-9 * (1.0 + np.abs(top)))
    return out


@njit(exact=True)
def member_evidence(ref, k, lo, hi, scale, s):
    """Evidence ``e_k`` of score ``s`` against ``ref[k, lo:hi]``; for use inside kernels."""
    s = finite_or_inf(s)
    if s == np.inf:
        return np.inf
    n = hi - lo
    n_ge = count_at_least(ref, k, lo, hi, s)
    if n_ge > 0:
        return -np.log((1.0 + n_ge) / (n + 1.0))
    return np.log(n + 1.0) + (s - ref[k, hi - 1]) / scale


def kept_members(m: int) -> int:
    """How many of ``m`` evidences the statistic adds up: ``ceil(m / 2)``."""
    return (int(m) + 1) // 2


@njit(exact=True)
def strongest_half_sum(ev, m):
    """Sum of the :func:`kept_members` largest of ``ev[:m]`` (reorders ``ev``); for use inside kernels.

    The calling kernel passes a scratch array it owns.
    """
    keep = (m + 1) // 2  # kept_members(m): a plain-Python function cannot be called from here
    total = 0.0
    for i in range(keep):
        top = i
        for j in range(i + 1, m):
            if ev[j] > ev[top]:
                top = j
        v = ev[top]
        ev[top] = ev[i]
        ev[i] = v
        total += v
    return total


@njit(exact=True)
def _statistic(scores, classes, members, ref, starts, ends, scale, out):
    m = members.shape[0]
    ev = np.empty(m)
    for b in range(scores.shape[0]):
        c = classes[b]
        for k in range(m):
            ev[k] = member_evidence(ref, k, starts[c], ends[c], scale[k, c], scores[b, members[k]])
        out[b] = strongest_half_sum(ev, m)


def fused_statistic(scores: np.ndarray, classes: np.ndarray, tables: FusionTables) -> np.ndarray:
    """``T`` of each row of a score matrix (see the module docstring).

    Parameters
    ----------
    scores : numpy.ndarray
        float ``(B, D)``: score matrix whose columns ``tables.members`` are the members.
    classes : numpy.ndarray
        int ``(B,)`` predicted classes in ``[0, C)``.
    tables : FusionTables
        Member calibration.

    Returns
    -------
    numpy.ndarray
        float64 ``(B,)``; +inf where a member score is NaN/Inf.

    Raises
    ------
    InputError
        Wrong shapes, a member column outside the matrix, or a class out of range.
    """
    scores, classes = _checked(scores, classes, tables)
    out = np.empty(scores.shape[0])
    _statistic(scores, classes, tables.members, tables.ref, tables.starts, tables.ends, tables.scale, out)
    return out


def _checked(scores: np.ndarray, classes: np.ndarray, tables: FusionTables) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(tables, FusionTables):
        raise InputError(f"tables: expected FusionTables, got {type(tables).__name__}")
    scores = check_array(np.ascontiguousarray(scores, np.float64), "scores", np.float64, (None, None))
    classes = check_array(np.ascontiguousarray(classes, np.int64), "classes", np.int64, (scores.shape[0],))
    if int(tables.members.max()) >= scores.shape[1]:
        raise InputError(f"member columns {tables.members.tolist()} outside a {scores.shape[1]}-column score matrix")
    check_classes(classes, tables.n_classes, "classes")
    return scores, classes


@njit(exact=True)
def _evidence_rows(scores, classes, members, ref, starts, ends, scale, out):
    for b in range(scores.shape[0]):
        c = classes[b]
        for k in range(members.shape[0]):
            out[b, k] = member_evidence(ref, k, starts[c], ends[c], scale[k, c], scores[b, members[k]])


def member_evidences(scores: np.ndarray, classes: np.ndarray, tables: FusionTables) -> np.ndarray:
    """Each member's evidence ``e_k`` for each row (what :func:`fused_statistic` combines).

    Parameters
    ----------
    scores, classes, tables
        As :func:`fused_statistic`.

    Returns
    -------
    numpy.ndarray
        float64 ``(B, m)``, members in ``tables.members`` order; +inf where a score is NaN/Inf.
    """
    scores, classes = _checked(scores, classes, tables)
    out = np.empty((scores.shape[0], tables.members.shape[0]))
    _evidence_rows(scores, classes, tables.members, tables.ref, tables.starts, tables.ends, tables.scale, out)
    return out
