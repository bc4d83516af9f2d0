"""Instrumenting hand-built ONNX graphs: exact taps, untouched outputs, odd models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nnwatch.errors import InputError, ModelError
from nnwatch.export.instrument import MAX_IR_VERSION, instrument, instrument_file
from nnwatch.manifest import MANIFEST_KEY, TapManifest
from tests.conftest import REPO, conv_onnx, mlp_onnx

GOLDEN = json.loads((REPO / "tests" / "golden" / "tap_names.json").read_text())


def run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))


@pytest.fixture
def mlp(rng):
    return mlp_onnx(rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3))


def test_mlp_auto_taps_golden_and_values(mlp, rng):
    # x -> MatMul -> Add(h) -> Relu(a) -> MatMul -> Add(logits): auto taps the Relu output,
    # which is also the classifier's input (penultimate).
    model, manifest = instrument(mlp, join_taps=False)
    assert [(t.output, t.layer, t.neurons) for t in manifest.taps] == [tuple(t) for t in GOLDEN["mlp"]]
    assert manifest.logits == "logits" and manifest.penultimate == "a"
    assert [o.name for o in model.graph.output] == ["logits", "a"]
    x = rng.normal(size=(4, 6)).astype(np.float32)
    tapped, plain = run(model, x), run(mlp, x)
    np.testing.assert_array_equal(tapped["logits"], plain["logits"])
    w1 = onnx.numpy_helper.to_array(mlp.graph.initializer[0])
    b1 = onnx.numpy_helper.to_array(mlp.graph.initializer[1])
    np.testing.assert_allclose(tapped["a"], np.maximum(x @ w1 + b1, 0), rtol=1e-5, atol=1e-5)


def test_original_graph_is_untouched(mlp):
    model, _ = instrument(mlp, join_taps=False)
    # Every original node and initializer is still there, byte for byte, in the same order.
    assert [n.SerializeToString() for n in model.graph.node[: len(mlp.graph.node)]] == \
        [n.SerializeToString() for n in mlp.graph.node]
    assert [i.SerializeToString() for i in model.graph.initializer] == [i.SerializeToString() for i in mlp.graph.initializer]
    assert len(model.graph.node) == len(mlp.graph.node)  # rank-2 taps need no new node


def test_conv_taps_reduce_in_graph_and_in_kernel(rng):
    # x -> Conv -> Relu(r) -> Flatten(f) -> Gemm(logits)
    conv = conv_onnx(rng)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    plain = run(conv, x)
    model, manifest = instrument(conv, join_taps=False)
    assert [(t.output, t.layer, t.neurons) for t in manifest.taps] == [tuple(t) for t in GOLDEN["conv"]]
    out = run(model, x)
    np.testing.assert_array_equal(out["logits"], plain["logits"])
    r = np.maximum(run(instrument(conv, layers=["r"], reduce_in_graph=False)[0], x)["r"], 0)
    np.testing.assert_allclose(out["nnwatch/mean/r"], r.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    model_max, man_max = instrument(conv, reduction="max", join_taps=False)
    np.testing.assert_allclose(run(model_max, x)["nnwatch/max/r"], r.max(axis=(2, 3)), rtol=1e-6)
    _, man_kernel = instrument(conv, reduce_in_graph=False)
    assert man_kernel.taps[0].shape == (4, 8, 8) and not man_kernel.taps[0].in_graph


def test_joined_taps_are_the_separate_taps_side_by_side(rng):
    # x -> Conv -> Relu(r) -> Flatten(f) -> Gemm(logits): joined, the taps are one output
    #   Concat(ReduceMean(r), f) -> nnwatch/taps (batch, 4 + 256)
    conv = conv_onnx(rng)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    joined, manifest = instrument(conv)
    separate, _ = instrument(conv, join_taps=False)
    assert manifest.joined == "nnwatch/taps"
    assert [o.name for o in joined.graph.output] == ["logits", "nnwatch/taps"]
    a, b = run(joined, x), run(separate, x)
    want = np.concatenate([b[t.output] for t in manifest.taps], axis=1)
    np.testing.assert_array_equal(a["nnwatch/taps"], want)
    np.testing.assert_array_equal(a["logits"], b["logits"])
    with pytest.raises(InputError, match="reduced in the graph"):
        instrument(conv, join_taps=True, reduce_in_graph=False)
    assert instrument(conv, reduce_in_graph=False)[1].joined is None


@pytest.mark.parametrize("opset", [11, 13, 17, 18, 21])
def test_old_and_new_opsets(rng, opset):
    model, manifest = instrument(conv_onnx(rng, opset=opset))
    x = rng.normal(size=(2, 1, 8, 8)).astype(np.float32)
    out = run(model, x)
    assert out["nnwatch/taps"].shape == (2, 4 + 256)


def test_fixed_batch_and_softmax_output(rng):
    mlp = mlp_onnx(rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3),
                   batch=1, softmax=True)
    model, manifest = instrument(mlp)
    assert manifest.batch == 1
    assert manifest.logits == "logits"  # the input of the final Softmax, not the probabilities
    assert "logits" in [o.name for o in model.graph.output]
    assert model.graph.output[0].name == "probs"


def test_odd_tensor_names(rng):
    names = ("input:0", "dense/BiasAdd:0", "dense/Relu:0", "Identity:0")
    mlp = mlp_onnx(rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3), names=names)
    model, manifest = instrument(mlp, join_taps=False)
    assert manifest.taps[0].output == "dense/Relu:0"
    out = run(model, rng.normal(size=(2, 6)).astype(np.float32))
    assert out["dense/Relu:0"].shape == (2, 5)


def test_manifest_is_in_metadata_and_roundtrips(mlp):
    model, manifest = instrument(mlp)
    meta = {p.key: p.value for p in model.metadata_props}
    assert TapManifest.from_json(meta[MANIFEST_KEY]) == manifest
    assert len(manifest.fingerprint) == 64
    assert model.ir_version <= MAX_IR_VERSION


def test_high_ir_version_is_lowered(rng):
    mlp = mlp_onnx(rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3),
                   ir_version=14)
    model, _ = instrument(mlp)
    assert model.ir_version == MAX_IR_VERSION
    run(model, np.zeros((1, 6), np.float32))  # onnxruntime accepts it


def test_unknown_layer_lists_available(mlp):
    with pytest.raises(InputError, match=r"'nope' not found; available: .*a"):
        instrument(mlp, layers=["nope"])


def test_explicit_layers_by_tensor_name(mlp):
    _, manifest = instrument(mlp, layers=["h", "a"])
    assert [t.source for t in manifest.taps] == ["h", "a"]


def test_bad_files(tmp_path, mlp):
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ModelError, match="cannot parse|empty graph"):
        instrument(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        instrument(tmp_path / "missing.onnx")
    model, _ = instrument(mlp)
    with pytest.raises(ModelError, match="already instrumented"):
        instrument(model)


def test_instrument_file_is_atomic(tmp_path, mlp):
    src = tmp_path / "m.onnx"
    src.write_bytes(mlp.SerializeToString())
    dst = tmp_path / "out.onnx"
    dst.write_bytes(b"old")
    with pytest.raises(InputError):
        instrument_file(src, dst, layers=["nope"])
    assert dst.read_bytes() == b"old"
    instrument_file(src, dst)
    assert MANIFEST_KEY in {p.key for p in onnx.load(dst).metadata_props}
