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

Attached to its monitor (the default), the stream advances inside the monitor's compiled call,
and every :class:`~nnwatch.monitor.results.Verdicts` carries its per-frame results in
``v.stream``. Attach a stream only where one thread feeds the monitor the frames in order;
calls under the degrade policy skip the stream (their frames are not tested).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..kernels.martingale import StreamState
from .results import StreamUpdate, Verdicts

__all__ = ["StreamMonitor", "StreamUpdate"]


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
    attach : bool
        Advance inside the monitor's compiled call (one call per batch, nothing more); False:
        feed verdicts with :meth:`update`.

    Raises
    ------
    InputError
        The monitor is not calibrated, or already has a stream attached.
    NotFittedError
        The calibration holds no reference scores for ``column``.
    """

    def __init__(self, monitor, column: str | None = None, delta: float = 0.01, method: str = "jumper",  # type: ignore[no-untyped-def]
                 jump: float = 0.01, seed: int = 0, attach: bool = True) -> None:
        if not monitor.calibrated:
            raise InputError("a stream monitor needs a calibrated monitor (nnwatch calibrate)")
        self.monitor = monitor
        self.column = column or monitor.decision
        if self.column not in monitor.columns:
            raise InputError(f"column {self.column!r} is not one of the monitor's {list(monitor.columns)}")
        reference, group_of = monitor.calibration_reference(self.column)
        self.state = StreamState(monitor.columns.index(self.column), reference, group_of, monitor.calibration.classes,
                                 delta=delta / 2, method=method, jump=jump, seed=seed)
        self.delta = float(delta)
        self._calibration = monitor.calibration
        self.attached = bool(attach)
        if self.attached:
            if monitor.attached_stream is not None:
                raise InputError("this monitor already has a stream attached; detach it first (stream.detach())")
            monitor.attach_stream(self.state)

    def detach(self) -> None:
        """Stop advancing inside the monitor's calls (then feed verdicts with :meth:`update`)."""
        if self.attached and self.monitor.attached_stream is self.state:
            self.monitor.attach_stream(None)
        self.attached = False

    def update(self, verdicts: Verdicts) -> StreamUpdate:
        """The stream's results for one batch of verdicts (frames in order).

        Attached, the monitor's call already advanced the stream: this returns ``verdicts.stream``.
        Detached, it advances the stream on the verdicts' column now.

        Parameters
        ----------
        verdicts : Verdicts
            From this stream monitor's ``monitor``.

        Returns
        -------
        StreamUpdate
            Per-frame p-values, statistics and alarms.

        Raises
        ------
        ModelMismatchError
            The monitor was calibrated again, or the verdicts lack the column or come from a
            call that did not advance the attached stream (a degraded call).
        """
        if self.monitor.calibration is not self._calibration:
            raise ModelMismatchError("the monitor was calibrated again since this stream started; start a new "
                                     "StreamMonitor")
        if not isinstance(verdicts, Verdicts) or self.column not in verdicts.columns:
            raise ModelMismatchError(f"expected Verdicts with column {self.column!r} from this stream's monitor")
        if self.attached:
            update = verdicts.stream
            if update is None:
                raise ModelMismatchError("these verdicts did not advance the stream (a degraded call, or a call "
                                         "before the stream was attached)")
            return update
        j = verdicts.columns.index(self.column)
        if not verdicts.active[j]:
            raise ModelMismatchError(f"column {self.column!r} was not computed in this call (degraded monitor?)")
        p, stat, _, class_stat, alarm, class_alarm = self.state.advance(verdicts.score_matrix, verdicts.pred)
        return StreamUpdate(p_values=p, statistic=stat, class_statistic=class_stat, alarm=alarm,
                            class_alarm=class_alarm, first_alarm=self.first_alarm)

    def reset(self) -> None:
        """Start a new test: an operator confirmed the current data as the new normal."""
        self.state.reset()

    @property
    def frames(self) -> int:
        """Frames seen."""
        return self.state.frames

    @property
    def first_alarm(self) -> int | None:
        """Stream index of the first frame at which either test alarmed since the last reset."""
        return self.state.first_alarm

    @property
    def statistic(self) -> float:
        """Current statistic of the score test."""
        return self.state.statistics()[0]

    @property
    def class_statistic(self) -> float:
        """Current statistic of the predicted-class test."""
        return self.state.statistics()[1]

    def class_shift(self) -> dict[str, np.ndarray]:
        """Predicted-class frequencies of the stream next to the profile's trusted-class frequencies.

        Returns
        -------
        dict
            ``{"stream": (C,), "profile": (C,)}`` frequencies (no guarantee attached).
        """
        prof = np.asarray(self.monitor.profile.header["class_counts"], np.float64)
        return {"stream": self.state.class_counts() / max(self.frames, 1), "profile": prof / max(prof.sum(), 1.0)}
