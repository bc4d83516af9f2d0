"""A drift alarm over a stream of a detector's frames, with a whole-stream false-alarm bound.

The classifier's stream alarm (:mod:`nnwatch.monitor.stream`) carried over to detectors: each
frame's statistic (the smallest of its objects' and its image term's p-values, from which its
``frame_p`` comes) gets an online, smoothed conformal p-value against the clean calibration
frames' statistics and every earlier frame, and a conformal test martingale (simple jumper)
bets against those p-values being uniform (:class:`nnwatch.kernels.martingale.StreamTest`).
On a stream of clean frames exchangeable with the calibration frames the probability that the
alarm *ever* goes off is at most ``delta`` (Ville's inequality); a drift that makes frames
slightly less typical, none of them flagged on its own, grows the capital until it alarms.

Consecutive camera frames are not exchangeable (docs/coverage.md): on a real recording the
bound holds for frames sampled far enough apart to be independent, and the alarm is a
sustained-drift detector, not a per-frame verdict. The classifier's second test, on the
predicted classes, has no counterpart here yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..kernels.martingale import StreamTest


@dataclass
class ObjectStreamUpdate:
    """Per-frame stream results of one batch.

    Attributes
    ----------
    p_values : numpy.ndarray
        float64 ``(F,)`` online smoothed conformal p-values of the frames.
    statistic : numpy.ndarray
        float64 ``(F,)`` capital after each frame.
    alarm : numpy.ndarray
        bool ``(F,)`` the capital is at or above ``1 / delta`` after this frame.
    first_alarm : int or None
        Stream index of the first alarming frame since the last reset.
    """

    p_values: np.ndarray
    statistic: np.ndarray
    alarm: np.ndarray
    first_alarm: int | None


class ObjectStream:
    """Drift alarm over a calibrated object monitor's frames, fed in order.

    Parameters
    ----------
    monitor : ObjectMonitor
        A calibrated object monitor.
    delta : float
        Bound on the probability of ever alarming on a clean, exchangeable stream.
    method : {"jumper", "cusum"}
        ``jumper``: the guaranteed test martingale; ``cusum``: for comparison (no bound).
    jump : float
        Simple jumper's redistributed share per frame.
    seed : int
        Seed of the p-values' smoothing draws.
    """

    def __init__(self, monitor, delta: float = 0.01, method: str = "jumper", jump: float = 0.01,  # type: ignore[no-untyped-def]
                 seed: int = 0) -> None:
        frames = getattr(monitor, "frames_", None)
        if frames is None:
            raise InputError("the stream alarm needs a calibrated object monitor (calibrate it on clean frames)")
        self.monitor, self._calibration = monitor, frames
        # the martingale's scores are "higher = more anomalous": the negated frame statistic
        self._test = StreamTest([-np.asarray(frames.reference, np.float64)], delta, method, jump, seed)
        self.frames = 0
        self.first_alarm: int | None = None

    @property
    def statistic(self) -> float:
        """Current capital (jumper) or CUSUM statistic."""
        return self._test.statistic

    @property
    def threshold(self) -> float:
        """The capital at which the alarm goes off (``1 / delta`` for the jumper)."""
        return self._test.threshold

    def update(self, verdicts) -> ObjectStreamUpdate:  # type: ignore[no-untyped-def]
        """Advance the stream over one batch of frames (in order).

        Parameters
        ----------
        verdicts : ObjectVerdicts
            From this stream's monitor.

        Returns
        -------
        ObjectStreamUpdate
            Per-frame p-values, capital and alarms.

        Raises
        ------
        ModelMismatchError
            The monitor was calibrated again since the stream started, or the verdicts carry
            no frame statistics.
        """
        if self.monitor.frames_ is not self._calibration:
            raise ModelMismatchError("the monitor was calibrated again since this stream started; start a new "
                                     "ObjectStream")
        stat = np.asarray(getattr(verdicts, "frame_statistic", np.zeros(0)), np.float64)
        if stat.shape != np.shape(verdicts.frame_p):
            raise ModelMismatchError("these verdicts carry no frame statistics (not from ObjectMonitor.score)")
        scores = np.ascontiguousarray(-np.nan_to_num(stat, nan=-np.inf))  # NaN: as anomalous as can be
        p, capital, alarm = self._test.advance(scores, np.zeros(scores.shape[0], np.int64))
        if self.first_alarm is None and alarm.any():
            self.first_alarm = self.frames + int(np.argmax(alarm))
        self.frames += scores.shape[0]
        return ObjectStreamUpdate(p_values=p, statistic=capital, alarm=alarm, first_alarm=self.first_alarm)

    def reset(self) -> None:
        """Start a new test (capital 1) once an operator has confirmed a new normal."""
        self._test.reset()
        self.first_alarm = None
