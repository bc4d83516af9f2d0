"""Frame verdicts from object verdicts: a frame is flagged when any of its objects is, at a
threshold calibrated on whole frames so the frame false-alarm rate holds.

Per frame ``f`` the statistic is the smallest p-value it produced,

    m_f = min(p_image_f, min over objects j of f of p_j)

where ``p_j`` is object ``j``'s conformal p-value (per predicted class, against clean objects of
the *object* calibration frames) and ``p_image_f`` the frame's own image-level p-value (the only
term for a frame without objects). On a second, disjoint set of clean calibration frames the
``m`` are sorted; a live frame's p-value is

    P_f = (1 + #{calibration frames c: m_c <= m_f}) / (n + 1)

and the frame is flagged when ``P_f <= alpha``. Given the object calibration, ``m`` is a fixed
function of a frame, and clean live frames are exchangeable with the frame-calibration frames,
so ``P(frame flagged | clean frame) <= alpha`` whatever the number of objects per frame and
however they depend on each other. An object is flagged when it alone would flag its frame
(``P`` of its own ``p_j`` is ``<= alpha``), so a frame is flagged exactly when one of its
objects, or its image-level term, is. Each object's own p-value stays in the table: flagging
objects at ``p_j <= alpha`` instead controls the per-object false-alarm rate at ``alpha``, not
the frame's (a frame of k clean objects then alarms with probability up to ``k * alpha``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_probability
from ..errors import InputError
from .groups import check_calibration_size


def frame_minimum(object_p: np.ndarray, frame: np.ndarray, image_p: np.ndarray) -> np.ndarray:
    """Each frame's smallest p-value, its objects' and its own.

    Parameters
    ----------
    object_p : numpy.ndarray
        ``(M,)`` object p-values.
    frame : numpy.ndarray
        int ``(M,)`` frame of each object, in ``[0, F)``.
    image_p : numpy.ndarray
        ``(F,)`` image-level p-values (1 where there is no image-level term).

    Returns
    -------
    numpy.ndarray
        float64 ``(F,)``.
    """
    m = np.asarray(image_p, np.float64).copy()
    np.minimum.at(m, np.asarray(frame, np.int64), np.asarray(object_p, np.float64))
    return m


@dataclass(frozen=True)
class FrameCalibration:
    """Sorted frame statistics of clean calibration frames and the target rate.

    Attributes
    ----------
    reference : numpy.ndarray
        float64 sorted ``m`` of the calibration frames.
    alpha : float
        Target frame false-alarm rate.
    """

    reference: np.ndarray
    alpha: float

    @classmethod
    def fit(cls, statistic: np.ndarray, alpha: float) -> "FrameCalibration":
        """Calibrate on the frame statistics of clean frames not used for the object calibration.

        Parameters
        ----------
        statistic : numpy.ndarray
            ``(n,)`` :func:`frame_minimum` of the clean frames.
        alpha : float
            Target rate in (0, 1).

        Returns
        -------
        FrameCalibration
            The calibration.

        Raises
        ------
        InputError
            Non-finite statistics, or too few frames for ``alpha``.
        """
        a = check_probability(alpha, "alpha")
        s = np.asarray(statistic, np.float64)
        if s.ndim != 1 or not np.isfinite(s).all():
            raise InputError("frame statistics must be a finite 1-D array")
        check_calibration_size(s.size, a, "calibration frames")
        return cls(np.sort(s), a)

    def p_values(self, statistic: np.ndarray) -> np.ndarray:
        """Frame p-values ``(1 + #{m_c <= m}) / (n + 1)``.

        Parameters
        ----------
        statistic : numpy.ndarray
            Frame statistics (or single objects' p-values, for their flags).

        Returns
        -------
        numpy.ndarray
            float64 p-values.
        """
        s = np.nan_to_num(np.asarray(statistic, np.float64), nan=-np.inf)
        count = np.searchsorted(self.reference, s, side="right")
        return (1.0 + count) / (self.reference.size + 1.0)

    def flags(self, statistic: np.ndarray) -> np.ndarray:
        """``p_values(statistic) <= alpha``.

        Parameters
        ----------
        statistic : numpy.ndarray
            Frame statistics or object p-values.

        Returns
        -------
        numpy.ndarray
            bool flags.
        """
        return self.p_values(statistic) <= self.alpha
