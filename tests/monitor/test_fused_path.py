"""The fused epilogue (coverage detectors only) gives exactly what the general path gives."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.kernels.decide import argmax_rows
from nnwatch.monitor.detectors import COVERAGE
from nnwatch.monitor.monitor import Monitor


@pytest.mark.parametrize("decision", ["coverage", "kmnc"])
def test_fused_equals_general(digits_monitor_files, decision):
    f = digits_monitor_files
    fused = Monitor(f["model"], f["profile"], providers="cpu", detectors=COVERAGE, decision=decision)
    general = Monitor(f["model"], f["profile"], providers="cpu", detectors=COVERAGE, decision=decision)
    general._fused_ids = None  # force the per-detector path
    assert fused._fused_ids is not None
    x = f["splits"]["test"][0][:40].copy()
    x[5, 3] = np.nan
    x[6, 0] = np.inf
    x = np.concatenate([x, np.random.default_rng(0).random((20, 64), dtype=np.float32) * 3])
    for batch in (x, x[:1], x[5:6], x[20:21]):
        a, b = fused(batch), general(batch)
        np.testing.assert_array_equal(a.pred, b.pred)
        np.testing.assert_array_equal(a.flag, b.flag)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        assert a.scores.keys() == b.scores.keys() and a.flags.keys() == b.flags.keys()
        for k in a.scores:
            np.testing.assert_array_equal(a.scores[k], b.scores[k])
        for k in a.flags:
            np.testing.assert_array_equal(a.flags[k], b.flags[k])


def test_uncalibrated_fused_path(digits_monitor_files):
    from nnwatch.profile.store import load_profile

    f = digits_monitor_files
    p = load_profile(f["profile"])
    p.calibration = None
    mon = Monitor(f["model"], p, providers="cpu", detectors=("coverage",))
    v = mon(f["splits"]["test"][0][:3])
    assert np.isnan(v.confidence).all() and not v.flag.any() and v.flags == {}


def test_argmax_rows_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, (50, 7)).astype(np.float32)  # many ties
    z[3, 4] = np.nan
    pred = np.empty(50, np.int64)
    argmax_rows(z, pred)
    np.testing.assert_array_equal(pred, np.argmax(z, axis=1))
