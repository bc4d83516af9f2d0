"""Plain vs monitored latency, measured interleaved in one run (ratios, not absolute times)."""

from __future__ import annotations

import os
import platform
import resource
import time
from typing import Any

import numpy as np

from ..errors import ModelError
from ..monitor.runner import session_options
from ..monitor.providers import resolve_providers


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
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "numba": numba.__version__, "numpy": np.__version__}


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

    from ..manifest import MANIFEST_KEY, TapManifest

    model = onnx.load(os.fspath(instrumented))
    meta = {p.key: p.value for p in model.metadata_props}
    if MANIFEST_KEY not in meta:
        raise ModelError(f"{instrumented} is not instrumented by nnwatch")
    manifest = TapManifest.from_json(meta[MANIFEST_KEY])
    keep = [o for o in model.graph.output if o.name in manifest.original_outputs]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    nodes = [n for n in model.graph.node if not (n.name.startswith("nnwatch/"))]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    inits = [i for i in model.graph.initializer if not i.name.startswith("nnwatch/")]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    props = [p for p in model.metadata_props if p.key != MANIFEST_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    return model.SerializeToString()


def _pct(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean())}


def bench_overhead(monitor, plain: bytes | str | os.PathLike, x: np.ndarray, iters: int = 300, warmup: int = 30,  # type: ignore[no-untyped-def]
                   threads: int | None = None) -> dict[str, Any]:
    """Time plain inference, tapped inference and the full monitor, interleaved.

    Parameters
    ----------
    monitor : Monitor
        Monitored model.
    plain : bytes or path
        The untapped model.
    x : numpy.ndarray
        One input batch.
    iters : int
        Timed rounds (each round runs all three once, in rotating order).
    warmup : int
        Untimed rounds first.
    threads : int or None
        Intra-op threads of the plain session (use the monitor's).

    Returns
    -------
    dict
        p50/p99/mean per variant, ratios to plain, throughput, memory.
    """
    import onnxruntime as ort

    src = plain if isinstance(plain, bytes) else os.fspath(plain)
    sess = ort.InferenceSession(src, session_options(threads), providers=resolve_providers(monitor.runner.providers))
    name = sess.get_inputs()[0].name
    arr = monitor.runner.check_input(x)
    runner = monitor.runner
    ws = runner.workspace(arr.shape[0])

    def plain_call() -> None:
        sess.run(None, {name: arr})

    def tapped_call() -> None:
        runner.run(arr, ws)

    def monitored_call() -> None:
        monitor.score(arr, _record=False)

    calls = {"plain": plain_call, "tapped": tapped_call, "monitored": monitored_call}
    times: dict[str, list[float]] = {k: [] for k in calls}
    order = list(calls)
    for i in range(warmup + iters):
        rot = order[i % 3:] + order[: i % 3]
        for k in rot:
            t = time.perf_counter()
            calls[k]()
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    out: dict[str, Any] = {k: _pct(v) for k, v in times.items()}
    base = out["plain"]
    for k in ("tapped", "monitored"):
        out[k]["ratio_p50"] = out[k]["p50_ms"] / base["p50_ms"]
        out[k]["ratio_p99"] = out[k]["p99_ms"] / base["p99_ms"]
    out["batch"] = int(arr.shape[0])
    out["throughput_plain_per_s"] = arr.shape[0] / (base["mean_ms"] / 1e3)
    out["throughput_monitored_per_s"] = arr.shape[0] / (out["monitored"]["mean_ms"] / 1e3)
    out["monitor_memory_mb"] = monitor.memory_bytes() / 2**20
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["providers"] = list(runner.providers)
    out["detectors"] = list(monitor.detectors)
    return out
