"""One score matrix, one decision: the monitor's outputs against the definitions, in numpy.

The rules (kernels/decide.py): non-finite score or NaN/Inf input -> +inf; coverage scores of a
sample with NaN/Inf activations -> +inf; p = (1 + #{group scores >= s}) / (n + 1) against the
sample's calibration group; flag = p <= fpr; verdict flag = decision flag or NaN/Inf input;
confidence = decision p-value (0 for NaN/Inf input).
"""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.calibration.groups import calibration_groups
from nnwatch.kernels import argmax_rows
from nnwatch.monitor.detector import BatchView
from nnwatch.monitor.detectors import DEFAULT, LOGITS
from nnwatch.monitor.monitor import Monitor


def naive_p_values(cal, detector, scores, pred, n_classes):
    """Conformal p-values from the calibration's raw scores, one sample at a time."""
    groups = calibration_groups(cal.classes, n_classes, cal.fpr, cal.min_class_samples)
    col = cal.detectors.index(detector)
    out = np.empty(len(scores))
    for i, (s, c) in enumerate(zip(scores, pred)):
        if c in groups.own:
            ref = cal.scores[cal.classes == c, col]
        elif groups.pooled_is_global:
            ref = cal.scores[:, col]
        else:
            ref = cal.scores[np.isin(cal.classes, groups.pooled), col]
        out[i] = (1 + np.sum(ref >= s)) / (len(ref) + 1)
    return out


@pytest.fixture(scope="module")
def batch(digits_monitor_files):
    x = digits_monitor_files["splits"]["test"][0][:40].copy()
    x[5, 3] = np.nan
    x[6, 0] = np.inf
    return np.concatenate([x, np.random.default_rng(0).random((20, 64), dtype=np.float32) * 3])


def test_columns_equal_standalone_detectors(digits_monitor_files, batch):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", detectors=DEFAULT)
    v = mon(batch)
    ws = mon.runner.workspace(len(batch))  # the buffers of that call
    view = BatchView(ws.logits, ws.buf, mon.runner.offsets, tables=mon.tables)
    bad_input = ~np.isfinite(batch).all(axis=1)
    np.testing.assert_array_equal(v.nonfinite_input, bad_input)
    for name, det in mon.detectors.items():
        if name == "fused":  # computed from the other columns (tests/monitor/test_fusion.py)
            continue
        want = np.asarray(det.score(view), np.float64).copy()
        want[~np.isfinite(want) | bad_input] = np.inf
        if name in LOGITS:  # compiled in the decision pass: float64 sums in another order than numpy's
            np.testing.assert_allclose(v.scores[name], want, rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(v.scores[name], want, err_msg=name)


def test_flags_and_p_values_follow_the_definition(digits_monitor_files, batch):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", detectors=DEFAULT)
    cal = mon.calibration
    v = mon(batch)
    bad_input = v.nonfinite_input
    for name in cal.detectors:
        p = naive_p_values(cal, name, v.scores[name], v.pred, mon.profile.n_classes)
        p[bad_input] = 0.0
        np.testing.assert_array_equal(v.p_values[name], p, err_msg=name)
        np.testing.assert_array_equal(v.flags[name], p <= cal.fpr, err_msg=name)
    np.testing.assert_array_equal(v.flag, v.flags[mon.decision] | bad_input)
    np.testing.assert_array_equal(v.confidence, v.p_values[mon.decision])


def test_flag_is_p_value_at_most_alpha_everywhere(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu")
    rng = np.random.default_rng(1)
    x = np.concatenate([f["splits"]["test"][0], rng.random((300, 64), dtype=np.float32) * rng.uniform(0, 4, (300, 1))])
    v = mon(x.astype(np.float32))
    for name in v.flags:
        np.testing.assert_array_equal(v.flags[name], v.p_values[name] <= mon.calibration.fpr)
    assert 0 < v.flag.mean() < 1  # both outcomes occur, so the equality is not vacuous


@pytest.mark.parametrize("decision", ["coverage", "kmnc", "msp"])
def test_batch_of_one_equals_whole_batch(digits_monitor_files, batch, decision):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", decision=decision)
    whole = mon(batch)
    for i in range(len(batch)):
        one = mon(batch[i : i + 1])
        assert one.pred[0] == whole.pred[i] and one.flag[0] == whole.flag[i]
        assert one.confidence[0] == whole.confidence[i] or (np.isnan(one.confidence[0]) and np.isnan(whole.confidence[i]))
        # Matrix products (Mahalanobis, kNN) may round differently per batch size: 1e-12.
        np.testing.assert_allclose(one.score_matrix[0], whole.score_matrix[i], rtol=1e-12)
        np.testing.assert_array_equal(one.flag_matrix[0], whole.flag_matrix[i])


def test_uncalibrated_monitor(digits_monitor_files):
    from nnwatch.profile.store import load_profile

    f = digits_monitor_files
    p = load_profile(f["profile"])
    p.calibration = None
    mon = Monitor(f["model"], p, providers="cpu", detectors=("coverage",))
    x = f["splits"]["test"][0][:3].copy()
    x[1, 0] = np.nan
    v = mon(x)
    assert v.flags == {} and v.p_values == {}
    np.testing.assert_array_equal(v.flag, [False, True, False])
    assert np.isnan(v.confidence[[0, 2]]).all() and v.confidence[1] == 0.0


def test_argmax_rows_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, (50, 7)).astype(np.float32)  # many ties
    z[3, 4] = np.nan
    z[7, 0] = np.nan
    np.testing.assert_array_equal(argmax_rows(z), np.argmax(z, axis=1))


def test_compiled_logit_columns_equal_the_numpy_detectors_on_extreme_logits():
    from nnwatch.kernels.verdict import SOURCE_ENERGY, SOURCE_MAX_LOGIT, SOURCE_MSP, STAGE_ALL, VerdictPlan, VerdictTables
    from nnwatch.monitor.registry import make_detector

    rng = np.random.default_rng(4)
    logits = (rng.normal(size=(12, 7)) * 5).astype(np.float32)
    logits[0, 3] = np.nan
    logits[1, :] = -np.inf
    logits[2, 1] = np.inf
    logits[3, :] = 3e38  # overflow-prone: every logit at the float32 maximum
    logits[4, :] = 0.0
    logits[4, 2] = 30.0  # one dominant logit: msp must not round to exactly 0
    logits[5, :] = 0.0
    tables = VerdictTables(7, 1, np.array([0, 1], np.int64), np.array([SOURCE_MSP, SOURCE_MAX_LOGIT, SOURCE_ENERGY]),
                           [np.ones(3, bool)])
    plan = VerdictPlan(tables, 12, logits, np.zeros(12, np.float32))
    plan(STAGE_ALL, 0, 0)
    scores = plan.ws.scores
    view = BatchView(logits, np.zeros(12, np.float32), np.array([0, 1], np.int64))
    for j, name in enumerate(("msp", "max_logit", "energy")):
        want = make_detector(name).fit(None).score(view)
        np.testing.assert_allclose(scores[:, j], want, rtol=1e-12, err_msg=name)
    assert np.isinf(scores[:3]).all() and scores[4, 0] > 0
