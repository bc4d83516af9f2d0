"""Helpers shared by the benchmark scripts: timing, machine record, JSON + markdown output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from nnwatch.eval.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 3,
                budget_s: float | None = None) -> dict[str, dict[str, float]]:
    """Time each call once per round, rotating the order; p50/p99/mean in ms.

    Interleaving makes the ratios between variants robust to the machine's load drifting.
    """
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            t = time.perf_counter()
            calls[n]()
            if r >= warmup:
                times[n].append(time.perf_counter() - t)
        if budget_s is not None and r >= warmup + 5 and time.perf_counter() - start > budget_s:
            break
    return {n: {"p50_ms": float(np.percentile(v, 50) * 1e3), "p99_ms": float(np.percentile(v, 99) * 1e3),
                "mean_ms": float(np.mean(v) * 1e3), "n": len(v)} for n, v in times.items()}


def write(name: str, data: dict, markdown: str,
          note: str = "Ratios are measured in the same run (interleaved).") -> None:
    """Write results/<name>.json and results/<name>.md with machine, date, git revision and command."""
    RESULTS.mkdir(exist_ok=True)
    data = {**provenance(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    m, g = data["machine"], data["git"]
    header = (f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, onnxruntime {m['onnxruntime']}, "
              f"numba {m['numba']}; run {data['date']} at git {g['revision'][:10]}{' (with local edits)' if g['dirty'] else ''}"
              f" by `{data['command']}`. {note}\n\n")
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    print(header + markdown)
