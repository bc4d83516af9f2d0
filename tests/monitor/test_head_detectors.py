"""The classifier head as data, and the detectors that recompute logits with it (ReAct, fDBD),
against their papers' formulas written plainly in numpy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnwatch.export.instrument import instrument_file
from nnwatch.kernels.layout import unpack_layers
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.runner import Runner
from tests.conftest import mlp_onnx


def gemm_onnx(w1, w2, b2, trans_b):
    """x --MatMul(W1)--Relu--> a --Gemm(W2, B2, transB)--> logits"""
    inits = [numpy_helper.from_array(w1.astype(np.float32), "W1"),
             numpy_helper.from_array((w2.T if trans_b else w2).astype(np.float32), "W2"),
             numpy_helper.from_array(b2.astype(np.float32), "B2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "W2", "B2"], ["logits"], transB=int(trans_b), alpha=0.5, beta=2.0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w1.shape[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", w2.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kind", ["matmul+add", "gemm", "gemm transB"])
def test_head_reproduces_the_logits(tmp_path, kind):
    rng = np.random.default_rng(0)
    w1, w2, b2 = rng.normal(size=(6, 8)), rng.normal(size=(8, 4)), rng.normal(size=4)
    model = mlp_onnx(w1, np.zeros(8), w2, b2) if kind == "matmul+add" else gemm_onnx(w1, w2, b2, kind.endswith("B"))
    onnx.save(model, tmp_path / "plain.onnx")
    instrument_file(tmp_path / "plain.onnx", tmp_path / "m.onnx")
    runner = Runner(tmp_path / "m.onnx", providers="cpu")
    assert runner.head is not None
    x = rng.normal(size=(7, 6)).astype(np.float32)
    ws = runner.workspace(7)
    runner.run(runner.check_input(x), ws)
    feats = unpack_layers(ws.buf, 7, runner.offsets)[runner.manifest.layer_names.index(runner.manifest.penultimate)]
    w, b = runner.head
    np.testing.assert_allclose(feats @ w.T + b, ws.logits, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def monitor(digits_monitor_files):
    f = digits_monitor_files
    return Monitor(f["model"], f["profile"], providers="cpu", detectors=("coverage", "react", "fdbd"))


def features(mon, x):
    v = mon(x)
    ws = mon.runner.workspace(len(x))
    man = mon.manifest
    return v, unpack_layers(ws.buf, len(x), mon.runner.offsets)[man.layer_names.index(man.penultimate)].astype(np.float64)


def test_react_is_energy_of_clipped_features(monitor, digits_monitor_files):
    x = np.concatenate([digits_monitor_files["splits"]["test"][0][:30],
                        np.random.default_rng(0).random((10, 64), dtype=np.float32) * 3])
    v, f = features(monitor, x)
    w, b = (a.astype(np.float64) for a in monitor.runner.head)
    c = np.percentile(monitor.profile.ranges.sample_feats.astype(np.float64), 90)
    z = np.minimum(f, c) @ w.T + b
    want = -np.log(np.exp(z).sum(axis=1))
    np.testing.assert_allclose(v.scores["react"], want, rtol=1e-9)


def test_fdbd_is_the_relative_distance_to_the_decision_boundaries(monitor, digits_monitor_files):
    x = digits_monitor_files["splits"]["test"][0][:25]
    v, f = features(monitor, x)
    w, b = (a.astype(np.float64) for a in monitor.runner.head)
    r = monitor.profile.ranges
    mu = r.feat_sum[-1] / r.count[-1]
    want = []
    for xi in f:
        p = int(np.argmax(w @ xi + b))
        d = [abs((w[p] - w[c]) @ xi + b[p] - b[c]) / np.linalg.norm(w[p] - w[c]) for c in range(len(b)) if c != p]
        want.append(-np.mean(d) / np.linalg.norm(xi - mu))
    np.testing.assert_allclose(v.scores["fdbd"], want, rtol=1e-9)


def naive_shaped_energy(f, w, b, percentile, variant):
    out = []
    for x in f:
        t = np.percentile(x, percentile)
        kept = [v if v >= t else 0.0 for v in x]
        s1, s2 = sum(x), sum(kept)
        if variant == "s":
            shaped = np.array(kept) * np.exp(s1 / s2)
        elif variant == "p":
            shaped = np.array(kept)
        elif variant == "b":
            shaped = np.array([s1 / sum(v >= t for v in x) if v >= t else 0.0 for v in x])
        else:  # scale
            shaped = x * np.exp(s1 / s2)
        z = w @ shaped + b
        out.append(-np.log(np.sum(np.exp(z - z.max()))) - z.max())
    return np.array(out)


@pytest.mark.parametrize("variant", ["s", "p", "b", "scale"])
def test_activation_shaping_then_energy(digits_monitor_files, variant):
    from nnwatch.monitor.detectors.shaping import ActivationShaping, Scale
    from nnwatch.monitor.registry import make_detector

    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", detectors=("coverage",))
    det = (Scale() if variant == "scale" else ActivationShaping(variant=variant)).with_head(mon.runner.head)
    det.fit(mon.profile)
    x = f["splits"]["test"][0][:20]
    v, feats = features(mon, x)
    ws = mon.runner.workspace(len(x))
    from nnwatch.monitor.detector import BatchView

    got = det.score(BatchView(ws.logits, ws.buf, mon.runner.offsets))
    w, b = (a.astype(np.float64) for a in mon.runner.head)
    np.testing.assert_allclose(got, naive_shaped_energy(feats, w, b, det.percentile, variant), rtol=1e-9)
    assert make_detector("ash").params() == {"percentile": 90.0, "variant": "s"}


def test_vim_is_the_virtual_logit_against_the_energy(digits_monitor_files):
    from nnwatch.monitor.detector import BatchView
    from nnwatch.monitor.detectors.vim import principal_dims
    from nnwatch.monitor.registry import make_detector

    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", detectors=("coverage",))
    det = make_detector("vim").with_head(mon.runner.head).fit(mon.profile)
    x = np.concatenate([f["splits"]["test"][0][:20], np.random.default_rng(1).random((10, 64), dtype=np.float32)])
    v, feats = features(mon, x)
    ws = mon.runner.workspace(len(x))
    got = det.score(BatchView(ws.logits, ws.buf, mon.runner.offsets))
    # The paper's recipe on the profile's statistics, written out.
    w, b = (a.astype(np.float64) for a in mon.runner.head)
    u = -np.linalg.pinv(w) @ b
    r = mon.profile.ranges
    n = r.count[-1]
    centred_second_moment = r.feat_outer / n - np.outer(u, r.feat_sum[-1] / n) - np.outer(r.feat_sum[-1] / n, u) + np.outer(u, u)
    evals, evecs = np.linalg.eigh(centred_second_moment)
    k = principal_dims(w.shape[1])
    residual = evecs[:, np.argsort(evals)[::-1][k:]]
    sample = r.sample_feats.astype(np.float64)
    alpha = (sample @ w.T + b).max(1).mean() / np.linalg.norm((sample - u) @ residual, axis=1).mean()
    z = feats @ w.T + b
    want = alpha * np.linalg.norm((feats - u) @ residual, axis=1) - np.log(np.exp(z).sum(axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9)
    assert got[20:].mean() > got[:20].mean()  # noise has more energy outside the classifier's subspace


def test_nci_is_the_centred_alignment_with_the_class_weights_plus_the_l1_norm(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", detectors=("coverage", "nci"))
    x = np.concatenate([f["splits"]["test"][0][:25], np.random.default_rng(1).random((5, 64), dtype=np.float32)])
    v, feats = features(mon, x)
    w, b = (a.astype(np.float64) for a in mon.runner.head)
    r = mon.profile.ranges
    mu = r.feat_sum[-1] / r.count[-1]
    want = []
    for xi in feats:
        p = int(np.argmax(w @ xi + b))
        want.append(-(w[p] @ (xi - mu) / np.linalg.norm(xi - mu) + 1e-4 * np.abs(xi).sum()))
    np.testing.assert_allclose(v.scores["nci"], want, rtol=1e-9)
