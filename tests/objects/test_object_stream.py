"""The detector's stream alarm: by simulation, a clean stream exchangeable with the calibration
frames alarms with probability at most delta over its whole length (score test alone, and both
tests together); a drift to less typical frames (none flagged on its own) alarms; a drift in
what the frames show (their top classes) alarms through the class test alone; a recalibrated
monitor is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nnwatch.calibration.frame_level import FrameCalibration
from nnwatch.errors import InputError, ModelMismatchError
from nnwatch.objects.frame_stream import ObjectStream


def monitor_with(reference: np.ndarray, categories: np.ndarray | None = None, n_classes: int = 4) -> SimpleNamespace:
    """What ObjectStream reads of a calibrated ObjectMonitor: its frame calibration (and the
    calibration frames' categories, which states written before the class test lack)."""
    mon = SimpleNamespace(frames_=FrameCalibration.fit(reference, 0.05), n_classes_=n_classes)
    if categories is not None:
        mon.frame_categories_ = categories
    return mon


def verdicts(stat: np.ndarray, categories: np.ndarray | None = None) -> SimpleNamespace:
    v = SimpleNamespace(frame_statistic=stat, frame_p=np.zeros_like(stat))
    if categories is not None:
        v.frame_category = categories
    return v


# clean frame categories: classes 0..3 and "no objects" (4), unevenly frequent
CLEAN_MIX = np.array([0.3, 0.25, 0.2, 0.15, 0.1])


def clean_categories(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(5, size=n, p=CLEAN_MIX).astype(np.int64)


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


@pytest.mark.parametrize("with_classes", [False, True])
def test_a_clean_stream_alarms_at_most_delta_with_either_test(with_classes):
    """Both tests at delta / 2 each: either ever alarming stays within delta (by a union
    bound); a wrong split (each at delta) would show here as about twice the rate."""
    delta, streams, length = 0.2, 400, 300
    rng = np.random.default_rng(2)
    alarms = class_alarms = 0
    for s in range(streams):
        cats = clean_categories(rng, 200) if with_classes else None
        stream = ObjectStream(monitor_with(clean_stat(rng, 200), cats), delta=delta, seed=s)
        assert stream.class_test == with_classes
        for lo in range(0, length, 50):
            update = stream.update(verdicts(clean_stat(rng, 50), clean_categories(rng, 50)))
            class_alarms += bool(update.class_alarm.any())
        alarms += stream.first_alarm is not None
    assert alarms / streams <= delta + 0.05, alarms
    if not with_classes:
        assert class_alarms == 0


def test_a_drift_in_what_the_frames_show_alarms_through_the_class_test():
    """Frames as typical as ever (clean statistics) whose top class is now mostly class 3:
    the score test stays silent, the class test alarms; a monitor without categories cannot see it."""
    rng = np.random.default_rng(3)
    reference, cats = clean_stat(rng, 300), clean_categories(rng, 300)
    stream = ObjectStream(monitor_with(reference, cats), delta=0.01)
    blind = ObjectStream(monitor_with(reference), delta=0.01)
    assert stream.threshold == pytest.approx(200) and blind.threshold == pytest.approx(100)
    clean = clean_stat(rng, 100)
    assert stream.update(verdicts(clean, clean_categories(rng, 100))).first_alarm is None
    blind.update(verdicts(clean))
    stat = clean_stat(rng, 400)
    drifted = np.where(rng.random(400) < 0.8, 3, clean_categories(rng, 400)).astype(np.int64)
    update = stream.update(verdicts(stat, drifted))
    assert update.first_alarm is not None and 100 <= update.first_alarm < 500
    assert update.class_alarm[update.first_alarm - 100] and update.class_statistic[-1] >= stream.threshold
    assert update.statistic.max() < stream.threshold  # the score test did not see it
    assert blind.update(verdicts(stat)).first_alarm is None
    stream.reset()
    assert stream.first_alarm is None and stream.statistic == 1.0 and stream.class_statistic == 1.0


def test_class_test_refusals():
    rng = np.random.default_rng(4)
    stream = ObjectStream(monitor_with(clean_stat(rng, 100), clean_categories(rng, 100)))
    with pytest.raises(ModelMismatchError, match="no frame categories"):
        stream.update(verdicts(np.ones(3)))
    with pytest.raises(ModelMismatchError, match="no frame categories"):
        stream.update(verdicts(np.ones(3), np.array([0, 5, 1])))  # 5 categories: 0..4
