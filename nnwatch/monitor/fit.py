"""Build a profile and calibrate thresholds by running an instrumented model over data."""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from .._progress import Progress
from .._validate import check_labels, check_probability
from ..errors import InputError, NotFittedError
from ..kernels.layout import unpack_layers
from ..profile.builder import ProfileBuilder
from ..profile.overlap import input_hashes, sketch_to_json, sketch_update, training_overlap
from ..profile.schema import Calibration, Profile, check_rate, input_stats, merge_input_stats
from ..sources import ArraySource, BatchSource, as_source
from .calibrate import TrainingOverlapWarning, calibration_from_scores
from .fusion import COST_BUDGET, FUSED, add_fusion
from .detectors.baselines import log_softmax
from .runner import Runner


def trusted_labels(logits: np.ndarray, y: np.ndarray | None, min_confidence: float) -> np.ndarray:
    """Which samples enter the profile, and as which class.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(B, K)``.
    y : numpy.ndarray or None
        True labels; without them (or where a label is negative: unknown) the predicted
        class is trusted.
    min_confidence : float
        Minimum softmax probability of the predicted class.

    Returns
    -------
    numpy.ndarray
        int64 ``(B,)``: class, or -1 for samples left out.
    """
    pred = np.argmax(logits, axis=1)
    conf = np.exp(log_softmax(logits).max(axis=1))
    keep = conf >= min_confidence
    if y is not None:
        keep &= (pred == y) | (y < 0)
    return np.where(keep, pred, -1).astype(np.int64)


def build_profile(model: str | os.PathLike | Runner, source: object, batch_size: int = 256,
                  k_sections: int = 10, k_top: int = 3, threshold: str | float = "mean",
                  min_confidence: float = 0.0, rare_rate: float = 0.01, progress: bool = False) -> Profile:
    """Two streaming passes over ``source`` through the instrumented model.

    Parameters
    ----------
    model : path or Runner
        Instrumented model.
    source : ArraySource, arrays or batches
        Trusted training data (``y`` present: only correctly classified samples count): an
        ArraySource, ``x`` or ``(x, y)`` arrays, re-iterable batches (a list, a torch
        DataLoader) or a source spec; see :func:`nnwatch.sources.as_source`.
    batch_size : int
        Samples per onnxruntime call.
    k_sections : int
        k of k-multisection coverage.
    k_top : int
        k of top-k coverage.
    threshold : "mean" or float
        Neuron-coverage activation threshold.
    min_confidence : float
        Minimum softmax confidence of a trusted sample.
    rare_rate : float
        Default rarity rate recorded in the profile for monitors.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Profile
        The profile.
    """
    source = as_source(source)
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    check_rate(rare_rate)
    runner = model if isinstance(model, Runner) else Runner(model)
    man = runner.manifest
    for name, size in zip(man.layer_names, man.layer_sizes):
        if int(k_top) > size:
            raise InputError(f"k_top={k_top} is larger than layer {name!r} ({size} neurons); top-k coverage needs "
                             f"k_top <= {min(man.layer_sizes)}, the smallest monitored layer")
    feature_layer = man.layer_names.index(man.penultimate) if man.penultimate in man.layer_names else None
    builder = ProfileBuilder(man.layer_sizes, runner.n_classes, k_sections=k_sections, k_top=k_top,
                             threshold=threshold, feature_layer=feature_layer)
    if not 0.0 <= min_confidence <= 1.0:
        raise InputError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if isinstance(source, ArraySource) and source.y is not None:  # before any pass, not after one
        check_labels(source.y, runner.n_classes, source.name)
    inputs: dict[str, float] | None = input_stats(np.zeros(0))
    sketch: np.ndarray | None = None
    for phase in (1, 2):
        bar = Progress(len(source), f"profile pass {phase}/2", progress)
        for x, y in source.batches(batch_size):
            arr = runner.check_input(x)
            if phase == 1:
                if y is not None:
                    check_labels(y, runner.n_classes, source.name)
                inputs = merge_input_stats(inputs, input_stats(arr))
                sketch = sketch_update(sketch, input_hashes(arr))
            ws = runner.workspace(arr.shape[0])
            runner.run(arr, ws)
            labels = trusted_labels(ws.logits, y, min_confidence)
            layers = unpack_layers(ws.buf, ws.batch, runner.offsets)
            if phase == 1:
                builder.update_ranges(layers, labels)
            else:
                builder.update_sections(layers, labels)
            bar.update(arr.shape[0])
        bar.close()
        if phase == 1:
            builder.finish_ranges()
    profile = builder.build(man.fingerprint, man.layer_names, reduction=manifest_reduction(man), dataset=source.name,
                            min_confidence=min_confidence)
    profile.header["rare_rate"] = check_rate(rare_rate)
    profile.header["input_stats"] = inputs
    if sketch is not None:
        profile.header["input_sketch"] = sketch_to_json(sketch)
    return profile


def manifest_reduction(manifest) -> str:  # type: ignore[no-untyped-def]
    """How the manifest's taps reduce feature maps, as recorded in a profile header.

    Parameters
    ----------
    manifest : TapManifest
        The model's taps.

    Returns
    -------
    str
        ``"mean"``/``"max"`` when all reduced taps agree, ``"none"`` or ``"mixed"``.
    """
    kinds = {t.reduction for t in manifest.taps if t.reduction != "none"}
    return kinds.pop() if len(kinds) == 1 else ("none" if not kinds else "mixed")


def collect_scores(monitor, x: np.ndarray, batch_size: int = 256, progress: bool = False,  # type: ignore[no-untyped-def]
                   label: str = "scoring") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Run a monitor over inputs in batches and gather scores, flags and predictions.

    Parameters
    ----------
    monitor : Monitor
        The monitor.
    x : numpy.ndarray
        Inputs ``(N, ...)``.
    batch_size : int
        Samples per call.
    progress : bool
        Show a progress bar.
    label : str
        Progress label.

    Returns
    -------
    tuple
        ``(scores by detector (N,), flags by calibrated detector (N,), predictions (N,))``.
    """
    scores: dict[str, list[np.ndarray]] = {}
    flags: dict[str, list[np.ndarray]] = {}
    preds = []
    bar = Progress(len(x), label[:24], progress)
    for lo in range(0, len(x), batch_size):
        v = monitor.score(x[lo : lo + batch_size], _record=False)
        for name, s in v.scores.items():
            scores.setdefault(name, []).append(s)
        for name, f in v.flags.items():
            flags.setdefault(name, []).append(f)
        preds.append(v.pred)
        bar.update(len(v))
    bar.close()
    return ({k: np.concatenate(v) for k, v in scores.items()}, {k: np.concatenate(v) for k, v in flags.items()},
            np.concatenate(preds))


def calibrate(monitor, source: object, fpr: float = 0.05, min_class_samples: int = 20,  # type: ignore[no-untyped-def]
              detectors: Sequence[str] | None = None, batch_size: int = 256, progress: bool = False,
              fusion_members: Sequence[str] | None = None, fusion_budget: float = COST_BUDGET) -> Calibration:
    """Conformal calibration on clean held-out data, installed in the monitor.

    Parameters
    ----------
    monitor : Monitor
        The monitor (its profile receives the calibration).
    source : ArraySource, arrays or batches
        Clean held-out data, disjoint from the profile's training data and exchangeable with
        the clean inputs the monitor will see (that is what the guarantee rests on); anything
        :func:`nnwatch.sources.as_source` takes.
    fpr : float
        Target false-alarm rate ``alpha``: for clean inputs, ``P(flag) <= alpha`` per class
        group (see :mod:`nnwatch.monitor.calibrate`).
    min_class_samples : int
        Classes with fewer calibration samples share a pooled threshold.
    detectors : sequence of str, optional
        Detectors to calibrate (default: all of the monitor's; must include its decision).
        When the monitor runs ``fused``, a fused verdict over some of them is calibrated too
        (:mod:`nnwatch.monitor.fusion`) and becomes the decision of an "auto" monitor.
    fusion_members : sequence of str, optional
        The fused verdict's members (default: chosen from the clean scores and cost by
        :func:`nnwatch.monitor.fusion.choose_members`).
    fusion_budget : float
        When choosing members: a detector written in Python joins only if its measured
        batch-1 cost is at most this share of the model's batch-1 inference time (0: only
        the compiled columns).
    batch_size : int
        Samples per call.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Calibration
        The calibration (also stored on ``monitor.profile``). Classes that fell back to a
        pooled or global threshold are reported with a :class:`CalibrationWarning`.

    Raises
    ------
    InputError
        Bad ``fpr``/``batch_size``, too few samples, non-finite calibration inputs.
    """
    alpha = check_probability(fpr, "fpr")
    if not float(fusion_budget) >= 0:
        raise InputError(f"fusion_budget must be >= 0 (a share of the inference time), got {fusion_budget}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    source = as_source(source)
    if isinstance(source, BatchSource):
        source = source.to_arrays()
    names = list(detectors) if detectors is not None else [c for c in monitor.columns if c != FUSED]
    missing = [n for n in names if n not in monitor.columns]
    if missing:
        raise NotFittedError(f"detectors {missing} are not part of this monitor (it runs {list(monitor.columns)})")
    names = [n for n in names if n != FUSED]  # calibrated from its members, below
    wanted = monitor.requested_decision
    if wanted not in ("auto", FUSED) and wanted not in names:
        raise InputError(f"the calibration must include the monitor's decision detector {wanted!r}")
    if fusion_members is not None:
        outside = [m for m in fusion_members if m not in names]
        if outside:
            raise InputError(f"fusion members {outside} are not among the calibrated detectors {names}")
    warn_training_overlap(monitor, source)
    scores, _, pred = collect_scores(monitor, source.x, batch_size, progress, "calibrating")
    matrix = np.stack([scores[n] for n in names], axis=1)
    settings = monitor.settings
    settings["detector_params"] = {n: p for n, p in settings["detector_params"].items() if n in names}
    cal = calibration_from_scores(names, matrix, pred, monitor.profile.n_classes, alpha, min_class_samples,
                                  settings=settings)
    if FUSED in monitor.columns:
        costs, inference = python_costs(monitor, source.x[:1])  # recorded; a budget only for chosen members
        budget = float(fusion_budget) * inference if fusion_members is None else None
        add_fusion(cal, by_cost(monitor, names), fusion_members, costs_us=costs, budget_us=budget)
    monitor.profile.header["rare_rate"] = monitor.rare_rate
    monitor.set_calibration(cal)
    return cal


def warn_training_overlap(monitor, source: ArraySource) -> None:  # type: ignore[no-untyped-def]
    """Warn when calibration inputs were also the profile's training inputs.

    Parameters
    ----------
    monitor : Monitor
        The monitor whose profile is being calibrated.
    source : ArraySource
        The calibration data.
    """
    record = monitor.profile.header.get("input_sketch")
    if record is None:
        return
    checkable, found = training_overlap(record, source.x.astype(monitor.runner.input_dtype, copy=False))
    if found:
        share = f"all {checkable}" if found == checkable else f"{found} of {checkable}"
        warnings.warn(TrainingOverlapWarning(
            f"{share} calibration inputs that could be checked are also in the profile's training data "
            f"({monitor.profile.header.get('dataset') or 'unnamed'}); calibrate on clean data the profile never saw, "
            "or the thresholds come out too low and the false-alarm guarantee does not hold"), stacklevel=3)


def python_costs(monitor, x: np.ndarray, rounds: int = 30) -> tuple[dict[str, float], float]:  # type: ignore[no-untyped-def]
    """Median batch-1 cost of each detector written in Python, and of the model's inference, in µs.

    Parameters
    ----------
    monitor : Monitor
        The monitor.
    x : numpy.ndarray
        One input ``(1, ...)``.
    rounds : int
        Timed rounds (interleaved).

    Returns
    -------
    tuple
        ``(detector -> µs, inference µs)``; compiled columns are not listed (they are free).
    """
    from ..eval.timing import interleaved

    calls = monitor.scoring_calls(x)
    python = [n for n, det in monitor.detectors.items() if det.compiled_source is None]
    timed = interleaved({n: calls[n] for n in python + ["inference"]}, rounds, warmup=3)
    inference = timed.pop("inference")["p50_ms"] * 1e3
    return {name: t["p50_ms"] * 1e3 for name, t in timed.items()}, inference


def by_cost(monitor, names: Sequence[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Detectors cheapest first: compiled columns, then logit-only, then activation-based ones.

    Parameters
    ----------
    monitor : Monitor
        The monitor running them.
    names : sequence of str
        Detector names.

    Returns
    -------
    list of str
        The same names, stably ordered by cost tier.
    """
    def tier(name: str) -> int:
        det = monitor.detectors[name]
        return 0 if det.compiled_source is not None else (1 if det.cost != "full" else 2)

    return sorted(names, key=tier)
