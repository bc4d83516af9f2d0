"""The head score's numpy side: angles, head ranking and the KDE-crossing threshold.

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


def _kde(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    n = len(samples)
    sd = samples.std(ddof=1) if n > 1 else 0.0
    bw = max(1.06 * sd * n ** (-0.2), 1e-6)  # Silverman's rule
    z = (grid[:, None] - samples[None, :]) / bw
    return np.exp(-0.5 * z * z).sum(1) / (n * bw * np.sqrt(2 * np.pi))


def balanced_accuracy(neg: np.ndarray, pos: np.ndarray, threshold: float) -> float:
    """Mean of the detection rate on ``pos`` and the pass rate on ``neg`` (flag: score > threshold).

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores of safe and unsafe prompts.
    threshold : float
        Decision threshold.

    Returns
    -------
    float
        Balanced accuracy in [0, 1].
    """
    return 0.5 * (float(np.mean(pos > threshold)) + float(np.mean(neg <= threshold)))


def kde_threshold(neg: np.ndarray, pos: np.ndarray, grid_size: int = 2048) -> float:
    """Where the two class densities cross, picking the crossing with the best balanced accuracy.

    Falls back to the best balanced-accuracy cut among the observed scores when the densities
    never cross (perfectly separated or degenerate data).

    Parameters
    ----------
    neg, pos : numpy.ndarray
        Scores of safe and unsafe calibration prompts (at least 2 each).
    grid_size : int
        Evaluation points of the densities.

    Returns
    -------
    float
        The threshold (flag when score > threshold).
    """
    neg = np.asarray(neg, np.float64).ravel()
    pos = np.asarray(pos, np.float64).ravel()
    if len(neg) < 2 or len(pos) < 2 or not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise InputError(f"threshold fit needs at least 2 finite scores per class, got {len(neg)} safe and "
                         f"{len(pos)} unsafe")
    lo, hi = min(neg.min(), pos.min()), max(neg.max(), pos.max())
    grid = np.linspace(lo, hi, grid_size)
    diff = _kde(pos, grid) - _kde(neg, grid)
    cross = np.nonzero(np.sign(diff[:-1]) * np.sign(diff[1:]) < 0)[0]
    candidates = [grid[i] - diff[i] * (grid[i + 1] - grid[i]) / (diff[i + 1] - diff[i]) for i in cross]
    if not candidates:
        candidates = list(np.unique(np.concatenate([neg, pos])))
    return float(max(candidates, key=lambda t: balanced_accuracy(neg, pos, t)))
