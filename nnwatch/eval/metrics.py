"""Detection metrics; anomalies are the positive class and higher scores mean anomalous.

All functions treat ties exactly (no dependence on sample order) and accept +inf scores.
"""

from __future__ import annotations

import numpy as np

from ..calibration.error_verdict import binomial_cdf  # one definition, also the error verdict's
from ..calibration.separation import auroc  # noqa: F401  one definition, also the fused members' choice
from ..calibration.separation import check_score_pair
from ..errors import InputError


def roc_curve(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for every distinct threshold (flag when score >= threshold).

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores.

    Returns
    -------
    tuple of numpy.ndarray
        ``(fpr, tpr, thresholds)``, from (0, 0) to (1, 1).
    """
    neg, pos = check_score_pair(neg, pos)
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    neg_s = np.sort(neg)
    pos_s = np.sort(pos)
    fpr = (neg.size - np.searchsorted(neg_s, thresholds, side="left")) / neg.size
    tpr = (pos.size - np.searchsorted(pos_s, thresholds, side="left")) / pos.size
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), np.concatenate([[np.inf], thresholds])


def aupr(neg: np.ndarray, pos: np.ndarray) -> float:
    """Average precision with anomalies as positives (step-wise area, tie groups together).

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores.

    Returns
    -------
    float
        AUPR in [0, 1].
    """
    fpr, tpr, _ = roc_curve(neg, pos)
    tp = tpr * np.asarray(pos).size
    fp = fpr * np.asarray(neg).size
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 1.0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def fpr_at_tpr(neg: np.ndarray, pos: np.ndarray, tpr_target: float = 0.95) -> float:
    """Lowest FPR over thresholds that reach at least ``tpr_target`` TPR.

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores.
    tpr_target : float
        Required TPR.

    Returns
    -------
    float
        FPR.
    """
    fpr, tpr, _ = roc_curve(neg, pos)
    return float(fpr[tpr >= tpr_target - 1e-12].min())


def tpr_at_fpr(neg: np.ndarray, pos: np.ndarray, fpr_target: float = 0.05) -> float:
    """Highest TPR over thresholds whose FPR is at most ``fpr_target`` (an oracle threshold).

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores.
    fpr_target : float
        Allowed FPR.

    Returns
    -------
    float
        TPR.
    """
    fpr, tpr, _ = roc_curve(neg, pos)
    return float(tpr[fpr <= fpr_target + 1e-12].max())


def summarize(neg: np.ndarray, pos: np.ndarray) -> dict[str, float]:
    """All threshold-free metrics at once.

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores.

    Returns
    -------
    dict
        auroc, aupr, fpr_at_95tpr, tpr_at_5fpr.
    """
    return {"auroc": auroc(neg, pos), "aupr": aupr(neg, pos), "fpr_at_95tpr": fpr_at_tpr(neg, pos, 0.95),
            "tpr_at_5fpr": tpr_at_fpr(neg, pos, 0.05)}


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a rate ``k / n``.

    Parameters
    ----------
    k, n : int
        Events and trials, ``0 <= k <= n``, ``n >= 1``.
    level : float
        Confidence level.

    Returns
    -------
    tuple of float
        ``(low, high)``: ``P(X >= k | low) = P(X <= k | high) = (1 - level) / 2``.
    """
    if not 0 <= k <= n or n < 1:
        raise InputError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    tail = (1.0 - level) / 2

    def bisect(increasing) -> float:  # the p where increasing(p) crosses the tail
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if increasing(mid) < tail else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if k == 0 else bisect(lambda p: 1.0 - binomial_cdf(k - 1, n, p))
    high = 1.0 if k == n else 1.0 - bisect(lambda q: binomial_cdf(k, n, 1.0 - q))
    return low, high


def binomial_quantile(q: float, n: int, p: float) -> int:
    """Smallest ``k`` with ``P(X <= k) >= q`` for ``X ~ Binomial(n, p)``.

    Parameters
    ----------
    q : float
        Probability level.
    n : int
        Trials.
    p : float
        Success probability.

    Returns
    -------
    int
        The quantile.
    """
    k = int(n * p)
    while k > 0 and binomial_cdf(k - 1, n, p) >= q:
        k -= 1
    while binomial_cdf(k, n, p) < q:
        k += 1
    return k


def false_alarm_check(flags: np.ndarray, target: float, level: float = 0.95,
                      groups: tuple[list[int], list[int]] | None = None) -> dict[str, float]:
    """Realized false-alarm rate on clean data against a target rate.

    Parameters
    ----------
    flags : numpy.ndarray
        bool flags of clean samples.
    target : float
        The rate the calibration promised (at most).
    level : float
        Confidence level of the intervals.
    groups : tuple of lists, optional
        ``(calibration sizes, clean test counts)`` per calibration group: adds the interval
        a valid conformal calibration gives (:func:`conformal_false_alarm_range`).

    Returns
    -------
    dict
        ``rate``, its exact interval ``low``/``high``, ``n``; ``target_high``: the upper end of
        the central binomial interval of ``n`` samples at the target rate (test noise only);
        with ``groups``, ``conformal_low``/``conformal_high`` (calibration and test noise), and
        ``within_target`` judged against ``conformal_high`` instead.
    """
    flags = np.asarray(flags, bool)
    n, k = int(flags.size), int(flags.sum())
    low, high = binomial_interval(k, n, level)
    target_high = binomial_quantile(1 - (1 - level) / 2, n, target) / n
    out = {"rate": k / n, "low": low, "high": high, "n": n, "target": float(target), "target_high": target_high,
           "within_target": bool(k / n <= target_high)}
    if groups is not None:
        out["conformal_low"], out["conformal_high"] = conformal_false_alarm_range(*groups, alpha=target, level=level)
        out["within_target"] = bool(k / n <= out["conformal_high"])
    return out


def conformal_false_alarm_range(cal_sizes: list[int], test_counts: list[int], alpha: float, level: float = 0.95,
                                draws: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Central interval of the realized false-alarm rate of a valid conformal calibration.

    A calibration group of ``n`` clean scores flags at level ``alpha`` with a conditional
    false-alarm rate distributed as Beta(m, n + 1 - m), ``m = allowed_count(n, alpha)`` (for
    continuous scores; ties only lower it); ``t`` clean test inputs of that group then raise
    Binomial(t, rate) alarms. This simulates both sources of spread (the calibration set and
    the test set), which the plain binomial interval of the target ignores.

    Parameters
    ----------
    cal_sizes : list of int
        Calibration scores per group.
    test_counts : list of int
        Clean test inputs per group (same order).
    alpha : float
        Target rate.
    level : float
        Central probability of the interval.
    draws : int
        Simulated calibration/test pairs.
    seed : int
        Seed.

    Returns
    -------
    tuple of float
        ``(low, high)`` of the realized rate over all test inputs.
    """
    from ..kernels.conformal import allowed_count

    if len(cal_sizes) != len(test_counts) or sum(test_counts) == 0:
        raise InputError("need one calibration size and one test count per group, and some test inputs")
    rng = np.random.default_rng(seed)
    alarms = np.zeros(draws)
    for n, t in zip(cal_sizes, test_counts):
        m = allowed_count(int(n), alpha)
        if t == 0 or m == 0:
            continue
        rate = rng.beta(m, n + 1 - m, draws)
        alarms += rng.binomial(int(t), rate)
    rates = alarms / sum(test_counts)
    tail = (1 - level) / 2
    return float(np.quantile(rates, tail)), float(np.quantile(rates, 1 - tail))
