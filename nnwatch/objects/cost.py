"""What monitoring a detector costs: the plain detector call, the same call with nnwatch's
decoding and NMS, and the monitored call, timed interleaved on the same frames.

The plain detector is recovered from the instrumented one (its tapped-map outputs and their
Identity nodes removed), so both run the same graph with the same session options.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import InputError
from ..export.untap import keep_outputs
from ..monitor.runner import session_options
from ..timing import add_ratios, interleaved
from .detections import decode
from .detector_manifest import OBJECTS_KEY, read_manifest


def plain_detector_bytes(instrumented: bytes) -> bytes:
    """The untapped detector recovered from an instrumented one.

    Parameters
    ----------
    instrumented : bytes
        A serialized detector written by :func:`nnwatch.objects.instrument_detector.instrument_detector`.

    Returns
    -------
    bytes
        The model with only its original outputs, nodes and metadata.
    """
    model = onnx.load_from_string(instrumented)
    manifest = read_manifest({p.key: p.value for p in model.metadata_props})
    if manifest is None:
        raise InputError("this model is not an instrumented detector")
    originals = [o.name for o in model.graph.output if o.name not in set(manifest.maps)]
    return keep_outputs(model, originals, drop_metadata=[OBJECTS_KEY]).SerializeToString()


def bench_detector(monitor: Any, frames: Sequence[np.ndarray], rounds: int = 300, warmup: int = 10,
                   threads: int | None = 1) -> dict[str, Any]:
    """Interleaved timing of plain, plain + decoding, and monitored calls.

    Parameters
    ----------
    monitor : ObjectMonitor
        A calibrated object monitor.
    frames : sequence of numpy.ndarray
        Batches ``(B, C, H, W)`` float32, cycled through (each variant sees the same sequence).
    rounds : int
        Timed rounds.
    warmup : int
        Untimed rounds first.
    threads : int or None
        onnxruntime intra-op threads of the plain session (the monitor's own are set at its construction).

    Returns
    -------
    dict
        ``timing`` (per variant ``p50_ms``, ``p99_ms``, ``mean_ms``, ``n`` and ratios to ``plain``
        and to ``plain+decode``), ``objects_per_frame`` over the frames, ``batch``.
    """
    if not frames:
        raise InputError("no frames to time")
    batches = [np.ascontiguousarray(f, np.float32) for f in frames]
    sess = ort.InferenceSession(plain_detector_bytes(monitor.model_bytes), session_options(threads),
                                providers=list(monitor.providers))  # where the monitored detector runs
    name = monitor.manifest.input_name
    layout, size = monitor.layout, monitor.manifest.input_size

    def cycling(fn: Callable[[np.ndarray], object]) -> Callable[[], object]:
        state = {"i": 0}

        def call() -> object:
            state["i"] = (state["i"] + 1) % len(batches)
            return fn(batches[state["i"]])
        return call

    calls = {"plain": cycling(lambda x: sess.run(None, {name: x})),
             "plain+decode": cycling(lambda x: decode(sess.run(None, {name: x}), layout, size)),
             "monitored": cycling(monitor.score)}
    timing = interleaved(calls, rounds=rounds, warmup=warmup)
    add_ratios(timing, {"": "plain", "decode": "plain+decode"})
    objects = [len(monitor.score(b).objects) for b in batches]
    n_frames = sum(len(b) for b in batches)
    return {"timing": timing, "objects_per_frame": float(sum(objects) / n_frames), "batch": int(len(batches[0]))}
