"""The small rules every score path shares, defined once on the compiled side.

- log-sum-exp of a row of logits, in float64, stable for large logits (``max + log sum
  exp(z - max)``); a NaN logit makes both the maximum and the sum NaN;
- the ``coverage`` score: the mean of ``nc``, ``kmnc``, ``tknc`` and ``nbc``, computed exactly
  as one ratio of integers, ``((nc + kmnc + nbc) T + tknc N) / (4 N T)`` with the counts
  behind the ratios (``N`` neurons, ``T`` top-k places), rounded once: equal means are equal
  scores however they are made up, in float64 here and in float32 in the ONNX graph;
- a sample with NaN/Inf activations scores +inf on every coverage detector;
- non-finite scores: NaN and +/-inf become +inf (the most anomalous), so they flag.

The compiled verdict pass (:mod:`nnwatch.kernels.verdict`) calls the ``@njit`` helpers; the
detectors written in Python call the public wrappers, which run the same compiled code.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_array
from ._jit import njit


@njit()
def logit_stats(logits, b):
    """``(max, logsumexp)`` of row ``b`` of float logits, in float64; for use inside kernels."""
    m = -np.inf
    for k in range(logits.shape[1]):
        v = np.float64(logits[b, k])
        if np.isnan(v):
            return v, v  # scored +inf, as numpy's NaN-propagating max gives
        if v > m:
            m = v
    total = 0.0
    for k in range(logits.shape[1]):
        total += np.exp(np.float64(logits[b, k]) - m)
    return m, m + np.log(total)


@njit(exact=True)
def count_ratio(k, n):
    """``k / n`` correctly rounded (strict IEEE division, never a reciprocal); for use inside kernels."""
    return k / n


@njit(exact=True)
def coverage_mean(cov, b, n_total, tk_total):
    """The ``coverage`` score of row ``b`` (see the module docstring); for use inside kernels.

    ``cov``'s ratios are correctly rounded ``k / N`` (``k / T`` for ``tknc``, written by
    :func:`count_ratio`): the counts come back exactly with ``rint``, and the mean is one
    correctly rounded division.
    """
    nc = np.rint(cov[b, 0] * n_total)
    km = np.rint(cov[b, 1] * n_total)
    tk = np.rint(cov[b, 2] * tk_total)
    nb = np.rint(cov[b, 3] * n_total)
    return ((nc + km + nb) * tk_total + tk * n_total) / (4.0 * n_total * tk_total)


@njit()
def coverage_score(cov, b, j, n_total, tk_total):
    """Coverage column ``j`` of row ``b`` (``j = -1``: the mean), +inf for NaN/Inf activations."""
    if cov[b, 5] > 0:
        return np.inf
    return coverage_mean(cov, b, n_total, tk_total) if j < 0 else cov[b, j]


@njit()
def finite_or_inf(s):
    """``s``, or +inf where ``s`` is NaN or infinite; for use inside kernels."""
    return s if np.isfinite(s) else np.inf


@njit()
def _logit_rows(z, top, lse):
    for b in range(z.shape[0]):
        top[b], lse[b] = logit_stats(z, b)


def logit_stats_rows(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``(max, logsumexp)`` of logits, float64 (NaN rows stay NaN).

    Parameters
    ----------
    logits : array_like
        ``(B, K)`` float logits, ``K >= 1``.

    Returns
    -------
    tuple of numpy.ndarray
        float64 ``(B,)`` maxima and log-sum-exps.
    """
    z = np.asarray(logits)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    z = check_array(np.ascontiguousarray(z), "logits", z.dtype, (None, None))
    top, lse = np.empty(z.shape[0]), np.empty(z.shape[0])
    if z.shape[1]:
        _logit_rows(z, top, lse)
    else:
        top[:], lse[:] = -np.inf, -np.inf
    return top, lse


def logsumexp_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp in float64 (NaN rows stay NaN).

    Parameters
    ----------
    z : array_like
        ``(B, K)`` logits.

    Returns
    -------
    numpy.ndarray
        float64 ``(B,)``.
    """
    return logit_stats_rows(z)[1]


@njit()
def _coverage_rows(cov, n_total, tk_total, out):
    for b in range(cov.shape[0]):
        out[b] = coverage_mean(cov, b, n_total, tk_total)


def coverage_mean_rows(cov: np.ndarray, n_total: int, tk_total: int) -> np.ndarray:
    """The ``coverage`` score of every row of a coverage matrix.

    Parameters
    ----------
    cov : numpy.ndarray
        float64 ``(B, >= 4)``: ``nc, kmnc, tknc, nbc, ...`` columns.
    n_total : int
        Neurons ``N`` (the denominator of ``nc``, ``kmnc``, ``nbc``).
    tk_total : int
        Top-k places ``T`` (the denominator of ``tknc``; :func:`top_places`).

    Returns
    -------
    numpy.ndarray
        float64 ``(B,)``.
    """
    cov = check_array(np.ascontiguousarray(cov, np.float64), "coverage", np.float64, (None, None))
    out = np.empty(cov.shape[0])
    _coverage_rows(cov, float(n_total), float(tk_total), out)
    return out


def top_places(offsets: np.ndarray, k_top: int) -> int:
    """``T``: how many top-k places a sample has over all layers, ``sum_l min(k_top, n_l)``.

    Parameters
    ----------
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets.
    k_top : int
        k of top-k coverage.

    Returns
    -------
    int
        ``T``.
    """
    sizes = np.diff(np.asarray(offsets, np.int64))
    return int(np.minimum(sizes, int(k_top)).sum())


@njit()
def _checked_rows(cov, out):
    for b in range(cov.shape[0]):
        for j in range(5):
            out[b, j] = coverage_score(cov, b, j, 1.0, 1.0)  # the mean is not among these columns
        out[b, 5] = cov[b, 5]


def checked_coverage_rows(cov: np.ndarray) -> np.ndarray:
    """A copy of a coverage matrix with +inf scores in rows whose activations held NaN/Inf.

    Parameters
    ----------
    cov : numpy.ndarray
        float64 ``(B, 6)`` coverage scores (:data:`nnwatch.kernels.coverage.SCORE_NAMES`).

    Returns
    -------
    numpy.ndarray
        float64 ``(B, 6)``.
    """
    cov = check_array(np.ascontiguousarray(cov, np.float64), "coverage", np.float64, (None, 6))
    out = np.empty_like(cov)
    _checked_rows(cov, out)
    return out


@njit()
def _finite_rows(values, out):
    for i in range(values.shape[0]):
        out[i] = finite_or_inf(values[i])


def finite_or_inf_rows(values: np.ndarray) -> np.ndarray:
    """Scores with NaN and +/-inf replaced by +inf (non-finite = most anomalous).

    Parameters
    ----------
    values : array_like
        Scores, any shape.

    Returns
    -------
    numpy.ndarray
        float64, same shape.
    """
    v = np.ascontiguousarray(values, np.float64)
    out = np.empty(v.size)
    _finite_rows(v.reshape(-1), out)
    return out.reshape(v.shape)
