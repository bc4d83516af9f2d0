"""``doctor``: DOCTOR's detector of the model's own misclassifications (Granese, Romanelli, Gorla,
Palamidessi, Piantanida, "DOCTOR: A Simple Method for Detecting Misclassification Errors",
NeurIPS 2021).

With ``p`` the softmax of the logits divided by a temperature ``T`` and ``g(x) = sum_y p_y^2``
(one minus the Gini impurity), the D-alpha rejector flags ``(1 - g(x)) / g(x) > gamma``; its
score is ``(1 - g(x)) / g(x)``. Higher = more likely wrong. The paper also perturbs the input
along the gradient; that needs the model's gradients, which an onnxruntime monitor does not
have, so only the temperature is kept. Logits only. Non-finite logits score +inf.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from ..detector import BatchView, Detector
from .baselines import log_softmax


class Doctor(Detector):
    """DOCTOR's D-alpha score ``(1 - sum p^2) / sum p^2`` of the tempered softmax.

    Parameters
    ----------
    temperature : float
        ``T`` > 0 (the paper tunes it on validation data; 1 = the plain softmax).
    """

    name = "doctor"

    def __init__(self, temperature: float = 1.0) -> None:
        if not float(temperature) > 0:
            raise InputError(f"doctor temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def params(self) -> dict:
        return {"temperature": self.temperature}

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        with np.errstate(invalid="ignore", over="ignore"):
            g = np.exp(2.0 * log_softmax(np.asarray(view.logits, np.float64) / self.temperature)).sum(axis=1)
            return finite_or_inf((1.0 - g) / g)
