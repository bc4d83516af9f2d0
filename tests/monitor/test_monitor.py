"""The Monitor end to end on an independently built digits MLP."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from nnwatch.errors import BudgetError, InputError, ModelError, ModelMismatchError
from nnwatch.export.instrument import instrument, instrument_file
from nnwatch.monitor.budget import Budget
from nnwatch.monitor.detectors import DEFAULT
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.profiling import build_profile
from nnwatch.profile.signature import class_gaussian
from nnwatch.profile.store import load_profile
from nnwatch.sources import ArraySource
from tests.conftest import conv_onnx, mlp_onnx


@pytest.fixture(scope="module")
def files(digits_monitor_files):
    return digits_monitor_files


@pytest.fixture
def monitor(files):
    return Monitor(files["model"], files["profile"], providers="cpu", detectors=DEFAULT)


def test_clean_data_is_mostly_unflagged_and_calibrated(files, monitor):
    x_val, _ = files["splits"]["val"]
    v = monitor(x_val)
    # Thresholds were set on exactly this data at 5% FPR: at most 5% may be flagged.
    assert v.flag.mean() <= 0.05
    x_test, y_test = files["splits"]["test"]
    vt = monitor(x_test)
    assert (vt.pred == y_test).mean() > 0.85
    assert vt.flag.mean() < 0.15
    assert ((vt.confidence > 0) & (vt.confidence <= 1)).all()


def test_noise_is_flagged(files, monitor):
    noise = np.random.default_rng(0).random((200, 64), dtype=np.float32)
    assert monitor(noise).flag.mean() > 0.3  # six times the 5% false-alarm target


def test_confidence_decreases_with_score(monitor, files):
    x, _ = files["splits"]["test"]
    v = monitor(x)
    s, c, p = v.scores[monitor.decision], v.confidence, v.pred
    for cls in np.unique(p):
        m = p == cls
        order = np.argsort(s[m])
        assert (np.diff(c[m][order]) <= 1e-12).all()


def test_baselines_match_formulas(monitor, files):
    x, _ = files["splits"]["test"]
    v = monitor(x[:50])
    z = v.logits.astype(np.float64)
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(v.scores["msp"], 1 - soft.max(1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(v.scores["max_logit"], -z.max(1), rtol=1e-6)
    np.testing.assert_allclose(v.scores["energy"], -np.log(np.exp(z).sum(1)), rtol=1e-9)
    means, precision = class_gaussian(monitor.profile)
    feats = np.maximum(x[:50] @ _weights(files)[0] + _weights(files)[1], 0).astype(np.float64)
    d = np.array([[(f - m) @ precision @ (f - m) for m in means] for f in feats]).min(1)
    np.testing.assert_allclose(v.scores["mahalanobis"], d, rtol=1e-4, atol=1e-6)


def _weights(files):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(files["plain"])
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return init["W1"], init["B1"]


def test_nonfinite_input_is_flagged_and_monitor_keeps_working(monitor, files):
    x, _ = files["splits"]["test"]
    bad = x[:4].copy()
    bad[1, 3] = np.nan
    bad[2, 0] = np.inf
    v = monitor(bad)
    assert v.nonfinite_input.tolist() == [False, True, True, False]
    assert v.flag[1] and v.flag[2]
    assert v.confidence[1] == 0 and np.isinf(v.scores["coverage"][1])
    again = monitor(x[:4])
    assert not again.nonfinite_input.any()
    np.testing.assert_array_equal(again.scores["coverage"][[0, 3]], v.scores["coverage"][[0, 3]])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 63), np.float32), r"expected shape \(batch, 64\), got \(2, 63\)"),
    (np.zeros((2, 8, 8), np.float32), "expected shape"),
    (np.zeros((0, 64), np.float32), "empty batch"),
    (np.array([["a"] * 64]), "not numeric"),
])
def test_bad_inputs_raise_clear_errors(monitor, bad, message):
    with pytest.raises(InputError, match=message):
        monitor(bad)


def test_readonly_noncontiguous_and_integer_inputs(monitor, files):
    x, _ = files["splits"]["test"]
    ref = monitor(x[:6]).scores["coverage"]
    wide = np.zeros((6, 128), np.float32)
    wide[:, ::2] = x[:6]
    view = wide[:, ::2]
    view.flags.writeable = False
    np.testing.assert_array_equal(monitor(view).scores["coverage"], ref)
    assert monitor((x[:6] * 16).round().astype(np.int64) / 16).pred.shape == (6,)


@pytest.mark.parametrize("parallel", [False, True])
def test_threads_give_serial_results(files, parallel):
    monitor = Monitor(files["model"], files["profile"], providers="cpu", parallel=parallel)
    x, _ = files["splits"]["test"]
    batches = [x[i : i + s] for i, s in zip(range(0, 300, 30), [1, 3, 1, 16, 1, 9, 1, 30, 2, 1])]
    serial = [monitor(b).scores for b in batches]
    errors = []

    def work(seed):
        order = np.random.default_rng(seed).permutation(len(batches))
        for _ in range(5):
            for i in order:
                got = monitor(batches[i]).scores
                if any(not np.array_equal(got[k], serial[i][k]) for k in got):
                    errors.append(i)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_profile_for_another_model_is_refused(files, tmp_path, rng):
    other = mlp_onnx(rng.normal(size=(64, 48)), rng.normal(size=48), rng.normal(size=(48, 10)), rng.normal(size=10))
    model, _ = instrument(other)
    path = tmp_path / "other.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelMismatchError, match="built for model"):
        Monitor(path, files["profile"], providers="cpu")


def test_uninstrumented_model_is_refused(files):
    with pytest.raises(ModelError, match="not instrumented"):
        Monitor(files["plain"], files["profile"], providers="cpu")


def test_fixed_batch_model_gives_same_results(files, tmp_path, digits_mlp):
    model, splits = digits_mlp
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    fixed = mlp_onnx(init["W1"], init["B1"], init["W2"], init["B2"], batch=1)
    # Same weights, but a fixed batch of 1: a different file, so a different fingerprint.
    src = tmp_path / "fixed_plain.onnx"
    src.write_bytes(fixed.SerializeToString())
    instrument_file(src, tmp_path / "fixed.onnx")
    train = ArraySource(*splits["train"], "train")
    p_fixed = build_profile(tmp_path / "fixed.onnx", train, batch_size=64)
    p_dyn = load_profile(files["profile"])
    np.testing.assert_array_equal(p_fixed.sections.section_hits, p_dyn.sections.section_hits)
    mon = Monitor(tmp_path / "fixed.onnx", p_fixed, providers="cpu")
    dyn = Monitor(files["model"], p_dyn, providers="cpu")
    x = splits["test"][0][:7]
    np.testing.assert_allclose(mon(x).scores["coverage"], dyn(x).scores["coverage"])


def test_reduction_in_kernel_equals_in_graph(tmp_path, rng):
    conv = conv_onnx(rng)
    src = tmp_path / "conv.onnx"
    src.write_bytes(conv.SerializeToString())
    x = rng.random((120, 1, 8, 8), dtype=np.float32)
    results = {}
    for where in ("graph", "kernel"):
        path = tmp_path / f"{where}.onnx"
        instrument_file(src, path, reduce_in_graph=where == "graph")
        prof = build_profile(path, ArraySource(x[:100], None, "x"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mon = Monitor(path, prof, providers="cpu", min_signature_samples=1)
        results[where] = mon(x[100:]).scores
    for k in ("kmnc", "nbc", "tknc"):
        np.testing.assert_allclose(results["graph"][k], results["kernel"][k], atol=1e-6)


def test_budget_report_degrade_raise(files):
    x, _ = files["splits"]["test"]
    report = Monitor(files["model"], files["profile"], providers="cpu", budget=Budget(latency_ms=1e-6))
    v = report(x[:1])
    assert v.over_budget and not v.degraded and report.stats()["overruns"] == 1
    degrade = Monitor(files["model"], files["profile"], providers="cpu",
                      budget=Budget(latency_ms=1e-6, policy="degrade", recover_after=3))
    first = degrade(x[:1])
    second = degrade(x[:1])
    assert not first.degraded and second.degraded
    assert "coverage" not in second.scores and "energy" in second.scores and second.decision == "energy"
    raising = Monitor(files["model"], files["profile"], providers="cpu", budget=Budget(latency_ms=1e-6, policy="raise"))
    with pytest.raises(BudgetError) as info:
        raising(x[:1])
    assert info.value.verdicts.pred.shape == (1,)
    with pytest.raises(BudgetError, match="memory"):
        Monitor(files["model"], files["profile"], providers="cpu", budget=Budget(memory_mb=1e-6, policy="raise"))
    with pytest.raises(InputError):
        Budget(policy="panic")


def test_stats_report_percentiles_and_memory(monitor, files):
    x, _ = files["splits"]["test"]
    monitor.warmup((1,))
    for i in range(20):
        monitor(x[i : i + 1])
    stats = monitor.stats()
    assert stats["calls"] == 20
    assert 0 < stats["infer_ms_p50"] <= stats["infer_ms_p99"]
    assert stats["memory_mb"] > 0
