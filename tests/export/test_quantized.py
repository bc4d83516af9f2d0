"""INT8 (QDQ and QOperator) and FP16 graphs: instrumented, run and monitored end to end.

The quantized models are made by onnxruntime's own static quantizer from models nnwatch did
not build; what the runtime reads is checked against onnxruntime running the same graph with
the tapped integer tensor exposed, dequantized in numpy by the ONNX definition.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from nnwatch.cli.main import main
from nnwatch.errors import InputError, ModelError
from nnwatch.export.instrument import instrument, save_onnx
from nnwatch.kernels.accumulate import dequantize
from nnwatch.monitor.runner import Runner
from tests.conftest import conv_onnx  # noqa: E402  (the shared hand-built conv classifier)

quantization = pytest.importorskip("onnxruntime.quantization")
FORMATS = {"qdq": quantization.QuantFormat.QDQ, "qoperator": quantization.QuantFormat.QOperator}


def quantize(model: onnx.ModelProto, samples: np.ndarray, fmt: str, tmp_path, signed: bool = False) -> onnx.ModelProto:
    """Static INT8 quantization by onnxruntime, calibrated on ``samples`` (uint8 or int8 activations)."""
    src, dst = tmp_path / f"fp32-{fmt}.onnx", tmp_path / f"int8-{fmt}-{signed}.onnx"
    src.write_bytes(model.SerializeToString())
    name = model.graph.input[0].name

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: samples[i : i + 1]} for i in range(len(samples))])

        def get_next(self):
            return next(self.batches, None)

    logging.disable(logging.WARNING)  # the quantizer's "consider pre-processing" advice
    try:
        quantization.quantize_static(str(src), str(dst), Reader(), quant_format=FORMATS[fmt],
                                     activation_type=quantization.QuantType.QInt8 if signed
                                     else quantization.QuantType.QUInt8,
                                     weight_type=quantization.QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return onnx.load(str(dst))


def graph_qparams(model: onnx.ModelProto, tensor: str) -> tuple[np.float32, int]:
    """Scale and zero point of ``tensor`` read from the quantized graph itself (not the manifest)."""
    node = {n.output[0]: n for n in model.graph.node}[tensor]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    at = {"QuantizeLinear": 1, "QLinearConv": 6, "QLinearMatMul": 6, "QLinearAdd": 6, "QGemm": 7}[node.op_type]
    return np.float32(inits[node.input[at]]), int(inits[node.input[at + 1]])


def exposed(model: onnx.ModelProto, tensor: str, x: np.ndarray) -> np.ndarray:
    """Run the uninstrumented graph with ``tensor`` as an extra output (plain onnxruntime)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_empty_tensor_value_info(tensor))
    probe.ir_version = min(probe.ir_version, 13)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([tensor], {sess.get_inputs()[0].name: x})[0]


def buffer_of(runner: Runner, x: np.ndarray, layer: int) -> np.ndarray:
    ws = runner.workspace(len(x))
    runner.run(runner.check_input(x), ws)
    lo, hi = int(runner.offsets[layer]), int(runner.offsets[layer + 1])
    return ws.buf.reshape(len(x), runner.n_neurons)[:, lo:hi].copy()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("signed", [False, True])
def test_quantized_mlp_taps_integers_and_matches_the_definition(fmt, signed, digits_mlp, tmp_path):
    model, splits = digits_mlp
    x = splits["test"][0][:50]
    qmodel = quantize(model, splits["train"][0][:64], fmt, tmp_path, signed)
    inst, manifest = instrument(qmodel, join_taps=False)
    taps = manifest.taps
    kind = np.int8 if signed else np.uint8
    assert taps and all(t.dtype == np.dtype(kind).name for t in taps)  # the hidden layer, as integers
    assert manifest.penultimate == taps[-1].layer
    runner = Runner(inst.SerializeToString(), providers="cpu")
    for i, tap in enumerate(taps):
        q = exposed(qmodel, tap.source, x)
        assert q.dtype == kind
        scale, zero_point = graph_qparams(qmodel, tap.source)
        if signed:
            assert zero_point == -128  # a folded ReLU on int8
        want = (q.astype(np.int32) - zero_point).astype(np.float32) * scale
        np.testing.assert_array_equal(buffer_of(runner, x, i), want.reshape(len(x), -1))
    # and the integers are the float layer up to quantization: its own step plus what the int8
    # input and weights carry in (a few steps at most), clipping at the top of the range aside
    float_runner = Runner(instrument(model)[0].SerializeToString(), providers="cpu")
    ref = buffer_of(float_runner, x, 0)
    got = buffer_of(runner, x, 0)
    inside = ref <= 255 * taps[0].scale
    err = np.abs(got - ref)[inside]
    assert err.max() <= 4 * taps[0].scale and err.mean() <= taps[0].scale
    # joined: dequantized in the graph (DequantizeLinear), the same float values
    joined, joined_manifest = instrument(qmodel)
    assert joined_manifest.joined and all(t.dtype == "float32" for t in joined_manifest.taps)
    joined_runner = Runner(joined.SerializeToString(), providers="cpu")
    for i in range(len(taps)):
        np.testing.assert_array_equal(buffer_of(joined_runner, x, i), buffer_of(runner, x, i))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("in_graph", [True, False])
def test_quantized_conv_maps(fmt, in_graph, rng, tmp_path):
    model = conv_onnx(rng)
    samples = rng.random((32, 1, 8, 8), dtype=np.float32)
    qmodel = quantize(model, samples, fmt, tmp_path)
    inst, manifest = instrument(qmodel, reduce_in_graph=in_graph, join_taps=False if in_graph else None)
    conv = manifest.taps[0]
    assert conv.shape == ((4,) if in_graph else (4, 8, 8))
    assert conv.dtype == ("float32" if in_graph else "uint8")
    runner = Runner(inst.SerializeToString(), providers="cpu")
    x = samples[:5]
    q = exposed(qmodel, conv.source, x)
    scale, zero_point = graph_qparams(qmodel, conv.source)
    # dequantized in the graph (in_graph) or by the runner, then averaged over the map
    want = ((q.astype(np.int32) - zero_point).astype(np.float32) * scale).mean(axis=(2, 3))
    np.testing.assert_allclose(buffer_of(runner, x, 0), want, rtol=1e-6, atol=1e-7)
    # the quantized kernels are not split apart: no float copy of the conv output is exposed
    outputs = {o.name for o in inst.graph.output}
    float_conv = [n.input[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear" and n.output[0] == conv.source]
    assert not set(float_conv) & outputs


def test_qdq_classifier_head_is_dequantized(digits_mlp, tmp_path):
    model, splits = digits_mlp
    qmodel = quantize(model, splits["train"][0][:64], "qdq", tmp_path)
    runner = Runner(instrument(qmodel)[0].SerializeToString(), providers="cpu")
    full = Runner(instrument(model)[0].SerializeToString(), providers="cpu")
    assert runner.head is not None and full.head is not None
    w_scale = np.abs(full.head[0]).max() / 127
    assert np.abs(runner.head[0] - full.head[0]).max() <= w_scale  # per-channel int8 weights


def test_fp16_models_instrument_and_read_float32(digits_mlp):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model, splits = digits_mlp
    x = splits["test"][0][:40]
    full = Runner(instrument(model)[0].SerializeToString(), providers="cpu")
    for keep_io in (True, False):
        half = convert_float_to_float16(onnx.load_from_string(model.SerializeToString()), keep_io_types=keep_io)
        inst, manifest = instrument(half)  # keep_io appends casts at the end: sorted before checking
        runner = Runner(inst.SerializeToString(), providers="cpu")
        assert runner.input_dtype == (np.float32 if keep_io else np.float16)
        ws = runner.workspace(len(x))
        runner.run(runner.check_input(x), ws)
        assert ws.logits.dtype == np.float32 and manifest.logits.startswith("nnwatch/float/") != keep_io
        np.testing.assert_allclose(buffer_of(runner, x, 0), buffer_of(full, x, 0), rtol=1e-2, atol=1e-2)


def test_non_constant_quantization_parameters_are_refused(digits_mlp, tmp_path):
    model, splits = digits_mlp
    qmodel = quantize(model, splits["train"][0][:64], "qdq", tmp_path)
    tapped = instrument(qmodel)[1].taps[0].source
    # compute the tapped layer's scale in the graph: no longer a constant initializer
    node = [n for n in qmodel.graph.node if n.output[0] == tapped][0]
    scale = node.input[1]
    init = [i for i in qmodel.graph.initializer if i.name == scale][0]
    init.name = scale + "_stored"
    qmodel.graph.node.insert(0, helper.make_node("Identity", [init.name], [scale]))
    for other in qmodel.graph.node:  # other users read the stored value directly
        if other is not node and other.output[0] != scale:
            other.input[:] = [init.name if i == scale else i for i in other.input]
    # named explicitly: refused with the reason; found by "auto": not tapped as integers
    with pytest.raises(ModelError, match="not a constant initializer"):
        instrument(qmodel, layers=[tapped])
    _, manifest = instrument(qmodel)
    assert tapped not in [t.source for t in manifest.taps]


def test_dequantize_kernel_against_numpy(rng):
    for dtype in (np.uint8, np.int8):
        info = np.iinfo(dtype)
        q = rng.integers(info.min, info.max + 1, size=1000).astype(dtype)
        for scale, zp in ((0.0123, 0), (3.5e-4, int(info.min)), (1.0, int(info.max))):
            out = np.empty(1000, np.float32)
            dequantize(q, scale, zp, out)
            want = (q.astype(np.int32) - zp).astype(np.float32) * np.float32(scale)
            np.testing.assert_array_equal(out, want)
    with pytest.raises(InputError, match="zero point"):
        dequantize(np.zeros(3, np.uint8), 0.1, -1, np.empty(3, np.float32))
    with pytest.raises(InputError, match="scale"):
        dequantize(np.zeros(3, np.int8), 0.0, 0, np.empty(3, np.float32))
    with pytest.raises(InputError, match="equal in size"):
        dequantize(np.zeros(3, np.int8), 0.1, 0, np.empty(4, np.float32))


@pytest.mark.parametrize("fmt", sorted(FORMATS) + ["fp16"])
def test_int8_and_fp16_cli_end_to_end(fmt, digits_mlp, tmp_path, capsys):
    model, splits = digits_mlp
    if fmt == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        qmodel = convert_float_to_float16(onnx.load_from_string(model.SerializeToString()), keep_io_types=False)
    else:
        qmodel = quantize(model, splits["train"][0][:64], fmt, tmp_path)
    (tmp_path / "int8.onnx").write_bytes(qmodel.SerializeToString())
    for name, (x, y) in splits.items():
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    np.savez(tmp_path / "noise.npz", x=np.random.default_rng(1).random((150, 64), dtype=np.float32))

    def cli(*args):
        return main([str(a) for a in args])

    d = tmp_path
    assert cli("instrument", d / "int8.onnx", "--out", d / "m.onnx") == 0
    assert cli("profile", d / "m.onnx", "--data", f"npz:{d / 'train.npz'}", "--out", d / "p.npz", "--quiet") == 0
    assert cli("calibrate", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'val.npz'}", "--fpr", "0.05",
               "--min-class-samples", "10", "--quiet") == 0
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'test.npz'}", "--out", d / "s.json",
               "--quiet") == 0
    rows = json.loads((d / "s.json").read_text())
    assert len(rows) == len(splits["test"][1])
    assert np.mean([r["pred"] == r["label"] for r in rows]) > 0.85  # the int8 model still classifies
    capsys.readouterr()
    assert cli("evaluate", d / "m.onnx", d / "p.npz", "--id", f"npz:{d / 'test.npz'}",
               "--ood", f"npz:{d / 'noise.npz'}", "--json", d / "e.json") == 0
    result = json.loads((d / "e.json").read_text())
    aurocs = {r["detector"]: r["auroc"] for r in result["rows"]}
    assert aurocs["coverage"] > 0.9


def test_fp32_profile_on_int8_model_is_refused(digits_monitor_files, digits_mlp, tmp_path):
    from nnwatch.errors import ModelMismatchError
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.profile.store import load_profile

    model, splits = digits_mlp
    qmodel = quantize(model, splits["train"][0][:64], "qdq", tmp_path)
    save_onnx(instrument(qmodel)[0], tmp_path / "m.onnx")
    with pytest.raises(ModelMismatchError):
        Monitor(tmp_path / "m.onnx", load_profile(digits_monitor_files["profile"]), providers="cpu")
