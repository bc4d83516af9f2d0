"""Parsing the recording schemes of a ``--data`` spec, and the slice suffix every source takes.

A slice ``[start:stop]`` at the end of any spec keeps those samples (Python slice semantics,
non-negative integers, either bound may be left out, no step): ``video:run.mp4[100:400]``,
``npz:val.npz[:500]``, ``mcap:drive.mcap:/camera/image_raw[1000:]``. On recordings the bounds
count frames in recording order (skipped frames included), so ids stay stable.
"""

from __future__ import annotations

import re
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
_BOUNDS = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?$")


def parse_slice(spec: str) -> tuple[str, tuple[int, int | None] | None]:
    """Split a trailing ``[start:stop]`` off a source spec.

    Parameters
    ----------
    spec : str
        ``SOURCE`` or ``SOURCE[start:stop]``.

    Returns
    -------
    tuple
        ``(SOURCE, (start, stop) or None)``; ``stop`` None means to the end.

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
    return match.group("base"), (int(first) if first else 0, int(last) if last else None)


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
