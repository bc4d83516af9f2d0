"""The base of every recording source: lazy batches with per-frame ids, slices, skipped frames.

A reader (folder of images, video, MCAP, ROS 2 bag) only says how to count its frames and how
to decode them one by one (:meth:`RecordingSource._frames`); this class turns that into
batches through the declared :class:`~nnwatch.recordings.preprocess.Preprocess`, decoded in a
background thread a few batches ahead of the model (:mod:`nnwatch.recordings.prefetch`).

Frame indices are positions in the recording (the sorted file list, the video's frames, the
topic's messages), counted before any frame is skipped, so a slice ``[start:stop]`` and the
ids name the same frames however many of them turn out undecodable.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from .prefetch import can_fork, prefetch
from .preprocess import Preprocess, load_preprocess

PREFETCH_BATCHES = 4
SHOWN_IDS = 5  # ids named in a warning or error before "..."


class RecordingWarning(UserWarning):
    """Frames of a recording were skipped (undecodable); the message names the first few."""


@dataclass
class Frame:
    """One frame as a reader produces it.

    Attributes
    ----------
    id : dict
        What names the frame (``path``; ``frame`` index; ``stamp_ns`` ...), JSON-ready values.
    pixels : numpy.ndarray or None
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray; None when the frame cannot be decoded.
    label : int or None
        Class index, for labelled sources.
    error : str
        Why the frame could not be decoded (when ``pixels`` is None).
    """

    id: dict[str, Any]
    pixels: np.ndarray | None
    label: int | None = None
    error: str = ""


def describe_id(frame_id: dict[str, Any]) -> str:
    """A short text naming one frame, e.g. ``frame 12 (stamp_ns 1700000000000)``.

    Parameters
    ----------
    frame_id : dict
        A frame's id.

    Returns
    -------
    str
        The text.
    """
    if "path" in frame_id:
        return str(frame_id["path"])
    parts = [f"{k} {v}" for k, v in frame_id.items() if k != "frame" and v is not None]
    head = f"frame {frame_id.get('frame', '?')}"
    return f"{head} ({', '.join(parts)})" if parts else head


def _short(ids: list[dict[str, Any]]) -> str:
    text = ", ".join(describe_id(i) for i in ids[:SHOWN_IDS])
    return text + (f", ... ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")


@dataclass
class _Pass:
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def spans_overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two :meth:`RecordingSource.span` records share frames of one recording.

    Parameters
    ----------
    a, b : dict
        Spans (``recording``, ``start``, ``stop`` with None for the end).

    Returns
    -------
    bool
        Same recording and intersecting ``[start, stop)`` ranges.
    """
    if a["recording"] != b["recording"]:
        return False
    end = lambda span: float("inf") if span["stop"] is None else span["stop"]  # noqa: E731
    return max(a["start"], b["start"]) < min(end(a), end(b))


class RecordingSource:
    """A recording read lazily in batches; subclasses decode the frames.

    Parameters
    ----------
    name : str
        Description (the spec it was opened from).
    preprocess : Preprocess, str, dict or None
        The declared preprocessing (see :func:`~nnwatch.recordings.preprocess.load_preprocess`).
    start, stop : int, optional
        Frames ``[start, stop)`` of the recording (Python slice semantics, non-negative).

    Attributes
    ----------
    skipped : list of dict
        Ids of the frames the latest complete pass could not decode.
    classes : list of str or None
        Class names of a labelled source, in label order.
    time_ordered : bool
        Frames follow each other in time (neighbours are near-duplicates): a split into
        profile and calibration parts must cut contiguous blocks, never shuffle.
    """

    classes: list[str] | None = None
    time_ordered = False  # frames in time order (video, robot recordings): split in contiguous blocks only
    decode_in_process = can_fork()  # decode in a forked process beside the model, not a thread sharing its lock

    def __init__(self, name: str, preprocess: Preprocess | str | dict | None = None, start: int = 0,
                 stop: int | None = None) -> None:
        self.name = name
        self.preprocess = load_preprocess(preprocess)
        _check_bounds(start, stop)
        self.start, self.stop = int(start), None if stop is None else int(stop)
        self.skipped: list[dict[str, Any]] = []
        self._warned = False
        self._frame_shape: tuple[int, ...] | None = None
        self._first: tuple[dict[str, Any], tuple[int, ...]] | None = None  # id and size of the first frame

    # --- what a reader provides ------------------------------------------------------------
    def _count(self) -> int | None:
        """Frames in the whole recording, when cheap to know; else None."""
        return None

    def _frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        """Frames ``[start, stop)`` in order (decoding nothing before ``start``)."""
        raise NotImplementedError

    # --- the source protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        total = self._count()
        if total is None:
            return 0
        end = total if self.stop is None else min(self.stop, total)
        return max(0, end - self.start)

    def __getitem__(self, item: slice) -> "RecordingSource":
        if not isinstance(item, slice):
            raise InputError(f"{self.name}: index a source with a slice [start:stop], got {item!r}")
        return self.slice(item.start, item.stop, item.step)

    def slice(self, start: int | None, stop: int | None, step: int | None = None) -> "RecordingSource":
        """Frames ``[start:stop]`` of this source (relative to it), read lazily.

        Parameters
        ----------
        start, stop : int or None
            Non-negative bounds, Python slice semantics.
        step : None
            Not allowed (a recording is read in order).

        Returns
        -------
        RecordingSource
            A copy that reads only those frames.

        Raises
        ------
        InputError
            A step, or negative bounds.
        """
        if step is not None:
            raise InputError(f"{self.name}: a slice takes no step (frames are read in order); use [start:stop]")
        _check_bounds(start or 0, stop)
        if stop is not None and stop <= (start or 0):
            raise InputError(f"{self.name}: the slice [{start if start is not None else ''}:{stop}] is empty")
        new = copy.copy(self)
        new.start = self.start + int(start or 0)
        if stop is not None:
            end = self.start + int(stop)
            new.stop = end if self.stop is None else min(self.stop, end)
        if start or stop is not None:
            new.name = f"{self.name}[{start if start is not None else ''}:{stop if stop is not None else ''}]"
        new.skipped, new._warned, new._frame_shape, new._first = [], False, None, None
        return new

    def span(self) -> dict[str, Any] | None:
        """The recording file and the frames ``[start, stop)`` of it this source reads.

        Returns
        -------
        dict or None
            ``{"recording": resolved path, "start": int, "stop": int or None}`` for a source
            read from one file or bag (video, MCAP, ROS 2 bag); None for an image folder.
        """
        path = getattr(self, "path", None)
        if path is None:
            return None
        return {"recording": str(Path(path).resolve()), "start": self.start, "stop": self.stop}

    def limit(self, n: int | None) -> "RecordingSource":
        """The first ``n`` frames (all when None).

        Parameters
        ----------
        n : int or None
            How many.

        Returns
        -------
        RecordingSource
            The source, or a sliced copy.
        """
        return self if n is None else self.slice(0, int(n))

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Consecutive batches, decoded ahead in a background thread.

        Parameters
        ----------
        batch_size : int
            Frames per batch (the last may be smaller; skipped frames do not count).

        Returns
        -------
        Iterator
            ``(x, y or None)`` pairs; ``x`` float32 as the preprocessing declares.
        """
        with contextlib.closing(self.batches_with_ids(batch_size)) as batches:  # an early close stops the thread
            for x, y, _ in batches:
                yield x, y

    def batches_with_ids(self, batch_size: int, with_skipped: bool = False) -> Iterator[tuple]:
        """Consecutive batches with the ids of their frames.

        Parameters
        ----------
        batch_size : int
            Frames per batch.
        with_skipped : bool
            Also hand out the undecodable frames, as they are passed: each item gets a fourth
            element, the frames skipped since the previous item (their ids, each with an
            ``error`` key saying why); frames skipped after the last batch come in a last item
            ``(None, None, [], skipped)``.

        Returns
        -------
        Iterator
            ``(x, y or None, ids)``; ``ids[i]`` names frame ``x[i]``. With ``with_skipped``,
            ``(x, y or None, ids, skipped)``.

        Raises
        ------
        InputError
            ``batch_size`` < 1; no frame could be read; frames of different sizes with no
            resize; an unsupported encoding (raised when the frame is reached).
        """
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        state = _Pass()  # the frames skipped before the latest batch handed out (the producer reads ahead)
        delivered = 0
        done = False
        try:
            for x, y, ids, skipped, errors in prefetch(lambda: self._produce(int(batch_size)), depth=PREFETCH_BATCHES,
                                                       in_process=self.decode_in_process):
                state.skipped.extend(skipped)
                state.errors.extend(errors)
                if with_skipped:
                    delivered += len(ids)
                    yield x, y, ids, [{**i, "error": e} for i, e in zip(skipped, errors)]
                    continue
                if x is None:  # frames skipped after the last batch
                    continue
                delivered += len(ids)
                yield x, y, ids
            done = True
        finally:
            if done:
                self.skipped = list(state.skipped)
            self._warn_skipped(state, len(state.skipped))
        if not delivered:
            why = (f"all {len(state.skipped)} were undecodable ({state.errors[0]})" if state.skipped else
                   f"the recording has {self._count()} frames" if self._count() is not None else "it is empty")
            raise InputError(f"{self.name}: no frames to read: {why}")

    # --- internals -------------------------------------------------------------------------
    def _produce(self, batch_size: int) -> Iterator[tuple]:
        """``(x, y, ids, skipped ids, errors)`` per batch, the skipped frames being those read since
        the previous batch; a last ``(None, None, [], ...)`` carries the frames skipped after it.
        """
        xs: list[np.ndarray] = []
        ys: list[int | None] = []
        ids: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        errors: list[str] = []
        with contextlib.closing(self._frames(self.start, self.stop)) as frames:  # the reader's files close here
            for frame in frames:
                if frame.pixels is None:
                    skipped.append(frame.id)
                    errors.append(frame.error)
                    continue
                xs.append(self._processed(frame))
                ys.append(frame.label)
                ids.append(frame.id)
                if len(xs) == batch_size:
                    yield self._pack(xs, ys, ids) + (skipped, errors)
                    xs, ys, ids, skipped, errors = [], [], [], [], []
        if xs:
            yield self._pack(xs, ys, ids) + (skipped, errors)
        elif skipped:
            yield None, None, [], skipped, errors

    def _processed(self, frame: Frame) -> np.ndarray:
        out = self.preprocess.pixels(frame.pixels)  # type: ignore[arg-type]  # the arithmetic runs per batch
        if self._frame_shape is None:
            self._frame_shape = out.shape
            self._first = (frame.id, frame.pixels.shape[:2])  # type: ignore[union-attr]
        elif out.shape != self._frame_shape:
            first_id, first_hw = self._first  # type: ignore[misc]
            here = frame.pixels.shape[:2]  # type: ignore[union-attr]
            raise InputError(
                f"{self.name}: frames of different sizes: {first_hw[0]}x{first_hw[1]} ({describe_id(first_id)}) and "
                f"{here[0]}x{here[1]} ({describe_id(frame.id)}); a batch needs one size: pass --preprocess with a "
                'resize, e.g. a JSON file {"resize": [224, 224]} (or preprocess=Preprocess(resize=(224, 224)))')
        return out

    def _pack(self, xs: list[np.ndarray], ys: list[int | None], ids: list[dict]) -> tuple:
        x = self.preprocess.finish(xs)
        y = None if any(v is None for v in ys) else np.asarray(ys, np.int64)
        return x, y, ids

    def _warn_skipped(self, state: _Pass, count: int) -> None:
        if not count or self._warned:
            return
        self._warned = True
        skipped = state.skipped[:count]
        reason = state.errors[0] if state.errors else "undecodable"
        warnings.warn(RecordingWarning(
            f"{self.name}: skipped {len(skipped)} undecodable frame(s): {_short(skipped)} (first: "
            f"{reason}); the other frames were read (the source's .skipped lists every skipped id)"), stacklevel=3)


def _check_bounds(start: Any, stop: Any) -> None:
    for name, value in (("start", start), ("stop", stop)):
        if value is None and name == "stop":
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise InputError(f"slice {name} must be a non-negative integer, got {value!r}")
