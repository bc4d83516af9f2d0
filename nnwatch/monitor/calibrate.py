"""Per-class thresholds for a target false-positive rate, and calibrated confidences.

Thresholds: for class ``c`` with at least ``min_class_samples`` clean held-out samples
predicted as ``c``, the threshold is the ``1 - fpr`` quantile (``method="higher"``) of their
scores, so at most ``fpr`` of them lie above it; other classes use the global quantile.

Confidence: the conformal p-value ``(1 + #{clean scores >= s}) / (n + 1)`` of a score ``s``
among the clean scores of its predicted class (or all, for small classes). For clean,
exchangeable inputs ``P(confidence <= a) <= a``: it is calibrated in that sense.
"""

from __future__ import annotations

import bisect

import numpy as np

from .._validate import check_probability
from ..errors import InputError
from ..profile.schema import Calibration


def fit_thresholds(scores: np.ndarray, classes: np.ndarray, n_classes: int, fpr: float,
                   min_class_samples: int) -> np.ndarray:
    """Per-class thresholds from clean scores.

    Parameters
    ----------
    scores : numpy.ndarray
        float64 ``(M, D)`` clean scores of ``D`` detectors.
    classes : numpy.ndarray
        int ``(M,)`` predicted classes.
    n_classes : int
        ``C``.
    fpr : float
        Target false-positive rate.
    min_class_samples : int
        Fewer samples than this: use the global threshold.

    Returns
    -------
    numpy.ndarray
        float64 ``(C + 1, D)``; row ``C`` is global.
    """
    check_probability(fpr, "fpr")
    if scores.shape[0] == 0:
        raise InputError("no calibration sample; the calibration data set is empty")
    q = 1.0 - fpr
    glob = np.quantile(scores, q, axis=0, method="higher")
    out = np.tile(glob, (n_classes + 1, 1))
    for c in range(n_classes):
        mask = classes == c
        if mask.sum() >= min_class_samples:
            out[c] = np.quantile(scores[mask], q, axis=0, method="higher")
    return out


def calibration_from_scores(detectors: list[str], scores: np.ndarray, classes: np.ndarray, n_classes: int,
                            fpr: float = 0.05, min_class_samples: int = 20) -> Calibration:
    """Build a :class:`Calibration` from clean scores.

    Parameters
    ----------
    detectors : list of str
        Column names.
    scores : numpy.ndarray
        ``(M, D)`` clean scores.
    classes : numpy.ndarray
        ``(M,)`` predicted classes.
    n_classes : int
        ``C``.
    fpr : float
        Target false-positive rate.
    min_class_samples : int
        Minimum per-class samples for a class threshold.

    Returns
    -------
    Calibration
        Thresholds and the scores behind them.
    """
    scores = np.asarray(scores, np.float64)
    classes = np.asarray(classes, np.int64)
    thresholds = fit_thresholds(scores, classes, n_classes, fpr, min_class_samples)
    return Calibration(detectors=list(detectors), scores=scores, classes=classes, thresholds=thresholds,
                       fpr=float(fpr), min_class_samples=int(min_class_samples))


class ConformalConfidence:
    """Conformal p-values of one detector's scores, per predicted class.

    Parameters
    ----------
    calibration : Calibration
        Clean scores.
    detector : str
        Which column.
    n_classes : int
        ``C``.
    """

    def __init__(self, calibration: Calibration, detector: str, n_classes: int) -> None:
        col = calibration.detectors.index(detector)
        scores = calibration.scores[:, col]
        glob = np.sort(scores)
        self._sorted = []
        for c in range(n_classes):
            own = scores[calibration.classes == c]
            self._sorted.append(np.sort(own) if own.size >= calibration.min_class_samples else glob)
        self._lists = [ref.tolist() for ref in self._sorted]  # bisect on lists: fastest for batch 1

    def __call__(self, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """p-values in (0, 1].

        Parameters
        ----------
        scores : numpy.ndarray
            ``(B,)`` scores.
        classes : numpy.ndarray
            ``(B,)`` predicted classes.

        Returns
        -------
        numpy.ndarray
            float64 ``(B,)``; high = like the clean data.
        """
        if scores.shape[0] == 1:  # the perception-loop case
            ref = self._lists[int(classes[0])]
            n_ge = len(ref) - bisect.bisect_left(ref, float(scores[0]))
            return np.array([(1.0 + n_ge) / (len(ref) + 1.0)])
        out = np.empty(scores.shape[0])
        for c in np.unique(classes):
            mask = classes == c
            ref = self._sorted[int(c)]
            n_ge = ref.size - np.searchsorted(ref, scores[mask], side="left")
            out[mask] = (1.0 + n_ge) / (ref.size + 1.0)
        return out
