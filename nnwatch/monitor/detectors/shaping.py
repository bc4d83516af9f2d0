"""Activation shaping, then energy: ``ash`` (Djurisic, Bozanic, Ashok, Liu, "Extremely Simple
Activation Shaping for Out-of-Distribution Detection", ICLR 2023) and ``scale`` (Xu, Lian, Yu,
Bhattacharyya, "Scaling for Training Time and Post-hoc Out-of-distribution Detection
Enhancement", ICLR 2024).

Per sample, with ``x`` its penultimate features, ``t`` the ``percentile``-th percentile of
``x``'s own values, ``s1 = sum(x)`` and ``s2 = sum(x[x >= t])``:

- ``ash`` variant ``s``: ``x' = x [x >= t] exp(s1 / s2)``; ``p``: ``x' = x [x >= t]``;
  ``b``: ``x' = [x >= t] s1 / #{x >= t}`` (the paper's defaults: ``s``, percentile 90);
- ``scale``: ``x' = x exp(s1 / s2)`` (nothing pruned; percentile 85);

then ``score = -logsumexp(W x' + b)`` through the classifier head. Higher = more anomalous.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError
from ...profile.schema import Profile
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf
from ...kernels.rules import logsumexp_rows


def shape_features(x: np.ndarray, percentile: float, variant: str) -> np.ndarray:
    """Shaped features (see the module docstring).

    Parameters
    ----------
    x : numpy.ndarray
        float64 ``(B, D)`` penultimate features.
    percentile : float
        In (0, 100).
    variant : {"s", "p", "b", "scale"}
        Which shaping.

    Returns
    -------
    numpy.ndarray
        float64 ``(B, D)``.
    """
    t = np.percentile(x, percentile, axis=1, keepdims=True)
    keep = x >= t
    s1 = x.sum(axis=1, keepdims=True)
    s2 = np.where(keep, x, 0.0).sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if variant == "p":
            return np.where(keep, x, 0.0)
        if variant == "b":
            return np.where(keep, s1 / keep.sum(axis=1, keepdims=True), 0.0)
        factor = np.exp(s1 / s2)
        return np.where(keep, x, 0.0) * factor if variant == "s" else x * factor


class _Shaped(Detector):
    cost = "full"
    needs_head = True
    variant = "s"

    def __init__(self, percentile: float) -> None:
        if not 0.0 < float(percentile) < 100.0:
            raise InputError(f"{self.name} percentile must be in (0, 100), got {percentile}")
        self.percentile = float(percentile)

    def _fit(self, profile: Profile) -> None:
        self.layer_ = self.feature_layer(profile)
        self.weight_, self.bias_ = (a.astype(np.float64) for a in self.head_)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = shape_features(view.layer(self.layer_).astype(np.float64), self.percentile, self.variant)
        with np.errstate(invalid="ignore", over="ignore"):
            return finite_or_inf(-logsumexp_rows(x @ self.weight_.T + self.bias_))


class ActivationShaping(_Shaped):
    """ASH: prune each sample's small activations, rescale (or binarize) the rest, then energy.

    Parameters
    ----------
    percentile : float
        Pruning percentile of the sample's own activations (the paper's 90).
    variant : {"s", "p", "b"}
        Scale (the paper's recommended), prune only, or binarize.
    """

    name = "ash"

    def __init__(self, percentile: float = 90.0, variant: str = "s") -> None:
        super().__init__(percentile)
        if variant not in ("s", "p", "b"):
            raise InputError(f"ash variant must be 's', 'p' or 'b', got {variant!r}")
        self.variant = variant

    def params(self) -> dict:
        return {"percentile": self.percentile, "variant": self.variant}


class Scale(_Shaped):
    """SCALE: multiply every activation by ``exp(s1 / s2)``, then energy.

    Parameters
    ----------
    percentile : float
        Percentile defining ``s2`` (the paper's 85).
    """

    name = "scale"
    variant = "scale"

    def __init__(self, percentile: float = 85.0) -> None:
        super().__init__(percentile)

    def params(self) -> dict:
        return {"percentile": self.percentile}
