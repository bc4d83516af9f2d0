"""The error verdict: answer only where the model's error rate is bounded, with a stated confidence.

The fused verdict asks "is this input like the clean data?" and bounds false alarms on clean
inputs. A safety case often asks something else: "among the inputs the model answers, how
many answers are wrong?" That is selective classification, and its guarantee is on the
selective risk. Given labelled clean calibration data, a score (higher = less trustworthy, e.g.
``msp`` or ``doctor``), a target risk ``r`` and a confidence ``1 - delta``:

1. The data are split by a seeded permutation into a *grid* half and a *test* half.
2. The grid half's scores give ``G`` candidate thresholds: its quantiles at coverages
   ``1, 1 - 1/G, ..., 1/G``.
3. On the test half, for each candidate ``t`` (answer when ``score <= t``), with ``n`` answered
   and ``k`` wrong answers, the binomial p-value of "the risk at ``t`` exceeds ``r``" is
   ``P(Binomial(n, r) <= k)``; a candidate is certified when that is at most ``delta / G``
   (Bonferroni over the grid).
4. The threshold is the certified candidate of largest coverage (none certified: answer
   nothing, and say so).

At least about ``log(G / delta) / -log(1 - r)`` answered test-half samples with no error are
needed to certify anything (about 300 at ``r = 2%``, ``delta = 5%``, ``G = 20``): a small
calibration set certifies only a generous risk.

Guarantee: the candidates depend only on the grid half, the test half is independent of it, and
the union bound over ``G`` candidates gives ``P(R(t) > r) <= delta`` over the calibration draw,
where ``R(t)`` is the selective risk at the chosen threshold: the probability that an answered
input, exchangeable with the calibration data, is wrong. The error rate of a finite batch of
answered inputs scatters around ``R(t)`` like any binomial count (a simulation in
tests/calibration/test_error_verdict.py checks the rate against a wrong rule). It says nothing
about inputs unlike the calibration data: that is the fused verdict's job, and both can be
asked of one input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError

GRID = 20  # candidate thresholds


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed exactly in log space.

    Parameters
    ----------
    k, n : int
        Successes and trials.
    p : float
        Success probability.

    Returns
    -------
    float
        The probability.
    """
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(k + 1)
    log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(j + 1) + math.lgamma(n - j + 1) for j in i])
               + i * math.log(p) + (n - i) * math.log1p(-p))
    top = log_pmf.max()
    return float(min(1.0, math.exp(top) * np.exp(log_pmf - top).sum()))


def error_threshold(scores: np.ndarray, errors: np.ndarray, risk: float, delta: float = 0.05, grid: int = GRID,
                    seed: int = 0) -> dict[str, Any]:
    """The answer threshold whose selective risk is at most ``risk`` with confidence ``1 - delta``.

    Parameters
    ----------
    scores : numpy.ndarray
        ``(N,)`` clean calibration scores of one detector (higher = less trustworthy).
    errors : numpy.ndarray
        bool ``(N,)``: the model's prediction was wrong.
    risk : float
        Target selective risk ``r`` in (0, 1).
    delta : float
        Allowed probability in (0, 1), over the calibration draw, that the selective risk at the
        chosen threshold (the probability that an answered input is wrong) exceeds ``r``.
    grid : int
        Candidate thresholds ``G``.
    seed : int
        Seed of the grid/test split.

    Returns
    -------
    dict
        ``threshold`` (answer when ``score <= threshold``; None: no candidate certified, answer nothing),
        ``risk``, ``delta``, ``grid``, ``seed``, ``n``, and the certified candidate's test-half
        ``coverage``, ``errors`` and ``answered`` (``certified``: whether any candidate was).

    Raises
    ------
    InputError
        Shapes, NaN scores, or rates outside (0, 1).
    """
    s = np.asarray(scores, np.float64)
    e = np.asarray(errors).astype(bool)
    if s.ndim != 1 or e.shape != s.shape or len(s) < 4:
        raise InputError(f"scores and errors must be 1-D of one length >= 4, got {s.shape} and {e.shape}")
    if np.isnan(s).any():
        raise InputError("scores contain NaN: calibrate the error verdict on a detector that scores every input")
    for name, value in (("risk", risk), ("delta", delta)):
        if not 0.0 < float(value) < 1.0:
            raise InputError(f"{name} must be in (0, 1), got {value}")
    if int(grid) < 1:
        raise InputError(f"grid must be >= 1, got {grid}")
    order = np.random.default_rng(seed).permutation(len(s))
    grid_half, test_half = order[: len(s) // 2], order[len(s) // 2:]
    coverages = 1.0 - np.arange(int(grid)) / int(grid)  # 1, 1 - 1/G, ..., 1/G: largest first
    candidates = np.quantile(s[grid_half], coverages, method="inverted_cdf")
    st, et = s[test_half], e[test_half]
    out: dict[str, Any] = {"threshold": None, "risk": float(risk), "delta": float(delta), "grid": int(grid),
                           "seed": int(seed), "n": int(len(s)), "certified": False, "coverage": 0.0, "errors": 0,
                           "answered": 0}
    for t in candidates.tolist():  # largest coverage first: the first certified one is the answer
        answered = st <= t
        n, k = int(answered.sum()), int(et[answered].sum())
        if n and binomial_cdf(k, n, float(risk)) <= float(delta) / int(grid):
            out.update(threshold=float(t), certified=True, coverage=float(answered.mean()), errors=k, answered=n)
            break
    return out
