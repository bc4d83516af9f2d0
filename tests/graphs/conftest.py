"""Calibrated monitors of every kind the graph must compile: full and compact tables, one
k-section, one and several layers, FP32, FP16, INT8 (QDQ and QOperator), a fixed batch."""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest

pytest.importorskip("onnx_ir", reason="the graph tests need nnwatch[compile] (in the test extra)")

from nnwatch.calibration.calibrate import calibrate  # noqa: E402
from nnwatch.export.instrument import instrument  # noqa: E402
from nnwatch.monitor.monitor import Monitor  # noqa: E402
from nnwatch.monitor.profiling import build_profile  # noqa: E402
from tests.conftest import conv_onnx, mlp_onnx, trained_digits_mlp  # noqa: E402

VARIANTS = ("mlp", "mlp_compact", "mlp_one_section", "conv", "conv_fp16", "conv_int8_qdq", "conv_int8_qoperator",
            "mlp_fixed_batch")


def _quantized(model, samples, fmt: str, folder):  # type: ignore[no-untyped-def]
    from tests.export.test_quantized import quantize

    return quantize(model, samples, fmt, folder)


def _fp16(model):  # type: ignore[no-untyped-def]
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def build_variant(name: str, folder) -> dict:  # type: ignore[no-untyped-def]
    """An instrumented model, a calibrated monitor of it, and data: clean, anomalous and NaN/Inf."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name.startswith("mlp"):
        model, splits = trained_digits_mlp()
        if name == "mlp_fixed_batch":
            w = {i.name: i for i in model.graph.initializer}
            from onnx import numpy_helper

            arrays = [numpy_helper.to_array(w[k]) for k in ("W1", "B1", "W2", "B2")]
            model = mlp_onnx(*arrays, batch=4)
        train, cal = splits["train"][0], splits["val"][0]
        clean = splits["test"][0][:120]
        noise = rng.random((40, 64), dtype=np.float32) * 2
        shape = (64,)
    else:
        model = conv_onnx(np.random.default_rng(3))
        data = rng.random((900, 1, 8, 8), dtype=np.float32)
        train, cal, clean = data[:500], data[500:800], data[800:]
        noise = rng.normal(0, 3, (40, 1, 8, 8)).astype(np.float32)
        shape = (1, 8, 8)
        if name.endswith("fp16"):
            model = _fp16(model)
        elif "int8" in name:
            model = _quantized(model, train[:32], name.rsplit("_", 1)[1], folder)
    bad = clean[:4].copy()
    bad.reshape(4, -1)[0, 3] = np.nan
    bad.reshape(4, -1)[1, 0] = np.inf
    bad.reshape(4, -1)[2, -1] = -np.inf
    x = np.concatenate([clean, noise, bad]).astype(np.float32)
    if name == "mlp_fixed_batch":
        x = x[: len(x) // 4 * 4]
    inst, _ = instrument(model)
    path = folder / f"{name}.onnx"
    path.write_bytes(inst.SerializeToString())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(path, train, batch_size=100, k_sections=1 if name == "mlp_one_section" else 10)
        mon = Monitor(path, profile, providers="cpu", min_signature_samples=5,
                      compact_tables=True if name.endswith("compact") else None)
        calibrate(mon, cal, fpr=0.1, min_class_samples=10, batch_size=100)
        compiled = Monitor(path, mon.profile, providers="cpu", min_signature_samples=5)
        graph = Monitor(path, mon.profile, providers="cpu", min_signature_samples=5, engine="graph")
    return {"name": name, "path": path, "profile": mon.profile, "compiled": compiled, "graph": graph, "x": x,
            "shape": shape, "n_bad": len(bad)}


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request, tmp_path_factory):
    return build_variant(request.param, tmp_path_factory.mktemp(request.param))
