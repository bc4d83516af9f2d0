"""Stream monitoring: a drift alarm over a whole stream of frames, with a false-alarm bound.

A :class:`StreamMonitor` follows one column of a calibrated monitor's verdicts (by default
its decision) frame by frame. Each frame's score gets an online, smoothed conformal p-value
against its calibration group's clean scores and every earlier frame of the group
(:mod:`nnwatch.kernels.martingale`); a conformal test martingale (simple jumper) bets against
those p-values being uniform. On a clean stream exchangeable with the calibration data the
probability that the alarm *ever* goes off is at most ``delta`` (Ville's inequality), with
no window to tune; under gradual drift the capital grows until it crosses ``1/delta``.

A second test follows what the model *predicts*: a drift that moves frames between classes
without any single frame looking odd (a camera re-mounted to see mostly one kind of object).
Its p-values come from the rarity of each frame's predicted class among the calibration
samples' and earlier frames' predictions (:class:`nnwatch.kernels.martingale.ClassStreamTest`),
with the same kind of martingale. The two tests share ``delta`` (``delta / 2`` each), so the
chance that either ever alarms on a clean stream is at most ``delta``.

:meth:`StreamMonitor.reset` starts a new test once an operator has confirmed a new normal
(the guarantee then holds for the new test; over several tests the bounds add up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..kernels.martingale import ClassStreamTest, StreamTest
from .results import Verdicts


@dataclass(frozen=True)
class StreamUpdate:
    """Per-frame stream results of one batch.

    Attributes
    ----------
    p_values : numpy.ndarray
        float64 ``(B,)`` online smoothed conformal p-values of the scores.
    statistic : numpy.ndarray
        float64 ``(B,)`` capital of the score test after each frame (alarm at ``>= 2/delta``).
    class_statistic : numpy.ndarray
        float64 ``(B,)`` capital of the predicted-class test after each frame.
    alarm : numpy.ndarray
        bool ``(B,)``: either test is at or above its threshold after this frame.
    class_alarm : numpy.ndarray
        bool ``(B,)``: the predicted-class test is.
    first_alarm : int or None
        Stream index of the first frame at which either test alarmed since the last reset.
    """

    p_values: np.ndarray
    statistic: np.ndarray
    class_statistic: np.ndarray
    alarm: np.ndarray
    class_alarm: np.ndarray
    first_alarm: int | None


class StreamMonitor:
    """Drift alarm over a stream of a calibrated monitor's verdicts.

    Parameters
    ----------
    monitor : Monitor
        A calibrated monitor.
    column : str, optional
        Column to follow (default: the monitor's decision).
    delta : float
        Bound on the probability that either test ever alarms on a clean, exchangeable
        stream (each test runs at ``delta / 2``).
    method : {"jumper", "cusum"}
        ``jumper``: the guaranteed conformal test martingale; ``cusum``: for comparison only
        (no whole-stream bound).
    jump : float
        Simple jumper's redistributed share per frame.
    seed : int
        Seed of the p-values' smoothing draws.
    """

    def __init__(self, monitor, column: str | None = None, delta: float = 0.01, method: str = "jumper",  # type: ignore[no-untyped-def]
                 jump: float = 0.01, seed: int = 0) -> None:
        if not monitor.calibrated:
            raise InputError("a stream monitor needs a calibrated monitor (nnwatch calibrate)")
        self.monitor = monitor
        self.column = column or monitor.decision
        reference, self.group_of = monitor.calibration_reference(self.column)
        self.test = StreamTest(reference, delta=delta / 2, method=method, jump=jump, seed=seed)
        cal = monitor.calibration
        self.class_test = ClassStreamTest(cal.classes, monitor.profile.n_classes, delta=delta / 2, method=method,
                                          jump=jump, seed=seed + 1)
        self.delta = float(delta)
        self._calibration = monitor.calibration
        self.frames = 0
        self.first_alarm: int | None = None
        self.class_counts = np.zeros(monitor.profile.n_classes, np.int64)

    def update(self, verdicts: Verdicts) -> StreamUpdate:
        """Feed one batch of verdicts (frames in order).

        Parameters
        ----------
        verdicts : Verdicts
            From this stream monitor's ``monitor``.

        Returns
        -------
        StreamUpdate
            Per-frame p-values, statistic and alarm.

        Raises
        ------
        ModelMismatchError
            The verdicts come from another calibration or lack the column.
        """
        if self.monitor.calibration is not self._calibration:
            raise ModelMismatchError("the monitor was calibrated again since this stream started; start a new "
                                     "StreamMonitor")
        if not isinstance(verdicts, Verdicts) or self.column not in verdicts.columns:
            raise ModelMismatchError(f"expected Verdicts with column {self.column!r} from this stream's monitor")
        j = verdicts.columns.index(self.column)
        if not verdicts.active[j]:
            raise ModelMismatchError(f"column {self.column!r} was not computed in this call (degraded monitor?)")
        # the monitor's own arrays: float64 scores, classes in range, so the checks are not repeated
        scores = np.ascontiguousarray(verdicts.score_matrix[:, j])
        p, stat, score_alarm = self.test.advance(scores, self.group_of[verdicts.pred])
        _, class_stat, class_alarm = self.class_test.advance(verdicts.pred)
        alarm = score_alarm | class_alarm
        if self.first_alarm is None and alarm.any():
            self.first_alarm = self.frames + int(np.argmax(alarm))
        self.frames += len(scores)
        self.class_counts += np.bincount(verdicts.pred, minlength=self.class_counts.size)
        return StreamUpdate(p_values=p, statistic=stat, class_statistic=class_stat, alarm=alarm,
                            class_alarm=class_alarm, first_alarm=self.first_alarm)

    def reset(self) -> None:
        """Start a new test: an operator confirmed the current data as the new normal."""
        self.test.reset()
        self.class_test.reset()
        self.first_alarm = None

    @property
    def statistic(self) -> float:
        """Current test statistic."""
        return self.test.statistic

    def class_shift(self) -> dict[str, np.ndarray]:
        """Predicted-class frequencies of the stream next to the profile's trusted-class frequencies.

        Returns
        -------
        dict
            ``{"stream": (C,), "profile": (C,)}`` frequencies (no guarantee attached).
        """
        prof = np.asarray(self.monitor.profile.header["class_counts"], np.float64)
        return {"stream": self.class_counts / max(self.frames, 1), "profile": prof / max(prof.sum(), 1.0)}
