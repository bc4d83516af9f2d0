"""Conformal calibration of a monitor on clean held-out data: the one driver.

:func:`calibrate` runs the monitor over the data, turns every detector's clean scores into
per-class conformal tables (:mod:`nnwatch.calibration.groups`), calibrates the fused verdict
when the monitor runs one (:mod:`nnwatch.calibration.fused_verdict`) and installs the result.
The compiled arithmetic it relies on lives in :mod:`nnwatch.kernels.conformal` and
:mod:`nnwatch.kernels.fusion`; the record it produces is part of the profile file
(:class:`nnwatch.profile.schema.Calibration`).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .._progress import Progress
from .._validate import check_probability
from ..errors import InputError, NotFittedError
from ..profile.overlap import training_overlap
from ..profile.schema import Calibration
from ..sources import ArraySource, as_source, in_memory
from .error_verdict import error_threshold
from .fused_verdict import COST_BUDGET, FUSED, add_fusion
from .groups import CalibrationWarning, TrainingOverlapWarning, calibration_from_scores
from .separation import Separation, choose_separating
from .synthetic_inputs import synthetic_inputs


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
              fusion_members: Sequence[str] | None = None, fusion_budget: float = COST_BUDGET,
              error_risk: float | None = None, error_detector: str = "msp", error_delta: float = 0.05,
              separate: bool = True) -> Calibration:
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
        group (see :mod:`nnwatch.calibration.groups`).
    min_class_samples : int
        Classes with fewer calibration samples share a pooled threshold.
    detectors : sequence of str, optional
        Detectors to calibrate (default: all of the monitor's; must include its decision).
        When the monitor runs ``fused``, a fused verdict over some of them is calibrated too
        (:mod:`nnwatch.calibration.fused_verdict`) and becomes the decision of an "auto" monitor.
    fusion_members : sequence of str, optional
        The fused verdict's members (default: chosen from the clean scores and cost by
        :func:`nnwatch.calibration.fused_verdict.choose_members`).
    fusion_budget : float
        When choosing members: a detector written in Python, or Mahalanobis, joins only if
        its counted multiply-adds per sample (:meth:`Monitor.counted_costs`) are at most this
        share of the model's own (0: only the free compiled columns).
    error_risk : float, optional
        Also calibrate the error verdict (:mod:`nnwatch.calibration.error_verdict`): answer only
        where the model's selective risk is at most this, with confidence ``1 - error_delta``.
        Needs labels in ``source``.
    error_detector : str
        The score the error verdict thresholds (a calibrated detector; ``msp`` or ``doctor``).
    error_delta : float
        Allowed probability, over the calibration data, that the selective risk (the chance that
        an answered input is wrong) exceeds ``error_risk``.
    separate : bool
        When choosing members: keep only the candidates that separate anomalies made from the
        calibration inputs (:func:`separating_members`); False keeps every candidate
        :func:`nnwatch.calibration.fused_verdict.choose_members` keeps.
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
        raise InputError(f"fusion_budget must be >= 0 (a share of the model's multiply-adds), got {fusion_budget}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    declared = getattr(getattr(monitor, "runner", None), "preprocess", None)  # pixels read as the model declares
    source = in_memory(as_source(source, preprocess=declared), int(batch_size))  # a recording: decoded once
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
    if error_risk is not None:
        if source.y is None:
            raise InputError(f"the error verdict needs labels: {source.name} has none (e.g. idx:, npz: with y, or "
                             "images: with class folders)")
        if error_detector not in names:
            raise InputError(f"the error verdict's detector {error_detector!r} is not among the calibrated detectors "
                             f"{names}; add it to the monitor (e.g. detectors=[..., {error_detector!r}])")
        for label, value in (("error_risk", error_risk), ("error_delta", error_delta)):
            check_probability(value, label)
    warn_training_overlap(monitor, source)
    scores, _, pred = collect_scores(monitor, source.x, batch_size, progress, "calibrating")
    matrix = np.stack([scores[n] for n in names], axis=1)
    settings = monitor.settings
    settings["detector_params"] = {n: p for n, p in settings["detector_params"].items() if n in names}
    cal = calibration_from_scores(names, matrix, pred, monitor.profile.n_classes, alpha, min_class_samples,
                                  settings=settings)
    if FUSED in monitor.columns:
        costs, model_macs = monitor.counted_costs()  # counts, not timings: the same data, the same members
        if fusion_members is not None:
            budget = None
        elif model_macs is None:
            budget = 0.0  # nothing to weigh against: only the free compiled columns join (others when named)
            if any(costs.get(n, 0) for n in names):
                warnings.warn(CalibrationWarning(
                    "this model's multiply-adds are not recorded (instrumented by an older nnwatch, or shapes "
                    f"not inferable), so {sorted(n for n in names if costs.get(n, 0))} cannot be weighed against it "
                    "and join the fused verdict only when named (fusion_members / --fuse); instrument the model "
                    "again to have them weighed"), stacklevel=2)
        else:
            budget = float(fusion_budget) * model_macs
        def separating(candidates: list[str], in_a: np.ndarray) -> Separation:
            return separating_members(monitor, source.x, pred, matrix, names, candidates, in_a, batch_size, progress)

        add_fusion(cal, by_cost(monitor, names), fusion_members, costs=costs, budget=budget, model_macs=model_macs,
                   separating=separating if separate else None)
    if error_risk is not None:
        cal.errors = {"detector": error_detector, **error_threshold(scores[error_detector], pred != source.y,
                                                                    error_risk, error_delta)}
    monitor.profile.header["rare_rate"] = monitor.rare_rate
    monitor.set_calibration(cal)
    return cal


SEPARATION_SAMPLES = 500  # half-A inputs the synthetic anomalies are made from, at most


def separating_members(monitor, x: np.ndarray, pred: np.ndarray, scores: np.ndarray,  # type: ignore[no-untyped-def]
                       names: Sequence[str], candidates: Sequence[str], in_a: np.ndarray, batch_size: int = 256,
                       progress: bool = False, seed: int = 1) -> Separation:
    """The candidates that separate anomalies made from half A's inputs from half A itself.

    Up to :data:`SEPARATION_SAMPLES` inputs of half A (a seeded draw) are turned into synthetic
    anomalies (:func:`nnwatch.calibration.synthetic_inputs.synthetic_inputs`) and scored by the
    monitor; each candidate's separation is measured against all of half A's clean scores and the
    rule of :func:`nnwatch.calibration.separation.choose_separating` decides. Only half A is read.

    Parameters
    ----------
    monitor : Monitor
        The monitor being calibrated.
    x : numpy.ndarray
        The calibration inputs.
    pred : numpy.ndarray
        Their predicted classes.
    scores : numpy.ndarray
        ``(N, len(names))`` their clean scores.
    names : sequence of str
        The columns of ``scores``.
    candidates : sequence of str
        The fused verdict's candidate members (a subset of ``names``).
    in_a : numpy.ndarray
        bool ``(N,)``: the member half A.
    batch_size : int
        Samples per call.
    progress : bool
        Show a progress bar.
    seed : int
        Seed of the draw and of the anomalies.

    Returns
    -------
    Separation
    """
    rows = np.flatnonzero(in_a)
    rng = np.random.default_rng(seed)
    drawn = np.sort(rng.permutation(rows)[:SEPARATION_SAMPLES])
    cols = [list(names).index(c) for c in candidates]
    synthetic = {}
    for kind, inputs in synthetic_inputs(x[drawn], pred[drawn], seed).items():
        found, _, _ = collect_scores(monitor, inputs, batch_size, progress, f"members: {kind}")
        synthetic[kind] = np.stack([found[c] for c in candidates], axis=1)
    return choose_separating(list(candidates), scores[rows][:, cols], synthetic)


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
        return 0 if det.compiled_source is not None and not det.timed_alone else (1 if det.cost != "full" else 2)

    return sorted(names, key=tier)
