"""``react``: rectified activations, then energy (Sun, Guo, Li, "ReAct: Out-of-distribution
Detection With Rectified Activations", NeurIPS 2021).

The penultimate features are clipped at ``c``, the ``percentile``-th percentile (the paper's
90) of all trusted training activations of that layer, and the logits recomputed through the
classifier head: ``score = -logsumexp(W min(x, c) + b)``. Higher = more anomalous. Needs the
head (a final Gemm or MatMul+Add) and the profile's feature sample for the percentile.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...profile.schema import Profile
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from ...kernels.rules import logsumexp_rows


class ReAct(Detector):
    """Energy of the logits recomputed from clipped penultimate features.

    Parameters
    ----------
    percentile : float
        Clip level as a percentile of the training activations, in (0, 100].
    """

    name = "react"
    cost = "full"
    needs_head = True

    def __init__(self, percentile: float = 90.0) -> None:
        if not 0.0 < float(percentile) <= 100.0:
            raise InputError(f"react percentile must be in (0, 100], got {percentile}")
        self.percentile = float(percentile)

    def params(self) -> dict:
        return {"percentile": self.percentile}

    def _fit(self, profile: Profile) -> None:
        self.layer_ = self.feature_layer(profile, sample=True)
        sample = profile.ranges.sample_feats
        self.clip_ = float(np.percentile(sample.astype(np.float64), self.percentile))
        self.weight_, self.bias_ = (a.astype(np.float64) for a in self.head_)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = np.minimum(view.layer(self.layer_).astype(np.float64), self.clip_)
        with np.errstate(invalid="ignore", over="ignore"):
            return finite_or_inf(-logsumexp_rows(x @ self.weight_.T + self.bias_))
