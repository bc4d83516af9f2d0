"""L2-regularised logistic regression in numpy: how the language detectors combine features.

The Gaussian (Mahalanobis) code lives once, in :mod:`nnwatch.profile.signature`; the
language detectors need only this linear model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import is_finite_list
from ..errors import InputError, ProfileError


@dataclass
class Logistic:
    """L2-regularised logistic regression on standardised features.

    Attributes
    ----------
    mean, scale : numpy.ndarray
        Feature standardisation.
    weights : numpy.ndarray
        Coefficients on standardised features.
    bias : float
        Intercept.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of "unsafe".

        Parameters
        ----------
        x : numpy.ndarray
            ``(N, F)`` features.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` log-odds.
        """
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.bias


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> Logistic:
    """Newton's method on the L2-penalised log-likelihood (classes weighted equally).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, F)`` features.
    y : numpy.ndarray
        ``(N,)`` labels 0/1, both present.
    l2 : float
        Penalty on the weights (not the bias), per sample-weight unit.
    iters : int
        Most Newton steps.

    Returns
    -------
    Logistic
        The fitted model.

    Raises
    ------
    InputError
        Mis-shaped or non-finite features, labels other than exactly {0, 1}, negative ``l2``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != (len(x),) or set(np.unique(y).tolist()) != {0.0, 1.0}:
        raise InputError(f"logistic fit needs (N, F) features and (N,) labels of exactly 0 and 1, got {x.shape}, "
                         f"{y.shape}, labels {sorted(set(np.unique(y).tolist()))}")
    if not np.isfinite(x).all() or not l2 >= 0:
        raise InputError(f"logistic fit needs finite features and l2 >= 0 (got {int((~np.isfinite(x)).sum())} "
                         f"non-finite values, l2={l2})")
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-12] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    sw = np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum()) * len(y)  # balanced classes
    pen = np.full(z.shape[1], l2)
    pen[-1] = 0.0
    w = np.zeros(z.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (sw * (p - y)) + pen * w
        hess = (z * (sw * p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Logistic(mean, scale, w[:-1], float(w[-1]))


def logistic_to_json(lg: Logistic) -> dict[str, Any]:
    """Plain-JSON form of a fitted model.

    Parameters
    ----------
    lg : Logistic
        The model.

    Returns
    -------
    dict
        ``mean``, ``scale``, ``weights`` (lists) and ``bias``.
    """
    return {"mean": lg.mean.tolist(), "scale": lg.scale.tolist(), "weights": lg.weights.tolist(), "bias": lg.bias}


def logistic_from_json(d: Any, n_features: int, where: str) -> Logistic:
    """Validate and rebuild a model written by :func:`logistic_to_json`.

    Parameters
    ----------
    d : object
        Parsed JSON.
    n_features : int
        Features the model must take.
    where : str
        Where it came from, for messages.

    Returns
    -------
    Logistic
        The model.

    Raises
    ------
    ProfileError
        A field missing, of another length, not finite, or a non-positive scale.
    """
    if not (isinstance(d, dict) and all(is_finite_list(d.get(f), n_features) for f in ("mean", "scale", "weights"))
            and is_finite_list([d.get("bias")], 1)):
        raise ProfileError(f"{where}: logistic needs mean/scale/weights of length {n_features} and a finite bias")
    if not all(s > 0 for s in d["scale"]):
        raise ProfileError(f"{where}: logistic scale must be positive")
    return Logistic(np.array(d["mean"], float), np.array(d["scale"], float), np.array(d["weights"], float),
                    float(d["bias"]))
