"""Latency and memory budgets: ring-buffer percentiles and the over-budget policy.

Policies (what happens when a monitored call takes longer than ``latency_ms``, or the
monitor's own memory exceeds ``memory_mb``):

- ``"report"`` (default): the verdict says ``over_budget=True``; counters and percentiles in
  :meth:`Monitor.stats` show it. Nothing else changes.
- ``"degrade"``: as report, and the next ``recover_after`` calls skip the activation-based
  detectors (coverage, Mahalanobis) and decide with the ``fallback`` logit detector; then
  full monitoring is tried again. Verdicts say ``degraded=True``.
- ``"raise"``: the call raises :class:`BudgetError` carrying the verdicts (``exc.verdicts``).

No policy ever waits or blocks: the check happens after the work is done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..errors import BudgetError, InputError

POLICIES = ("report", "degrade", "raise")


@dataclass(frozen=True)
class Budget:
    """What the caller can afford.

    Attributes
    ----------
    latency_ms : float or None
        Budget for one monitored call (inference + monitoring), milliseconds.
    memory_mb : float or None
        Budget for the monitor's own tables and buffers, MiB.
    policy : str
        One of :data:`POLICIES`.
    fallback : str
        Detector that decides while degraded.
    recover_after : int
        Calls spent degraded before full monitoring is tried again.
    window : int
        Calls kept in the latency ring buffer.
    """

    latency_ms: float | None = None
    memory_mb: float | None = None
    policy: str = "report"
    fallback: str = "energy"
    recover_after: int = 100
    window: int = 2048

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InputError(f"budget policy must be one of {POLICIES}, got {self.policy!r}")
        for name in ("latency_ms", "memory_mb"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(f"{name} must be positive, got {value}")
        if self.window < 1 or self.recover_after < 0:
            raise InputError("window must be >= 1 and recover_after >= 0")


def over_budget_error(verdicts: object, budget: Budget) -> BudgetError:
    """The ``raise`` policy's exception for a call over the latency budget, carrying its verdicts.

    Parameters
    ----------
    verdicts : Verdicts
        The call's result (``exc.verdicts``).
    budget : Budget
        The budget.

    Returns
    -------
    BudgetError
        To raise.
    """
    took = verdicts.timings["total_ms"]  # type: ignore[attr-defined]
    err = BudgetError(f"monitored call took {took:.3f} ms, over the {budget.latency_ms} ms budget")
    err.verdicts = verdicts  # type: ignore[attr-defined]
    return err


class LatencyTracker:
    """Thread-safe ring buffer of per-call timings, and the degrade state.

    Parameters
    ----------
    budget : Budget
        The budget to track.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        # Python lists: one item set per call costs a fraction of a numpy scalar store.
        self._infer = [0.0] * budget.window
        self._monitor = [0.0] * budget.window
        self._n = 0
        self.overruns = 0
        self.calls = 0
        self._degraded_left = 0

    def record(self, infer_ms: float, monitor_ms: float) -> bool:
        """Add one call's timings.

        Parameters
        ----------
        infer_ms : float
            onnxruntime time.
        monitor_ms : float
            Time nnwatch added (checks, reductions, kernels, detectors).

        Returns
        -------
        bool
            Whether the call was over the latency budget.
        """
        over = self.budget.latency_ms is not None and infer_ms + monitor_ms > self.budget.latency_ms
        with self._lock:
            i = self._n % self.budget.window
            self._infer[i] = infer_ms
            self._monitor[i] = monitor_ms
            self._n += 1
            self.calls += 1
            if over:
                self.overruns += 1
                if self.budget.policy == "degrade":
                    self._degraded_left = self.budget.recover_after
            elif self._degraded_left > 0:
                self._degraded_left -= 1
        return over

    @property
    def degraded(self) -> bool:
        """Whether the next call should skip the activation-based detectors."""
        return self._degraded_left > 0

    def stats(self) -> dict[str, float]:
        """Percentiles over the ring buffer.

        Returns
        -------
        dict
            calls, overruns, and p50/p99 of infer_ms, monitor_ms, total_ms.
        """
        with self._lock:
            n = min(self._n, self.budget.window)
            infer = np.array(self._infer[:n])
            mon = np.array(self._monitor[:n])
            out: dict[str, float] = {"calls": float(self.calls), "overruns": float(self.overruns),
                                     "degraded": float(self.degraded)}
        if n == 0:
            return out
        for name, arr in (("infer_ms", infer), ("monitor_ms", mon), ("total_ms", infer + mon)):
            out[f"{name}_p50"] = float(np.percentile(arr, 50))
            out[f"{name}_p99"] = float(np.percentile(arr, 99))
        return out
