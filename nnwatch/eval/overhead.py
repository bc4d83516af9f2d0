"""Plain vs monitored latency, measured interleaved in one run (ratios, not absolute times)."""

from __future__ import annotations

import os
import platform
import resource
from typing import Any

import numpy as np

from ..errors import InputError, ModelError
from ..monitor.providers import resolve_providers
from ..monitor.runner import session_options
from ..timing import add_ratios, interleaved


def machine() -> dict[str, Any]:
    """Describe this machine for benchmark records.

    Returns
    -------
    dict
        cpu, cores, python, onnxruntime and numba versions, platform.
    """
    import numba
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    found = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
             "onnxruntime": ort.__version__, "numba": numba.__version__, "numpy": np.__version__}
    gpu = _gpu_name()
    if gpu:
        found["gpu"] = gpu
    return found


def _gpu_name() -> str | None:
    """The NVIDIA GPU's name and driver, when nvidia-smi answers; None elsewhere."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return f"{line.split(',')[0].strip()} (driver {line.split(',')[1].strip()})" if "," in line else None


def plain_model_bytes(instrumented: str | os.PathLike) -> bytes:
    """The untapped model recovered from an instrumented one (original outputs only).

    Parameters
    ----------
    instrumented : path
        Instrumented ONNX file.

    Returns
    -------
    bytes
        Serialized model without nnwatch's outputs, nodes and metadata.
    """
    import onnx

    from ..export.untap import keep_outputs
    from ..manifest import MANIFEST_KEY, TapManifest

    model = onnx.load(os.fspath(instrumented))
    meta = {p.key: p.value for p in model.metadata_props}
    if MANIFEST_KEY not in meta:
        raise ModelError(f"{instrumented} is not instrumented by nnwatch")
    manifest = TapManifest.from_json(meta[MANIFEST_KEY])
    return keep_outputs(model, manifest.original_outputs, drop_metadata=[MANIFEST_KEY]).SerializeToString()


_OUTPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def plain_iobinding_call(sess: Any, x: np.ndarray) -> Any:
    """The fastest honest way to call an untapped model: IOBinding into preallocated outputs.

    On a GPU provider the input is bound in device memory and copied in on every call, as the
    monitor does: onnxruntime copies a host-bound input to the device only once, when it is
    bound, so binding host memory would time calls that never transfer their input.

    Parameters
    ----------
    sess : onnxruntime.InferenceSession
        The untapped model's session.
    x : numpy.ndarray
        The input batch (the session's input dtype).

    Returns
    -------
    callable
        Zero-argument call running the model once.
    """
    import onnxruntime as ort

    name = sess.get_inputs()[0].name
    binding = sess.io_binding()
    on_gpu = sess.get_providers()[0] != "CPUExecutionProvider"
    if on_gpu:
        device = ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), x.dtype, "cuda", 0)
        binding.bind_ortvalue_input(name, device)
    else:
        binding.bind_cpu_input(name, x)
    kept = []
    for out in sess.get_outputs():  # every output, as a plain session.run would compute
        dims = [x.shape[0]] + list(out.shape[1:])
        dtype = _OUTPUT_TYPES.get(out.type)
        if dtype is None or not all(isinstance(d, int) for d in dims[1:]):
            binding.bind_output(out.name, "cpu")  # onnxruntime allocates what it cannot be told
            continue
        buf = np.empty(dims, dtype)
        kept.append(buf)
        binding.bind_output(out.name, "cpu", 0, dtype, dims, buf.ctypes.data)

    def call() -> None:
        if on_gpu:
            device.update_inplace(x)
        sess.run_with_iobinding(binding)

    call.buffers = kept  # type: ignore[attr-defined]  # keep the bound memory alive
    return call


def bench_overhead(monitor, plain: bytes | str | os.PathLike, x: np.ndarray, iters: int = 300, warmup: int = 30,  # type: ignore[no-untyped-def]
                   threads: int | None = None, graph=None) -> dict[str, Any]:
    """Time plain inference (both ways), tapped inference and the full monitor, interleaved.

    Parameters
    ----------
    monitor : Monitor
        Monitored model.
    plain : bytes or path
        The untapped model.
    x : numpy.ndarray
        One input batch.
    iters : int
        Timed rounds (each round runs every variant once, in a shuffled order, each timed
        call after one untimed call of the same variant).
    warmup : int
        Untimed rounds first.
    threads : int or None
        Intra-op threads of the plain session (use the monitor's).
    graph : Monitor, optional
        The same monitor with ``engine="graph"``: timed as ``monitored (graph engine)``.

    Returns
    -------
    dict
        p50/p99/mean per variant; ratios to a plain ``session.run`` (``ratio_p50``) and to a
        plain call through IOBinding into preallocated outputs (``ratio_p50_iobinding``,
        the fastest way to call the untapped model); throughput; memory.
    """
    import onnxruntime as ort

    if int(iters) < 1 or int(warmup) < 0:
        raise InputError(f"iters must be >= 1 and warmup >= 0, got {iters} and {warmup}")
    src = plain if isinstance(plain, bytes) else os.fspath(plain)
    sess = ort.InferenceSession(src, session_options(threads), providers=resolve_providers(monitor.runner.providers))
    name = sess.get_inputs()[0].name
    arr = monitor.runner.check_input(x)
    runner = monitor.runner
    ws = runner.workspace(arr.shape[0])
    calls = {"plain": lambda: sess.run(None, {name: arr}),
             "plain (IOBinding)": plain_iobinding_call(sess, arr),
             "tapped": lambda: runner.run(arr, ws),
             "monitored": lambda: monitor.score(arr, _record=False)}
    if graph is not None:
        graph.score(arr, _record=False)
        calls["monitored (graph engine)"] = lambda: graph.score(arr, _record=False)
    out: dict[str, Any] = interleaved(calls, iters, warmup)
    add_ratios(out, {"": "plain", "iobinding": "plain (IOBinding)"})
    base = out["plain"]
    out["batch"] = int(arr.shape[0])
    out["throughput_plain_per_s"] = arr.shape[0] / (base["mean_ms"] / 1e3)
    out["throughput_monitored_per_s"] = arr.shape[0] / (out["monitored"]["mean_ms"] / 1e3)
    out["monitor_memory_mb"] = monitor.memory_bytes() / 2**20
    out["coverage_tables_mb"] = monitor.tables.nbytes / 2**20
    out["compact_tables"] = bool(monitor.compact_tables)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["providers"] = list(runner.providers)
    out["detectors"] = list(monitor.detectors)
    return out


def detector_costs(monitor, x: np.ndarray, iters: int = 200, warmup: int = 20) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    """What each detector adds to a monitored call: time of its own scoring, and its tables.

    One run fills the buffers; then each detector's scoring is timed on them, interleaved.
    The compiled columns (coverage, logits, Mahalanobis) share the compiled pass's first stage,
    timed once as ``compiled scores``; its second stage over all columns (p-values, fused
    verdict, flags) as ``decision``; each detector written in Python on its own.

    Parameters
    ----------
    monitor : Monitor
        Monitored model.
    x : numpy.ndarray
        One input batch.
    iters : int
        Timed rounds.
    warmup : int
        Untimed rounds first.

    Returns
    -------
    dict
        name -> ``p50_us`` (per call) and ``table_bytes`` (arrays the detector holds).
    """
    if int(iters) < 1:
        raise InputError(f"iters must be >= 1, got {iters}")
    calls = monitor.scoring_calls(x)  # the same bound passes the monitor uses
    del calls["inference"]
    tables = {name: sum(v.nbytes for v in vars(det).values() if isinstance(v, np.ndarray))
              for name, det in monitor.detectors.items() if name in calls}
    tables["compiled scores"] = monitor.tables.nbytes + sum(
        sum(v.nbytes for v in vars(det).values() if isinstance(v, np.ndarray))
        for det in monitor.detectors.values() if det.compiled_source is not None)
    tables["decision"] = monitor.conformal_tables.nbytes if monitor.conformal_tables is not None else 0
    timed = interleaved(calls, iters, warmup)
    return {n: {"p50_us": timed[n]["p50_ms"] * 1e3, "table_bytes": int(tables[n])} for n in calls}
