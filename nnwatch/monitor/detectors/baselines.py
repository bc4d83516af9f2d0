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
from ...kernels.gaussian import whitened_distances
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from ...kernels.rules import logsumexp_rows
from ...kernels.verdict import SOURCE_ENERGY, SOURCE_MAHALANOBIS, SOURCE_MAX_LOGIT, SOURCE_MSP, Mahalanobis as Model
from ...profile.schema import Profile
from ...profile.signature import class_gaussian
from ..detector import BatchView, Detector


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (through the kernel-side log-sum-exp).

    Parameters
    ----------
    logits : numpy.ndarray
        ``(B, K)``.

    Returns
    -------
    numpy.ndarray
        ``(B, K)`` float64.
    """
    return np.asarray(logits, np.float64) - logsumexp_rows(logits)[:, None]


class MaxSoftmax(Detector):
    """1 - max softmax probability."""

    name = "msp"
    compiled_source = SOURCE_MSP  # a monitor computes it in its decision pass

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        m, lse = view.logit_stats
        return finite_or_inf(-np.expm1(m - lse))


class MaxLogit(Detector):
    """Negative max logit."""

    name = "max_logit"
    compiled_source = SOURCE_MAX_LOGIT

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        return finite_or_inf(-view.logit_stats[0])


class Energy(Detector):
    """Free energy -logsumexp(logits)."""

    name = "energy"
    compiled_source = SOURCE_ENERGY

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        return finite_or_inf(-view.logit_stats[1])


class Mahalanobis(Detector):
    """Min squared Mahalanobis distance of the penultimate features to a class mean."""

    name = "mahalanobis"
    cost = "full"
    compiled_source = SOURCE_MAHALANOBIS  # a monitor computes it in its compiled pass (compiled_model)
    timed_alone = True  # classes x features: not free on a large model (see Detector)

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

    def ops(self) -> int:
        """``D * D + D * C``: the whitening and the whitened class means, per sample."""
        self.check_fitted()
        return int(self.whiten_.size + self.whitened_means_t_.size)

    def compiled_model(self, offsets: np.ndarray) -> Model:
        """The model the compiled verdict pass scores with: the same formula and arrays.

        Parameters
        ----------
        offsets : numpy.ndarray
            int64 ``(L + 1,)`` layer offsets of the activation buffer.

        Returns
        -------
        nnwatch.kernels.verdict.Mahalanobis
            Feature columns and whitened means.
        """
        self.check_fitted()
        return Model(int(offsets[self.layer_]), int(offsets[self.layer_ + 1]), self.whiten_, self.whitened_means_t_,
                     self.mean_norms_)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        return finite_or_inf(self.class_distances(view.layer(self.layer_).astype(np.float64)).min(axis=1))
