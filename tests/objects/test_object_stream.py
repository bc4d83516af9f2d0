"""The detector's stream alarm: by simulation, a clean stream exchangeable with the calibration
frames alarms with probability at most delta over its whole length; a drift to less typical
frames (none flagged on its own) alarms; a recalibrated monitor is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nnwatch.calibration.frame_level import FrameCalibration
from nnwatch.errors import InputError, ModelMismatchError
from nnwatch.objects.frame_stream import ObjectStream


def monitor_with(reference: np.ndarray) -> SimpleNamespace:
    """What ObjectStream reads of a calibrated ObjectMonitor: its frame calibration."""
    return SimpleNamespace(frames_=FrameCalibration.fit(reference, 0.05))


def verdicts(stat: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(frame_statistic=stat, frame_p=np.zeros_like(stat))


def clean_stat(rng: np.random.Generator, n: int) -> np.ndarray:
    # a frame statistic: the smallest of a few objects' p-values, rounded as conformal p-values are
    return np.round(rng.random((n, 3)).min(axis=1) * 200) / 200


def test_a_clean_stream_alarms_at_most_delta_of_the_time():
    delta, streams, length = 0.1, 400, 400
    rng = np.random.default_rng(0)
    alarms = 0
    for s in range(streams):
        stream = ObjectStream(monitor_with(clean_stat(rng, 200)), delta=delta, seed=s)
        for lo in range(0, length, 50):
            stream.update(verdicts(clean_stat(rng, 50)))
        alarms += stream.first_alarm is not None
    # Ville: P(ever) <= delta; the binomial 99.9% upper margin over 400 streams is about 0.05
    assert alarms / streams <= delta + 0.05, alarms


def test_a_drift_no_single_frame_shows_alarms():
    rng = np.random.default_rng(1)
    reference = clean_stat(rng, 300)
    stream = ObjectStream(monitor_with(reference), delta=0.01)
    assert stream.update(verdicts(clean_stat(rng, 100))).first_alarm is None
    # drifted frames: every statistic a little smaller, far above the 5% frame threshold
    drifted = np.clip(clean_stat(rng, 400) * 0.6, 0.0, 1.0)
    threshold = np.quantile(reference, 0.05)
    assert (drifted > threshold).mean() > 0.8  # most are not flagged on their own
    update = stream.update(verdicts(drifted))
    assert update.first_alarm is not None and 100 <= update.first_alarm < 500
    assert update.alarm[update.first_alarm - 100] and update.statistic[-1] >= stream.threshold
    assert np.all((update.p_values > 0) & (update.p_values <= 1))


def test_refusals():
    with pytest.raises(InputError, match="needs a calibrated object monitor"):
        ObjectStream(SimpleNamespace())
    mon = monitor_with(np.linspace(0, 1, 100))
    stream = ObjectStream(mon)
    mon.frames_ = FrameCalibration.fit(np.linspace(0, 1, 100), 0.05)
    with pytest.raises(ModelMismatchError, match="calibrated again"):
        stream.update(verdicts(np.ones(3)))
    stream = ObjectStream(mon)
    with pytest.raises(ModelMismatchError, match="no frame statistics"):
        stream.update(SimpleNamespace(frame_p=np.ones(3)))
