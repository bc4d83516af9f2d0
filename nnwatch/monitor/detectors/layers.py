"""``mahalanobis_layers``: a Mahalanobis score on every tapped layer, combined without OOD data
(after Lee, Lee, Lee, Shin, "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018, whose layer ensemble is fitted on OOD data).

Per layer ``l`` with ``n_l`` neurons: the squared distance of the activations ``a`` to the
predicted class's mean ``mu_{p,l}`` under the tied within-class covariance, diagonal
(the profile keeps per-class means and within-class variances of every neuron), except on the
feature layer, where the profile's full covariance is used. Under the fitted Gaussian the
distance is chi-square with ``n_l`` degrees of freedom, so each layer is standardized by
those moments, ``z_l = (d_l - n_l) / sqrt(2 n_l)``, and the score is their mean. The
predicted class is used (not the nearest class, as Lee et al.): an adversarial input whose
lower layers still look like the true class is then far from the predicted class's means.
Variances are floored at ``ridge`` times the layer's mean variance (dead or constant neurons).
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...profile.schema import Profile
from ...profile.signature import class_gaussian
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf


class LayerMahalanobis(Detector):
    """Mean over tapped layers of the chi-square-standardized Mahalanobis distance to the predicted class.

    Parameters
    ----------
    ridge : float
        Variance floor relative to each layer's mean within-class variance, > 0.
    """

    name = "mahalanobis_layers"
    cost = "full"

    def __init__(self, ridge: float = 1e-3) -> None:
        if not ridge > 0:
            raise InputError(f"mahalanobis_layers needs ridge > 0, got {ridge}")
        self.ridge = float(ridge)

    def params(self) -> dict:
        return {"ridge": self.ridge}

    def _fit(self, profile: Profile) -> None:
        r = profile.ranges
        counts = r.count[:-1].astype(np.float64)
        means = np.where(counts[:, None] > 0, r.mean[:-1], r.mean[-1])  # (C, N); empty classes: global mean
        within = r.m2[:-1].sum(axis=0) / max(counts.sum(), 1.0)  # pooled within-class variance per neuron
        sizes = profile.layer_sizes
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        feature = profile.header.get("feature_layer")
        self.means_ = []  # per layer: (C, n_l) class means
        self.scale_ = []  # per layer: (n_l,) inverse variances, or (n_l, n_l) whitening on the feature layer
        for layer in range(len(sizes)):
            lo, hi = int(bounds[layer]), int(bounds[layer + 1])
            if feature is not None and layer == int(feature) and r.feat_outer.size:
                cls_means, precision = class_gaussian(profile, self.ridge)
                evals, evecs = np.linalg.eigh(precision)
                self.means_.append(cls_means)
                self.scale_.append(evecs * np.sqrt(np.clip(evals, 0.0, None)))
            else:
                var = within[lo:hi]
                var = np.maximum(var, self.ridge * max(float(var.mean()), 1e-12))
                self.means_.append(means[:, lo:hi])
                self.scale_.append(1.0 / var)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        pred = view.pred
        total = np.zeros(view.batch)
        with np.errstate(invalid="ignore", over="ignore"):
            for layer, (means, scale) in enumerate(zip(self.means_, self.scale_)):
                diff = view.layer(layer).astype(np.float64) - means[pred]
                if scale.ndim == 1:
                    dist = (diff * diff * scale).sum(axis=1)
                else:
                    dist = ((diff @ scale) ** 2).sum(axis=1)
                n = diff.shape[1]
                total += (dist - n) / np.sqrt(2.0 * n)
            return finite_or_inf(total / len(self.means_))
