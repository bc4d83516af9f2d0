"""Input corruptions and noise in the spirit of MNIST-C (numpy only), for OOD sets.

Every function takes float images ``(N, C, H, W)`` in [0, 1] and returns a new float32 array
of the same shape, clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np

from ..calibration.synthetic_inputs import box_blur


def uniform_noise(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pure uniform noise images of the same shape.

    Parameters
    ----------
    x : numpy.ndarray
        Images (only the shape is used).
    seed : int
        RNG seed.

    Returns
    -------
    numpy.ndarray
        Noise.
    """
    return np.random.default_rng(seed).uniform(0, 1, x.shape).astype(np.float32)


def gaussian_noise(x: np.ndarray, sigma: float = 0.3, seed: int = 0) -> np.ndarray:
    """Images plus Gaussian noise.

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    sigma : float
        Noise standard deviation.
    seed : int
        RNG seed.

    Returns
    -------
    numpy.ndarray
        Noisy images.
    """
    return np.clip(x + np.random.default_rng(seed).normal(0, sigma, x.shape), 0, 1).astype(np.float32)


def rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre (bilinear, zero fill).

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    degrees : float
        Angle, counter-clockwise.

    Returns
    -------
    numpy.ndarray
        Rotated images.
    """
    n, c, h, w = x.shape
    t = np.deg2rad(degrees)
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    src_x = np.cos(t) * xx + np.sin(t) * yy + (w - 1) / 2
    src_y = -np.sin(t) * xx + np.cos(t) * yy + (h - 1) / 2
    x0 = np.floor(src_x).astype(int)
    y0 = np.floor(src_y).astype(int)
    fx, fy = src_x - x0, src_y - y0
    out = np.zeros_like(x, dtype=np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = y0 + dy, x0 + dx
            valid = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            vals = x[:, :, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += np.where(valid, vals * (wy * wx), 0.0)
    return np.clip(out, 0, 1).astype(np.float32)


def blur(x: np.ndarray, radius: int = 1) -> np.ndarray:
    """Box blur with a ``(2r+1)^2`` kernel (zero padding).

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    radius : int
        Kernel radius.

    Returns
    -------
    numpy.ndarray
        Blurred images.
    """
    return np.clip(box_blur(x, radius), 0, 1).astype(np.float32)  # one definition, also calibration's


def contrast(x: np.ndarray, factor: float = 0.3, brightness: float = 0.4) -> np.ndarray:
    """Scale contrast about the mean and add brightness.

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    factor : float
        Contrast multiplier.
    brightness : float
        Added offset.

    Returns
    -------
    numpy.ndarray
        Images.
    """
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((x - mean) * factor + mean + brightness, 0, 1).astype(np.float32)


def invert(x: np.ndarray) -> np.ndarray:
    """``1 - x``.

    Parameters
    ----------
    x : numpy.ndarray
        Images.

    Returns
    -------
    numpy.ndarray
        Inverted images.
    """
    return (1.0 - x).astype(np.float32)


def shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by whole pixels, zero fill.

    Parameters
    ----------
    x : numpy.ndarray
        Images.
    dy, dx : int
        Shift down and right.

    Returns
    -------
    numpy.ndarray
        Shifted images.
    """
    out = np.zeros_like(x, dtype=np.float32)
    h, w = x.shape[2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, :, yd, xd] = x[:, :, ys, xs]
    return out


def corruption_suite(x: np.ndarray, rotate_deg: float = 45, shift_px: int = 2) -> dict[str, np.ndarray]:
    """The corrupted copies of ``x`` the demo and the detection benchmark screen (one list, one naming).

    Parameters
    ----------
    x : numpy.ndarray
        float32 images ``(N, C, H, W)`` in [0, 1].
    rotate_deg : float
        Rotation angle.
    shift_px : int
        Shift, in pixels, down and right.

    Returns
    -------
    dict
        name -> corrupted images: uniform noise, Gaussian noise, rotation, blur, low contrast,
        inversion, shift.
    """
    return {"uniform noise": uniform_noise(x), "Gaussian noise s=0.3": gaussian_noise(x, 0.3),
            f"rotate {rotate_deg:g}": rotate(x, rotate_deg), "blur r=1": blur(x, 1),
            "low contrast": contrast(x, 0.3, 0.4), "inverted": invert(x),
            f"shift {shift_px}px": shift(x, shift_px, shift_px)}
