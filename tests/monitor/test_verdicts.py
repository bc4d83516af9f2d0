"""What a monitored call returns belongs to the caller: writing into it changes nothing else.

Regression: ``Verdicts.active`` used to be the monitor's own mask array, so a caller who wrote
into it made the next call raise "decision column 9 is not active".
"""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.stream import StreamMonitor


@pytest.fixture(scope="module")
def mon(digits_monitor_files):
    f = digits_monitor_files
    return Monitor(f["model"], f["profile"], providers="cpu")


@pytest.fixture(scope="module")
def x(digits_monitor_files):
    return digits_monitor_files["splits"]["test"][0][:30]


def test_the_masks_a_caller_sees_are_read_only(mon, x):
    v = mon(x[:4])
    with pytest.raises(ValueError, match="read-only"):
        v.active[mon.columns.index(mon.decision)] = False
    with pytest.raises(ValueError, match="read-only"):
        v.calibrated[:] = False
    again = mon(x[:4])  # still decides
    np.testing.assert_array_equal(again.flag, v.flag)


def test_writing_into_a_verdict_changes_neither_the_monitor_nor_other_verdicts(mon, x):
    first = mon(x[:8])
    kept = {name: np.array(getattr(first, name), copy=True)
            for name in ("pred", "logits", "score_matrix", "p_matrix", "flag_matrix", "flag", "confidence")}
    for name in kept:
        arr = getattr(first, name)
        arr[...] = 0 if arr.dtype.kind != "b" else True
    second = mon(x[:8])  # the same inputs: the same verdict, whatever the caller did to the first
    for name, want in kept.items():
        np.testing.assert_array_equal(getattr(second, name), want, err_msg=name)
    other = mon(x[8:16])
    third = mon(x[:8])
    np.testing.assert_array_equal(third.score_matrix, kept["score_matrix"])  # not overwritten by `other`
    assert not np.shares_memory(second.score_matrix, third.score_matrix)
    assert not np.shares_memory(other.pred, third.pred)


def test_the_dict_views_follow_the_matrix(mon, x):
    v = mon(x[:5])
    for j, name in enumerate(mon.columns):
        np.testing.assert_array_equal(v.scores[name], v.score_matrix[:, j])
    assert set(v.p_values) == {c for c, ok in zip(mon.columns, v.calibrated) if ok}
    assert v.timings["total_ms"] == pytest.approx(v.timings["infer_ms"] + v.timings["monitor_ms"])
    assert v.stream is None


def test_an_attached_stream_advances_in_the_call_exactly_as_a_detached_one(digits_monitor_files, x):
    f = digits_monitor_files
    attached_mon = Monitor(f["model"], f["profile"], providers="cpu")
    detached_mon = Monitor(f["model"], f["profile"], providers="cpu")
    attached = StreamMonitor(attached_mon, delta=0.05, seed=3)
    detached = StreamMonitor(detached_mon, delta=0.05, seed=3, attach=False)
    noise = np.random.default_rng(0).random((40, 64), dtype=np.float32) * 2
    frames = np.concatenate([x, noise])
    for lo, size in ((0, 1), (1, 7), (8, 30), (38, 32)):
        a = attached_mon(frames[lo : lo + size])
        b = detached.update(detached_mon(frames[lo : lo + size]))
        ua = attached.update(a)
        assert ua is not None
        for name in ("p_values", "statistic", "class_statistic", "alarm", "class_alarm"):
            np.testing.assert_array_equal(getattr(ua, name), getattr(b, name), err_msg=name)
        assert ua.first_alarm == b.first_alarm
    assert attached.frames == detached.frames == len(frames)
    assert attached.statistic == detached.statistic and attached.class_statistic == detached.class_statistic
    with pytest.raises(Exception, match="already has a stream attached"):
        StreamMonitor(attached_mon)
    attached.detach()
    assert attached_mon(frames[:2]).stream is None


def test_the_packed_stream_is_the_two_stream_tests(digits_monitor_files, x):
    """The packed state advanced in the compiled pass equals StreamTest and ClassStreamTest, tested
    against their definitions in tests/monitor/test_stream.py."""
    from nnwatch.kernels.martingale import ClassStreamTest, StreamTest

    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu")
    stream = StreamMonitor(mon, delta=0.02, seed=11)
    reference, group_of = mon.calibration_reference(mon.decision)
    score_test = StreamTest(reference, delta=0.01, seed=11)
    class_test = ClassStreamTest(mon.calibration.classes, mon.profile.n_classes, delta=0.01, seed=12)
    frames = np.concatenate([x, np.random.default_rng(1).random((5000, 64), dtype=np.float32)])
    j = mon.columns.index(mon.decision)
    for lo in range(0, len(frames), 997):  # past the first block of smoothing draws and the first bag growth
        v = mon(frames[lo : lo + 997])
        got = stream.update(v)
        p, stat, alarm = score_test.update(v.score_matrix[:, j], group_of[v.pred])
        cp, cstat, calarm = class_test.update(v.pred)
        np.testing.assert_array_equal(got.p_values, p)
        np.testing.assert_array_equal(got.statistic, stat)
        np.testing.assert_array_equal(got.class_statistic, cstat)
        np.testing.assert_array_equal(got.alarm, alarm | calarm)
        np.testing.assert_array_equal(got.class_alarm, calarm)
