"""Anomalies a user can make from clean classifier inputs alone, to choose the fused verdict's members.

From clean inputs ``x`` (any float or integer dtype, any value range) and the model's
predictions on them:

- ``noise``: uniform noise over the inputs' value range ``[lo, hi]`` (the smallest and largest
  value in ``x``);
- ``blend of two classes``: the mean of each input and one predicted as another class;

and for images ``(N, C, H, W)`` also

- ``blur``: a box blur of radius 2 (zero padding), clipped to ``[lo, hi]``;
- ``low contrast``: ``(x - mean) * 0.3 + mean + 0.4 (hi - lo)`` per input, clipped to ``[lo, hi]``.

For images in ``[0, 1]`` these are exactly the synthetic sets of benchmarks/fusion_study.py,
where the fusion rule and the membership rule were chosen. Integer inputs are rounded back to
their dtype. The benchmark's own anomaly sets never enter; they validate the choice.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

NOISE, BLEND, BLUR, CONTRAST = "noise", "blend of two classes", "blur", "low contrast"
BLUR_RADIUS = 2
CONTRAST_FACTOR, BRIGHTNESS = 0.3, 0.4


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    pad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (radius, radius), (radius, radius)))
    out = np.zeros(x.shape, np.float64)
    h, w = x.shape[2:]
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += pad[:, :, dy: dy + h, dx: dx + w]
    return out / (2 * radius + 1) ** 2


def synthetic_inputs(x: np.ndarray, pred: np.ndarray, seed: int = 1) -> dict[str, np.ndarray]:
    """Synthetic anomalies made from clean inputs (see the module's notes).

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, ...)`` clean inputs, ``N >= 2``.
    pred : numpy.ndarray
        ``(N,)`` the model's predicted class of each.
    seed : int
        Seed of the noise and of the blend partners.

    Returns
    -------
    dict
        kind -> ``(N, ...)`` inputs of ``x``'s dtype.

    Raises
    ------
    InputError
        Fewer than two inputs, or predictions of the wrong length.
    """
    x = np.asarray(x)
    pred = np.asarray(pred)
    if len(x) < 2 or pred.shape != (len(x),):
        raise InputError(f"synthetic anomalies need at least 2 inputs with one prediction each; got {len(x)} inputs "
                         f"and predictions of shape {pred.shape}")
    lo, hi = float(np.min(x)), float(np.max(x))
    rng = np.random.default_rng(seed)
    i = rng.permutation(len(x))
    others = [np.flatnonzero(pred != pred[k]) for k in i]
    # one class only: any other input
    j = np.array([rng.choice(o) if len(o) else rng.choice(np.delete(np.arange(len(x)), k)) for k, o in zip(i, others)])
    out = {NOISE: np.random.default_rng(seed).uniform(lo, hi, x.shape),
           BLEND: 0.5 * x[i].astype(np.float64) + 0.5 * x[j].astype(np.float64)}
    if x.ndim == 4:
        out[BLUR] = np.clip(_box_blur(x, BLUR_RADIUS), lo, hi)
        xf = x.astype(np.float64)
        mean = xf.mean(axis=(1, 2, 3), keepdims=True)
        out[CONTRAST] = np.clip((xf - mean) * CONTRAST_FACTOR + mean + BRIGHTNESS * (hi - lo), lo, hi)
    if np.issubdtype(x.dtype, np.integer):
        return {k: np.rint(v).astype(x.dtype) for k, v in out.items()}
    return {k: v.astype(x.dtype) for k, v in out.items()}
