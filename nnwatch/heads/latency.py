"""Cost of each head-score path as a multiple of one plain prefill, measured interleaved."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np


def _p50(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure_overhead(scorer: Any, det: Any, prompts: Sequence[str], repeats: int = 3,
                     onnx: str | None = None) -> dict[str, Any]:
    """p50 latency per prompt of each path, and its ratio to a plain prefill of the same prompt.

    Paths: plain prefill (hooks idle); single head with shared lower layers; single head as a
    batch-of-2 full pass (the reference two-pass method); ensemble with shared layers; and,
    given an exported ONNX prefill, the ONNX batch-of-2 pass.

    Parameters
    ----------
    scorer : TorchHeadScorer
        Scorer.
    det : HeadDetector
        Fitted detector.
    prompts : sequence of str
        Prompts to time.
    repeats : int
        Timed runs per prompt and path (after one warm-up).
    onnx : str, optional
        Path of an ONNX prefill exported by :func:`nnwatch.heads.onnx_backend.export_prefill`.

    Returns
    -------
    dict
        ``rows`` (path, p50_ms, ratio), ``prompts``, ``median_tokens``.
    """
    torch = scorer.torch
    single = det.variants["single"].heads
    paths: dict[str, Callable[[str], Any]] = {
        "plain prefill": lambda p: scorer._forward(scorer.encode(p), {}, capture=False),
        "single head, shared lower layers": lambda p: scorer.angles(p, single),
        "single head, two passes as one batch of 2": lambda p: scorer.angles_two_pass(p, single),
    }
    if "ensemble" in det.variants:
        heads = det.variants["ensemble"].heads
        paths[f"ensemble of {len(heads)} heads, shared lower layers"] = lambda p: scorer.angles(p, heads)
        paths[f"ensemble of {len(heads)} heads, one batch of {len(heads) + 1}"] = \
            lambda p: scorer.angles_two_pass(p, heads)
    diffs = []
    if onnx:
        from .onnx_backend import OnnxHeadScorer

        ox = OnnxHeadScorer(onnx)
        paths["ONNX Runtime, batch of 2 (single head)"] = lambda p: ox.angles(scorer.encode(p)["input_ids"].numpy(),
                                                                               single)
        for p in prompts:
            diffs.append(float(np.abs(ox.angles(scorer.encode(p)["input_ids"].numpy(), single)
                                      - scorer.angles(p, single)).max()))
    per_path: dict[str, list[float]] = {k: [] for k in paths}
    with torch.inference_mode():
        for p in prompts:
            for fn in paths.values():
                fn(p)  # warm-up
            for name, fn in paths.items():  # interleaved: the same prompt, back to back
                per_path[name].append(_p50(lambda: fn(p), repeats))
    plain = np.array(per_path["plain prefill"])
    rows = [{"path": k, "p50_ms": 1e3 * float(np.median(v)), "ratio": float(np.median(np.array(v) / plain))}
            for k, v in per_path.items()]
    out: dict[str, Any] = {"rows": rows, "prompts": len(prompts),
                           "median_tokens": int(np.median([scorer.encode(p)["input_ids"].shape[1] for p in prompts]))}
    if diffs:
        out["onnx_max_angle_diff"] = max(diffs)
    return out
