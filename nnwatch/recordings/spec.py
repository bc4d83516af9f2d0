"""Parsing the recording schemes of a ``--data`` spec, and the slice suffix every source takes.

A slice ``[start:stop]`` at the end of any spec keeps those samples (Python slice semantics,
non-negative integers, either bound may be left out, no step): ``video:run.mp4[100:400]``,
``npz:val.npz[:500]``, ``mcap:drive.mcap:/camera/image_raw[1000:]``. On recordings the bounds
count frames in recording order (skipped frames included), so ids stay stable.

A bound may also be a percentage of the source's length, to split one recording into
contiguous blocks (never a shuffle: neighbouring frames of a video are near-duplicates, and a
shuffled split would put them on both sides): ``[:80%]`` for the profile and ``[80%:]`` for
calibration. ``p%`` is frame ``floor(n * p / 100)``, so the two parts meet exactly. It needs
the length: a video whose container does not declare its frame count, or an MCAP file
without summary statistics, is refused with that reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .images import ImageSource
from .mcap_source import McapSource
from .preprocess import Preprocess
from .rosbag import RosbagSource
from .recording import RecordingSource
from .video import VideoSource

SCHEMES = ("images", "video", "mcap", "rosbag")
_SLICE = re.compile(r"^(?P<base>.*)\[(?P<body>[^\[\]]*)\]$")
_BOUND = r"\s*(-?\d*(?:\.\d*)?%?)\s*"
_BOUNDS = re.compile(rf"^{_BOUND}:{_BOUND}(?::{_BOUND})?$")


@dataclass(frozen=True)
class Percent:
    """A slice bound given as a percentage of the source's length."""

    value: float

    def __str__(self) -> str:
        return f"{self.value:g}%"


Bound = int | Percent


def parse_slice(spec: str) -> tuple[str, tuple[Bound, Bound | None] | None]:
    """Split a trailing ``[start:stop]`` off a source spec.

    Parameters
    ----------
    spec : str
        ``SOURCE`` or ``SOURCE[start:stop]``; bounds are integers or percentages (``80%``).

    Returns
    -------
    tuple
        ``(SOURCE, (start, stop) or None)``; ``stop`` None means to the end; percentages come
        as :class:`Percent` (resolve them with :func:`resolve_slice`).

    Raises
    ------
    InputError
        A step, negative bounds, or a bracket that is not a slice.
    """
    match = _SLICE.match(spec)
    if match is None or Path(spec).exists():
        return spec, None
    body = match.group("body")
    bounds = _BOUNDS.match(body)
    if bounds is None:
        raise InputError(f"{spec}: [{body}] is not a slice; write SOURCE[start:stop] with non-negative integers "
                         "(either may be left out), e.g. [0:500] or [1000:]")
    first, last, step = bounds.groups()
    if step is not None:
        raise InputError(f"{spec}: a slice takes no step (frames are read in order); write [start:stop]")
    if first.startswith("-") or last.startswith("-"):
        raise InputError(f"{spec}: slice bounds must be non-negative (counted from the start); got [{body}]")
    bounds = (_bound(first, spec, body) if first else 0, _bound(last, spec, body) if last else None)
    return match.group("base"), bounds  # type: ignore[return-value]


def _bound(text: str, spec: str, body: str) -> Bound:
    if text.endswith("%"):
        try:
            value = float(text[:-1])
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 100.0:
            raise InputError(f"{spec}: a percentage bound must be between 0% and 100%, got [{body}]")
        return Percent(value)
    if not text.isdigit():
        raise InputError(f"{spec}: slice bounds are integers or percentages like 80%, got [{body}]")
    return int(text)


def resolve_slice(bounds: tuple[Bound, Bound | None], length: int, name: str) -> tuple[int, int | None]:
    """Integer bounds from parsed ones, percentages taken of ``length``.

    Parameters
    ----------
    bounds : tuple
        ``(start, stop)`` from :func:`parse_slice`.
    length : int
        The source's length (0: unknown).
    name : str
        The source, for messages.

    Returns
    -------
    tuple
        ``(start, stop or None)`` as integers.

    Raises
    ------
    InputError
        A percentage where the length is unknown.
    """
    out = []
    for bound in bounds:
        if isinstance(bound, Percent):
            if length <= 0:
                raise InputError(f"{name}: a percentage slice needs the number of frames, which this source does "
                                 "not declare (a video container without a frame count, or an MCAP file without "
                                 "summary statistics); use frame numbers, e.g. [0:5000]")
            bound = int(math.floor(length * bound.value / 100.0))
        out.append(bound)
    return out[0], out[1]


def _split_topic(rest: str) -> tuple[str, str | None]:
    """``FILE[:TOPIC]``: the topic is what follows the last ``:`` unless the whole text is a path."""
    if Path(rest).exists() or ":" not in rest:
        return rest, None
    path, _, topic = rest.rpartition(":")
    return path, topic or None


def open_recording(scheme: str, rest: str, preprocess: Preprocess | str | dict | None = None) -> RecordingSource:
    """Open ``images:``, ``video:``, ``mcap:`` or ``rosbag:`` sources.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES`.
    rest : str
        What follows ``scheme:`` (without a slice).
    preprocess : Preprocess, str, dict or None
        Declared preprocessing (default: the ``"0-1"`` preset).

    Returns
    -------
    RecordingSource
        The source, read lazily.

    Raises
    ------
    InputError
        Unknown scheme, missing path, or what the reader refuses.
    """
    if not rest:
        raise InputError(f"{scheme}: needs a path: {_usage()}")
    if scheme == "images":
        return ImageSource(rest, preprocess)
    if scheme == "video":
        return VideoSource(rest, preprocess)
    if scheme == "mcap":
        path, topic = _split_topic(rest)
        return McapSource(path, topic, preprocess)
    if scheme == "rosbag":
        path, topic = _split_topic(rest)
        return RosbagSource(path, topic, preprocess)
    raise InputError(f"unknown recording scheme {scheme!r}; {_usage()}")


def _usage() -> str:
    return "images:DIR | images:MANIFEST.csv | video:FILE | mcap:FILE[:TOPIC] | rosbag:DIR[:TOPIC]"
