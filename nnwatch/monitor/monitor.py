"""The Monitor: one instrumented model + its profile -> verdicts for every input batch.

Per call: one onnxruntime run writes the logits and the joined taps into bound buffers; one
compiled call (:mod:`nnwatch.kernels.verdict`) predicts, scores every compiled column
(coverage, logits, Mahalanobis), applies the conformal calibration and the fused verdict,
decides, and advances an attached stream. Detectors written in Python, when chosen, run
between the compiled pass's two stages and fill their columns of the score matrix.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any, Sequence

import numpy as np

from ..calibration.fused_verdict import FUSED, compile_fusion
from ..calibration.groups import check_settings, compile_conformal
from .._validate import short_list
from ..errors import BudgetError, InputError, ModelMismatchError, NotFittedError
from ..kernels.accumulate import count_nonfinite_rows
from ..kernels.verdict import (NO_STREAM, SOURCE_DETECTOR, SOURCE_MAHALANOBIS, STAGE_ALL, STAGE_DECIDE,
                               STAGE_SCORES, VerdictPlan, VerdictTables, verdict_pass)
from ..profile.schema import Calibration, Profile, channel_moments, channel_stats, merge_channel_stats
from ..profile.signature import compact_by_default, compile_compact_tables, compile_tables, fallback_classes
from ..profile.store import load_profile
from .budget import Budget, LatencyTracker, over_budget_error
from .detector import BatchView, Detector
from .detectors import COMPILED, DEFAULT
from .registry import make_detector, parse_detector_spec
from .results import StreamUpdate, Verdicts
from .runner import Runner, Workspace

_ALL, _CHEAP = 0, 1  # indices of the active-column masks
ENGINES = ("compiled", "graph")
_INPUT_CHECKS = 32  # calls whose raw inputs are compared with the profile's (then the check stops)
_CHANNEL_SAMPLES = 16  # live samples pooled before their channel statistics are compared with the profile's
_CHANNEL_Z, _CHANNEL_RATIO = 0.75, 2.0  # warn: a mean this many training SDs away, or an SD off by this factor


class InputRangeWarning(UserWarning):
    """Live inputs lie far outside the range of the inputs the profile was built on."""


def default_detectors(profile: Profile) -> tuple[str, ...]:
    """What a monitor runs when not told: the fused verdict's compiled columns and members once the
    profile's calibration has one, else :data:`nnwatch.monitor.detectors.DEFAULT`.

    Parameters
    ----------
    profile : Profile
        The profile (and its calibration, if any).

    Returns
    -------
    tuple of str
        Detector names.
    """
    cal = profile.calibration
    errors = (cal.errors["detector"],) if cal is not None and cal.errors is not None else ()
    if cal is not None and cal.fusion is not None:
        return tuple(dict.fromkeys(COMPILED + tuple(cal.fusion["members"]) + (FUSED,) + errors))
    return tuple(dict.fromkeys(DEFAULT + errors))


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
    detectors : sequence of str or Detector, or None
        Detectors to run: registered names, with parameters if wanted (``"react"``,
        ``"react:percentile=95"``, see :func:`nnwatch.monitor.registry.parse_detector_spec`), or
        :class:`Detector` instances (``make_detector("ash", variant="b")`` or a user's own
        class), which the monitor fits. A bare name takes the parameters recorded with the
        profile's calibration, if any. None: :data:`nnwatch.monitor.detectors.DEFAULT`; once the
        profile's calibration has a fused verdict, its compiled columns, the fused verdict and
        its members (Python detectors outside the fusion are not run).
    decision : str
        Detector whose calibrated flag and p-value set ``flag`` and ``confidence``. "auto":
        the fused verdict when the calibration has one over detectors this monitor runs
        (:mod:`nnwatch.calibration.fused_verdict`), else ``coverage`` (else the first detector).
    rare_rate : float or None
        Rarity rate for the coverage tables; default: the calibration's, else the
        profile's, else 0.01.
    min_signature_samples : int or None
        Classes with fewer trusted profile samples use the global signature; default: the
        calibration's, else 10.
    providers : "auto", "cpu", "cuda" or list of str
        onnxruntime execution providers.
    threads : int or None
        onnxruntime intra-op threads.
    budget : Budget or None
        Latency/memory budget and over-budget policy.
    parallel : bool
        Use the parallel coverage kernel. Off by default: right after a run, onnxruntime's
        spinning workers hold the cores and a parallel kernel waits for them. Turn it on for
        large batches on many cores, ideally with ``spinning=False``.
    spinning : bool
        onnxruntime worker spinning (its default, lowest inference latency).
    compact_tables : bool or None
        Score against compact tables (6 bytes per class and neuron; ranges rounded outward to
        1/65,535 of each neuron's range, :mod:`nnwatch.kernels.compact`) instead of the full
        ones. Default: the calibration's choice, else compact when the full tables would
        exceed 32 MiB (e.g. 1,000 classes).
    engine : {"compiled", "graph"}
        Where the verdict is computed. ``compiled``: one Numba call after onnxruntime's (float64;
        detectors written in Python, the degrade policy). ``graph``: inside the model's own
        onnxruntime call, as standard ONNX operators (:mod:`nnwatch.graphs`, needs the
        ``compile`` extra and a calibrated profile; float32, so p-values agree to float32
        rounding and flags everywhere but at near-ties, see :mod:`nnwatch.graphs.verdict_graph`).
        Never chosen by timing: ``nnwatch bench`` measures both.
    explain : bool
        Each flagged input's :attr:`Verdicts.explanations` entry says why: the fused verdict's
        members and their share of its evidence, and the layers and neurons furthest outside
        the predicted class's profile (:mod:`nnwatch.monitor.explain`). Computed for flagged
        inputs only; off: no cost at all. Compiled engine only.

    Raises
    ------
    ModelMismatchError
        The profile, or its calibration, does not fit this model and these settings.
    """

    def __init__(self, model: str | os.PathLike | bytes | Runner, profile: Profile | str | os.PathLike,
                 detectors: Sequence[str | Detector] | None = None, decision: str = "auto", rare_rate: float | None = None,
                 min_signature_samples: int | None = None, providers: str | Sequence[str] = "auto",
                 threads: int | None = None, budget: Budget | None = None, parallel: bool = False,
                 spinning: bool = True, compact_tables: bool | None = None, engine: str = "compiled",
                 explain: bool = False) -> None:
        if engine not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}, got {engine!r}")
        if explain and engine == "graph":
            raise InputError("explain=True needs the activations on the host; the graph engine keeps them inside "
                             "the model's call: use engine='compiled' to explain flags")
        self.explain = bool(explain)
        self._explainer: Any = None
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
        recorded = cal.settings if cal is not None else {}
        if rare_rate is None:
            rare_rate = float(recorded.get("rare_rate", profile.header.get("rare_rate", 0.01)))
        if min_signature_samples is None:
            min_signature_samples = int(recorded.get("min_signature_samples", 10))
        self.rare_rate = float(rare_rate)
        self.min_signature_samples = int(min_signature_samples)
        self.fallback_classes = fallback_classes(profile, self.min_signature_samples)
        if self.fallback_classes:
            warnings.warn(f"classes {short_list(self.fallback_classes)} have fewer than {self.min_signature_samples} trusted "
                          "samples and use the global signature", stacklevel=2)
        if compact_tables is None:
            compact_tables = recorded.get("compact_tables")
        if compact_tables is None:
            compact_tables = compact_by_default(profile)
        self.compact_tables = bool(compact_tables)
        compile_ = compile_compact_tables if self.compact_tables else compile_tables
        self._coverage_tables = compile_(profile, self.rare_rate, self.min_signature_samples, warn=False)
        self.budget = budget or Budget()
        self.requested_decision = decision
        if detectors is None:
            detectors = default_detectors(profile)
        self.detectors = self._fit_detectors(detectors, decision, profile, recorded.get("detector_params", {}))
        self.parallel = parallel
        self.columns = tuple(self.detectors)
        dets = list(self.detectors.values())
        self._sources = np.array([SOURCE_DETECTOR if d.compiled_source is None else d.compiled_source for d in dets],
                                 np.int64)
        self._python = [(j, d) for j, d in enumerate(dets) if d.compiled_source is None]
        self._python_cheap = [(j, d) for j, d in self._python if d.cost != "full"]
        self._masks = [np.ones(len(dets), np.bool_), np.array([d.cost != "full" for d in dets], np.bool_)]
        for m in self._masks:
            m.flags.writeable = False  # shared with every Verdicts as ``active``: nobody may write to it
        maha = [d for d in dets if d.compiled_source == SOURCE_MAHALANOBIS]
        self._mahalanobis = maha[0].compiled_model(self.runner.offsets) if maha else None
        self._fallback_col = self.columns.index(self.budget.fallback) if self.budget.fallback in self.detectors else -1
        self._local = threading.local()
        self._stream_lock = threading.Lock()
        self.tracker = LatencyTracker(self.budget)
        self._input_checks = _INPUT_CHECKS if profile.header.get("input_stats", {}) else 0
        self._channels_seen: dict[str, Any] | None = {} if profile.header.get("input_channel_stats") else None
        self._channel_samples = 0
        self.engine = engine
        self._graph = None
        self._set_calibration(cal)  # packs the tables (and builds the graph engine's model)
        self._check_memory()

    def _fit_detectors(self, detectors: Sequence[str | Detector], decision: str, profile: Profile,
                       recorded: dict[str, dict]) -> dict[str, Detector]:
        if isinstance(detectors, (str, Detector)):
            detectors = [detectors]
        given: dict[str, Detector] = {}
        for item in detectors:
            if isinstance(item, Detector):
                det = item
            elif isinstance(item, str):
                name, params = parse_detector_spec(item)
                # a bare name takes the parameters its calibration was made with, so a saved monitor reloads
                det = make_detector(name, **(params or recorded.get(name, {})))
            else:
                raise InputError(f"detectors holds {item!r}; give detector names ('react', 'react:percentile=95') "
                                 "or Detector instances")
            if det.name in given and given[det.name].params() == det.params() and not isinstance(item, Detector):
                continue  # the same name twice: run it once
            if det.name in given:
                raise InputError(f"detector {det.name!r} is given twice; a monitor runs each detector once, with one set of "
                                 "parameters")
            given[det.name] = det
        if not given:
            raise InputError("detectors is empty; pass at least one detector name")
        for name in ([decision] if decision != "auto" else []) + (
                [self.budget.fallback] if self.budget.policy == "degrade" else []):
            if name not in given:
                given[name] = make_detector(name, **recorded.get(name, {}))
        fitted: dict[str, Detector] = {}
        for name, det in given.items():
            det.with_head(self.runner.head)
            try:
                det.fit(profile)
            except NotFittedError as exc:
                if name == decision:
                    raise
                warnings.warn(f"detector {name!r} skipped: {exc}", stacklevel=3)
                continue
            fitted[name] = det
        if self.budget.policy == "degrade" and fitted[self.budget.fallback].cost == "full":
            raise InputError(f"budget fallback {self.budget.fallback!r} reads activations; a degraded monitor can only "
                             "decide with a logit detector (msp, max_logit, energy)")
        return fitted

    # -- calibration -------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """What this monitor's scores depend on; recorded with a calibration and checked against it."""
        return {"rare_rate": self.rare_rate, "min_signature_samples": self.min_signature_samples,
                "compact_tables": self.compact_tables,
                "profile_digest": self.profile.digest(),
                "detector_params": {n: d.params() for n, d in self.detectors.items()}}

    def _set_calibration(self, cal: Calibration | None) -> None:
        conformal = cal_row = fusion = None
        wanted = self.requested_decision
        if cal is not None:
            check_settings(cal, self.settings)
            if FUSED in self.columns and cal.fusion is not None:
                try:
                    fusion = compile_fusion(cal, self.columns, self.profile.n_classes)
                except ModelMismatchError as exc:
                    if wanted == FUSED:
                        raise
                    warnings.warn(f"fused verdict unavailable: {exc}", stacklevel=3)
            if wanted not in ("auto", FUSED) and wanted not in cal.detectors:
                raise ModelMismatchError(f"decision detector {wanted!r} is not calibrated (calibrated: "
                                         f"{cal.detectors}); choose one of those or calibrate again")
            conformal, cal_row = compile_conformal(cal, self.columns, self.profile.n_classes)  # fused: never in cal
        if wanted == FUSED and fusion is None:
            raise ModelMismatchError("decision 'fused' needs a calibration with a fused verdict over this monitor's "
                                     "detectors (nnwatch calibrate)")
        if wanted == "auto":
            calibrated = [c for c in self.columns if cal is not None and c in cal.detectors]
            if fusion is not None:
                wanted = FUSED
            elif "coverage" in self.columns and (cal is None or "coverage" in calibrated):
                wanted = "coverage"
            else:
                wanted = calibrated[0] if calibrated else self.columns[0]
        self.decision = wanted
        self._decision_col = self.columns.index(wanted)
        self.calibration = cal
        self._conformal = conformal
        self._fusion = fusion
        self._cal_row = cal_row
        calibrated = cal_row >= 0 if cal_row is not None else np.zeros(len(self.columns), np.bool_)
        if fusion is not None:
            calibrated[self.columns.index(FUSED)] = True
        calibrated.flags.writeable = False  # shared with every Verdicts: nobody may write to it
        self._calibrated_cols = calibrated
        self._stream = None  # a stream follows one calibration: a new one detaches it
        self._pack()

    def _pack(self) -> None:
        """Pack everything the compiled pass reads; every thread rebuilds its plans on its next call."""
        self._verdict = VerdictTables(self.runner.n_classes, self.runner.n_neurons, self.runner.offsets, self._sources,
                                      self._masks, self._coverage_tables, self._conformal, self._cal_row, self._fusion,
                                      self._mahalanobis)
        # the compiled signature now lives in the packed arrays: keep views of them, not a second copy
        self._coverage_tables = self._verdict.coverage or self._coverage_tables
        self._generation = getattr(self, "_generation", 0) + 1
        if self.engine == "graph":  # the graph holds the tables as initializers: build it again
            from .graph_engine import GraphEngine

            self._graph = GraphEngine(self)

    @property
    def verdict_tables(self) -> VerdictTables:
        """Everything the verdict reads besides the batch, packed (``.spec``: as given)."""
        return self._verdict

    @property
    def graph_model(self) -> bytes | None:
        """The serialized ONNX model the graph engine runs (model, taps and verdict); None with the compiled engine."""
        return None if self._graph is None else self._graph.model

    @property
    def tables(self) -> Any:
        """The compiled coverage signature (CoverageTables or CompactTables) the monitor scores with."""
        return self._coverage_tables

    @tables.setter
    def tables(self, tables: Any) -> None:
        self._coverage_tables = tables
        self._pack()

    def set_calibration(self, cal: Calibration) -> None:
        """Use a new calibration (see :func:`nnwatch.calibration.calibrate.calibrate`).

        Parameters
        ----------
        cal : Calibration
            Calibration of this monitor's detectors, made under this monitor's settings.

        Raises
        ------
        ModelMismatchError
            The calibration was made under other settings or does not cover the decision.
        """
        self._set_calibration(cal)
        self.profile.calibration = cal

    @property
    def conformal_tables(self) -> Any:
        """The compiled calibration (``ConformalTables``), or None when not calibrated."""
        return self._conformal

    def calibration_reference(self, column: str) -> tuple[list[np.ndarray], np.ndarray]:
        """The clean calibration scores a column's p-values are computed against, per group.

        Parameters
        ----------
        column : str
            A calibrated column (``fused``: the fused statistic of the fusion half).

        Returns
        -------
        tuple
            ``(sorted scores of each calibration group, int64 (C,) group of each class)``.

        Raises
        ------
        NotFittedError
            The column is not calibrated.
        """
        if column not in self.columns or not self._calibrated_cols[self.columns.index(column)]:
            raise NotFittedError(f"column {column!r} is not calibrated in this monitor")
        if column == FUSED:
            tables, row = self._fusion[1], 0
        else:
            tables, row = self._conformal, int(self._cal_row[self.columns.index(column)])
        blocks = sorted(set(zip(tables.starts.tolist(), tables.ends.tolist())))
        group_of = np.array([blocks.index(b) for b in zip(tables.starts.tolist(), tables.ends.tolist())], np.int64)
        return [tables.ref[row, lo:hi].copy() for lo, hi in blocks], group_of

    def decision_thresholds(self) -> np.ndarray | None:
        """Per-class score thresholds of the decision column (flag when score > threshold).

        Returns
        -------
        numpy.ndarray or None
            float64 ``(C,)``, +inf where a group is too small to flag; None when uncalibrated.
        """
        if not self.calibrated:
            return None
        if self.decision == FUSED:
            return self._fusion[1].thresholds()[:, 0]
        return self._conformal.thresholds()[:, int(self._cal_row[self._decision_col])]

    @property
    def calibrated(self) -> bool:
        """Whether the decision detector has a calibration."""
        return bool(self._calibrated_cols[self._decision_col])

    # -- memory --------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes of the monitor's own tables and this thread's buffers (not onnxruntime's).

        Returns
        -------
        int
            Bytes.
        """
        total = self._verdict.nbytes  # the coverage tables are views into it
        for det in self.detectors.values():
            total += sum(v.nbytes for v in vars(det).values() if isinstance(v, np.ndarray))
        if self._conformal is not None:
            total += self._conformal.nbytes
        if self._fusion is not None:
            total += self._fusion[0].nbytes + self._fusion[1].nbytes
        total += self.runner.workspace_bytes()
        plans = getattr(self._local, "plans", None) or {}
        total += sum(entry[2].nbytes for entry in plans.values())
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

    def _check_input_range(self, arr: np.ndarray) -> None:
        # The most common silent mistake: inputs scaled unlike the training data (0-255 images
        # for a model trained on 0-1). Only the first calls are checked; the hot path stays flat.
        self._input_checks -= 1
        stats = self.profile.header["input_stats"]
        if not stats.get("count"):
            self._input_checks = 0
            return
        lo, hi = stats["min"], stats["max"]
        width = max(hi - lo, 1e-12)
        with np.errstate(invalid="ignore"):
            got_lo, got_hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if np.isfinite(got_lo) and np.isfinite(got_hi) and (got_lo < lo - 5 * width or got_hi > hi + 5 * width):
            self._input_checks = 0
            warnings.warn(f"inputs range over [{got_lo:.4g}, {got_hi:.4g}], far outside the profile's training inputs "
                          f"[{lo:.4g}, {hi:.4g}]: scale them as in training (e.g. x / 255 for 0-255 images); "
                          "otherwise nearly everything is flagged", InputRangeWarning, stacklevel=3)
            return
        if self._channels_seen is not None:
            self._check_channels(arr)

    def _check_channels(self, arr: np.ndarray) -> None:
        # Inside the training range but normalized otherwise (a missing mean/std, 0-1 for a
        # model trained on -1..1): the per-channel mean and spread give it away. Pooled over
        # the first samples, compared once.
        self._channels_seen = merge_channel_stats(self._channels_seen, channel_stats(arr))
        self._channel_samples += arr.shape[0]
        if self._channels_seen is None or (self._channel_samples < _CHANNEL_SAMPLES and self._input_checks > 0):
            return
        seen, self._channels_seen = self._channels_seen, None  # compared once
        ref = self.profile.header["input_channel_stats"]
        if seen.get("axis") != ref["axis"] or len(seen["count"]) != len(ref["count"]):
            return
        (m_ref, s_ref), (m_now, s_now) = channel_moments(ref), channel_moments(seen)
        with np.errstate(invalid="ignore", divide="ignore"):
            z, ratio = np.abs(m_now - m_ref) / s_ref, s_now / s_ref
        off = (z > _CHANNEL_Z) | (ratio > _CHANNEL_RATIO) | (ratio < 1 / _CHANNEL_RATIO)
        if np.any(off & (s_ref > 0)):
            fmt = lambda v: "[" + ", ".join(f"{a:.3g}" for a in v) + "]"  # noqa: E731
            warnings.warn(f"inputs look normalized otherwise than the profile's training inputs: per-channel mean "
                          f"{fmt(m_now)} and standard deviation {fmt(s_now)} over the first {self._channel_samples} "
                          f"samples, against {fmt(m_ref)} and {fmt(s_ref)} in training; apply the training "
                          "preprocessing (scale, mean, std: --preprocess for recordings), otherwise most inputs are "
                          "flagged", InputRangeWarning, stacklevel=4)

    def plan(self, batch: int) -> tuple[Workspace, VerdictPlan]:
        """The calling thread's buffers and compiled call for a batch size (built on first use).

        Parameters
        ----------
        batch : int
            Batch size.

        Returns
        -------
        tuple
            ``(runner Workspace, VerdictPlan)``, bound to each other.
        """
        entry = self._entry(batch)
        return entry[0], entry[2]

    def _entry(self, batch: int) -> tuple:
        # (runner workspace, generation, plan, the plan's checked arrays, whether to run it directly)
        plans = getattr(self._local, "plans", None)
        if plans is None:
            plans = self._local.plans = {}
        entry = plans.get(batch)
        if entry is not None and entry[1] == self._generation:
            return entry  # the plan keeps its workspace's buffers and binding alive
        ws = self.runner.workspace(batch)
        if entry is None or entry[0] is not ws or entry[1] != self._generation:
            # The pass counts input NaN/Inf itself where every call copies into the bound buffer.
            bound = ws.binding is not None and ws.inputs is not None and ws.inputs.dtype == np.float32 \
                and self.runner.static_input_shape is not None
            plan = VerdictPlan(self._verdict, batch, ws.logits, ws.buf, ws.inputs if bound else None)
            args = plan.validate(_ALL, self._decision_col)
            if self._fallback_col >= 0:
                plan.validate(_CHEAP, self._fallback_col)
            # The common case, on a CPU: copy into the bound input, one run writes logits and joined taps.
            direct = bound and self.manifest.joined is not None and ws.device_input is None
            plans.pop(batch, None)
            while len(plans) >= self.runner.max_workspaces:  # as many as the runner keeps buffers for
                plans.pop(next(iter(plans)))
            entry = plans[batch] = (ws, self._generation, plan, args, direct)
        return entry

    def counted_costs(self) -> tuple[dict[str, int], int | None]:
        """Per-sample multiply-adds of each detector a fusion's cost budget applies to, and the model's.

        The detectors written in Python and the compiled columns whose cost grows with the model
        (``timed_alone``: Mahalanobis), counted by :meth:`Detector.ops`; the model's own count is
        the one recorded when it was instrumented (None for a model instrumented before that).
        Counts, not timings: two calibrations on the same data choose the same members.

        Returns
        -------
        tuple
            ``(detector -> multiply-adds, model multiply-adds or None)``.
        """
        counted = {n: det.ops() for n, det in self.detectors.items() if det.compiled_source is None or det.timed_alone}
        return counted, self.manifest.macs

    def scoring_calls(self, x: np.ndarray) -> dict[str, Any]:
        """Zero-argument calls that redo each part of a monitored call on ``x``'s buffers (for timing).

        One monitored call fills this thread's bound buffers first; then ``inference`` reruns
        the model, ``compiled scores`` the compiled pass's first stage (prediction, coverage,
        logit statistics, Mahalanobis), each detector written in Python its scoring, each
        compiled column ``timed_alone`` (Mahalanobis) its own compiled loop, and ``decision``
        the second stage (score matrix, p-values, fused verdict, flags).

        Parameters
        ----------
        x : numpy.ndarray
            One input batch.

        Returns
        -------
        dict
            name -> callable.
        """
        arr = self.runner.check_input(x)
        self.score(arr, _record=False)
        ws, plan = self.plan(arr.shape[0])
        vw = plan.ws
        calls: dict[str, Any] = {"inference": lambda: self.runner.run(arr, ws),
                                 "compiled scores": lambda: plan(STAGE_SCORES, _ALL, self._decision_col)}
        for j, det in self._python + [(j, d) for j, d in enumerate(self.detectors.values()) if d.timed_alone]:
            calls[self.columns[j]] = lambda det=det: det.score(BatchView(ws.logits, ws.buf, self.runner.offsets,
                                                                         pred=vw.pred))
        calls["decision"] = lambda: plan(STAGE_DECIDE, _ALL, self._decision_col)
        return calls

    def score(self, x: object, _record: bool = True) -> Verdicts:
        """Run the model once on a batch and monitor it.

        Parameters
        ----------
        x : array_like
            ``(B, *input_shape)`` numeric batch. NaN/Inf samples are flagged, not refused.

        Returns
        -------
        Verdicts
            Predictions, scores, flags, p-values, confidence and timings; arrays the caller owns.

        Raises
        ------
        InputError
            Wrong shape/dtype or empty batch.
        BudgetError
            Over the latency budget under the ``raise`` policy (``exc.verdicts`` holds the result).
        """
        t0 = time.perf_counter()
        arr = self.runner.check_input(x)
        if self._input_checks:
            self._check_input_range(arr)
        if self._graph is not None:
            return self._score_graph(arr, t0, _record)
        ws, _, plan, args, direct = self._entry(arr.shape[0])
        vw = plan.ws
        t1 = time.perf_counter()
        if direct and arr.shape == ws.inputs.shape:
            np.copyto(ws.inputs, arr)
            self.runner.session.run_with_iobinding(ws.binding)
        else:
            self.runner.run(arr, ws)
        if not plan.counts_inputs:  # otherwise the compiled pass counts them in the bound input buffer
            vw.nonfinite[:] = count_nonfinite_rows(arr) if arr.dtype.kind == "f" else 0
        t2 = time.perf_counter()
        degraded = _record and self.tracker.degraded
        mask = _CHEAP if degraded else _ALL
        column = self._fallback_col if degraded else self._decision_col
        python = self._python_cheap if degraded else self._python
        stream = self._stream if _record and not degraded else None
        si, sf = NO_STREAM
        if python:
            verdict_pass(*args, si, sf, STAGE_SCORES, mask, column)
            view = BatchView(ws.logits, ws.buf, self.runner.offsets, pred=vw.pred, coverage=vw.coverage,
                             tables=self._coverage_tables)
            for j, det in python:
                vw.scores_in[:, j] = det.score(view)
            stage = STAGE_DECIDE
        else:
            stage = STAGE_ALL
        if stream is None:
            verdict_pass(*args, si, sf, stage, mask, column)
            first: int | None | bool = False
        else:
            with self._stream_lock:
                si, sf = stream.arrays_for(self._verdict, vw.batch)
                verdict_pass(*args, si, sf, stage, mask, column)
                first = stream.first_alarm
        t3 = time.perf_counter()
        infer_ms = (t2 - t1) * 1e3
        monitor_ms = ((t1 - t0) + (t3 - t2)) * 1e3
        over = self.tracker.record(infer_ms, monitor_ms) if _record else False
        verdicts = Verdicts.from_workspace(vw, self.columns, self._masks[mask], self._calibrated_cols,
                                           self.columns[column], infer_ms, monitor_ms, over, degraded, first)
        if self.explain:
            verdicts.explanations = self._explanations(verdicts, ws.buf)
        self._answer(verdicts)
        if over and self.budget.policy == "raise":
            raise over_budget_error(verdicts, self.budget)
        return verdicts

    def _answer(self, verdicts: Verdicts) -> None:
        """The error verdict of a call, where the calibration has one (one comparison per input)."""
        errors = self.calibration.errors if self.calibration is not None else None
        if errors is None or errors["detector"] not in self.columns:
            return
        t = errors["threshold"]
        s = verdicts.score_matrix[:, self.columns.index(errors["detector"])]
        verdicts.answer = (np.zeros(len(s), bool) if t is None else s <= t) & ~verdicts.nonfinite_input

    def _explanations(self, verdicts: Verdicts, buf: np.ndarray) -> list:
        """Explanations of the flagged rows of a call (None for the others)."""
        from .explain import Explainer

        if self._explainer is None or self._explainer[0] != self._generation:
            fusion = None
            if self._fusion is not None:
                tables = self._fusion[0]
                fusion = (tables, [self.columns[j] for j in tables.members.tolist()])
            self._explainer = (self._generation, Explainer(self.profile, self.manifest.layer_names,
                                                           self.runner.offsets, self.min_signature_samples, fusion))
        rows = np.flatnonzero(verdicts.flag)
        out: list = [None] * len(verdicts)
        for b, entry in zip(rows.tolist(), self._explainer[1].explain_rows(
                rows, verdicts.pred, buf, verdicts.score_matrix, verdicts.nonfinite_input,
                members=verdicts.decision == FUSED)):
            out[b] = entry
        return out

    def _score_graph(self, arr: np.ndarray, t0: float, _record: bool) -> Verdicts:
        t1 = time.perf_counter()
        out = self._graph.run(arr)
        t2 = time.perf_counter()
        bad = count_nonfinite_rows(arr) > 0 if arr.dtype.kind == "f" else np.zeros(len(arr), np.bool_)
        scores, pred = self._graph.exact_scores(out["scores"]), out["pred"]
        stream = None
        if self._stream is not None and _record:
            with self._stream_lock:
                p, stat, _, class_stat, alarm, class_alarm = self._stream.advance(scores, pred)
                stream = StreamUpdate(p, stat, class_stat, alarm, class_alarm, self._stream.first_alarm)
        t3 = time.perf_counter()
        infer_ms, monitor_ms = (t2 - t1) * 1e3, ((t1 - t0) + (t3 - t2)) * 1e3
        over = self.tracker.record(infer_ms, monitor_ms) if _record else False
        verdicts = Verdicts(pred, out["logits"], self.columns, scores, out["p_values"].astype(np.float64), out["flags"],
                            self._masks[_ALL], self._calibrated_cols, out["flag"], out["confidence"].astype(np.float64),
                            bad, self.decision, {"infer_ms": infer_ms, "monitor_ms": monitor_ms}, over, False, stream)
        self._answer(verdicts)
        if over and self.budget.policy == "raise":
            raise over_budget_error(verdicts, self.budget)
        return verdicts

    @property
    def attached_stream(self) -> Any:
        """The state of the stream this monitor's calls advance, or None."""
        return self._stream

    def attach_stream(self, state: Any) -> None:
        """Advance a stream in every later call's compiled pass (:class:`nnwatch.monitor.stream.StreamMonitor`).

        Parameters
        ----------
        state : object or None
            The stream's state (``StreamMonitor`` attaches itself); None detaches.
        """
        self._stream = state

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
