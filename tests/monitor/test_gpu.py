"""The CUDA path, checked against the CPU path. Skipped where no GPU provider really works.

Run on a GPU machine by benchmarks/gpu.sh; on CPU-only machines (CI) every test here skips.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.monitor.providers import working_providers

pytestmark = pytest.mark.skipif("CUDAExecutionProvider" not in working_providers(),
                                reason="no working CUDA execution provider here")


def _monitors(files):
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.profile.store import load_profile

    cpu = Monitor(files["model"], load_profile(files["profile"]), providers="cpu")
    gpu = Monitor(files["model"], load_profile(files["profile"]), providers="cuda")
    return cpu, gpu


def test_cuda_monitor_agrees_with_cpu(digits_monitor_files):
    cpu, gpu = _monitors(digits_monitor_files)
    assert gpu.runner.providers[0] == "CUDAExecutionProvider"
    x = digits_monitor_files["splits"]["test"][0]
    a, b = cpu.score(x), gpu.score(x)
    assert a.columns == b.columns
    assert (a.pred == b.pred).mean() >= 0.99
    # Scores are counts over neurons: a neuron on a section boundary may land on either side
    # when the GPU sums in another order (TF32 matmuls), so compare closely, not exactly.
    for j, name in enumerate(a.columns):
        close = np.isclose(a.score_matrix[:, j], b.score_matrix[:, j], rtol=1e-2, atol=1e-2, equal_nan=True)
        assert close.mean() >= 0.95, name
    assert (a.flag == b.flag).mean() >= 0.97


def test_device_input_is_refreshed_each_call(digits_monitor_files):
    from nnwatch.monitor.runner import Runner

    x = digits_monitor_files["splits"]["test"][0][:1]
    runner = Runner(digits_monitor_files["model"], providers="cuda")
    ws = runner.workspace(1)
    assert ws.device_input is not None  # the input lives on the GPU
    runner.run(x, ws)
    first = ws.logits.copy()
    runner.run(np.ascontiguousarray(1.0 - x), ws)
    assert not np.allclose(first, ws.logits)
    runner.run(x, ws)
    np.testing.assert_allclose(first, ws.logits, rtol=1e-5, atol=1e-5)


def test_fp16_model_on_cuda(tmp_path, digits_mlp):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from nnwatch.export.instrument import instrument, save_onnx
    from nnwatch.monitor.runner import Runner

    model, splits = digits_mlp
    x = splits["test"][0][:64]
    half = convert_float_to_float16(onnx.load_from_string(model.SerializeToString()), keep_io_types=False)
    save_onnx(instrument(half)[0], tmp_path / "half.onnx")
    save_onnx(instrument(model)[0], tmp_path / "full.onnx")
    full, fp16 = Runner(tmp_path / "full.onnx", providers="cpu"), Runner(tmp_path / "half.onnx", providers="cuda")
    wa, wb = full.workspace(64), fp16.workspace(64)
    full.run(x, wa)
    fp16.run(fp16.check_input(x), wb)
    assert (wa.logits.argmax(1) == wb.logits.argmax(1)).mean() >= 0.97
    np.testing.assert_allclose(wa.buf, wb.buf, rtol=2e-2, atol=2e-2)
