"""``rmd``: relative Mahalanobis distance (Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan, "A Simple
Fix to Mahalanobis Distance for Improving Near-OOD Detection", 2021).

On the penultimate features ``x``: ``RMD(x) = min_c MD_c(x) - MD_0(x)``, where ``MD_c`` is the
squared Mahalanobis distance to class ``c``'s mean under the shared (tied) within-class
covariance, as in ``mahalanobis``, and ``MD_0`` the squared distance to the mean of all
trusted features under their overall covariance (the "background" Gaussian). Subtracting
``MD_0`` removes what is merely far from all the data along directions that do not separate
classes. Both Gaussians come from the profile's streaming sums.
"""

from __future__ import annotations

import numpy as np

from ...profile.schema import Profile
from ...profile.signature import background_gaussian
from ..detector import BatchView
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from .baselines import Mahalanobis


class RelativeMahalanobis(Mahalanobis):
    """Class Mahalanobis distance minus the distance to the background Gaussian."""

    name = "rmd"
    compiled_source = None  # Python: its own score, not the compiled Mahalanobis column

    def _fit(self, profile: Profile) -> None:
        super()._fit(profile)
        mean, precision = background_gaussian(profile)
        evals, evecs = np.linalg.eigh(precision)
        self.background_whiten_ = evecs * np.sqrt(np.clip(evals, 0.0, None))
        self.background_mean_ = mean @ self.background_whiten_

    def ops(self) -> int:
        """Mahalanobis' count, the background whitening ``D * D`` and the logits."""
        return super().ops() + int(self.background_whiten_.size) + int(self.shape_[0] if self.shape_ else 0)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = view.layer(self.layer_).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            md0 = ((x @ self.background_whiten_ - self.background_mean_) ** 2).sum(axis=1)
            return finite_or_inf(self.class_distances(x).min(axis=1) - md0)
