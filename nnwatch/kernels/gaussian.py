"""Squared Mahalanobis distances to class means, serially, for the monitor's hot path.

``numpy``'s matrix products call a multi-threaded BLAS; inside a monitored call those
threads compete with onnxruntime's spinning workers for the cores (measured by a user on 2
cores: a MobileNetV3 call with Mahalanobis went from 1.4 to 8 ms with default threads). This
kernel computes the same formula, ``|z|^2 - 2 z.m_c + |m_c|^2`` with ``z = x W``, in one
thread; the loops run along rows so they vectorize without reassociating sums.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_array
from ..errors import InputError
from ._jit import njit


@njit()
def class_distances(x, whiten, means_t, norms, z, out):
    """Squared distances of one feature vector ``x`` (1-D, any float) to every class mean, into ``out``.

    The one definition, for the compiled verdict pass and :func:`whitened_distances` alike;
    ``z`` is scratch of ``E`` values. For use inside kernels.
    """
    dim = x.shape[0]
    width = whiten.shape[1]
    classes = means_t.shape[1]
    for j in range(width):
        z[j] = 0.0
    for i in range(dim):  # z = x W, row by row (vectorizes)
        xi = np.float64(x[i])
        for j in range(width):
            z[j] += xi * whiten[i, j]
    zz = 0.0
    for c in range(classes):
        out[c] = 0.0
    for j in range(width):  # dots = z M^T, with M^T stored row-major (vectorizes)
        zj = z[j]
        zz += zj * zj
        for c in range(classes):
            out[c] += zj * means_t[j, c]
    for c in range(classes):
        d = zz - 2.0 * out[c] + norms[c]
        out[c] = d if (d > 0.0 or d != d) else 0.0  # clip rounding below 0; NaN stays NaN


@njit()
def _distances(x, whiten, means_t, norms, z, out):
    for b in range(x.shape[0]):
        class_distances(x[b], whiten, means_t, norms, z, out[b])


def whitened_distances(x: np.ndarray, whiten: np.ndarray, whitened_means_t: np.ndarray,
                       mean_norms: np.ndarray) -> np.ndarray:
    """``max(|xW|^2 - 2 xW.m_c + |m_c|^2, 0)`` for every sample and class, in one thread.

    Parameters
    ----------
    x : numpy.ndarray
        float64 ``(B, D)`` features.
    whiten : numpy.ndarray
        float64 ``(D, E)`` whitening matrix ``W`` (``W W^T`` = the precision matrix).
    whitened_means_t : numpy.ndarray
        float64 ``(E, C)``: the class means times ``W``, transposed (row-major, so the kernel's
        inner loop runs along classes).
    mean_norms : numpy.ndarray
        float64 ``(C,)`` their squared norms.

    Returns
    -------
    numpy.ndarray
        float64 ``(B, C)`` squared distances (NaN where a feature is NaN).

    Raises
    ------
    InputError
        Wrong dtypes, shapes or layout.
    """
    x = check_array(np.ascontiguousarray(x), "features", np.float64, (None, None))
    whiten = check_array(whiten, "whiten", np.float64, (x.shape[1], None))
    means_t = check_array(whitened_means_t, "whitened_means_t", np.float64, (whiten.shape[1], None))
    norms = check_array(mean_norms, "mean_norms", np.float64, (means_t.shape[1],))
    if x.shape[0] < 1:
        raise InputError("features: need at least one sample")
    out = np.empty((x.shape[0], means_t.shape[1]), np.float64)
    _distances(x, whiten, means_t, norms, np.empty(whiten.shape[1], np.float64), out)
    return out
