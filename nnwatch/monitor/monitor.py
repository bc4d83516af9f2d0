"""The Monitor: one instrumented model + its profile -> verdicts for every input batch."""

from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import numpy as np

from ..errors import BudgetError, InputError, ModelMismatchError, NotFittedError
from ..kernels.accumulate import count_nonfinite_rows
from ..kernels.coverage import SCORE_NAMES, coverage_scores_packed
from ..kernels.decide import COMBINED, argmax_rows, decide
from ..profile.schema import Calibration, Profile
from ..profile.signature import compile_tables, fallback_classes
from ..profile.store import load_profile
from .budget import Budget, LatencyTracker
from .calibrate import ConformalConfidence
from .detector import BatchView, Detector, make_detector
from .detectors import DEFAULT
from .results import Verdicts
from .runner import Runner


_COVERAGE_IDS = {name: i for i, name in enumerate(SCORE_NAMES[:5])} | {"coverage": COMBINED}


class Monitor:
    """Runtime monitor for an instrumented classifier.

    Parameters
    ----------
    model : path, bytes or Runner
        Instrumented ONNX model (``nnwatch instrument`` / ``nnwatch export``), or a Runner
        to share one onnxruntime session between monitors (then ``providers``, ``threads``
        and ``spinning`` are the Runner's).
    profile : Profile or path
        Profile built for this model (refused otherwise).
    detectors : sequence of str
        Detectors to run; see :data:`nnwatch.monitor.detectors.DEFAULT`.
    decision : str
        Detector whose calibrated threshold sets ``flag`` and ``confidence``.
    rare_rate : float or None
        Rarity rate for the coverage tables; default: the one the profile was calibrated
        with, else 0.01.
    min_class_samples : int
        Classes with fewer trusted samples use the global signature.
    providers : "auto", "cpu", "cuda" or list of str
        onnxruntime execution providers.
    threads : int or None
        onnxruntime intra-op threads.
    budget : Budget or None
        Latency/memory budget and over-budget policy.
    parallel : bool
        Use the parallel coverage kernel. Off by default: right after a run, onnxruntime's
        spinning workers hold the cores and a parallel kernel waits for them (measured 10x
        slower than serial on 2 cores). Turn it on for large batches on many cores, ideally
        with ``spinning=False``.
    spinning : bool
        onnxruntime worker spinning (its default, lowest inference latency).
    """

    def __init__(self, model: str | os.PathLike | bytes | Runner, profile: Profile | str | os.PathLike,
                 detectors: Sequence[str] = DEFAULT, decision: str = "coverage", rare_rate: float | None = None,
                 min_class_samples: int = 10, providers: str | Sequence[str] = "auto", threads: int | None = None,
                 budget: Budget | None = None, parallel: bool = False, spinning: bool = True) -> None:
        self.runner = model if isinstance(model, Runner) else Runner(model, providers=providers, threads=threads,
                                                                     spinning=spinning)
        manifest = self.runner.manifest
        if isinstance(profile, Profile):
            if profile.fingerprint != manifest.fingerprint:
                raise ModelMismatchError("this profile was built for another model (fingerprints differ)")
        else:
            profile = load_profile(profile, fingerprint=manifest.fingerprint)
        if profile.header["layer_names"] != manifest.layer_names or profile.layer_sizes != manifest.layer_sizes:
            raise ModelMismatchError(
                f"profile layers {list(zip(profile.header['layer_names'], profile.layer_sizes))} differ from the "
                f"model's taps {list(zip(manifest.layer_names, manifest.layer_sizes))}")
        if profile.n_classes != self.runner.n_classes:
            raise ModelMismatchError(f"profile has {profile.n_classes} classes, the model {self.runner.n_classes}")
        self.profile = profile
        self.manifest = manifest
        cal = profile.calibration
        if rare_rate is None:
            rare_rate = float(profile.header.get("rare_rate", 0.01))
        self.rare_rate = rare_rate
        self.min_class_samples = int(min_class_samples)
        self.fallback_classes = fallback_classes(profile, self.min_class_samples)
        if self.fallback_classes:
            warnings.warn(f"classes {self.fallback_classes} have fewer than {self.min_class_samples} trusted samples "
                          "and use the global signature", stacklevel=2)
        self.tables = compile_tables(profile, rare_rate, self.min_class_samples, warn=False)
        self.runner.set_k_top(self.tables.k_top)
        names = list(dict.fromkeys(detectors))
        if not names:
            raise InputError("detectors is empty; pass at least one detector name")
        if decision not in names:
            names.append(decision)
        self.budget = budget or Budget()
        if self.budget.policy == "degrade" and self.budget.fallback not in names:
            names.append(self.budget.fallback)
        self.detectors: dict[str, Detector] = {}
        for name in names:
            det = make_detector(name)
            try:
                det.fit(profile)
            except NotFittedError as exc:
                if name == decision:
                    raise
                warnings.warn(f"detector {name!r} skipped: {exc}", stacklevel=2)
                continue
            self.detectors[name] = det
        self.decision = decision
        self.parallel = parallel
        self._all = list(self.detectors.items())
        self._cheap = [(n, d) for n, d in self._all if d.cost != "full"]
        # Fused path: every detector is a column of the coverage kernel (or their mean).
        self._fused_ids = None
        if all(n in _COVERAGE_IDS for n in self.detectors) and self.decision in self.detectors:
            self._fused_ids = np.array([_COVERAGE_IDS[n] for n in self.detectors], np.int64)
            self._fused_names = list(self.detectors)
        self.tracker = LatencyTracker(self.budget)
        self._set_calibration(cal)
        self._check_memory()

    # -- calibration -------------------------------------------------------------------------
    def _set_calibration(self, cal: Calibration | None) -> None:
        self.calibration = cal
        self._thresholds: dict[str, np.ndarray] = {}
        self._confidence = None
        self._fallback_confidence = None
        if cal is None:
            return
        for name in self.detectors:
            if name in cal.detectors:
                self._thresholds[name] = cal.thresholds[:, cal.detectors.index(name)]
        if self.decision in cal.detectors:
            self._confidence = ConformalConfidence(cal, self.decision, self.profile.n_classes)
        fallback = self.budget.fallback
        if fallback in cal.detectors and fallback in self.detectors:
            self._fallback_confidence = ConformalConfidence(cal, fallback, self.profile.n_classes)

    def set_calibration(self, cal: Calibration) -> None:
        """Use new thresholds (see :func:`nnwatch.monitor.calibrate`).

        Parameters
        ----------
        cal : Calibration
            Calibration of this monitor's detectors.
        """
        self.profile.calibration = cal
        self._set_calibration(cal)

    @property
    def calibrated(self) -> bool:
        """Whether the decision detector has thresholds."""
        return self.decision in self._thresholds

    # -- memory --------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes of the monitor's own tables and this thread's buffers (not onnxruntime's).

        Returns
        -------
        int
            Bytes.
        """
        total = self.tables.nbytes
        for det in self.detectors.values():
            total += sum(v.nbytes for v in vars(det).values() if isinstance(v, np.ndarray))
        if self.calibration is not None:
            total += self.calibration.scores.nbytes + self.calibration.thresholds.nbytes
        cache = getattr(self.runner._local, "cache", {})
        total += sum(ws.nbytes for ws in cache.values())
        return int(total)

    def _check_memory(self) -> None:
        limit = self.budget.memory_mb
        if limit is None:
            return
        used = self.memory_bytes() / 2**20
        if used > limit:
            msg = f"monitor memory {used:.2f} MiB exceeds the budget of {limit} MiB"
            if self.budget.policy == "raise":
                raise BudgetError(msg)
            warnings.warn(msg, stacklevel=3)

    # -- the hot path --------------------------------------------------------------------------
    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Compile kernels and allocate buffers before the first real input.

        Parameters
        ----------
        batch_sizes : sequence of int
            Batch sizes to prepare.
        """
        shape = tuple(d if d is not None else 1 for d in self.manifest.input_shape)
        for b in batch_sizes:
            self.score(np.zeros((b,) + shape, np.float32), _record=False)

    def score(self, x: object, _record: bool = True) -> Verdicts:
        """Run the model once on a batch and monitor it.

        Parameters
        ----------
        x : array_like
            ``(B, *input_shape)`` numeric batch. NaN/Inf samples are flagged, not refused.

        Returns
        -------
        Verdicts
            Predictions, scores, flags, confidence and timings.

        Raises
        ------
        InputError
            Wrong shape/dtype or empty batch.
        BudgetError
            Over the latency budget under the ``raise`` policy (``exc.verdicts`` holds the result).
        """
        t0 = time.perf_counter()
        arr = self.runner.check_input(x)
        batch = arr.shape[0]
        ws = self.runner.workspace(batch)
        t1 = time.perf_counter()
        # The NaN/Inf check rides along the copy into the bound input buffer when it can.
        counted = self.runner.run(arr, ws, ws.nonfinite)
        t2 = time.perf_counter()
        if counted:
            nonfinite = ws.nonfinite > 0
        elif arr.dtype.kind == "f":
            nonfinite = count_nonfinite_rows(arr) > 0
        else:
            nonfinite = np.zeros(batch, bool)
        degraded = self.tracker.degraded
        if self._fused_ids is not None and not degraded:
            return self._finish(*self._score_fused(ws, nonfinite), nonfinite, self.decision, False,
                                ws, t0, t1, t2, _record)
        view = BatchView(ws.logits, ws.buf, self.runner.offsets, self.tables, ws.scores, ws.scratch, self.parallel)
        dets = self._cheap if degraded else self._all
        scores = {name: det.score(view) for name, det in dets}
        pred = view.pred
        bad = nonfinite.any()
        if bad:
            for values in scores.values():
                values[nonfinite] = np.inf
        flags = {name: scores[name] > thr[pred] for name, thr in self._thresholds.items() if name in scores}
        decision = self.budget.fallback if degraded else self.decision
        flag = flags[decision] | nonfinite if decision in flags else nonfinite.copy()
        confidence_fn = self._fallback_confidence if degraded else self._confidence
        confidence = confidence_fn(scores[decision], pred) if confidence_fn is not None else np.full(batch, np.nan)
        if bad:
            confidence[nonfinite] = 0.0
        return self._finish(pred, scores, flags, flag, confidence, nonfinite, decision, degraded, ws, t0, t1, t2,
                            _record)

    def _score_fused(self, ws, nonfinite):  # type: ignore[no-untyped-def]
        batch = ws.batch
        pred = np.empty(batch, np.int64)
        argmax_rows(ws.logits, pred)
        cov = coverage_scores_packed(ws.buf, batch, pred, self.tables, out=ws.scores, parallel=self.parallel,
                                     scratch=ws.scratch)
        ids = self._fused_ids
        n_det = ids.shape[0]
        thr, has_thr, cal_flat, cal_off = self._fused_tables()
        scores = np.empty((batch, n_det))
        flags = np.empty((batch, n_det), np.bool_)
        flag = np.empty(batch, np.bool_)
        conf = np.empty(batch)
        decide(cov, nonfinite, ids, thr, has_thr, self._fused_names.index(self.decision), cal_flat, cal_off, pred,
               scores, flags, flag, conf)
        names = self._fused_names
        score_d = {n: scores[:, j] for j, n in enumerate(names)}
        flag_d = {n: flags[:, j] for j, n in enumerate(names) if has_thr[j]}
        return pred, score_d, flag_d, flag, conf

    def _fused_tables(self):  # type: ignore[no-untyped-def]
        cached = getattr(self, "_fused_cache", None)
        if cached is not None and cached[0] is self.calibration:
            return cached[1]
        names = self._fused_names
        n_rows = self.profile.n_classes + 1
        thr = np.zeros((n_rows, len(names)))
        has_thr = np.array([n in self._thresholds for n in names], np.bool_)
        for j, n in enumerate(names):
            if has_thr[j]:
                thr[:, j] = self._thresholds[n]
        if self._confidence is not None:
            parts = self._confidence._sorted
            cal_off = np.zeros(len(parts) + 1, np.int64)
            np.cumsum([len(p) for p in parts], out=cal_off[1:])
            cal_flat = np.concatenate(parts).astype(np.float64)
        else:
            cal_off = np.zeros(0, np.int64)
            cal_flat = np.zeros(0)
        tables = (thr, has_thr, cal_flat, cal_off)
        self._fused_cache = (self.calibration, tables)
        return tables

    def _finish(self, pred, scores, flags, flag, confidence, nonfinite, decision, degraded, ws,  # type: ignore[no-untyped-def]
                t0, t1, t2, _record):
        t3 = time.perf_counter()
        infer_ms = (t2 - t1) * 1e3
        monitor_ms = ((t1 - t0) + (t3 - t2)) * 1e3
        over = self.tracker.record(infer_ms, monitor_ms) if _record else False
        verdicts = Verdicts(
            pred=pred, logits=ws.logits.copy(), scores=scores, flags=flags, flag=flag, confidence=confidence,
            nonfinite_input=nonfinite, decision=decision,
            timings={"infer_ms": infer_ms, "monitor_ms": monitor_ms, "total_ms": infer_ms + monitor_ms},
            over_budget=over, degraded=degraded,
        )
        if over and self.budget.policy == "raise":
            err = BudgetError(f"monitored call took {infer_ms + monitor_ms:.3f} ms, over the "
                              f"{self.budget.latency_ms} ms budget")
            err.verdicts = verdicts  # type: ignore[attr-defined]
            raise err
        return verdicts

    __call__ = score

    def stats(self) -> dict[str, float]:
        """Latency percentiles, overrun counts and memory.

        Returns
        -------
        dict
            See :meth:`LatencyTracker.stats`, plus ``memory_mb``.
        """
        out = self.tracker.stats()
        out["memory_mb"] = self.memory_bytes() / 2**20
        return out
