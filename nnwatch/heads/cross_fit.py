"""Cross-fitted calibration of the language detectors: every benign training prompt calibrates.

``nnwatch heads fit`` used to hold 100 benign training prompts out of fitting to calibrate
on. Cross-fitting (:mod:`nnwatch.calibration.cross_conformal`, CV+) uses all of them: the
benign prompts free to calibrate (those the head search did not use) are split into ``K``
folds; for each fold, the whole fit (:func:`nnwatch.heads.fit.fit_detectors`, its own
cross-validated choices included) runs again without that fold's benign prompts, and scores
them. A new prompt is scored by the ``K`` fold detectors of each column and gets the
cross-conformal p-value; its score column stays the detector fitted on all prompts.

Kept in the detector file as ``cross_fit``: per column, the ``K`` fold detectors and the
out-of-fold scores. ``mlp_coverage`` is not cross-fitted (``K`` profiles would multiply the
file); it is calibrated by ``nnwatch calibrate`` on the user's benign prompts, which
replaces the cross-fitted calibration of every column (split conformal: the prompts were not
fitted on, so the detector fitted on everything is calibrated directly).

The guarantee (Barber et al. 2021, Theorem 4): a benign prompt exchangeable with the benign
training prompts is flagged with probability at most
``2 fpr + min(2 (1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1))``; near ``fpr`` in practice for
stable fits. The head search's prompts and the built-in contrast pairs are fitted in every
fold and never calibrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validate import is_finite_list
from ..calibration.cross_conformal import cross_conformal_p_values, false_alarm_bound
from ..errors import InputError, ProfileError
from .collect import Sweep
from .scores import Layout, MlpCoverage, Score, heads_needed, score_from_json

FOLDS = 5
CALIBRATIONS = ("cross-fit", "hold-out")  # how `heads fit` calibrates


@dataclass
class CrossFit:
    """Fold detectors and their out-of-fold benign scores.

    Attributes
    ----------
    folds : dict
        Column name -> ``K`` detectors, detector ``k`` fitted without fold ``k``'s benign prompts.
    scores : dict
        Column name -> ``K`` float64 arrays: fold ``k``'s benign prompts scored by detector ``k``.
    fpr : float
        Target false-positive rate of the flags.
    ids : list of str
        The benign prompts that calibrate, with ``fold`` their folds.
    fold : list of int
        Fold of each id.
    info : dict
        Seconds taken and the guarantee's bound.
    """

    folds: dict
    scores: dict
    fpr: float
    ids: list = field(default_factory=list)
    fold: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Benign prompts calibrating."""
        return len(self.ids)

    @property
    def k(self) -> int:
        """Folds."""
        return len(next(iter(self.scores.values())))

    @property
    def bound(self) -> float:
        """The guaranteed false-alarm bound at :attr:`fpr` (Barber et al. 2021, Theorem 4)."""
        return false_alarm_bound(self.fpr, self.n, self.k)

    def p_values(self, name: str, features: Sweep) -> tuple[np.ndarray, np.ndarray]:
        """Cross-conformal p-values and flags of one column.

        Parameters
        ----------
        name : str
            A cross-fitted column.
        features : Sweep
            Features of the prompts (with the heads the fold detectors read).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            float64 p-values and bool flags at :attr:`fpr`.
        """
        cols = np.stack([d.score(features) for d in self.folds[name]], axis=1)
        p, flags = cross_conformal_p_values(self.scores[name], cols, self.fpr)
        return p, flags

    def heads(self, names: list[str]) -> list[tuple[int, int]]:
        """Heads the fold detectors of ``names`` mask (the full fit's heads: the search fixed them).

        Parameters
        ----------
        names : list of str
            Columns.

        Returns
        -------
        list of (layer, head)
            Heads.
        """
        return heads_needed([d for n in names if n in self.folds for d in self.folds[n]])

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (inside the detector file)."""
        return {"fpr": self.fpr, "ids": list(self.ids), "fold": [int(f) for f in self.fold], "info": self.info,
                "folds": {n: [d.to_json() for d in ds] for n, ds in self.folds.items()},
                "scores": {n: [s.tolist() for s in ss] for n, ss in self.scores.items()}}


def cross_fit_from_json(d: Any, lay: Layout, names: list[str], where: str) -> CrossFit | None:
    """Validate the ``cross_fit`` section of a detector file.

    Parameters
    ----------
    d : object
        Parsed JSON (None: no cross-fit).
    lay : Layout
        The model's layout.
    names : list of str
        The file's detector names.
    where : str
        For messages.

    Returns
    -------
    CrossFit or None
        The section.

    Raises
    ------
    ProfileError
        A field missing or out of range; the message names it.
    """
    if d is None:
        return None

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ProfileError(f"{where}: invalid detector file: cross_fit {what}")

    need(isinstance(d, dict), "is not an object")
    fpr = d.get("fpr")
    need(isinstance(fpr, float) and 0 < fpr < 1, "fpr must be in (0, 1)")
    folds, scores = d.get("folds"), d.get("scores")
    need(isinstance(folds, dict) and folds and isinstance(scores, dict) and set(folds) == set(scores),
         "folds and scores must name the same detectors")
    need(all(n in names for n in folds), f"detectors must be some of {names}")
    ids, fold = d.get("ids"), d.get("fold")
    need(isinstance(ids, list) and isinstance(fold, list) and len(ids) == len(fold) > 0, "ids and fold must be "
         "lists of one entry per calibration prompt")
    k = max(fold) + 1 if all(isinstance(f, int) and f >= 0 for f in fold) else 0
    need(k >= 2, "fold must hold fold numbers 0..K-1, K >= 2")
    sizes = np.bincount(np.asarray(fold), minlength=k)
    need(bool((sizes > 0).all()), "every fold must hold at least one calibration prompt")
    out_folds: dict[str, list[Score]] = {}
    out_scores: dict[str, list[np.ndarray]] = {}
    for name in folds:
        need(isinstance(folds[name], list) and len(folds[name]) == k, f"{name}: {k} fold detectors expected")
        out_folds[name] = [score_from_json(v, lay, f"{where}: cross_fit {name} fold {i}")
                           for i, v in enumerate(folds[name])]
        need(not any(isinstance(s, MlpCoverage) for s in out_folds[name]), f"{name}: mlp_coverage is not cross-fitted")
        rows = scores[name]
        need(isinstance(rows, list) and len(rows) == k and all(is_finite_list(r, int(sizes[i]))
                                                                 for i, r in enumerate(rows)),
             f"{name}: scores must be {k} lists of finite numbers, one per prompt of the fold")
        out_scores[name] = [np.asarray(r, np.float64) for r in rows]
    info = d.get("info", {})
    need(isinstance(info, dict) and all(isinstance(v, (int, float, str)) for v in info.values()),
         "info must be an object of numbers and strings")
    return CrossFit(out_folds, out_scores, fpr, list(ids), list(fold), info)


def cross_fit(train_ids: list[str], labels: np.ndarray, pool: np.ndarray, fit: Callable[[np.ndarray], dict],
              score_rows: Callable[[Score, np.ndarray], np.ndarray], fpr: float, folds: int = FOLDS, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> CrossFit:
    """Fit without each fold of the calibrating benign prompts, and score that fold.

    Parameters
    ----------
    train_ids : list of str
        Ids of the training rows.
    labels : numpy.ndarray
        Their labels (1 unsafe).
    pool : numpy.ndarray
        bool ``(N,)``: benign rows that calibrate (the others are fitted in every fold).
    fit : callable
        ``fit(keep)`` -> name -> detector, fitted on the rows where ``keep`` is True (the
        whole fit, its own choices included).
    score_rows : callable
        ``score_rows(detector, rows)`` -> scores of those rows (int indices).
    fpr : float
        Target false-positive rate.
    folds : int
        K.
    seed : int
        Seed of the folds.
    progress : callable, optional
        Called with a line per fold.

    Returns
    -------
    CrossFit
        Fold detectors and out-of-fold scores (every column but ``mlp_coverage``).

    Raises
    ------
    InputError
        Fewer calibrating prompts than folds, or a fold detector scores a prompt non-finite.
    """
    import time

    from ..calibration.cross_conformal import fold_assignment

    rows = np.flatnonzero(pool & (labels == 0))
    # Theorem 4's bound is for equal folds: n mod K prompts, drawn at random, are fitted in every
    # fold instead of calibrating.
    usable = len(rows) - len(rows) % folds
    rows = np.sort(np.random.default_rng(seed + 1).permutation(rows)[:usable])
    fold = fold_assignment(len(rows), folds, seed)
    out_folds: dict[str, list[Score]] = {}
    out_scores: dict[str, list[np.ndarray]] = {}
    start = time.perf_counter()
    for k in range(folds):
        held = rows[fold == k]
        keep = np.ones(len(labels), np.bool_)
        keep[held] = False
        dets = fit(keep)
        for name, det in dets.items():
            if isinstance(det, MlpCoverage):
                continue
            scores = np.asarray(score_rows(det, held), np.float64)
            if not np.isfinite(scores).all():
                raise InputError(f"cross-fit fold {k + 1}: detector {name} gave {int((~np.isfinite(scores)).sum())} "
                                 "non-finite scores on the benign prompts it did not see; the features of those "
                                 "prompts are broken (check the prompts, or calibrate with --calibration hold-out)")
            out_folds.setdefault(name, []).append(det)
            out_scores.setdefault(name, []).append(scores)
        if progress:
            progress(f"cross-fit fold {k + 1}/{folds}: fitted without {len(held)} benign prompts, scored them "
                     f"({time.perf_counter() - start:.0f} s)")
    complete = [n for n, v in out_folds.items() if len(v) == folds]  # a column every fold fitted, in fit order
    info = {"seconds": time.perf_counter() - start, "folds": folds, "calibrating_prompts": int(len(rows)),
            "fitted_in_every_fold": int(len(np.flatnonzero(pool & (labels == 0))) - len(rows))}
    return CrossFit({n: out_folds[n] for n in complete}, {n: out_scores[n] for n in complete}, float(fpr),
                    [train_ids[i] for i in rows], [int(f) for f in fold], info)
