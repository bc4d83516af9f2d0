"""A drift alarm over a stream of a detector's frames, with a whole-stream false-alarm bound.

The classifier's stream alarm (:mod:`nnwatch.monitor.stream`) carried over to detectors, with
its two tests:

- **Score test.** Each frame's statistic (the smallest of its objects' and its image term's
  p-values, from which its ``frame_p`` comes) gets an online, smoothed conformal p-value
  against the clean calibration frames' statistics and every earlier frame, and a conformal
  test martingale (simple jumper) bets against those p-values being uniform
  (:class:`nnwatch.kernels.martingale.StreamTest`). A drift that makes frames slightly less
  typical, none of them flagged on its own, grows the capital until it alarms.
- **Class test.** Each frame's category, the predicted class of its highest-scoring object or
  "no objects" (:meth:`nnwatch.objects.detections.Detections.top_classes`), gets the
  rarity p-value of :class:`nnwatch.kernels.martingale.ClassStreamTest` against the same
  calibration frames' categories and every earlier frame's. It catches a drift in *what* the
  camera sees (a scene of mostly one kind of object, or of empty frames) that the score test,
  which judges how typical each object looks, does not.

The tests share ``delta`` (``delta / 2`` each), so on a stream of clean frames exchangeable
with the calibration frames the probability that either *ever* alarms is at most ``delta``
(Ville's inequality and a union bound). A monitor state written before the class test existed
carries no categories: its stream runs the score test alone, at ``delta``.

Consecutive camera frames are not exchangeable (docs/coverage.md): on a real recording the
bound holds for frames sampled far enough apart to be independent, and the alarm is a
sustained-drift detector, not a per-frame verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..kernels.martingale import ClassStreamTest, StreamTest


@dataclass
class ObjectStreamUpdate:
    """Per-frame stream results of one batch.

    Attributes
    ----------
    p_values : numpy.ndarray
        float64 ``(F,)`` online smoothed conformal p-values of the frame statistics.
    statistic : numpy.ndarray
        float64 ``(F,)`` capital of the score test after each frame.
    alarm : numpy.ndarray
        bool ``(F,)`` either test is at or above its threshold after this frame.
    first_alarm : int or None
        Stream index of the first frame at which either test alarmed since the last reset.
    class_statistic : numpy.ndarray
        float64 ``(F,)`` capital of the class test after each frame (1 without a class test).
    class_alarm : numpy.ndarray
        bool ``(F,)`` the class test is at or above its threshold after this frame.
    """

    p_values: np.ndarray
    statistic: np.ndarray
    alarm: np.ndarray
    first_alarm: int | None
    class_statistic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_alarm: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


class ObjectStream:
    """Drift alarm over a calibrated object monitor's frames, fed in order.

    Parameters
    ----------
    monitor : ObjectMonitor
        A calibrated object monitor.
    delta : float
        Bound on the probability that either test ever alarms on a clean, exchangeable stream
        (``delta / 2`` each; ``delta`` for the score test alone when the monitor's calibration
        has no frame categories).
    method : {"jumper", "cusum"}
        ``jumper``: the guaranteed test martingale; ``cusum``: for comparison (no bound).
    jump : float
        Simple jumper's redistributed share per frame.
    seed : int
        Seed of the p-values' smoothing draws (the class test uses ``seed + 1``).
    """

    def __init__(self, monitor, delta: float = 0.01, method: str = "jumper", jump: float = 0.01,  # type: ignore[no-untyped-def]
                 seed: int = 0) -> None:
        frames = getattr(monitor, "frames_", None)
        if frames is None:
            raise InputError("the stream alarm needs a calibrated object monitor (calibrate it on clean frames)")
        self.monitor, self._calibration = monitor, frames
        categories = getattr(monitor, "frame_categories_", None)
        share = float(delta) if categories is None else float(delta) / 2
        # the martingale's scores are "higher = more anomalous": the negated frame statistic
        self._test = StreamTest([-np.asarray(frames.reference, np.float64)], share, method, jump, seed)
        self._classes: ClassStreamTest | None = None
        self.n_categories = 0
        if categories is not None:
            self.n_categories = int(monitor.n_classes_) + 1  # the classes and "no objects"
            self._classes = ClassStreamTest(np.asarray(categories, np.int64), self.n_categories, share, method, jump,
                                            seed + 1)
        self.frames = 0
        self.first_alarm: int | None = None

    @property
    def class_test(self) -> bool:
        """Whether the class test runs (the monitor's calibration has frame categories)."""
        return self._classes is not None

    @property
    def statistic(self) -> float:
        """Current capital (jumper) or CUSUM statistic of the score test."""
        return self._test.statistic

    @property
    def class_statistic(self) -> float:
        """Current statistic of the class test (1.0 without one)."""
        return 1.0 if self._classes is None else self._classes.statistic

    @property
    def threshold(self) -> float:
        """The capital at which either test alarms (``2 / delta`` with the class test, ``1 / delta`` without)."""
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
            no frame statistics (or no frame categories where the class test runs).
        """
        if self.monitor.frames_ is not self._calibration:
            raise ModelMismatchError("the monitor was calibrated again since this stream started; start a new "
                                     "ObjectStream")
        stat = np.asarray(getattr(verdicts, "frame_statistic", np.zeros(0)), np.float64)
        if stat.shape != np.shape(verdicts.frame_p):
            raise ModelMismatchError("these verdicts carry no frame statistics (not from ObjectMonitor.score)")
        categories = None
        if self._classes is not None:
            categories = np.ascontiguousarray(getattr(verdicts, "frame_category", np.zeros(0, np.int64)), np.int64)
            if categories.shape != stat.shape or (categories.size and not
                                                  0 <= categories.min() <= categories.max() < self.n_categories):
                raise ModelMismatchError("these verdicts carry no frame categories in [0, "
                                         f"{self.n_categories}) (not from this stream's ObjectMonitor.score)")
        scores = np.ascontiguousarray(-np.nan_to_num(stat, nan=-np.inf))  # NaN: as anomalous as can be
        p, capital, alarm = self._test.advance(scores, np.zeros(scores.shape[0], np.int64))
        if categories is None:
            class_capital, class_alarm = np.ones(scores.shape[0]), np.zeros(scores.shape[0], bool)
        else:
            _, class_capital, class_alarm = self._classes.advance(categories)
        either = alarm | class_alarm
        if self.first_alarm is None and either.any():
            self.first_alarm = self.frames + int(np.argmax(either))
        self.frames += scores.shape[0]
        return ObjectStreamUpdate(p_values=p, statistic=capital, alarm=either, first_alarm=self.first_alarm,
                                  class_statistic=class_capital, class_alarm=class_alarm)

    def reset(self) -> None:
        """Start new tests (capital 1) once an operator has confirmed a new normal."""
        self._test.reset()
        if self._classes is not None:
            self._classes.reset()
        self.first_alarm = None
