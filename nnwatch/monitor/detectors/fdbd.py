"""``fdbd``: fast decision boundary distance (Liu, Qin, "Fast Decision Boundary based
Out-of-Distribution Detector", ICML 2024).

For penultimate features ``x`` predicted as ``p`` by the head ``W, b``, the mean distance to
the linear decision boundaries between ``p`` and every other class, relative to the distance
from the mean of the trusted features ``mu``:

    D(x) = 1/(K - 1) sum_{c != p} |(w_p - w_c) x + b_p - b_c| / ||w_p - w_c||  /  ||x - mu||

In-distribution inputs lie far from the boundaries, so the anomaly score is ``-D(x)``.
"""

from __future__ import annotations

import numpy as np

from ...profile.schema import Profile
from ...profile.signature import feature_mean
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf


class DecisionBoundaryDistance(Detector):
    """Negative mean distance to the decision boundaries, relative to the distance to the data mean."""

    name = "fdbd"
    cost = "full"
    needs_head = True

    def _fit(self, profile: Profile) -> None:
        self.layer_ = self.feature_layer(profile)
        self.mean_ = feature_mean(profile)
        self.weight_, self.bias_ = (a.astype(np.float64) for a in self.head_)
        diff = self.weight_[:, None, :] - self.weight_[None, :, :]  # (K, K, D): w_p - w_c
        norms = np.linalg.norm(diff, axis=2)
        self.inv_norm_ = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = view.layer(self.layer_).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            z = x @ self.weight_.T + self.bias_  # logits recomputed: z_p - z_c is the signed margin
            p = np.argmax(z, axis=1)
            margins = np.abs(z[np.arange(len(p)), p][:, None] - z) * self.inv_norm_[p]
            k = z.shape[1]
            dist = margins.sum(axis=1) / max(k - 1, 1) / np.linalg.norm(x - self.mean_, axis=1)
        return finite_or_inf(-dist)
