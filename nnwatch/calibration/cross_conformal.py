"""Cross-conformal p-values (CV+): calibration on every clean training sample, none held out.

Split conformal calibration holds clean samples out of fitting. With a few hundred clean
training prompts that wastes a third of them. Cross-fitting uses all of them:

1. Split the ``n`` clean samples into ``K`` folds (:func:`fold_assignment`); the anomalous
   training samples are not split (they never enter a p-value).
2. For each fold ``k``, fit the detector on everything except fold ``k``'s clean samples and
   score fold ``k``'s clean samples with it: ``R_i`` for ``i`` in fold ``k``.
3. A new input ``x`` is scored by all ``K`` fold detectors, ``s_k(x)``, and

       p(x) = (1 + sum_k #{i in fold k : R_i >= s_k(x)}) / (n + 1),

   flagged at level ``alpha`` when ``p(x) <= alpha`` (as split conformal: from the same count,
   flag when the count is below :func:`nnwatch.kernels.conformal.allowed_count`).

This is the p-value of Vovk's cross-conformal predictor (2015), and the event ``p(x) <= alpha``
is the miscoverage event of the CV+ interval of Barber, Candès, Ramdas and Tibshirani
("Predictive inference with the jackknife+", Annals of Statistics 49(1), 2021, Theorem 4).
For a clean ``x`` exchangeable with the clean training samples, and a fitting procedure
that treats the clean training samples symmetrically, that theorem gives

    P(p(x) <= alpha) <= 2 alpha + min(2 (1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1))

(:func:`false_alarm_bound`) for equal folds (:func:`fold_assignment` gives folds of equal
size when ``K`` divides ``n``; callers that state the guarantee keep ``n`` a multiple of ``K``). The factor 2 is the price of reusing every
sample; in practice the rate stays near ``alpha`` when the fitted detectors are stable
(small changes of the training set change them little), which the simulation tests show
for a logistic probe. A detector with nothing fitted (every fold detector the same) makes
this exactly split conformal with ``n`` calibration samples: rate at most ``alpha``.

Non-finite scores (NaN, +/-inf) count as +inf: most anomalous, as everywhere in nnwatch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from ..kernels.conformal import allowed_count
from ..kernels.rules import finite_or_inf_rows


def fold_assignment(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """Balanced random folds: fold sizes differ by at most one.

    Parameters
    ----------
    n : int
        Samples.
    folds : int
        Folds, 2 <= folds <= n.
    seed : int
        Seed of the permutation.

    Returns
    -------
    numpy.ndarray
        int64 ``(n,)`` fold of each sample.

    Raises
    ------
    InputError
        Fewer than 2 folds, or more folds than samples.
    """
    if not 2 <= folds <= n:
        raise InputError(f"cross-fitting needs 2 <= folds <= samples; got {folds} folds for {n} samples")
    out = np.empty(n, np.int64)
    out[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return out


def counts_at_least(fold_calibration: Sequence[np.ndarray], fold_scores: np.ndarray) -> np.ndarray:
    """``sum_k #{i in fold k : R_i >= s_k(x)}`` for every input.

    Parameters
    ----------
    fold_calibration : sequence of numpy.ndarray
        ``K`` arrays: fold ``k``'s clean samples scored by the detector fitted without them.
    fold_scores : numpy.ndarray
        ``(N, K)``: each input scored by each fold's detector.

    Returns
    -------
    numpy.ndarray
        int64 ``(N,)``.

    Raises
    ------
    InputError
        ``fold_scores`` has not one column per fold, or a fold has no calibration score.
    """
    scores = np.asarray(fold_scores)
    if scores.ndim != 2 or scores.shape[1] != len(fold_calibration):
        raise InputError(f"fold scores must be (inputs, {len(fold_calibration)} folds), got shape {scores.shape}")
    if any(len(c) == 0 for c in fold_calibration):
        raise InputError("every fold needs at least one calibration score")
    scores = finite_or_inf_rows(scores)
    total = np.zeros(len(scores), np.int64)
    for k, cal in enumerate(fold_calibration):
        ref = np.sort(finite_or_inf_rows(cal))
        total += len(ref) - np.searchsorted(ref, scores[:, k], side="left")
    return total


def cross_conformal_p_values(fold_calibration: Sequence[np.ndarray], fold_scores: np.ndarray,
                             alpha: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Cross-conformal p-values, and flags at ``alpha``.

    Parameters
    ----------
    fold_calibration : sequence of numpy.ndarray
        See :func:`counts_at_least`.
    fold_scores : numpy.ndarray
        See :func:`counts_at_least`.
    alpha : float, optional
        Target false-alarm rate; None: no flags.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        float64 p-values ``(N,)``, and bool flags ``p <= alpha``.

    Raises
    ------
    InputError
        See :func:`counts_at_least`.
    """
    n = int(sum(len(c) for c in fold_calibration))
    counts = counts_at_least(fold_calibration, fold_scores)
    p = (1.0 + counts) / (n + 1.0)
    flags = None if alpha is None else counts < allowed_count(n, alpha)
    return p, flags


def false_alarm_bound(alpha: float, n: int, folds: int) -> float:
    """The guaranteed bound on a clean input's flag probability (Barber et al. 2021, Theorem 4).

    Parameters
    ----------
    alpha : float
        Target level.
    n : int
        Clean calibration samples over all folds.
    folds : int
        K.

    Returns
    -------
    float
        ``2 alpha + min(2 (1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1))``.
    """
    k = float(folds)
    return 2.0 * alpha + min(2.0 * (1.0 - 1.0 / k) / (n / k + 1.0), (1.0 - k / n) / (k + 1.0))
