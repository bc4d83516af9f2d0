"""Small linear models in numpy for the head ensemble and the hidden-state baselines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


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
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or len(x) != len(y) or not {0.0, 1.0} <= set(np.unique(y)):
        raise InputError(f"logistic fit needs (N, F) features and labels with both classes, got {x.shape}, "
                         f"labels {sorted(set(np.unique(y)))}")
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


@dataclass
class ClassGaussians:
    """Class means with a shared (shrunk) covariance: Mahalanobis distances per class.

    Attributes
    ----------
    means : numpy.ndarray
        ``(2, F)`` safe and unsafe means.
    precision : numpy.ndarray
        ``(F, F)`` inverse of the shrunk tied covariance.
    """

    means: np.ndarray
    precision: np.ndarray

    def score(self, x: np.ndarray) -> np.ndarray:
        """Squared distance to the safe mean minus squared distance to the unsafe mean.

        Parameters
        ----------
        x : numpy.ndarray
            ``(N, F)`` features.

        Returns
        -------
        numpy.ndarray
            ``(N,)``; large = closer to the unsafe cluster.
        """
        x = np.asarray(x, np.float64)
        d = [np.einsum("nf,fg,ng->n", x - m, self.precision, x - m) for m in self.means]
        return d[0] - d[1]


def fit_gaussians(x: np.ndarray, y: np.ndarray, shrinkage: float = 0.1) -> ClassGaussians:
    """Class means and a tied covariance shrunk toward its diagonal.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, F)`` features.
    y : numpy.ndarray
        ``(N,)`` labels 0/1.
    shrinkage : float
        Weight of the diagonal in the shrunk covariance.

    Returns
    -------
    ClassGaussians
        The fitted model.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    means = np.stack([x[y == c].mean(0) for c in (0, 1)])
    centered = x - means[y.astype(int)]
    cov = centered.T @ centered / max(len(x) - 2, 1)
    cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-6 * np.eye(len(cov))
    return ClassGaussians(means, np.linalg.inv(cov))
