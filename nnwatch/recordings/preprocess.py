"""The declared preprocessing that turns decoded frames into the array a model reads.

Every recording source decodes a frame to ``uint8`` pixels, ``(H, W, 3)`` in RGB order or
``(H, W)`` grayscale, and hands it to one :class:`Preprocess`. The steps run in this fixed
order, so the array is defined by the declaration alone:

1. ``resize``: one int ``S`` scales the shorter side to ``S`` (aspect kept, the longer side
   rounded down, as torchvision's ``Resize(S)``); ``[H, W]`` resizes to exactly that. Pillow,
   on the uint8 pixels, with ``interpolation`` ``"bilinear"`` (default) or ``"nearest"``.
2. ``crop``: ``[H, W]`` center crop (offsets ``round((h - H) / 2)``, ``round((w - W) / 2)``).
3. ``channels``: ``"rgb"``, ``"bgr"`` or ``"gray"``. A gray frame read as rgb/bgr repeats its
   one channel; an RGB frame read as gray becomes ``0.299 R + 0.587 G + 0.114 B`` (float).
4. ``scale``: ``x * scale`` in float32 (``1/255`` maps uint8 to [0, 1]).
5. ``mean`` / ``std``: per channel (one value per output channel, or one for all),
   ``(x - mean) / std``.
6. ``layout``: ``"NCHW"`` or ``"NHWC"``; the batch is float32.

Presets: ``"0-1"`` (``/255``, rgb, NCHW), ``"-1-1"`` (``(x/255 - 0.5) / 0.5``) and
``"imagenet"`` (resize 256, crop 224, rgb, ``/255``, ImageNet mean and std, NCHW). A JSON
file holds the same fields, e.g. ``{"resize": [32, 32], "channels": "gray", "scale": 0.00392156862745098}``;
missing fields take the defaults of ``"0-1"``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._optional import require
from ..errors import InputError

CHANNELS = ("rgb", "bgr", "gray")
LAYOUTS = ("NCHW", "NHWC")
INTERPOLATIONS = ("bilinear", "nearest")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as Pillow's convert("L")


@dataclass(frozen=True)
class Preprocess:
    """A declared preprocessing pipeline (see the module docstring for the order of the steps).

    Parameters
    ----------
    resize : int, tuple of int or None
        Shorter side, or ``(H, W)``; None: no resize.
    crop : tuple of int or None
        Center crop ``(H, W)``; None: no crop.
    channels : {"rgb", "bgr", "gray"}
        Output channel order (gray: one channel).
    layout : {"NCHW", "NHWC"}
        Output layout.
    scale : float
        Factor applied to the pixel values.
    mean, std : tuple of float
        Per-channel normalization after scaling (one value, or one per output channel).
    interpolation : {"bilinear", "nearest"}
        Resize filter.
    """

    resize: int | tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    channels: str = "rgb"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        resize = self.resize
        if resize is not None:
            resize = _size(resize, "resize", allow_int=True)
            object.__setattr__(self, "resize", resize)
        if self.crop is not None:
            object.__setattr__(self, "crop", _size(self.crop, "crop", allow_int=True, square=True))
        if self.channels not in CHANNELS:
            raise InputError(f"preprocess channels {self.channels!r} is not one of {', '.join(CHANNELS)}")
        if self.layout not in LAYOUTS:
            raise InputError(f"preprocess layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"preprocess interpolation {self.interpolation!r} is not one of "
                             f"{', '.join(INTERPOLATIONS)}")
        if not (isinstance(self.scale, (int, float)) and np.isfinite(self.scale) and self.scale != 0):
            raise InputError(f"preprocess scale must be a finite non-zero number, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        n_out = 1 if self.channels == "gray" else 3
        for name in ("mean", "std"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, (int, float)) else value
            try:
                value = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise InputError(f"preprocess {name} must be a number or a list of numbers, got {value!r}") from None
            if len(value) not in (1, n_out) or not all(np.isfinite(value)):
                raise InputError(f"preprocess {name} needs 1 or {n_out} finite values for {self.channels} "
                                 f"output, got {list(value)}")
            object.__setattr__(self, name, value)
        if any(s == 0 for s in self.std):
            raise InputError(f"preprocess std must not contain 0, got {list(self.std)}")

    @property
    def n_channels(self) -> int:
        """Channels of the output (1 for gray, else 3)."""
        return 1 if self.channels == "gray" else 3

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict.

        Returns
        -------
        dict
            Field name -> value (tuples as lists).
        """
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def frame(self, pixels: np.ndarray) -> np.ndarray:
        """One decoded frame through the pipeline, in HWC layout.

        Parameters
        ----------
        pixels : numpy.ndarray
            uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

        Returns
        -------
        numpy.ndarray
            float32 ``(H', W', C)`` with ``C`` = :attr:`n_channels`.
        """
        if self.resize is not None:
            pixels = _resize(pixels, self.resize, self.interpolation)
        if self.crop is not None:
            pixels = _center_crop(pixels, self.crop)
        x = pixels.astype(np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        if self.channels == "gray" and x.shape[2] == 3:
            x = (x @ np.asarray(GRAY_WEIGHTS, np.float32))[:, :, None]
        elif self.channels != "gray" and x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
        if self.channels == "bgr":
            x = x[:, :, ::-1]
        x = x * np.float32(self.scale)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return ((x - mean) / std).astype(np.float32, copy=False)

    def pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The per-frame steps of :meth:`frame` (resize, crop, channel count), before the arithmetic.

        Parameters
        ----------
        pixels : numpy.ndarray
            uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

        Returns
        -------
        numpy.ndarray
            ``(H', W', C)`` with ``C`` = :attr:`n_channels`, still in RGB order: uint8, or
            float32 where an RGB frame became gray. :meth:`finish` completes a batch of them.
        """
        if self.resize is not None:
            pixels = _resize(pixels, self.resize, self.interpolation)
        if self.crop is not None:
            pixels = _center_crop(pixels, self.crop)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.channels == "gray" and pixels.shape[2] == 3:
            return (pixels.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, np.float32))[:, :, None]
        if self.channels != "gray" and pixels.shape[2] == 1:
            return np.repeat(pixels, 3, axis=2)
        return pixels

    def finish(self, staged: Sequence[np.ndarray]) -> np.ndarray:
        """A batch of :meth:`pixels` outputs through the rest of the pipeline, in one pass.

        Equal, value for value, to :meth:`batch` of :meth:`frame` outputs: the same float32
        operations in the same order, on the whole batch at once.

        Parameters
        ----------
        staged : sequence of numpy.ndarray
            Outputs of :meth:`pixels`, all of one shape.

        Returns
        -------
        numpy.ndarray
            float32 ``(N, C, H, W)`` or ``(N, H, W, C)``.
        """
        x = np.stack(staged).astype(np.float32, copy=False)
        if self.channels == "bgr":
            x = x[..., ::-1]
        x = x * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def batch(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Stack frames processed by :meth:`frame` into one batch in the declared layout.

        Parameters
        ----------
        frames : sequence of numpy.ndarray
            Outputs of :meth:`frame`, all of one shape.

        Returns
        -------
        numpy.ndarray
            float32 ``(N, C, H, W)`` or ``(N, H, W, C)``.
        """
        x = np.stack(frames)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)




def _size(value: Any, name: str, allow_int: bool, square: bool = False) -> int | tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and allow_int:
        if value < 1:
            raise InputError(f"preprocess {name} must be positive, got {value}")
        return (int(value), int(value)) if square else int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value):
        return (int(value[0]), int(value[1]))
    raise InputError(f"preprocess {name} must be a positive int or [height, width], got {value!r}")


def _resize(pixels: np.ndarray, size: int | tuple[int, int], interpolation: str) -> np.ndarray:
    image_mod = require("PIL.Image", extra="recordings")
    h, w = pixels.shape[:2]
    if isinstance(size, int):
        out_h, out_w = (size, max(1, w * size // h)) if h <= w else (max(1, h * size // w), size)
    else:
        out_h, out_w = size
    if (out_h, out_w) == (h, w):
        return pixels
    resample = image_mod.Resampling.BILINEAR if interpolation == "bilinear" else image_mod.Resampling.NEAREST
    return np.asarray(image_mod.fromarray(pixels).resize((out_w, out_h), resample))


def _center_crop(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = pixels.shape[:2]
    ch, cw = size
    if ch > h or cw > w:
        raise InputError(f"preprocess crop {ch}x{cw} is larger than the frame ({h}x{w}); add a resize to at least "
                         "the crop size")
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return pixels[top : top + ch, left : left + cw]


def load_preprocess(spec: "str | Path | Preprocess | dict | None") -> Preprocess:
    """A pipeline from a preset name, a JSON file, a dict of fields or a :class:`Preprocess`.

    Parameters
    ----------
    spec : str, path, dict, Preprocess or None
        ``"0-1"``, ``"-1-1"``, ``"imagenet"``, a ``.json`` file of fields, a dict of fields;
        None: the ``"0-1"`` preset.

    Returns
    -------
    Preprocess
        The pipeline.

    Raises
    ------
    InputError
        Unknown preset, unreadable file, unknown or invalid fields.
    """
    if spec is None:
        return PRESETS["0-1"]
    if isinstance(spec, Preprocess):
        return spec
    if isinstance(spec, dict):
        return _from_fields(spec, "preprocess fields")
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix.lower() != ".json":
        raise InputError(f"--preprocess {text!r} is neither a preset ({', '.join(PRESETS)}) nor a .json file")
    try:
        fields_ = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read preprocess file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"preprocess file {path} is not valid JSON: {exc}") from None
    if not isinstance(fields_, dict):
        raise InputError(f"preprocess file {path} must hold a JSON object of fields, got {type(fields_).__name__}")
    return _from_fields(fields_, f"preprocess file {path}")


def _from_fields(values: dict, what: str) -> Preprocess:
    known = [f.name for f in fields(Preprocess)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"{what}: unknown fields {unknown}; accepted: {', '.join(known)}")
    values = {k: tuple(v) if isinstance(v, list) and k in ("mean", "std") else v for k, v in values.items()}
    return Preprocess(**values)


PRESETS: dict[str, Preprocess] = {
    "0-1": Preprocess(),
    "-1-1": Preprocess(mean=(0.5,), std=(0.5,)),
    "imagenet": Preprocess(resize=256, crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
}


def resolve_preprocess(given: "str | Path | Preprocess | dict | None", declared: dict | None,
                       model: str) -> Preprocess | None:
    """The preprocessing recordings are read with: the one the model declares, else the one given.

    Parameters
    ----------
    given : str, path, dict, Preprocess or None
        What the user passed (``--preprocess``); None: nothing.
    declared : dict or None
        The fields recorded in the instrumented model (``nnwatch instrument --preprocess``).
    model : str
        The model, for messages.

    Returns
    -------
    Preprocess or None
        The pipeline; None where neither says anything (sources use their default).

    Raises
    ------
    InputError
        A given preprocessing that differs from the declared one (the differences named).
    """
    if declared is None:
        return None if given is None else load_preprocess(given)
    own = _from_fields(declared, f"the preprocessing recorded in {model}")
    if given is None:
        return own
    other = load_preprocess(given)
    if other != own:
        differ = [f"{f.name} {getattr(own, f.name)!r} (model) vs {getattr(other, f.name)!r} (given)"
                  for f in fields(Preprocess) if getattr(own, f.name) != getattr(other, f.name)]
        raise InputError(f"--preprocess differs from the preprocessing {model} was instrumented with: "
                         f"{'; '.join(differ)}. Drop --preprocess (the model's is used), or instrument the original "
                         "model again with the new one")
    return own
