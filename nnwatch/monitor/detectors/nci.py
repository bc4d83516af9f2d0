"""``nci``: neural collapse inspired detector (Liu, Qin, "Detecting Out-of-distribution through the
Lens of Neural Collapse", CVPR 2025; OpenOOD's ``nci`` postprocessor).

Under neural collapse, in-distribution features centred on the training mean ``mu`` point
along the predicted class's weight vector ``w_p``; out-of-distribution features point
elsewhere and have smaller norms. For penultimate features ``x`` predicted as ``p``:

    NCI(x) = w_p . (x - mu) / ||x - mu||  +  alpha * ||x||_1

(``alpha = 1e-4``, OpenOOD's default). Higher is in-distribution, so the anomaly score is
``-NCI(x)``. The prediction is the argmax of the logits recomputed from the head, so the
score only depends on the features.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...profile.schema import Profile
from ...profile.signature import feature_mean
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf


class NeuralCollapse(Detector):
    """Negative alignment of the centred features with the predicted class's weights, plus an L1 norm term.

    Parameters
    ----------
    alpha : float
        Weight of the feature L1 norm, >= 0.
    """

    name = "nci"
    cost = "full"
    needs_head = True

    def __init__(self, alpha: float = 1e-4) -> None:
        if not alpha >= 0:
            raise InputError(f"nci needs alpha >= 0, got {alpha}")
        self.alpha = float(alpha)

    def params(self) -> dict:
        return {"alpha": self.alpha}

    def _fit(self, profile: Profile) -> None:
        self.layer_ = self.feature_layer(profile)
        self.mean_ = feature_mean(profile)
        self.weight_, self.bias_ = (a.astype(np.float64) for a in self.head_)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = view.layer(self.layer_).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            pred = np.argmax(x @ self.weight_.T + self.bias_, axis=1)
            centred = x - self.mean_
            align = (self.weight_[pred] * centred).sum(axis=1) / np.linalg.norm(centred, axis=1)
            return finite_or_inf(-(align + self.alpha * np.abs(x).sum(axis=1)))
