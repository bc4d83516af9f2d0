"""One timing harness: variants called interleaved, percentiles and ratios from the same run.

Interleaving (each round calls every variant once) makes the ratios between variants robust
to a shared machine's load drifting during the measurement. The order is shuffled every
round and each timed call follows one untimed call of the same variant: a call that comes
right after another model's call runs on caches that model filled (with a fixed rotating
order, MobileNetV3's monitored call measured faster than its tapped-only call, which always
followed another session), and a fixed order hands that penalty to the same variants. Settled calls measure what a loop running one model sees.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from .errors import InputError


def interleaved(calls: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 3,
                budget_s: float | None = None, settle: int = 1, seed: int = 0) -> dict[str, dict[str, float]]:
    """Time each call once per round, in a shuffled order, after ``settle`` untimed calls of it.

    Parameters
    ----------
    calls : mapping
        name -> zero-argument callable.
    rounds : int
        Timed rounds (>= 1).
    warmup : int
        Untimed rounds first.
    budget_s : float, optional
        Stop early (after at least 5 timed rounds) once this much wall time has passed.
    settle : int
        Untimed calls of a variant right before each of its timed calls (warm caches).
    seed : int
        Seed of the per-round order.

    Returns
    -------
    dict
        name -> ``p50_ms``, ``p99_ms``, ``mean_ms``, ``n``.

    Raises
    ------
    InputError
        No calls, or ``rounds < 1``.
    """
    names = list(calls)
    if not names or int(rounds) < 1 or int(warmup) < 0:
        raise InputError(f"need at least one call and rounds >= 1 (got {len(names)} calls, {rounds} rounds)")
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for r in range(int(warmup) + int(rounds)):
        for k in rng.permutation(len(names)):
            n = names[k]
            for _ in range(int(settle)):
                calls[n]()
            t = time.perf_counter()
            calls[n]()
            if r >= warmup:
                times[n].append(time.perf_counter() - t)
        if budget_s is not None and r >= warmup + 5 and time.perf_counter() - start > budget_s:
            break
    return {n: {"p50_ms": float(np.percentile(v, 50) * 1e3), "p99_ms": float(np.percentile(v, 99) * 1e3),
                "mean_ms": float(np.mean(v) * 1e3), "n": len(v)} for n, v in times.items()}


def add_ratios(results: dict[str, dict[str, Any]], baselines: Mapping[str, str]) -> None:
    """Add ``ratio_p50[_suffix]`` / ``ratio_p99[_suffix]`` of every variant to each baseline.

    Parameters
    ----------
    results : dict
        Output of :func:`interleaved` (modified in place).
    baselines : mapping
        suffix -> baseline variant name; the suffix ``""`` gives ``ratio_p50``.
    """
    for suffix, base in baselines.items():
        b = results[base]
        tail = f"_{suffix}" if suffix else ""
        for v in results.values():
            v[f"ratio_p50{tail}"] = v["p50_ms"] / b["p50_ms"]
            v[f"ratio_p99{tail}"] = v["p99_ms"] / b["p99_ms"]
