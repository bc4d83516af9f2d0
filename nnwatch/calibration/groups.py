"""Conformal calibration: per-class flags with a finite-sample false-alarm guarantee.

For each detector, the clean calibration scores of a class's *calibration group* are sorted;
a live score ``s`` of a sample predicted as that class gets the conformal p-value
``(1 + #{group scores >= s}) / (n + 1)`` and is flagged when the p-value is at most the
target rate ``alpha`` (:mod:`nnwatch.kernels.conformal`). Groups (Mondrian conformal
prediction, one group per predicted class):

- a class with at least ``n_min`` calibration samples is its own group, where ``n_min`` is the
  larger of ``min_class_samples`` and the smallest ``n`` that can flag at all at ``alpha``
  (``ceil(1 / alpha) - 1``: 19 at 5%);
- the other classes share one pooled group of their samples, if the pool reaches ``n_min``;
- otherwise they are compared with all calibration samples (global): the only case without
  the guarantee below, reported when it happens.

Guarantee: if the clean inputs the monitor will see and the calibration inputs are
exchangeable (drawn from the same distribution, independently), then for every group
``P(flag | clean, predicted class in the group) <= alpha``; hence also marginally.
Documented in docs/coverage.md.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._validate import check_probability
from ..errors import InputError, ModelMismatchError
from ..kernels.conformal import ConformalTables, allowed_count
from ..profile.schema import Calibration


class CalibrationWarning(UserWarning):
    """Some classes had too few calibration samples for a threshold of their own."""


class TrainingOverlapWarning(UserWarning):
    """Calibration inputs were also inputs the profile was built from."""


def min_samples_for(alpha: float) -> int:
    """Smallest number of calibration scores with which a conformal test at ``alpha`` can flag.

    Parameters
    ----------
    alpha : float
        Target false-alarm rate in (0, 1).

    Returns
    -------
    int
        ``n`` such that ``allowed_count(n, alpha) >= 1``.
    """
    n = max(int(math.ceil(1.0 / alpha)) - 2, 0)
    while allowed_count(n, alpha) < 1:
        n += 1
    return n


def check_calibration_size(n: int, alpha: float, what: str = "calibration data",
                           unit: str = "calibration samples", parts: int = 1) -> None:
    """Refuse a calibration set too small for a conformal flag at ``alpha`` (the one such check).

    Parameters
    ----------
    n : int
        Calibration samples (or benign prompts) available.
    alpha : float
        Target false-alarm rate.
    what : str
        What the message names (an option such as ``--hold-out``).
    unit : str
        What the samples are, for the message.
    parts : int
        The data is split into this many parts that must each be able to flag (the fused
        verdict's two halves): ``parts * m + parts - 1`` samples are needed.

    Raises
    ------
    InputError
        ``alpha`` outside (0, 1), or ``n`` below :func:`min_samples_for` ``(alpha)`` (per part).
    """
    check_probability(alpha, "fpr")
    each = min_samples_for(alpha)
    need = parts * each + parts - 1
    if n < need:
        why = (f"{parts} parts of at least {each} that can each flag" if parts > 1 else
               f"{min_samples_for(0.05)} for 5%, {min_samples_for(0.01)} for 1%")
        raise InputError(f"{what}: {n} {unit} cannot calibrate fpr={alpha:g}; at least {need} are needed ({why}): "
                         "use more or a larger fpr")


@dataclass(frozen=True)
class CalibrationGroups:
    """Which calibration scores each class is compared with.

    Attributes
    ----------
    own : list of int
        Classes with a group of their own.
    pooled : list of int
        Classes sharing the pooled group (or the global one, see ``pooled_is_global``).
    pooled_is_global : bool
        The pooled classes had too few samples together and use all samples (no guarantee).
    counts : list of int
        Calibration samples per class.
    n_min : int
        Samples a class needed for its own group.
    """

    own: list[int]
    pooled: list[int]
    pooled_is_global: bool
    counts: list[int]
    n_min: int

    def describe(self) -> str:
        """One line for users: who fell back and why (empty when no class did).

        Returns
        -------
        str
            Description.
        """
        if not self.pooled:
            return ""
        shown = ", ".join(f"{c} ({self.counts[c]})" for c in self.pooled[:20])
        more = f", ... ({len(self.pooled)} classes)" if len(self.pooled) > 20 else ""
        pool = sum(self.counts[c] for c in self.pooled)
        if self.pooled_is_global:
            return (f"classes {shown}{more} have fewer than {self.n_min} calibration samples each and {pool} together: "
                    f"they use the global threshold over all {sum(self.counts)} samples, whose false-alarm rate is "
                    "not guaranteed for them; calibrate on more data")
        return (f"classes {shown}{more} have fewer than {self.n_min} calibration samples each: they share one "
                f"threshold over their {pool} pooled samples")


def calibration_groups(classes: np.ndarray, n_classes: int, alpha: float, min_class_samples: int) -> CalibrationGroups:
    """Assign each class to its own, the pooled or the global calibration group.

    Parameters
    ----------
    classes : numpy.ndarray
        int ``(M,)`` predicted class of each calibration sample.
    n_classes : int
        ``C``.
    alpha : float
        Target false-alarm rate.
    min_class_samples : int
        Minimum samples for a class's own group (raised to :func:`min_samples_for`).

    Returns
    -------
    CalibrationGroups
        The assignment.
    """
    counts = np.bincount(np.asarray(classes, np.int64), minlength=n_classes)[:n_classes]
    n_min = max(int(min_class_samples), min_samples_for(alpha))
    own = [c for c in range(n_classes) if counts[c] >= n_min]
    pooled = [c for c in range(n_classes) if counts[c] < n_min]
    pool = int(counts[pooled].sum()) if pooled else 0
    return CalibrationGroups(own=own, pooled=pooled, pooled_is_global=bool(pooled) and pool < n_min,
                             counts=counts.tolist(), n_min=n_min)


def compile_conformal(cal: Calibration, columns: Sequence[str], n_classes: int) -> tuple[ConformalTables, np.ndarray]:
    """Sorted calibration blocks for the columns of a monitor.

    Parameters
    ----------
    cal : Calibration
        The calibration.
    columns : sequence of str
        The monitor's detector columns.
    n_classes : int
        ``C``.

    Returns
    -------
    tuple
        ``(ConformalTables over the calibrated columns, cal_row int64 (len(columns),))``.
    """
    groups = calibration_groups(cal.classes, n_classes, cal.fpr, cal.min_class_samples)
    used = [name for name in columns if name in cal.detectors]
    if not used:
        raise InputError(f"none of the detectors {list(columns)} is calibrated (calibrated: {cal.detectors})")
    scores = cal.scores[:, [cal.detectors.index(name) for name in used]].T  # (D, M)
    blocks, starts, ends = [], np.zeros(n_classes, np.int64), np.zeros(n_classes, np.int64)
    pos = 0

    def add(rows: np.ndarray) -> tuple[int, int]:
        nonlocal pos
        blocks.append(np.sort(scores[:, rows], axis=1))
        lo, pos = pos, pos + int(rows.sum())
        return lo, pos

    for c in groups.own:
        starts[c], ends[c] = add(cal.classes == c)
    if groups.pooled:
        rows = np.ones(len(cal.classes), bool) if groups.pooled_is_global else np.isin(cal.classes, groups.pooled)
        lo, hi = add(rows)
        starts[groups.pooled], ends[groups.pooled] = lo, hi
    allowed = np.array([allowed_count(int(n), cal.fpr) for n in ends - starts], np.int64)
    tables = ConformalTables(ref=np.ascontiguousarray(np.concatenate(blocks, axis=1)), starts=starts, ends=ends,
                             allowed=allowed, alpha=float(cal.fpr))
    cal_row = np.array([used.index(n) if n in used else -1 for n in columns], np.int64)
    return tables, cal_row


def class_thresholds(cal: Calibration, n_classes: int) -> np.ndarray:
    """Per-class score thresholds of every calibrated detector (flag when score > threshold).

    Parameters
    ----------
    cal : Calibration
        The calibration.
    n_classes : int
        ``C``.

    Returns
    -------
    numpy.ndarray
        float64 ``(C, D)`` in ``cal.detectors`` order; +inf where a group cannot flag.
    """
    tables, _ = compile_conformal(cal, cal.detectors, n_classes)
    return tables.thresholds()


def calibration_from_scores(detectors: Sequence[str], scores: np.ndarray, classes: np.ndarray, n_classes: int,
                            fpr: float = 0.05, min_class_samples: int = 20,
                            settings: dict[str, Any] | None = None, warn: bool = True) -> Calibration:
    """Build a :class:`Calibration` from clean scores.

    Parameters
    ----------
    detectors : sequence of str
        Column names.
    scores : numpy.ndarray
        ``(M, D)`` clean scores, all finite.
    classes : numpy.ndarray
        ``(M,)`` predicted classes in ``[0, C)``.
    n_classes : int
        ``C``.
    fpr : float
        Target false-alarm rate ``alpha`` in (0, 1).
    min_class_samples : int
        Minimum calibration samples for a class's own threshold.
    settings : dict, optional
        What the scores depend on (the monitor's settings and the profile's digest); a
        monitor configured differently refuses this calibration.
    warn : bool
        Warn (:class:`CalibrationWarning`) about classes without a threshold of their own.

    Returns
    -------
    Calibration
        The calibration.

    Raises
    ------
    InputError
        Empty, non-finite or mis-shaped scores, classes out of range, too few samples for
        ``fpr``.
    """
    alpha = check_probability(fpr, "fpr")
    scores = np.asarray(scores, np.float64)
    classes = np.asarray(classes)
    names = list(detectors)
    if scores.ndim != 2 or scores.shape[1] != len(names) or classes.shape != (scores.shape[0],):
        raise InputError(f"scores must be (samples, {len(names)}) and classes (samples,), got {scores.shape} and "
                         f"{classes.shape}")
    if classes.dtype.kind not in "iu":
        raise InputError(f"classes must be integers, got {classes.dtype}")
    classes = classes.astype(np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        raise InputError(f"classes must be in [0, {n_classes})")
    if int(min_class_samples) < 1:
        raise InputError(f"min_class_samples must be >= 1, got {min_class_samples}")
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise InputError(f"{int(bad.sum())} calibration samples have non-finite scores (first: row "
                         f"{int(np.flatnonzero(bad)[0])}): NaN/Inf inputs or activations are not clean data; "
                         "remove them from the calibration set")
    check_calibration_size(scores.shape[0], alpha)
    cal = Calibration(detectors=names, scores=scores, classes=classes, fpr=alpha,
                      min_class_samples=int(min_class_samples), settings=dict(settings or {}))
    if warn:
        text = calibration_groups(classes, n_classes, alpha, int(min_class_samples)).describe()
        if text:
            warnings.warn(text, CalibrationWarning, stacklevel=2)
    return cal


def check_settings(cal: Calibration, settings: dict[str, Any]) -> None:
    """Refuse a calibration made under other settings than a monitor's.

    Parameters
    ----------
    cal : Calibration
        The calibration.
    settings : dict
        The monitor's settings (same keys as when calibrating).

    Raises
    ------
    ModelMismatchError
        Any recorded setting differs; the message lists each difference and the fix.
    """
    diffs = []
    for key, value in cal.settings.items():
        mine = settings.get(key)
        if key == "detector_params":  # only detectors both sides run are compared
            value = {k: v for k, v in value.items() if k in mine}
            mine = {k: v for k, v in mine.items() if k in value}
        if mine != value:
            if key == "profile_digest":
                diffs.append("the profile's statistics (it was rebuilt, merged or edited since)")
            else:
                diffs.append(f"{key}: calibrated with {value!r}, this monitor uses {mine!r}")
    if diffs:
        raise ModelMismatchError("this calibration was made under other settings: " + "; ".join(diffs)
                                 + ". Configure the monitor as it was calibrated, or calibrate again (nnwatch calibrate)")
