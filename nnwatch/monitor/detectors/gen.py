"""``gen``: generalized entropy of the softmax (Liu, Lochman, Zach, "GEN: Pushing the Limits of
Softmax-Based Out-of-Distribution Detection", CVPR 2023).

With ``p`` the softmax of the logits sorted in decreasing order,

    G(x) = sum_{j <= M} p_j^gamma (1 - p_j)^gamma

over the ``M`` largest probabilities (the paper: ``gamma = 0.1``, ``M = 100``; here ``M`` is
capped at the number of classes). Higher = less confident = more anomalous. Logits only:
as cheap as MSP. Non-finite logits score +inf.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from .baselines import log_softmax


class GeneralizedEntropy(Detector):
    """Generalized entropy of the top-M softmax probabilities.

    Parameters
    ----------
    gamma : float
        Exponent, > 0 (the paper's 0.1).
    top : int
        ``M``, how many of the largest probabilities enter (the paper's 100).
    """

    name = "gen"

    def __init__(self, gamma: float = 0.1, top: int = 100) -> None:
        if not gamma > 0 or int(top) < 1:
            raise InputError(f"gen needs gamma > 0 and top >= 1, got {gamma} and {top}")
        self.gamma = float(gamma)
        self.top = int(top)

    def params(self) -> dict:
        return {"gamma": self.gamma, "top": self.top}

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        with np.errstate(invalid="ignore", over="ignore"):
            p = np.exp(log_softmax(view.logits))
            m = min(self.top, p.shape[1])
            top = -np.partition(-p, m - 1, axis=1)[:, :m] if m < p.shape[1] else p
            g = ((top ** self.gamma) * ((1.0 - top) ** self.gamma)).sum(axis=1)
        return finite_or_inf(g)
