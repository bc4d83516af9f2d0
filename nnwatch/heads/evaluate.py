"""Judge head-based detectors against baselines on labelled prompt sets.

Detectors compared on the same prompts:
- ``head_single``: the published single-head angle;
- ``head_ensemble``: logistic combination of several heads' angles;
- ``probe_logistic`` / ``probe_mahalanobis``: linear probe and class-conditional Mahalanobis
  score on the last-token hidden state of one layer (chosen on the training prompts by
  2-fold cross-validation);
- ``length``: prompt length in tokens (oriented on the training prompts), the confound
  every detector must beat.
Every threshold is fitted on training/calibration prompts only (KDE crossing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..eval.metrics import auroc
from .angles import balanced_accuracy, kde_threshold
from .collect import Sweep, sweep
from .detector import HeadDetector
from .linear import fit_gaussians, fit_logistic
from .prompts import PromptSet, length_matched


@dataclass
class Probes:
    """Hidden-state baselines fitted on training prompts.

    Attributes
    ----------
    layer_logistic, layer_mahalanobis : int
        Layer (index into the states: 0 = embeddings, L = final) each probe reads.
    cv_auroc : dict
        Per-layer 2-fold cross-validated training AUROC of both probes.
    models : dict
        Fitted probes.
    per_layer : list
        A logistic probe for every layer (to show where the signal appears).
    length_sign : float
        +1 if longer prompts were more often unsafe in training, else -1.
    thresholds : dict
        KDE-crossing thresholds on training scores (also for ``length``).
    """

    layer_logistic: int
    layer_mahalanobis: int
    cv_auroc: dict
    models: dict
    thresholds: dict
    per_layer: list
    length_sign: float = 1.0

    def scores(self, s: Sweep) -> dict[str, np.ndarray]:
        """Probe and length scores for a sweep.

        Parameters
        ----------
        s : Sweep
            Hidden states and lengths.

        Returns
        -------
        dict
            Detector -> scores.
        """
        return {"probe_logistic": self.models["logistic"].decision(s.states[:, self.layer_logistic]),
                "probe_mahalanobis": self.models["mahalanobis"].score(s.states[:, self.layer_mahalanobis]),
                "length": self.length_sign * s.lengths.astype(np.float64)}


def _cv_auroc(x: np.ndarray, y: np.ndarray, fit: Any, score: Any, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % 2
    out = []
    for f in (0, 1):
        tr, te = fold != f, fold == f
        m = fit(x[tr], y[tr])
        s = score(m, x[te])
        out.append(auroc(s[y[te] == 0], s[y[te] == 1]))
    return float(np.mean(out))


def fit_probes(train: Sweep, labels: np.ndarray) -> Probes:
    """Choose each probe's layer by cross-validation on the training prompts, then fit.

    Parameters
    ----------
    train : Sweep
        Hidden states of the training prompts.
    labels : numpy.ndarray
        Their labels.

    Returns
    -------
    Probes
        The fitted probes.
    """
    kinds = {
        "logistic": (lambda x, y: fit_logistic(x, y, l2=10.0), lambda m, x: m.decision(x)),
        "mahalanobis": (lambda x, y: fit_gaussians(x, y), lambda m, x: m.score(x)),
    }
    cv = {k: [_cv_auroc(train.states[:, layer], labels, *kinds[k]) for layer in range(train.states.shape[1])]
          for k in kinds}
    layers = {k: int(np.argmax(v)) for k, v in cv.items()}
    models = {k: kinds[k][0](train.states[:, layers[k]], labels) for k in kinds}
    per_layer = [kinds["logistic"][0](train.states[:, layer], labels) for layer in range(train.states.shape[1])]
    lengths = train.lengths.astype(np.float64)
    sign = 1.0 if auroc(lengths[labels == 0], lengths[labels == 1]) >= 0.5 else -1.0
    probes = Probes(layers["logistic"], layers["mahalanobis"], cv, models, {}, per_layer, sign)
    for name, s in probes.scores(train).items():
        probes.thresholds[name] = kde_threshold(s[labels == 0], s[labels == 1])
    return probes


def metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Detection rate, false-positive rate, balanced accuracy at the threshold, and AUROC.

    Parameters
    ----------
    scores : numpy.ndarray
        Scores (large = unsafe).
    labels : numpy.ndarray
        1 = unsafe, 0 = safe.
    threshold : float
        Flag when score > threshold.

    Returns
    -------
    dict
        ``auroc`` (NaN with one class), ``detection``, ``false_positive``, ``balanced_accuracy``.
    """
    neg, pos = scores[labels == 0], scores[labels == 1]
    both = len(neg) > 0 and len(pos) > 0
    return {"auroc": auroc(neg, pos) if both else float("nan"),
            "detection": float(np.mean(pos > threshold)) if len(pos) else float("nan"),
            "false_positive": float(np.mean(neg > threshold)) if len(neg) else float("nan"),
            "balanced_accuracy": balanced_accuracy(neg, pos, threshold) if both else float("nan"),
            "n_safe": int(len(neg)), "n_unsafe": int(len(pos))}


def evaluate_sets(scorer: Any, det: HeadDetector, probes: Probes, sets: dict[str, PromptSet],
                  progress: bool = False, match_lengths: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every detector's metrics on every set (plus length-matched subsets of the named sets).

    Parameters
    ----------
    scorer : TorchHeadScorer
        Scorer for the detector's model.
    det : HeadDetector
        Fitted head detector.
    probes : Probes
        Fitted baselines.
    sets : dict
        Name -> labelled prompts.
    progress : bool
        Progress lines.
    match_lengths : tuple of str
        Sets that also get a ``<name>:length-matched`` subset.

    Returns
    -------
    dict
        ``rows`` (set, detector, metrics), ``scores`` (set -> detector -> list), ``labels``
        (set -> list), ``probe_layer_auroc`` (set -> per-layer AUROC of the logistic probe).
    """
    det.check_model(scorer.fingerprint)
    thresholds = {f"head_{k}": v.threshold for k, v in det.variants.items()} | probes.thresholds
    rows, all_scores, all_labels, layer_auc = [], {}, {}, {}
    for name, ps in sets.items():
        s = sweep(scorer, ps, det.heads, progress=progress, label=name)
        scores = {f"head_{k}": v for k, v in det.scores(s.angles).items()} | probes.scores(s)
        views = {name: np.arange(len(ps))}
        if name in match_lengths:
            views[f"{name}:length-matched"] = length_matched(s.lengths, ps.labels)
        for view, idx in views.items():
            y = ps.labels[idx]
            all_labels[view] = y.tolist()
            all_scores[view] = {d: v[idx].tolist() for d, v in scores.items()}
            for d, v in scores.items():
                rows.append({"set": view, "detector": d, **metrics(v[idx], y, thresholds[d])})
        if (ps.labels == 0).any() and (ps.labels == 1).any():
            layer_auc[name] = [auroc(*_split(m.decision(s.states[:, layer]), ps.labels))
                               for layer, m in enumerate(probes.per_layer)]
    return {"rows": rows, "scores": all_scores, "labels": all_labels, "thresholds": thresholds,
            "probe_layer_auroc": layer_auc}


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scores[labels == 0], scores[labels == 1]
