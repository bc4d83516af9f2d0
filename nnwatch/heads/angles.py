"""The head score's numpy side: angles and the published head ranking.

Free of torch so that the ONNX back-end and saved detectors run without it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

EPSILON = 1e-5  # the published query scale of a masked head


def angle_degrees(base: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """Angle between hidden states, in degrees, computed in float64.

    Parameters
    ----------
    base : numpy.ndarray
        ``(..., D)`` hidden states of the plain pass.
    masked : numpy.ndarray
        ``(..., D)`` hidden states with a head masked (broadcast against ``base``).

    Returns
    -------
    numpy.ndarray
        ``(...)`` angles in [0, 180].
    """
    a = np.asarray(base, np.float64)
    b = np.asarray(masked, np.float64)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-300)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def rank_heads(unsafe: np.ndarray, safe: np.ndarray, percentile: float = 80.0) -> list[tuple[int, int, float]]:
    """The published head selection: low angle on safe prompts, large gap to unsafe ones.

    Parameters
    ----------
    unsafe, safe : numpy.ndarray
        ``(prompts, layers, heads)`` angles on unsafe and safe calibration prompts.
    percentile : float
        Heads whose mean safe angle exceeds this percentile across heads are excluded.

    Returns
    -------
    list of (layer, head, gap)
        Kept heads, best first; ``gap`` = mean unsafe angle - mean safe angle.
    """
    if unsafe.ndim != 3 or safe.ndim != 3 or unsafe.shape[1:] != safe.shape[1:]:
        raise InputError(f"angle arrays must be (prompts, layers, heads) of one layout, got {unsafe.shape} "
                         f"and {safe.shape}")
    mu_safe = safe.mean(0)
    gap = unsafe.mean(0) - mu_safe
    keep = mu_safe <= np.percentile(mu_safe, percentile)
    order = np.argsort(-np.where(keep, gap, -np.inf), axis=None, kind="stable")
    out = []
    for flat in order:
        layer, head = np.unravel_index(flat, gap.shape)
        if keep[layer, head]:
            out.append((int(layer), int(head), float(gap[layer, head])))
    return out
