"""Baseline detectors on the same outputs, for side-by-side comparison.

- ``msp``: 1 - max softmax probability (Hendrycks & Gimpel, ICLR 2017), computed as
  ``-expm1(max logit - logsumexp)`` so that confident samples keep distinct scores instead of
  all rounding to exactly 0.
- ``max_logit``: -max logit (Hendrycks et al., ICML 2022).
- ``energy``: -logsumexp(logits), the free energy at T = 1 (Liu et al., NeurIPS 2020).
- ``mahalanobis``: min over classes of the squared Mahalanobis distance of the penultimate
  features to the class mean under a shared covariance (Lee et al., NeurIPS 2018), fitted
  from the profile's streaming sums.
Non-finite logits or features score +inf.
"""

from __future__ import annotations

import numpy as np

from ...errors import NotFittedError
from ...kernels.decide import SOURCE_ENERGY, SOURCE_MAX_LOGIT, SOURCE_MSP
from ...kernels.gaussian import whitened_distances
from ...profile.schema import Profile
from ...profile.signature import class_gaussian
from ..detector import BatchView, Detector


def finite_or_inf(values: np.ndarray) -> np.ndarray:
    """Replace NaN and +/-inf scores by +inf (non-finite = most anomalous).

    Parameters
    ----------
    values : numpy.ndarray
        Scores.

    Returns
    -------
    numpy.ndarray
        Scores, non-finite ones +inf.
    """
    return np.where(np.isfinite(values), values, np.inf)


def logsumexp_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp in float64, stable for large logits (NaN rows stay NaN).

    Parameters
    ----------
    z : numpy.ndarray
        ``(B, K)`` logits.

    Returns
    -------
    numpy.ndarray
        float64 ``(B,)``.
    """
    z = np.asarray(z, np.float64)
    m = z.max(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        return m + np.log(np.exp(z - m[:, None]).sum(axis=1))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(B, K)``.

    Returns
    -------
    numpy.ndarray
        ``(B, K)`` float64.
    """
    z = logits.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


class MaxSoftmax(Detector):
    """1 - max softmax probability."""

    name = "msp"
    compiled_source = SOURCE_MSP  # a monitor computes it in its decision pass

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted()
        m, lse = view.logit_stats
        return finite_or_inf(-np.expm1(m - lse))


class MaxLogit(Detector):
    """Negative max logit."""

    name = "max_logit"
    compiled_source = SOURCE_MAX_LOGIT

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted()
        return finite_or_inf(-view.logit_stats[0])


class Energy(Detector):
    """Free energy -logsumexp(logits)."""

    name = "energy"
    compiled_source = SOURCE_ENERGY

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted()
        return finite_or_inf(-view.logit_stats[1])


class Mahalanobis(Detector):
    """Min squared Mahalanobis distance of the penultimate features to a class mean."""

    name = "mahalanobis"
    cost = "full"

    def _fit(self, profile: Profile) -> None:
        layer = profile.header.get("feature_layer")
        if layer is None:
            raise NotFittedError("mahalanobis needs a profile built with a feature (penultimate) layer")
        self.layer_ = int(layer)
        means, precision = class_gaussian(profile)
        self.means_ = means
        self.precision_ = precision
        # d_c(x) = |z|^2 - 2 z.m_c + |m_c|^2 with z = W x, m_c = W mu_c, W W^T = precision:
        # two matmuls and a (B, C) result, whatever the number of classes.
        evals, evecs = np.linalg.eigh(precision)
        self.whiten_ = np.ascontiguousarray(evecs * np.sqrt(np.clip(evals, 0.0, None)), np.float64)
        whitened_means = means @ self.whiten_
        self.whitened_means_t_ = np.ascontiguousarray(whitened_means.T, np.float64)  # the kernel's layout
        self.mean_norms_ = (whitened_means ** 2).sum(axis=1)

    def class_distances(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each feature vector to each class mean.

        Parameters
        ----------
        x : numpy.ndarray
            float64 ``(B, D)`` penultimate features.

        Returns
        -------
        numpy.ndarray
            float64 ``(B, C)``, clipped at 0 (rounding).
        """
        # One thread (nnwatch.kernels.gaussian): BLAS's threads would fight onnxruntime's.
        return whitened_distances(x, self.whiten_, self.whitened_means_t_, self.mean_norms_)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted()
        return finite_or_inf(self.class_distances(view.layer(self.layer_).astype(np.float64)).min(axis=1))
