"""The error verdict: its risk guarantee by simulation against a wrong rule; the monitor and CLI use it."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nnwatch.calibration.error_verdict import binomial_cdf, error_threshold
from nnwatch.errors import InputError


def test_binomial_cdf_is_scipys():
    stats = pytest.importorskip("scipy.stats", reason="scipy comes with scikit-learn in the test extra")
    for k, n, p in [(0, 10, 0.1), (3, 50, 0.02), (40, 300, 0.1), (299, 300, 0.5), (5, 5, 0.3), (-1, 4, 0.2)]:
        assert binomial_cdf(k, n, p) == pytest.approx(stats.binom.cdf(k, n, p), rel=1e-9, abs=1e-300)


def error_probability(score):
    """The world of the simulation: a higher score, a likelier error."""
    return 1.0 / (1.0 + np.exp(-(4.0 * score - 5.0)))


def true_risk(threshold, rng, n=400_000):
    """The selective risk of answering where score <= threshold, by a large independent sample."""
    s = rng.normal(size=n)
    answered = s <= threshold
    return float(error_probability(s[answered]).mean()) if answered.any() else 0.0


def naive_threshold(scores, errors, risk):
    """The tempting wrong rule: the largest coverage whose empirical risk on all the data is at most r."""
    order = np.argsort(scores)
    cum = np.cumsum(errors[order]) / np.arange(1, len(scores) + 1)
    ok = np.flatnonzero(cum <= risk)
    return scores[order][ok[-1]] if len(ok) else None


def test_the_risk_bound_holds_by_simulation_and_the_naive_rule_breaks_it():
    rng = np.random.default_rng(0)
    risk, delta, runs, n = 0.05, 0.1, 300, 1500
    exceed = naive_exceed = certified = 0
    for _ in range(runs):
        s = rng.normal(size=n)
        e = rng.random(n) < error_probability(s)
        got = error_threshold(s, e, risk, delta, seed=int(rng.integers(1 << 31)))
        if got["threshold"] is not None:
            certified += 1
            exceed += true_risk(got["threshold"], rng, 40_000) > risk
        naive = naive_threshold(s, e, risk)
        naive_exceed += naive is not None and true_risk(naive, rng, 40_000) > risk
    # P(risk > r) <= delta: the count is at most Binomial(runs, delta)'s 99.9% quantile
    assert certified > runs * 0.9
    assert exceed <= 48, exceed  # Binomial(300, 0.1): mean 30, 99.9% quantile about 47
    assert naive_exceed > 100, naive_exceed  # the wrong rule exceeds about half the time


def test_too_little_data_certifies_nothing_and_bad_arguments_are_refused():
    rng = np.random.default_rng(1)
    s = rng.normal(size=60)
    got = error_threshold(s, rng.random(60) < 0.2, 0.01, 0.05)
    assert got["threshold"] is None and not got["certified"] and got["answered"] == 0
    with pytest.raises(InputError, match="risk must be in"):
        error_threshold(s, s > 0, 0.0)
    with pytest.raises(InputError, match="NaN"):
        error_threshold(np.r_[s[:-1], np.nan], s > 0, 0.1)


def test_the_monitor_answers_where_the_error_verdict_certifies(digits_monitor_files, tmp_path, capsys):
    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.cli.main import main
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.profile.store import load_profile, save_profile
    from nnwatch.sources import ArraySource

    f = digits_monitor_files
    mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu", detectors=("coverage", "msp", "doctor"))
    cal = calibrate(mon, ArraySource(*f["splits"]["val"], "val"), error_risk=0.2, error_detector="doctor",
                    error_delta=0.1)
    assert cal.errors["detector"] == "doctor" and cal.errors["risk"] == 0.2 and cal.errors["certified"]
    assert 0 < cal.errors["coverage"] <= 1 and cal.errors["errors"] <= cal.errors["answered"]
    x = f["splits"]["test"][0][:50].copy()
    x[0, 0] = np.nan
    v = mon(x)
    t = cal.errors["threshold"]
    want = (v.scores["doctor"] <= t) if t is not None else np.zeros(50, bool)
    np.testing.assert_array_equal(v.answer, want & ~v.nonfinite_input)
    assert not v.answer[0] and ("answer" in v.records()[0])
    save_profile(mon.profile, tmp_path / "p.npz")
    again = Monitor(f["model"], tmp_path / "p.npz", providers="cpu")  # the default set brings the error detector
    assert "doctor" in again.columns
    np.testing.assert_array_equal(again(x).answer, v.answer)
    with pytest.raises(InputError, match="needs labels"):
        calibrate(mon, ArraySource(f["splits"]["val"][0], None, "val"), error_risk=0.2, error_detector="doctor")
    np.savez(tmp_path / "val.npz", x=f["splits"]["val"][0], y=f["splits"]["val"][1])
    np.savez(tmp_path / "test.npz", x=x)
    assert main(["calibrate", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'val.npz'}",
                 "--out", str(tmp_path / "e.npz"), "--error-risk", "0.2", "--quiet"]) == 0
    assert "error verdict" in capsys.readouterr().out + ""
    assert main(["screen", str(f["model"]), str(tmp_path / "e.npz"), "--data", f"npz:{tmp_path / 'test.npz'}",
                 "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert rows[0]["answer"] == "False" and {r["answer"] for r in rows} <= {"True", "False"}
