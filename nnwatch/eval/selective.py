"""Selective classification: how well a score discards the model's own mistakes.

A monitor that rejects inputs in order of its score leaves a classifier that answers on the
rest. For ``N`` clean inputs with errors ``err_i`` (prediction != label) and scores ``s_i``
(higher = rejected first), accept the ``k`` lowest-scored inputs:

- coverage ``k / N`` and selective risk ``risk(k)`` = errors among them / ``k``;
- the risk-coverage curve is ``risk(k)`` for ``k = 1..N``; **AURC** is its mean,
  ``(1/N) sum_k risk(k)`` (Geifman, Uziel, El-Yaniv, "Bias-Reduced Uncertainty Estimation
  for Deep Neural Classifiers", ICLR 2019);
- **E-AURC** = AURC - AURC of the best possible order (every error rejected before any
  correct input), which removes the model's own error rate from the comparison;
- at a calibrated flag: coverage = share not flagged, selective risk = error rate among them.

Tied scores are taken in random order; ``risk(k)`` is its expectation, exact: inside a tie
group of ``g`` inputs with ``e`` errors, the ``j``-th accepted input adds ``e / g`` expected
errors. Bootstrap intervals resample the inputs (percentile method).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def _check(scores: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64)
    e = np.asarray(errors)
    if s.ndim != 1 or e.shape != s.shape or s.size == 0:
        raise InputError(f"scores and errors must be 1-D of one non-zero length, got {s.shape} and {e.shape}")
    if e.dtype != bool and not np.isin(e, (0, 1)).all():
        raise InputError("errors must be booleans (prediction != label) or 0/1")
    if np.isnan(s).any():
        raise InputError("scores contain NaN; a detector without scores (uncalibrated fused verdict) cannot rank")
    return s, e.astype(np.float64)


def risk_coverage(scores: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and expected selective risk after accepting ``k = 1..N`` inputs, lowest scores first.

    Parameters
    ----------
    scores : numpy.ndarray
        ``(N,)``; higher = rejected first (+inf last of all).
    errors : numpy.ndarray
        bool ``(N,)``: the model's prediction was wrong.

    Returns
    -------
    tuple
        ``(coverage (N,), risk (N,))``, float64.
    """
    s, e = _check(scores, errors)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    n = len(s)
    # tie groups: each input in a group carries the group's mean error (expected over random order)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_rate = np.add.reduceat(e, starts) / sizes
    expected = np.repeat(group_rate, sizes)
    k = np.arange(1, n + 1, dtype=np.float64)
    return k / n, np.cumsum(expected) / k


def aurc(scores: np.ndarray, errors: np.ndarray) -> float:
    """Area under the risk-coverage curve, ``(1/N) sum_k risk(k)`` (lower is better)."""
    return float(risk_coverage(scores, errors)[1].mean())


def optimal_aurc(errors: np.ndarray) -> float:
    """AURC of the best order (every error rejected before any correct input)."""
    e = np.asarray(errors).astype(np.float64)
    return aurc(e, e)


def excess_aurc(scores: np.ndarray, errors: np.ndarray) -> float:
    """E-AURC: AURC minus :func:`optimal_aurc` (0 for a perfect order)."""
    return aurc(scores, errors) - optimal_aurc(errors)


def at_flag(flags: np.ndarray, errors: np.ndarray) -> dict[str, float]:
    """Coverage and selective risk of the inputs a calibrated flag lets through.

    Parameters
    ----------
    flags : numpy.ndarray
        bool ``(N,)``: flagged (rejected).
    errors : numpy.ndarray
        bool ``(N,)``.

    Returns
    -------
    dict
        ``coverage``, ``selective_risk`` (NaN when everything is flagged), ``errors_caught``
        (share of the errors that were flagged) and ``risk`` (the error rate without a monitor).
    """
    f = np.asarray(flags).astype(bool)
    e = np.asarray(errors).astype(bool)
    if f.shape != e.shape or f.ndim != 1:
        raise InputError(f"flags and errors must be 1-D of one length, got {f.shape} and {e.shape}")
    kept = ~f
    return {"coverage": float(kept.mean()),
            "selective_risk": float(e[kept].mean()) if kept.any() else float("nan"),
            "errors_caught": float(f[e].mean()) if e.any() else float("nan"),
            "risk": float(e.mean())}


def bootstrap_interval(statistic, *arrays: np.ndarray, rounds: int = 1000, level: float = 0.95,  # type: ignore[no-untyped-def]
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows together.

    Parameters
    ----------
    statistic : callable
        Takes the resampled arrays, returns a float (NaN results are dropped).
    *arrays : numpy.ndarray
        Same first dimension.
    rounds : int
        Resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed.

    Returns
    -------
    tuple
        ``(low, high)``.
    """
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(rounds)):
        idx = rng.integers(0, n, n)
        v = statistic(*(a[idx] for a in arrays))
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def selective_summary(scores: np.ndarray, errors: np.ndarray, flags: np.ndarray | None = None,
                      rounds: int = 1000) -> dict[str, object]:
    """AURC, E-AURC (with bootstrap intervals) and the flag's coverage and risk, for one detector.

    Parameters
    ----------
    scores, errors : numpy.ndarray
        As :func:`risk_coverage`.
    flags : numpy.ndarray, optional
        The detector's calibrated flags.
    rounds : int
        Bootstrap resamples.

    Returns
    -------
    dict
        ``aurc``, ``aurc_ci``, ``e_aurc``, ``e_aurc_ci`` and, with flags, ``at_flag``.
    """
    s, e = _check(scores, errors)
    out: dict[str, object] = {"aurc": aurc(s, e), "aurc_ci": bootstrap_interval(aurc, s, e, rounds=rounds),
                              "e_aurc": excess_aurc(s, e),
                              "e_aurc_ci": bootstrap_interval(excess_aurc, s, e, rounds=rounds)}
    if flags is not None:
        out["at_flag"] = at_flag(flags, e.astype(bool))
    return out
