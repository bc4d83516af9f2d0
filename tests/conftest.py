"""Shared fixtures: seeded RNGs, tiny hand-built ONNX classifiers, a trained digits model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Set by .ci/run: a test that lacks something it needs fails instead of skipping.
REQUIRE_ALL = "NNWATCH_REQUIRE_ALL"


def missing(what: str, how: str) -> None:
    """Skip the calling test because ``what`` is missing (fail instead under NNWATCH_REQUIRE_ALL=1).

    Parameters
    ----------
    what : str
        What the test needs.
    how : str
        How to get it.
    """
    message = f"needs {what}: {how}"
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{message} ({REQUIRE_ALL}=1: nothing may be skipped)")
    pytest.skip(message)


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data; skips the test when the data is missing (fails in CI)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        missing(f"the project's shared data ({path})",
                "put the project's shared/ folder beside the repository, as ../shared (CI does)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def mlp_onnx(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray, opset: int = 17,
             batch: int | str = "N", softmax: bool = False, names: tuple[str, ...] = ("x", "h", "a", "logits"),
             ir_version: int = 8) -> onnx.ModelProto:
    """A two-layer MLP built with onnx.helper (no nnwatch involved).

        x --MatMul(W1)--Add(b1)--> h --Relu--> a --MatMul(W2)--Add(b2)--> logits [--Softmax--> probs]
    """
    x, h, a, logits = names
    nodes = [
        helper.make_node("MatMul", [x, "W1"], ["xw1"], name="fc1_matmul"),
        helper.make_node("Add", ["xw1", "B1"], [h], name="fc1_add"),
        helper.make_node("Relu", [h], [a], name="relu1"),
        helper.make_node("MatMul", [a, "W2"], ["aw2"], name="fc2_matmul"),
        helper.make_node("Add", ["aw2", "B2"], [logits], name="fc2_add"),
    ]
    out_name = logits
    if softmax:
        nodes.append(helper.make_node("Softmax", [logits], ["probs"], axis=1, name="softmax"))
        out_name = "probs"
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in
             (("W1", w1), ("B1", b1), ("W2", w2), ("B2", b2))]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, w1.shape[0]])],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, w2.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="hand-built")
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def conv_onnx(rng: np.random.Generator, opset: int = 17, batch: int | str = "N", n_classes: int = 5) -> onnx.ModelProto:
    """A small conv classifier built with onnx.helper.

        x(N,1,8,8) --Conv(4,3x3,pad1)--> c --Relu--> r --Flatten--> f --Gemm--> logits
    """
    nodes = [
        helper.make_node("Conv", ["x", "Wc", "Bc"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f", "Wf", "Bf"], ["logits"], transB=1, name="fc"),
    ]
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "Wc"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "Bc"),
             numpy_helper.from_array(rng.normal(size=(n_classes, 256)).astype(np.float32) * 0.1, "Wf"),
             numpy_helper.from_array(np.zeros(n_classes, np.float32), "Bf")]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, n_classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def trained_digits_mlp(hidden: int = 48, seed: int = 0) -> tuple[onnx.ModelProto, dict]:
    """An MLP for flattened digits: fixed random ReLU features + ridge-regression readout.

    Fitted with numpy only, so the ONNX file is entirely independent of nnwatch and torch.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target
    order = np.random.default_rng(0).permutation(len(y))
    train, val, test = order[:1000], order[1000:1400], order[1400:]
    r = np.random.default_rng(seed)
    w1 = r.normal(size=(64, hidden)).astype(np.float32) / 4
    b1 = r.normal(size=hidden).astype(np.float32) * 0.1
    feats = np.maximum(x[train] @ w1 + b1, 0)
    onehot = np.eye(10)[y[train]] * 2 - 1
    a = np.c_[feats, np.ones(len(train))]
    w = np.linalg.solve(a.T @ a + 1e-1 * np.eye(a.shape[1]), a.T @ onehot)
    model = mlp_onnx(w1, b1, w[:-1], w[-1])
    splits = {k: (x[v], y[v].astype(np.int64)) for k, v in (("train", train), ("val", val), ("test", test))}
    return model, splits


@pytest.fixture(scope="session")
def digits_mlp() -> tuple[onnx.ModelProto, dict]:
    return trained_digits_mlp()


@pytest.fixture(scope="session")
def digits_monitor_files(tmp_path_factory, digits_mlp):
    """Instrumented MLP + built, calibrated profile, written to a temp folder (paths)."""
    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.export.instrument import instrument_file
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.profile.store import save_profile
    from nnwatch.sources import ArraySource

    folder = tmp_path_factory.mktemp("digits")
    model, splits = digits_mlp
    plain = folder / "plain.onnx"
    plain.write_bytes(model.SerializeToString())
    inst = folder / "model.onnx"
    instrument_file(plain, inst)
    profile = build_profile(inst, ArraySource(*splits["train"], "train"), batch_size=128)
    mon = Monitor(inst, profile, providers="cpu")
    calibrate(mon, ArraySource(*splits["val"], "val"), fpr=0.05, min_class_samples=10)
    save_profile(mon.profile, folder / "profile.npz")
    return {"model": inst, "plain": plain, "profile": folder / "profile.npz", "splits": splits, "folder": folder}
