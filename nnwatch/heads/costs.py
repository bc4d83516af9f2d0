"""Cost of monitoring a language model, as multiples of a plain prefill measured in the same run.

Each prompt is timed with every path interleaved (:func:`nnwatch.timing.interleaved`,
the harness the classifier benchmarks use); a path's ratio is the median over prompts of its
p50 divided by the plain prefill's p50 on the same prompt. Baselines: a plain torch prefill
(the model's forward with nnwatch's hooks idle), and, given an exported prefill, a plain
onnxruntime prefill of the same graph with every head scale 1, stated as its own baseline.
Every path starts from the prompt text (tokenizing is part of each).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..timing import interleaved
from .language_monitor import LanguageMonitor
from .scores import MASKED

PLAIN = "plain prefill (torch)"
PLAIN_ONNX = "plain prefill (onnxruntime)"
SINGLE_BATCH = "single head, onnxruntime batch of 2"


def monitoring_costs(mon: LanguageMonitor, prompts: Sequence[str], rounds: int = 3, onnx: str | None = None,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """p50 per prompt of a plain prefill and of monitored calls, and their ratios.

    Paths: the plain prefill; the monitor deciding with its default detector alone; the
    monitor running every prefill-cost column; each masked head detector on its own; with
    ``onnx``, the default detector on the onnxruntime prefill, a plain onnxruntime prefill and
    the single head as one onnxruntime batch of 2.

    Parameters
    ----------
    mon : LanguageMonitor
        The monitor (its scorer and detector file are reused).
    prompts : sequence of str
        Prompts to time.
    rounds : int
        Timed rounds per prompt and path.
    onnx : str, optional
        An exported prefill (``nnwatch heads export``).
    progress : callable, optional
        Called with a line per prompt.

    Returns
    -------
    dict
        ``rows`` (key, path, p50_ms, ratio to the torch prefill, ratio to the onnxruntime prefill
        when timed), ``prompts``, ``median_tokens``.
    """
    det = mon.detector
    scorer = mon.scorer
    torch = scorer.torch
    default = f"monitored, default detector ({det.default})"
    monitors = {default: LanguageMonitor(det, scorer, detectors=[det.default], threads=mon.threads),
                "monitored, every prefill detector": LanguageMonitor(det, scorer, threads=mon.threads)}
    keys = {PLAIN: "plain", default: "default", "monitored, every prefill detector": "every_prefill",
            PLAIN_ONNX: "plain_onnxruntime", f"{default}, onnxruntime": "default_onnxruntime",
            SINGLE_BATCH: "head_single_onnxruntime_batch2"}  # stable names the docs select rows by
    for name, sc in det.detectors.items():
        if sc.cost == MASKED:
            masked = f"{len(sc.heads)} head{'s' if len(sc.heads) != 1 else ''} masked"
            monitors[f"monitored, {name} ({masked})"] = LanguageMonitor(
                det, scorer, detectors=[name], decision=name, threads=mon.threads)
            keys[f"monitored, {name} ({masked})"] = name
    ox = None
    if onnx:
        monitors[f"{default}, onnxruntime"] = LanguageMonitor(
            det, scorer, detectors=[det.default], onnx=onnx, threads=mon.threads)
        ox = monitors[f"{default}, onnxruntime"].onnx  # the baseline runs in the monitor's session: same threads
    single = det.detectors.get("head_single")
    per_path: dict[str, list[float]] = {}
    for i, p in enumerate(prompts):
        # Both sides start from the prompt text: the plain prefill tokenizes too.
        calls: dict[str, Callable[[], object]] = {PLAIN: lambda p=p: scorer.plain_prefill(p)}
        calls |= {name: (lambda m=m, p=p: m.score(p)) for name, m in monitors.items()}
        if ox is not None:  # every onnxruntime path tokenizes the prompt too, as the monitor does
            ones = np.ones((1, ox.n_layers, ox.n_heads), np.float32)
            calls[PLAIN_ONNX] = lambda p=p, ones=ones: ox.finals(scorer.encode(p)["input_ids"].numpy(), ones)
            if single is not None:
                calls[SINGLE_BATCH] = \
                    lambda p=p: ox.angles(scorer.encode(p)["input_ids"].numpy(), single.heads)
        with torch.inference_mode():
            res = interleaved(calls, rounds=rounds, warmup=1, settle=0, seed=i)
        for name, r in res.items():
            per_path.setdefault(name, []).append(r["p50_ms"])
        if progress:
            progress(f"prompt {i + 1}/{len(prompts)}: plain {res[PLAIN]['p50_ms']:.0f} ms")
    plain = np.array(per_path[PLAIN])
    rows = []
    for name, v in per_path.items():
        v = np.array(v)
        row = {"key": keys[name], "path": name, "p50_ms": float(np.median(v)), "ratio": float(np.median(v / plain))}
        if PLAIN_ONNX in per_path:
            row["ratio_onnx"] = float(np.median(v / np.array(per_path[PLAIN_ONNX])))
        rows.append(row)
    return {"rows": rows, "prompts": len(prompts),
            "median_tokens": int(np.median([scorer.encode(p)["input_ids"].shape[1] for p in prompts]))}
