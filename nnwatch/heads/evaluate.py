"""Judge head-based detectors against baselines on labelled prompt sets.

Detectors compared on the same prompts:
- ``head_single``: the published single-head angle;
- ``head_ensemble``: logistic combination of several heads' angles;
- ``probe_logistic`` / ``probe_mahalanobis``: linear probe and class-conditional Mahalanobis
  score on the last-token hidden state of one layer (chosen on the training prompts by
  2-fold cross-validation);
- ``coverage_kmnc_mlp`` / ``coverage_nbc_mlp``: nnwatch's coverage kernels on the
  last-token MLP activations of every layer, against a profile of the *safe* training
  prompts (how unlike benign prompts the model's neurons behave);
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
    coverage : object or None
        Coverage tables of the safe training prompts' MLP activations.
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
    coverage: Any = None

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
        out = {"probe_logistic": self.models["logistic"].decision(s.states[:, self.layer_logistic]),
               "probe_mahalanobis": self.models["mahalanobis"].score(s.states[:, self.layer_mahalanobis]),
               "length": self.length_sign * s.lengths.astype(np.float64)}
        if self.coverage is not None and s.mlp is not None:
            out.update(mlp_coverage_scores(self.coverage, s.mlp))
        return out


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
    # Coverage tables from half of the safe prompts; its threshold from the other half (on
    # its own profile every safe prompt is in range, so an in-sample threshold is useless).
    safe = np.random.default_rng(0).permutation(np.nonzero(labels == 0)[0])
    profile_rows = safe[: len(safe) // 2]
    coverage = (mlp_coverage_tables(train.mlp[profile_rows], train.states.shape[1] - 1)
                if train.mlp is not None else None)
    held_out = np.ones(len(labels), bool)
    held_out[profile_rows] = False
    lengths = train.lengths.astype(np.float64)
    sign = 1.0 if auroc(lengths[labels == 0], lengths[labels == 1]) >= 0.5 else -1.0
    probes = Probes(layers["logistic"], layers["mahalanobis"], cv, models, {}, per_layer, sign, coverage)
    for name, s in probes.scores(train).items():
        rows = held_out if name.startswith("coverage") else np.ones(len(labels), bool)
        probes.thresholds[name] = kde_threshold(s[rows & (labels == 0)], s[rows & (labels == 1)])
    return probes


def mlp_coverage_tables(safe_acts: np.ndarray, n_layers: int, k_sections: int = 10, rare_rate: float = 0.01) -> Any:
    """Coverage tables (one class: safe) of MLP activations, built with the profile builder.

    Parameters
    ----------
    safe_acts : numpy.ndarray
        ``(N, n_layers * I)`` activations of safe prompts.
    n_layers : int
        Transformer layers (each is one coverage layer, so top-k is per layer).
    k_sections : int
        k of k-multisection coverage.
    rare_rate : float
        See :func:`nnwatch.profile.signature.compile_tables`.

    Returns
    -------
    CoverageTables
        Tables for :func:`mlp_coverage_scores`.
    """
    from ..profile.builder import ProfileBuilder
    from ..profile.signature import compile_tables

    labels = np.zeros(len(safe_acts), np.int64)
    layers = np.split(np.ascontiguousarray(safe_acts, np.float32), n_layers, axis=1)
    b = ProfileBuilder([x.shape[1] for x in layers], 1, k_sections, 3, "mean", None, 0)
    b.update_ranges(layers, labels).finish_ranges().update_sections(layers, labels)
    profile = b.build("0" * 64, [f"mlp{i}" for i in range(n_layers)], dataset="safe training prompts")
    return compile_tables(profile, rare_rate=rare_rate, min_class_samples=1, warn=False)


def mlp_coverage_scores(tables: Any, acts: np.ndarray) -> dict[str, np.ndarray]:
    """kmnc and nbc of MLP activations against the safe-prompt tables.

    Parameters
    ----------
    tables : CoverageTables
        From :func:`mlp_coverage_tables`.
    acts : numpy.ndarray
        ``(N, neurons)`` activations.

    Returns
    -------
    dict
        ``coverage_kmnc_mlp`` and ``coverage_nbc_mlp`` scores.
    """
    from ..kernels.coverage import SCORE_NAMES, coverage_scores
    from ..kernels.layout import pack_layers

    layers = np.split(np.ascontiguousarray(acts, np.float32), len(tables.offsets) - 1, axis=1)
    out = coverage_scores(pack_layers(layers), len(acts), np.zeros(len(acts), np.int64), tables,
                          parallel=False)
    return {"coverage_kmnc_mlp": out[:, SCORE_NAMES.index("kmnc")], "coverage_nbc_mlp": out[:, SCORE_NAMES.index("nbc")]}


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
        s = sweep(scorer, ps, det.heads, progress=progress, label=name, mlp=probes.coverage is not None)
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
