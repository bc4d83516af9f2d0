"""Stream monitoring: the kernel against its definition in numpy, the whole-stream bound by
simulation (and the fixed-calibration rule failing it), detection of a shift, the monitor API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch.calibration.calibrate import calibrate
from nnwatch.calibration.groups import CalibrationWarning
from nnwatch.errors import InputError, ModelMismatchError
from nnwatch.kernels.martingale import StreamTest
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.stream import StreamMonitor
from nnwatch.profile.store import load_profile
from nnwatch.sources import ArraySource


def naive_stream(reference, scores, groups, thetas, delta, jump=0.01):
    """Growing-bag smoothed p-values and the simple jumper, written out one frame at a time."""
    bags = [list(r) for r in reference]
    capital = [1 / 3] * 3
    ps, stats = [], []
    for s, g, th in zip(scores, groups, thetas):
        s = s if np.isfinite(s) else np.inf  # NaN and -inf count as +inf: maximal evidence
        bag = bags[g]
        gt = sum(b > s for b in bag)
        eq = sum(b == s for b in bag)
        p = (gt + th * (eq + 1)) / (len(bag) + 1)
        bag.append(s)
        total = sum(capital)
        capital = [((1 - jump) * c + jump / 3 * total) * (1 + e * (p - 0.5)) for c, e in zip(capital, (-1, 0, 1))]
        ps.append(p)
        stats.append(sum(capital))
    return np.array(ps), np.array(stats)


def test_p_values_and_capital_follow_the_definition():
    rng = np.random.default_rng(0)
    reference = [np.round(rng.standard_normal(30), 1), rng.standard_normal(12)]  # ties in group 0
    scores = np.round(rng.standard_normal(200) + np.linspace(0, 2, 200), 1)
    scores[5], scores[9], scores[12] = np.nan, np.inf, -np.inf
    groups = rng.integers(0, 2, 200)
    test = StreamTest(reference, delta=0.01, seed=7)
    p1, s1, a1 = test.update(scores[:80], groups[:80])
    p2, s2, a2 = test.update(scores[80:], groups[80:])  # two batches = one stream
    rng_thetas = np.random.default_rng(7)
    thetas = np.concatenate([rng_thetas.random(80), rng_thetas.random(120)])
    want_p, want_s = naive_stream(reference, scores, groups, thetas, 0.01)
    np.testing.assert_allclose(np.concatenate([p1, p2]), want_p, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([s1, s2]), want_s, rtol=1e-9)
    np.testing.assert_array_equal(np.concatenate([a1, a2]), want_s >= 100)
    assert test.frames == 200 and test.sizes.tolist() == [30 + (groups == 0).sum(), 12 + (groups == 1).sum()]


def any_alarm_rate(delta, reps, length, fixed=False, seed=0):
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(reps):
        cal = rng.standard_normal(20)
        stream = rng.standard_normal(length)
        if fixed:  # the tempting wrong rule: p-values against the calibration scores only
            thetas = rng.random(length)
            p = ((cal[None, :] > stream[:, None]).sum(1) + thetas) / (len(cal) + 1)
            capital = np.full(3, 1 / 3)
            for x in p:
                capital = (0.99 * capital + 0.01 / 3 * capital.sum()) * (1 + np.array([-1, 0, 1]) * (x - 0.5))
                if capital.sum() >= 1 / delta:
                    hits += 1
                    break
        else:
            hits += StreamTest([cal], delta=delta, seed=r).update(stream, np.zeros(length, np.int64))[2].any()
    return hits / reps


@pytest.mark.parametrize("delta", [0.05, 0.01])
def test_clean_streams_alarm_at_most_delta_and_a_fixed_calibration_would_not(delta):
    reps = 600
    rate = any_alarm_rate(delta, reps, 1500)
    assert rate <= delta + 3 * np.sqrt(delta * (1 - delta) / reps)
    if delta == 0.05:
        wrong = any_alarm_rate(delta, 150, 1500, fixed=True)
        assert wrong > 3 * delta  # measured around 0.7: the bag must grow


def test_a_shift_raises_the_alarm_and_reset_starts_a_new_test():
    rng = np.random.default_rng(3)
    test = StreamTest([rng.standard_normal(200)], delta=0.01)
    clean = test.update(rng.standard_normal(500), np.zeros(500, np.int64))[2]
    shifted = test.update(rng.standard_normal(1000) + 0.5, np.zeros(1000, np.int64))[2]
    assert not clean.any() and shifted.any() and np.argmax(shifted) < 400
    test.reset()
    assert test.statistic == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, match", [({"delta": 0.0}, "delta"), ({"delta": 1.5}, "delta"),
                                           ({"method": "ewma"}, "method must be one of"), ({"jump": 1.0}, "jump")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        StreamTest([np.zeros(5)], **kwargs)


def test_bad_frames_are_refused():
    test = StreamTest([np.zeros(5), np.ones(5)])
    with pytest.raises(InputError, match="groups must be in"):
        test.update(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(InputError):
        test.update(np.zeros((3, 2)), np.zeros(3, np.int64))


def test_a_stream_state_refuses_a_negative_column():
    from nnwatch.kernels.martingale import StreamState

    with pytest.raises(InputError, match="column must be >= 0"):
        StreamState(-1, [np.zeros(5)], np.zeros(3, np.int64), np.zeros(5, np.int64))


def test_cusum_runs_but_has_no_whole_stream_bound():
    rate = np.mean([StreamTest([np.random.default_rng(r).standard_normal(50)], delta=0.05, method="cusum", seed=r)
                    .update(np.random.default_rng(100 + r).standard_normal(1500), np.zeros(1500, np.int64))[2].any()
                    for r in range(40)])
    assert rate > 0.5  # why the default is the martingale


def test_stream_monitor_follows_the_decision_and_refuses_a_new_calibration(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu")
    stream = StreamMonitor(mon, delta=0.01)
    assert stream.column == mon.decision
    x_test = f["splits"]["test"][0]
    clean = [stream.update(mon(x_test[i : i + 20])) for i in range(0, len(x_test), 20)]
    assert not any(u.alarm.any() for u in clean) and stream.first_alarm is None
    noise = np.random.default_rng(0).random((200, 64), dtype=np.float32)
    upd = [stream.update(mon(noise[i : i + 10])) for i in range(0, 200, 10)]
    assert stream.first_alarm is not None and upd[-1].statistic[-1] >= 100
    shift = stream.class_shift()
    assert shift["stream"].sum() == pytest.approx(1.0) and shift["profile"].sum() == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        calibrate(mon, ArraySource(*f["splits"]["val"], "val"))
    with pytest.raises(ModelMismatchError, match="calibrated again"):
        stream.update(mon(x_test[:5]))


def test_screen_stream_reports_the_first_alarm(digits_monitor_files, tmp_path, capsys):
    import json

    from nnwatch.cli.main import main

    f = digits_monitor_files
    x = np.concatenate([f["splits"]["test"][0], np.random.default_rng(0).random((150, 64), dtype=np.float32)])
    np.savez(tmp_path / "frames.npz", x=x)
    args = ["screen", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'frames.npz'}", "--quiet",
            "--batch-size", "16"]
    assert main(args + ["--out", str(tmp_path / "s.json"), "--stream", "--delta", "0.01"]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "s.json").read_text())
    first = next(i for i, r in enumerate(rows) if r["stream.alarm"])
    assert first >= len(f["splits"]["test"][0]) and f"stream: ALARM at frame {first}" in out
    with pytest.raises(SystemExit) as exc:
        main(args + ["--out", str(tmp_path / "t.json"), "--stream", "--delta", "1.5"])
    assert exc.value.code == 2 and not (tmp_path / "t.json").exists()


def naive_class_p(calibration, classes, thetas):
    """Full conformal p-values of class rarity (nonconformity = minus the class's count), one frame at a time."""
    bag = list(calibration)
    out = []
    for c, th in zip(classes, thetas):
        bag.append(c)
        count = {k: bag.count(k) for k in set(bag)}
        alphas = [-count[k] for k in bag]
        mine = -count[c]
        out.append((sum(a > mine for a in alphas) + th * sum(a == mine for a in alphas)) / len(bag))
    return np.array(out)


def test_class_p_values_follow_the_full_conformal_definition():
    from nnwatch.kernels.martingale import ClassStreamTest

    rng = np.random.default_rng(8)
    calibration = rng.choice(4, 60, p=[0.4, 0.3, 0.2, 0.1])
    classes = np.concatenate([rng.choice(4, 50, p=[0.4, 0.3, 0.2, 0.1]), np.full(30, 3)])
    test = ClassStreamTest(calibration, 4, delta=0.01, seed=3)
    p, stat, _ = test.update(classes)
    want = naive_class_p(calibration, classes, np.random.default_rng(3).random(80))
    np.testing.assert_allclose(p, want, rtol=1e-12)
    assert test.counts.sum() == 140 and stat[-1] > stat[49]  # the shift to class 3 moves the capital


def test_class_streams_alarm_at_most_delta_and_catch_a_shift():
    from nnwatch.kernels.martingale import ClassStreamTest

    freqs = [0.5, 0.3, 0.15, 0.05]
    reps, hits = 400, 0
    for r in range(reps):
        rng = np.random.default_rng(1000 + r)
        test = ClassStreamTest(rng.choice(4, 200, p=freqs), 4, delta=0.05, seed=r)
        hits += test.update(rng.choice(4, 1500, p=freqs))[2].any()
    assert hits / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)
    rng = np.random.default_rng(5)
    test = ClassStreamTest(rng.choice(4, 200, p=freqs), 4, delta=0.01)
    assert not test.update(rng.choice(4, 300, p=freqs))[2].any()
    shifted = test.update(rng.choice(4, 1500, p=[0.1, 0.1, 0.1, 0.7]))[2]  # a re-mounted camera
    assert shifted.any() and np.argmax(shifted) < 300
    with pytest.raises(InputError, match="classes must be in"):
        test.update(np.array([4]))
