"""Choose onnxruntime execution providers that actually work here, without error spam.

onnxruntime-gpu lists CUDA and TensorRT as "available" even on machines without a GPU or
without the CUDA libraries, then prints errors when a session asks for them. We only offer a
GPU provider after the driver loads and a probe session really ran on it, with onnxruntime's
logging and the process's stdout/stderr silenced during the probe.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from typing import Iterator, Sequence

import onnxruntime as ort

from ..errors import InputError

QUIET = 3  # onnxruntime severity: 0 verbose .. 3 error, 4 fatal


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Redirect fds 1 and 2 to /dev/null (native code prints there directly)."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def _loadable(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


# A one-node model, y = Relu(x) on a float[1] (opset 13, IR 8), serialized: the runtime path
# probes a provider without the onnx package. tests/monitor/test_providers.py rebuilds it with onnx.
PROBE_MODEL = (b'\x08\x08:7\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x05probeZ\x0f\n\x01x\x12\n\n\x08\x08\x01\x12\x04'
               b'\n\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r')


def _probe(provider: str) -> bool:
    import numpy as np

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        ort.set_default_logger_severity(4)
        with _silenced():
            sess = ort.InferenceSession(PROBE_MODEL, opts, providers=[provider, "CPUExecutionProvider"])
            sess.run(None, {"x": np.ones(1, np.float32)})
        return sess.get_providers()[0] == provider
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(QUIET)


@functools.lru_cache(maxsize=1)
def working_providers() -> tuple[str, ...]:
    """Providers that work on this machine, fastest first; always ends with the CPU.

    Returns
    -------
    tuple of str
        e.g. ``("CUDAExecutionProvider", "CPUExecutionProvider")``.
    """
    listed = set(ort.get_available_providers())
    found: list[str] = []
    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & listed and _loadable("libcuda.so.1", "libcuda.so"):
        if "TensorrtExecutionProvider" in listed and _loadable("libnvinfer.so.10", "libnvinfer.so"):
            if _probe("TensorrtExecutionProvider"):
                found.append("TensorrtExecutionProvider")
        if "CUDAExecutionProvider" in listed and _probe("CUDAExecutionProvider"):
            found.append("CUDAExecutionProvider")
    found.append("CPUExecutionProvider")
    return tuple(found)


def resolve_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """Turn a user's provider choice into a list onnxruntime accepts.

    Parameters
    ----------
    providers : "auto", "cpu", "cuda", or a sequence of provider names
        ``"auto"`` picks what :func:`working_providers` found.

    Returns
    -------
    list of str
        Provider names.

    Raises
    ------
    InputError
        A requested provider is not available here.
    """
    ort.set_default_logger_severity(QUIET)
    if providers == "auto":
        return list(working_providers())
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "cuda":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = [providers] if isinstance(providers, str) else list(providers)
    works = working_providers()
    bad = [p for p in chosen if p not in works]
    if bad:
        raise InputError(f"execution provider(s) {bad} do not work on this machine; working: {list(works)}")
    return chosen
