"""``nnwatch heads fit``: from a head search and labelled training prompts to a calibrated detector file.

1. With ``calibration="hold-out"``, benign prompts the head search did not use are split off
   (``hold_out`` of them, drawn reproducibly) for the conformal calibration; nothing is
   fitted on them. With ``calibration="cross-fit"`` (the default) none is held out: every
   benign prompt the search did not use calibrates by cross-fitting (:mod:`.cross_fit`).
2. The prompts fitted on, with the train half of the built-in contrast pairs (hard safe examples), are
   run plain (residual states, the searched heads' angles, MLP activations) and inside this
   project's wrappers of groups A and B, short or stacked long (:mod:`.augment`; residual
   states only).
3. :func:`nnwatch.heads.fit.fit_detectors` chooses and fits every detector.
4. All of them are calibrated on the held-out benign prompts, or cross-fitted: the whole of
   step 3 again without each fold of the calibrating benign prompts.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..calibration.groups import check_calibration_size
from ..errors import InputError
from .augment import GROUP_A, GROUP_B, TEMPLATES, wrap
from .collect import sweep
from .cross_fit import CALIBRATIONS, cross_fit
from .cross_fit import FOLDS as CROSS_FOLDS
from .detector_file import LanguageDetector
from .fit import FOLDS, TrainingData, fit_detectors
from .language_monitor import LanguageMonitor
from .prompts import PromptSet, contrast_pairs


def check_hold_out(hold_out: int, fpr: float, what: str = "--hold-out") -> None:
    """Refuse a hold-out too small for a conformal flag at ``fpr``.

    Parameters
    ----------
    hold_out : int
        Benign prompts held out for calibration (``calibration="hold-out"``).
    fpr : float
        Target false-positive rate.
    what : str
        How the message names the count.

    Raises
    ------
    InputError
        See :func:`nnwatch.calibration.groups.check_calibration_size`.
    """
    check_calibration_size(hold_out, fpr, what, "benign prompts")


def split_calibration(prompts: PromptSet, hold_out: int, exclude: set[str],
                      seed: int = 0) -> tuple[PromptSet, PromptSet]:
    """Benign prompts for calibration (never in ``exclude``) and the rest for fitting.

    Parameters
    ----------
    prompts : PromptSet
        Labelled training prompts.
    hold_out : int
        Benign prompts to hold out.
    exclude : set of str
        Ids that may not be held out (the head search's prompts: already used for fitting).
    seed : int
        Seed of the draw.

    Returns
    -------
    tuple
        ``(fitting prompts, calibration prompts)``.

    Raises
    ------
    InputError
        One class only, or too few benign prompts for the hold-out and the folds.
    """
    n_safe, n_unsafe = int((prompts.labels == 0).sum()), int((prompts.labels == 1).sum())
    if min(n_safe, n_unsafe) < FOLDS:
        raise InputError(f"training prompts need both labels, at least {FOLDS} of each (got {n_safe} safe, {n_unsafe} "
                         "unsafe): give the unsafe (label 1) and the safe (label 0) files together")
    pool = [i for i in np.flatnonzero(prompts.labels == 0) if prompts.ids[i] not in exclude]
    if len(pool) < hold_out or n_safe - hold_out < FOLDS:
        raise InputError(f"--hold-out {hold_out}: only {len(pool)} benign prompts are free to hold out "
                         f"({n_safe} benign in all, {n_safe - len(pool)} used by the head search), and {FOLDS} must "
                         "remain for fitting; give more benign prompts or a smaller --hold-out")
    held = set(np.random.default_rng(seed).choice(pool, hold_out, replace=False).tolist())
    fit_rows = [i for i in range(len(prompts)) if i not in held]
    return (prompts.subset(fit_rows, f"{prompts.name}[fit]"),
            prompts.subset(sorted(held), f"{prompts.name}[calibration]"))


def calibration_pool(prompts: PromptSet, exclude: set[str]) -> np.ndarray:
    """The benign prompts that may calibrate: those the head search did not use.

    Parameters
    ----------
    prompts : PromptSet
        Labelled training prompts.
    exclude : set of str
        Ids the head search used.

    Returns
    -------
    numpy.ndarray
        bool ``(N,)``.
    """
    return np.array([pid not in exclude for pid in prompts.ids], np.bool_) & (prompts.labels == 0)


def check_cross_fit(prompts: PromptSet, exclude: set[str], fpr: float, folds: int) -> None:
    """Refuse a cross-fit with too few benign prompts to calibrate or to fold.

    Parameters
    ----------
    prompts : PromptSet
        Labelled training prompts.
    exclude : set of str
        Ids the head search used.
    fpr : float
        Target false-positive rate.
    folds : int
        K.

    Raises
    ------
    InputError
        Too few benign prompts free to calibrate, or one class only.
    """
    if not ((prompts.labels == 0).any() and (prompts.labels == 1).any()):
        raise InputError("training prompts need both labels: safe (label 0) and unsafe (label 1) prompts")
    n = int(calibration_pool(prompts, exclude).sum())
    check_calibration_size(n, fpr, "benign training prompts the head search did not use", "benign prompts")
    if n < 2 * folds:
        raise InputError(f"cross-fitting in {folds} folds needs at least {2 * folds} benign prompts the head search did "
                         f"not use; there are {n}")


def fit_and_calibrate(scorer: Any, searched: LanguageDetector, prompts: PromptSet, hold_out: int = 100,
                      fpr: float = 0.05, progress: bool = False, log: Callable[[str], None] | None = None,
                      contrast_train: bool = True, calibration: str = "cross-fit",
                      folds: int = CROSS_FOLDS) -> LanguageDetector:
    """Fit every detector on training prompts and calibrate them (cross-fitted, or on held-out benign ones).

    Parameters
    ----------
    scorer : TorchHeadScorer
        Scorer of the searched model.
    searched : LanguageDetector
        The head search's file (its ``head_single`` and ``head_ensemble`` heads are kept).
    prompts : PromptSet
        Labelled training prompts (may include the search's own).
    hold_out : int
        Benign prompts held out for calibration.
    fpr : float
        Target false-positive rate of the calibrated flags.
    progress : bool
        Progress lines.
    log : callable, optional
        Called with one line per step.
    contrast_train : bool
        Also fit on the train half of the built-in contrast pairs (safe prompts with alarming
        words and their unsafe twins, :func:`nnwatch.heads.prompts.contrast_pairs`); never
        held out for calibration.
    calibration : str
        "cross-fit" (every benign prompt the search did not use calibrates; the fit runs
        ``folds`` more times) or "hold-out".
    folds : int
        K of the cross-fit.

    Returns
    -------
    LanguageDetector
        The fitted, calibrated detector file.

    Raises
    ------
    InputError
        Too few prompts of a class or for the hold-out, no ``head_single`` in ``searched``.
    ModelMismatchError
        ``searched`` was made for another model.
    """
    if calibration not in CALIBRATIONS:
        raise InputError(f"calibration {calibration!r}: accepted {', '.join(CALIBRATIONS)}")
    searched_ids = set(searched.search.get("prompt_ids", []))
    if calibration == "hold-out":
        check_hold_out(hold_out, fpr)
    else:
        check_cross_fit(prompts, searched_ids, fpr, folds)
    searched.check_model(scorer.fingerprint)
    if "head_single" not in searched.detectors:
        raise InputError("the detector file has no head_single: give the file `nnwatch heads search` wrote")
    if calibration == "hold-out":
        train, held = split_calibration(prompts, hold_out, searched_ids)
        pool = np.zeros(len(train), np.bool_)
    else:
        train, held, pool = prompts, None, calibration_pool(prompts, searched_ids)
    hard = contrast_pairs("train") if contrast_train else None
    if hard is not None:
        train = train + hard
        pool = np.concatenate([pool, np.zeros(len(hard), np.bool_)])
    say = log or (lambda _: None)
    start = time.perf_counter()
    single = searched.detectors["head_single"].head
    ensemble = list(searched.detectors["head_ensemble"].heads) if "head_ensemble" in searched.detectors else []
    heads = [single] + [h for h in ensemble if h != single]
    plain = sweep(scorer, train, heads, progress=progress, label="training prompts", mlp=True)
    wrapped_a, _ = wrap(train, GROUP_A, seed=1)
    wrapped_b, _ = wrap(train, GROUP_B, seed=2)
    a = sweep(scorer, wrapped_a, [], progress=progress, label="wrapped, group A")
    b = sweep(scorer, wrapped_b, [], progress=progress, label="wrapped, group B")
    data = TrainingData(plain, train.labels, a, b)
    n_layers = scorer.layout.n_layers

    def fit(keep: np.ndarray | None, say_each: Callable[[str], None] | None) -> Any:
        part = data if keep is None else TrainingData(plain.subset(keep), train.labels[keep], a.subset(keep),
                                                      b.subset(keep))
        return fit_detectors(part, single, ensemble, n_layers, scorer.fingerprint, progress=say_each)

    result = fit(None, say)
    say(f"default detector: {result.default}")
    cross = None
    if calibration == "cross-fit":
        cross = cross_fit(list(train.ids), train.labels, pool, lambda keep: fit(keep, None).detectors,
                          lambda det, rows: det.score(plain.subset(rows)), fpr, folds, progress=say)
        # A column calibrates only if the whole fit has it and every fold fitted it.
        extra = [n for n in cross.folds if n not in result.detectors]
        for n in extra:
            del cross.folds[n], cross.scores[n]
        gaps = [n for n in result.detectors if n not in cross.folds and n != "mlp_coverage"]
        if gaps:
            say(f"not calibrated (a cross-fit fold could not fit them): {', '.join(gaps)}")
    calibrating = list(held.ids) if held is not None else list(cross.ids)
    info = {"train_prompts": {"safe": int((train.labels == 0).sum()), "unsafe": int((train.labels == 1).sum())},
            "contrast_train_prompts": 0 if hard is None else len(hard), "calibration": calibration,
            "calibration_prompts": len(calibrating), "calibration_ids": calibrating,
            "wrapper_templates": {"group_a": len(GROUP_A), "group_b": len(GROUP_B), "all": len(TEMPLATES)},
            "fit_seconds": time.perf_counter() - start}
    fitted = replace(searched, hidden=int(plain.states.shape[2]), detectors=result.detectors, default=result.default,
                     cv=result.cv, calibration=None, info=info, cross_fit=cross)
    if held is not None:
        LanguageMonitor(fitted, scorer, detectors="all").calibrate(held, fpr=fpr, progress=progress)
    return fitted
