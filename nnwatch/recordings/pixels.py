"""Encoded images (PNG, JPEG) to the uint8 pixels every recording source hands on.

Pixels are ``(H, W, 3)`` RGB or ``(H, W)`` grayscale, uint8. Palette and alpha images become
RGB (alpha dropped), gray with alpha becomes gray. 16-bit and float images are refused by
name: scaling them to 8 bits is a choice the user makes, not a silent default.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import InputError

FORMATS = ("PNG", "JPEG", "MPO")  # MPO: the JPEG that many phone and stereo cameras write


class CorruptFrame(Exception):
    """The bytes of one frame cannot be decoded (truncated, garbage); the frame is skipped."""


def _image_module() -> Any:
    return require("PIL.Image", extra="recordings")


def image_pixels(image: Any, what: str) -> np.ndarray:
    """uint8 pixels of an opened Pillow image.

    Parameters
    ----------
    image : PIL.Image.Image
        The image (loaded here).
    what : str
        Names the frame in messages.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

    Raises
    ------
    InputError
        A 16-bit, float or CMYK image.
    CorruptFrame
        The data cannot be decoded.
    """
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "truncated / broken"
        raise CorruptFrame(f"{type(exc).__name__}: {exc}") from None
    mode = image.mode
    if mode in ("L", "1"):
        return np.asarray(image.convert("L"), np.uint8)
    if mode == "LA":
        return np.asarray(image.convert("L"), np.uint8)
    if mode in ("RGB", "RGBA", "RGBX", "P", "PA", "YCbCr"):
        return np.asarray(image.convert("RGB"), np.uint8)
    raise InputError(f"{what}: image mode {mode} is not supported (8-bit gray, RGB, RGBA and palette images are; "
                     "16-bit, float and CMYK images must be converted to 8 bits first)")


def decode_bytes(data: bytes, what: str) -> np.ndarray:
    """Decode PNG or JPEG bytes.

    Parameters
    ----------
    data : bytes
        The encoded image.
    what : str
        Names the frame in messages.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

    Raises
    ------
    InputError
        Decodable data in another format (only PNG and JPEG are read).
    CorruptFrame
        Data no decoder recognizes, or truncated.
    """
    image_mod = _image_module()
    try:
        image = image_mod.open(io.BytesIO(data))
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise CorruptFrame(f"{type(exc).__name__}: {exc}") from None
    if image.format not in FORMATS:
        raise InputError(f"{what}: {image.format} data is not supported; frames must be PNG or JPEG")
    return image_pixels(image, what)


def decode_file(path: Path, what: str) -> np.ndarray:
    """Decode a PNG or JPEG file.

    Parameters
    ----------
    path : Path
        The file.
    what : str
        Names the frame in messages.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

    Raises
    ------
    InputError
        An unsupported image mode.
    CorruptFrame
        The file cannot be read or decoded.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptFrame(f"cannot read: {exc.strerror or exc}") from None
    return decode_bytes(data, what)
