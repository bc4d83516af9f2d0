"""Anomalies a user can make from clean classifier inputs alone, to choose the fused verdict's members.

From clean inputs ``x`` (any float or integer dtype, any value range) and the model's
predictions on them:

- ``noise``: uniform noise over the inputs' value range ``[lo, hi]`` (the smallest and largest
  value in ``x``);
- ``blend of two classes``: the mean of each input and one predicted as another class;

and for images, ``(N, C, H, W)`` or ``(N, H, W, C)`` with at most 4 channels (:func:`image_axes`), also

- ``blur``: a box blur of radius 2 over the two spatial axes (zero padding), clipped to ``[lo, hi]``;
- ``low contrast``: ``(x - mean) * 0.3 + mean + 0.4 (hi - lo)`` per input, clipped to ``[lo, hi]``.

For channels-first images spanning exactly ``[0, 1]`` these are the corruptions of
:mod:`nnwatch.eval.corruptions` (``uniform_noise``, ``blur`` of radius 2, ``contrast`` 0.3), up
to float rounding. Integer inputs are rounded back to
their dtype. The benchmark's own anomaly sets never enter; they validate the choice.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

NOISE, BLEND, BLUR, CONTRAST = "noise", "blend of two classes", "blur", "low contrast"
BLUR_RADIUS = 2
CONTRAST_FACTOR, BRIGHTNESS = 0.3, 0.4


def image_axes(x: np.ndarray) -> tuple[int, int] | None:
    """The two spatial axes of a batch of images, or None when ``x`` is not one.

    As :func:`nnwatch.profile.schema.channel_stats` reads a layout: ``(N, C, H, W)`` when the
    first per-sample axis has at most 4 entries, else ``(N, H, W, C)`` when the last one has.

    Parameters
    ----------
    x : numpy.ndarray
        A batch.

    Returns
    -------
    tuple of int or None
        ``(2, 3)`` (channels first), ``(1, 2)`` (channels last) or None.
    """
    if x.ndim != 4:
        return None
    if x.shape[1] <= 4:
        return (2, 3)
    if x.shape[3] <= 4:
        return (1, 2)
    return None


def box_blur(x: np.ndarray, radius: int, axes: tuple[int, int] = (2, 3)) -> np.ndarray:
    """Mean over the ``(2 radius + 1)^2`` neighbourhood on ``axes`` (zero padding), in float64.

    Parameters
    ----------
    x : numpy.ndarray
        A batch of images.
    radius : int
        Neighbourhood radius.
    axes : tuple of int
        The spatial axes.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``x``.
    """
    widths = [(radius, radius) if a in axes else (0, 0) for a in range(x.ndim)]
    pad = np.pad(x.astype(np.float64), widths)
    out = np.zeros(x.shape, np.float64)
    h, w = x.shape[axes[0]], x.shape[axes[1]]
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            window = [slice(None)] * x.ndim
            window[axes[0]], window[axes[1]] = slice(dy, dy + h), slice(dx, dx + w)
            out += pad[tuple(window)]
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
    axes = image_axes(x)
    if axes is not None:
        out[BLUR] = np.clip(box_blur(x, BLUR_RADIUS, axes), lo, hi)
        xf = x.astype(np.float64)
        mean = xf.mean(axis=(1, 2, 3), keepdims=True)
        out[CONTRAST] = np.clip((xf - mean) * CONTRAST_FACTOR + mean + BRIGHTNESS * (hi - lo), lo, hi)
    if np.issubdtype(x.dtype, np.integer):
        return {k: np.rint(v).astype(x.dtype) for k, v in out.items()}
    return {k: v.astype(x.dtype) for k, v in out.items()}
