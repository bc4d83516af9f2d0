"""Fit the language detectors on training prompts, every choice made by cross-validation.

Candidates (all scores: higher = more unsafe):

- ``refusal_direction``: projection on the difference of class means at one layer;
- ``direction_combination``: the projections of every layer, combined by a logistic fit;
- ``probe``: a logistic probe on one layer's last-token residual state;
- each of those ``_augmented``: fitted on the plain prompts *and* the same prompts inside
  this project's jailbreak-style wrappers (:mod:`.augment`), labels kept;
- ``head_ensemble``: a logistic probe over the searched heads' angles (the published
  single head, ``head_single``, has nothing to fit);
- ``mlp_coverage``: nnwatch's coverage score of the MLP activations against a one-class
  profile of the safe training prompts (nothing to choose: the profile's defaults);
- ``length``: prompt length, oriented on the training prompts: a baseline to beat;
- ``text_tfidf``: TF-IDF + logistic regression on the prompts' words (plain and wrapped, as
  the augmented candidates are fitted; its L2 strength chosen by the same cross-validation):
  the other baseline to beat, which reads nothing of the model.

Cross-validation (folds over the base prompts, so a prompt and its wrapped copies never sit
on both sides): fit on the training folds (augmented candidates with wrapper group A), then
on the held-out fold set the conformal 5% threshold of the *plain safe* prompts' scores (the
rule the calibrated flags follow), as calibration on benign prompts would, and measure Youden's J (detection of the
unsafe prompts minus the share of safe ones flagged) on the held-out prompts as given and
wrapped in group B, templates no candidate was fitted on. The criterion, the mean of the two
J's (a detector must work on plain prompts *and* under wrappers never seen, at the deployed
5% operating point), picks each candidate's layer and the default detector, which must be a
prefill-cost detector (no masked re-runs: within 1.10x of a plain prefill). Ties go to the
higher plain AUROC. Cross-validation fits the augmented candidates with group A only (group B
judges them); the final fits use both groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import InputError, MissingDependencyError
from ..eval.metrics import auroc
from ..kernels.conformal import allowed_count
from .collect import Sweep
from .logistic import fit_logistic
from .text_baseline import C_GRID, fit_text_classifier
from .scores import (
    PREFILL,
    DirectionCombination,
    HeadAngle,
    HeadLogistic,
    MlpCoverage,
    PromptLength,
    RefusalDirection,
    ResidualProbe,
    Score,
)

PROBE_L2 = 10.0  # residual probes: hundreds of features, a few hundred prompts
ANGLE_L2 = 1.0  # few features (head angles, per-layer projections)
FOLDS = 5
LEVEL = 0.05  # the operating point the criterion judges


@dataclass
class TrainingData:
    """Features of the training prompts, plain and wrapped.

    Attributes
    ----------
    plain : Sweep
        The prompts as given (angles of the searched heads, residual states).
    labels : numpy.ndarray
        int64 ``(N,)`` 1 = unsafe.
    wrapped_a, wrapped_b : Sweep
        Row ``i`` is prompt ``i`` inside a wrapper of group A / group B (states only).
    """

    plain: Sweep
    labels: np.ndarray
    wrapped_a: Sweep
    wrapped_b: Sweep

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.plain.states) == len(self.wrapped_a.states) == len(self.wrapped_b.states) == n):
            raise InputError("plain and wrapped training features must have one row per prompt")
        if min((self.labels == 0).sum(), (self.labels == 1).sum()) < FOLDS:
            raise InputError(f"fitting needs at least {FOLDS} safe and {FOLDS} unsafe training prompts, got "
                             f"{int((self.labels == 0).sum())} safe and {int((self.labels == 1).sum())} unsafe")


def _direction(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = x[y == 1].mean(0) - x[y == 0].mean(0)
    return d / max(float(np.linalg.norm(d)), 1e-12)


def _directions(states: np.ndarray, y: np.ndarray, layers: list[int]) -> np.ndarray:
    return np.stack([_direction(states[:, layer].astype(np.float64), y) for layer in layers])


def _fitters(n_layers: int) -> dict[str, tuple[list[Any], Callable[[np.ndarray, np.ndarray, Any], Score]]]:
    """Candidate -> (its settings to choose from, fit(states, labels, setting) -> detector)."""
    every = list(range(1, n_layers + 1))  # layer 0 is the token embedding: no context yet

    def direction(states: np.ndarray, y: np.ndarray, layer: int) -> Score:
        return RefusalDirection(layer, _directions(states, y, [layer])[0])

    def combination(states: np.ndarray, y: np.ndarray, _: Any) -> Score:
        dirs = _directions(states, y, every)
        proj = np.einsum("nld,ld->nl", states[:, every].astype(np.float64), dirs)
        return DirectionCombination(every, dirs, fit_logistic(proj, y, l2=ANGLE_L2))

    def probe(states: np.ndarray, y: np.ndarray, layer: int) -> Score:
        return ResidualProbe(layer, fit_logistic(states[:, layer], y, l2=PROBE_L2))

    return {"refusal_direction": (every, direction), "direction_combination": ([None], combination),
            "probe": (every, probe)}


@dataclass
class FitResult:
    """Fitted detectors and the cross-validation behind every choice.

    Attributes
    ----------
    detectors : dict
        name -> detector.
    default : str
        The chosen default (prefill cost, best criterion).
    cv : dict
        name -> per-setting rows (``setting``, ``auroc_plain``, ``detection_wrapped``,
        ``false_positive_wrapped``, ``criterion``) and the chosen setting.
    """

    detectors: dict
    default: str
    cv: dict = field(default_factory=dict)


def _folds(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(len(idx)) % FOLDS
    return fold


def conformal_threshold(benign: np.ndarray, alpha: float) -> float:
    """The score a conformal test at ``alpha`` flags above, on these benign scores (+inf when
    too few to flag): the rule the monitor's calibrated flags follow.

    Parameters
    ----------
    benign : numpy.ndarray
        ``(n,)`` benign scores.
    alpha : float
        Target false-positive rate.

    Returns
    -------
    float
        Flag when score > threshold.
    """
    m = allowed_count(len(benign), alpha)
    return float(np.sort(benign)[len(benign) - m]) if m > 0 else float("inf")


def _judge(plain: np.ndarray, wrapped: np.ndarray, y: np.ndarray) -> dict[str, float]:
    threshold = conformal_threshold(plain[y == 0], LEVEL)
    det, fp = float(np.mean(wrapped[y == 1] > threshold)), float(np.mean(wrapped[y == 0] > threshold))
    det_plain, fp_plain = float(np.mean(plain[y == 1] > threshold)), float(np.mean(plain[y == 0] > threshold))
    return {"auroc_plain": auroc(plain[y == 0], plain[y == 1]), "detection_plain": det_plain,
            "detection_wrapped": det, "false_positive_wrapped": fp,
            "criterion": 0.5 * ((det_plain - fp_plain) + (det - fp))}


def _cross_validate(data: TrainingData, fit: Callable[..., Score], setting: Any, augmented: bool,
                    fold: np.ndarray) -> dict[str, float]:
    rows = []
    y = data.labels
    for f in range(FOLDS):
        tr, te = fold != f, fold == f
        states, labels = data.plain.states[tr], y[tr]
        if augmented:
            states = np.concatenate([states, data.wrapped_a.states[tr]])
            labels = np.concatenate([labels, y[tr]])
        det = fit(states, labels, setting)
        rows.append(_judge(det.score(data.plain.subset(te)), det.score(data.wrapped_b.subset(te)), y[te]))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _cross_validate_text(data: TrainingData, c: float, fold: np.ndarray) -> dict[str, float]:
    y = data.labels
    plain, wrapped_a, wrapped_b = (np.array(sw.texts, dtype=object) for sw in (data.plain, data.wrapped_a,
                                                                                data.wrapped_b))
    rows = []
    for f in range(FOLDS):
        tr, te = fold != f, fold == f
        det = fit_text_classifier(list(plain[tr]) + list(wrapped_a[tr]), np.concatenate([y[tr], y[tr]]), c,
                                  vocabulary_texts=list(plain[tr]))
        rows.append(_judge(det.score_texts(list(plain[te])), det.score_texts(list(wrapped_b[te])), y[te]))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _cv_heads(data: TrainingData, det: Score, fold: np.ndarray, refit: bool) -> dict[str, float]:
    y = data.labels
    angles = data.plain.angle_columns(det.heads)
    aurocs = []
    for f in range(FOLDS):
        tr, te = fold != f, fold == f
        s = (fit_logistic(angles[tr], y[tr], l2=ANGLE_L2).decision(angles[te]) if refit
             else det.score(data.plain.subset(te)))
        aurocs.append(auroc(s[y[te] == 0], s[y[te] == 1]))
    return {"auroc_plain": float(np.mean(aurocs))}


def fit_detectors(data: TrainingData, single_head: tuple[int, int], ensemble_heads: list[tuple[int, int]],
                  n_layers: int, fingerprint: str, seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> FitResult:
    """Choose every setting by cross-validation, then fit each detector on all training prompts.

    Parameters
    ----------
    data : TrainingData
        Training features.
    single_head : (layer, head)
        The published rule's head (from the head search).
    ensemble_heads : list of (layer, head)
        Heads of the multi-head angle probe (from the head search; empty: none).
    n_layers : int
        Transformer layers (states have ``n_layers + 1`` rows).
    fingerprint : str
        The model's fingerprint, recorded in the ``mlp_coverage`` profile.
    seed : int
        Seed of the folds.
    progress : callable, optional
        Called with a line per candidate.

    Returns
    -------
    FitResult
        Detectors, default and the cross-validation tables.
    """
    if data.plain.states.shape[1] != n_layers + 1:
        raise InputError(f"residual states have {data.plain.states.shape[1]} layers, expected n_layers + 1 = "
                         f"{n_layers + 1} (embeddings, then each layer's input, then the final state)")
    fold = _folds(data.labels, seed)
    y = data.labels
    all_states = np.concatenate([data.plain.states, data.wrapped_a.states, data.wrapped_b.states])
    all_labels = np.concatenate([y, y, y])
    detectors: dict[str, Score] = {"head_single": HeadAngle(tuple(single_head))}
    cv: dict[str, Any] = {"head_single": {"rows": [{"setting": None, **_cv_heads(data, detectors['head_single'],
                                                                                    fold, False)}],
                                          "chosen": None}}
    if ensemble_heads:
        angles = data.plain.angle_columns(ensemble_heads)
        detectors["head_ensemble"] = HeadLogistic(list(ensemble_heads), fit_logistic(angles, y, l2=ANGLE_L2))
        cv["head_ensemble"] = {"rows": [{"setting": None, **_cv_heads(data, detectors["head_ensemble"], fold, True)}],
                               "chosen": None}
    for base, (settings, fit) in _fitters(n_layers).items():
        for augmented in (False, True):
            name = base + ("_augmented" if augmented else "")
            rows = [{"setting": s, **_cross_validate(data, fit, s, augmented, fold)} for s in settings]
            best = max(rows, key=_rank)
            cv[name] = {"rows": rows, "chosen": best["setting"]}
            detectors[name] = fit(all_states if augmented else data.plain.states, all_labels if augmented else y,
                                  best["setting"])
            if progress:
                progress(f"{name}: setting {best['setting']}, criterion {best['criterion']:.3f}, "
                         f"plain AUROC {best['auroc_plain']:.3f}")
    cheap = [n for n, d in detectors.items() if d.cost == PREFILL]
    if data.plain.mlp is not None:
        detectors["mlp_coverage"] = MlpCoverage(safe_profile(data.plain.mlp[y == 0], n_layers, fingerprint))
    if all(sw.texts is not None for sw in (data.plain, data.wrapped_a, data.wrapped_b)):
        try:
            rows = [{"setting": c, **_cross_validate_text(data, c, fold)} for c in C_GRID]
            best = max(rows, key=_rank)
            detectors["text_tfidf"] = fit_text_classifier(
                data.plain.texts + data.wrapped_a.texts + data.wrapped_b.texts, all_labels, best["setting"],
                vocabulary_texts=data.plain.texts)
            cv["text_tfidf"] = {"rows": rows, "chosen": best["setting"], "setting_name": "C"}
            if progress:
                progress(f"text_tfidf (baseline): C {best['setting']}, criterion {best['criterion']:.3f}, "
                         f"plain AUROC {best['auroc_plain']:.3f}")
        except (InputError, MissingDependencyError) as exc:  # too few words, or no scikit-learn: left out, said so
            if progress:
                progress(f"text_tfidf (baseline) left out: {exc}")
    lengths = data.plain.lengths.astype(np.float64)
    detectors["length"] = PromptLength(1.0 if auroc(lengths[y == 0], lengths[y == 1]) >= 0.5 else -1.0)
    default = max(cheap, key=lambda n: _rank(chosen_row(cv[n])))
    return FitResult(detectors, default, cv)


def safe_profile(acts: np.ndarray, n_layers: int, fingerprint: str, k_sections: int = 10, k_top: int = 3) -> Any:
    """One-class coverage profile of safe prompts' MLP activations (one coverage layer per
    transformer layer, so top-k is per layer), built by the classifier profile's builder.

    Parameters
    ----------
    acts : numpy.ndarray
        ``(N, n_layers * I)`` last-token MLP activations of safe prompts.
    n_layers : int
        Transformer layers.
    fingerprint : str
        The model's fingerprint.
    k_sections, k_top : int
        k of k-multisection and top-k coverage.

    Returns
    -------
    Profile
        The profile.
    """
    from ..profile.builder import ProfileBuilder

    if acts.ndim != 2 or len(acts) < 2 or acts.shape[1] % n_layers:
        raise InputError(f"MLP activations must be (prompts >= 2, n_layers * width) with {n_layers} equal layers, "
                         f"got {acts.shape}")
    labels = np.zeros(len(acts), np.int64)
    layers = np.split(np.ascontiguousarray(acts, np.float32), n_layers, axis=1)
    b = ProfileBuilder([x.shape[1] for x in layers], 1, k_sections, k_top, "mean", None, 0)
    b.update_ranges(layers, labels).finish_ranges().update_sections(layers, labels)
    return b.build(fingerprint, [f"mlp{i}" for i in range(n_layers)], dataset="safe training prompts")


def _rank(row: dict[str, Any]) -> tuple[float, float]:
    return round(row["criterion"], 6), row["auroc_plain"]  # ties (to rounding) go to the higher plain AUROC


def chosen_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The cross-validation row of the setting a candidate was fitted with.

    Parameters
    ----------
    entry : dict
        One candidate of :attr:`FitResult.cv`.

    Returns
    -------
    dict
        Its row.
    """
    return next(r for r in entry["rows"] if r["setting"] == entry["chosen"])
