"""Head search: angles of every head on safe and unsafe prompts, then the published
single-head choice and the heads of a multi-head angle probe.

Thresholds are not set here: they come from the conformal calibration on benign prompts
(``nnwatch heads fit`` / ``nnwatch calibrate``), as for every other detector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .angles import rank_heads
from .collect import Sweep, sweep
from .detector_file import DEFAULT_ENCODER, LanguageDetector
from .fit import ANGLE_L2, PROBE_L2
from .logistic import fit_logistic
from .prompts import PromptSet
from .scores import HeadAngle, HeadLogistic


def fit_from_angles(angles: np.ndarray, labels: np.ndarray, n_layers: int, n_heads: int, model: str,
                    fingerprint: str, percentile: float = 80.0, ensemble_size: int = 8,
                    encoder: dict[str, Any] | None = None) -> LanguageDetector:
    """The two head detectors from all heads' angles on labelled search prompts.

    Parameters
    ----------
    angles : numpy.ndarray
        ``(N, n_layers * n_heads)`` angles, head ``(l, j)`` in column ``l * n_heads + j``.
    labels : numpy.ndarray
        ``(N,)`` 1 = unsafe, 0 = safe.
    n_layers, n_heads : int
        Layout.
    model, fingerprint : str
        Model identity stored in the detector.
    percentile : float
        Safe-angle filter of the published selection.
    ensemble_size : int
        Heads in the ensemble (0: no ensemble).
    encoder : dict, optional
        ``system_prompt`` / ``max_tokens`` to store.

    Returns
    -------
    LanguageDetector
        ``head_single`` (the default until ``nnwatch heads fit``) and ``head_ensemble``.
    """
    labels = np.asarray(labels)
    if angles.shape != (len(labels), n_layers * n_heads):
        raise InputError(f"angles must be (prompts, {n_layers * n_heads}), got {angles.shape}")
    if min((labels == 0).sum(), (labels == 1).sum()) < 2:
        raise InputError("the head search needs at least 2 safe and 2 unsafe search prompts")
    cube = angles.reshape(len(labels), n_layers, n_heads)
    ranking = rank_heads(cube[labels == 1], cube[labels == 0], percentile)
    best = ranking[0][:2]
    detectors: dict[str, Any] = {"head_single": HeadAngle((int(best[0]), int(best[1])))}
    if ensemble_size > 1:
        wide = fit_logistic(angles, labels, l2=PROBE_L2)  # many features: all heads
        chosen = [int(c) for c in np.argsort(-np.abs(wide.weights), kind="stable")[:ensemble_size]]
        chosen.sort()
        heads = [(c // n_heads, c % n_heads) for c in chosen]
        detectors["head_ensemble"] = HeadLogistic(heads, fit_logistic(angles[:, chosen], labels, l2=ANGLE_L2))
    search = {
        "safe_mean": cube[labels == 0].mean(0).tolist(),
        "unsafe_mean": cube[labels == 1].mean(0).tolist(),
        "n_safe": int((labels == 0).sum()),
        "n_unsafe": int((labels == 1).sum()),
        "percentile": percentile,
        "ranking": [[int(a), int(b), float(g)] for a, b, g in ranking[:20]],
    }
    return LanguageDetector(model, fingerprint, n_layers, n_heads, 0, detectors, "head_single",
                            encoder or dict(DEFAULT_ENCODER), search)


def search_heads(scorer: Any, prompts: PromptSet, model: str, percentile: float = 80.0,
                 ensemble_size: int = 8, progress: bool = False,
                 encoder: dict[str, Any] | None = None) -> tuple[LanguageDetector, Sweep]:
    """Score every head on the search prompts and fit the detector.

    Parameters
    ----------
    scorer : TorchHeadScorer
        The scorer.
    prompts : PromptSet
        Labelled prompts (the paper uses about 50 of each class).
    model : str
        Model spec stored in the detector.
    percentile, ensemble_size
        See :func:`fit_from_angles`.
    progress : bool
        Progress line.
    encoder : dict, optional
        Encoder settings to store.

    Returns
    -------
    detector : LanguageDetector
        The head detectors.
    sweep : Sweep
        All heads' angles (and hidden states) on the search prompts.
    """
    lay = scorer.layout
    heads = [(layer, head) for layer in range(lay.n_layers) for head in range(lay.n_heads)]
    result = sweep(scorer, prompts, heads, progress=progress, label="head search")
    det = fit_from_angles(result.angles, prompts.labels, lay.n_layers, lay.n_heads, model, scorer.fingerprint,
                          percentile, ensemble_size, encoder)
    det.search["prompt_ids"] = list(prompts.ids)
    return det, result


def balanced_subset(prompts: PromptSet, per_class: int, seed: int = 0) -> PromptSet:
    """``per_class`` prompts of each label, drawn reproducibly.

    Parameters
    ----------
    prompts : PromptSet
        Labelled prompts.
    per_class : int
        Prompts per label.
    seed : int
        Random seed.

    Returns
    -------
    PromptSet
        The subset, safe prompts first.
    """
    rng = np.random.default_rng(seed)
    idx = []
    for c in (0, 1):
        pool = np.nonzero(prompts.labels == c)[0]
        if len(pool) < per_class:
            raise InputError(f"need {per_class} prompts with label {c}, have {len(pool)}")
        idx += sorted(rng.choice(pool, per_class, replace=False).tolist())
    return prompts.subset(idx, f"{prompts.name}[{per_class}/class]")
