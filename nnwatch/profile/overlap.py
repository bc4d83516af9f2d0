"""Which inputs a profile was built from, as a small mergeable sketch, to catch reused data.

The conformal guarantee of a calibration rests on clean data the profile never saw. Inputs that
were also profiled look more normal than new clean inputs, so thresholds come out too low.

A profile keeps a bottom-k sketch of its training inputs: a 64-bit hash of every input's bytes
(as fed to the model, after the cast to its input dtype), and of those only the ``k`` smallest
values. Hashes are uniform, so the kept ones are a uniform random sample of the distinct
inputs, and the sketch of two data sets' union is the bottom-k of both sketches (an exact
merge, as profiles merge). A calibration input is *checkable* when its hash is at most the
largest kept hash (every training input with such a hash is in the sketch); among checkable
inputs, the share found in the sketch estimates the share of calibration inputs that were
also training inputs.
"""

from __future__ import annotations

import hashlib

import numpy as np

SKETCH_SIZE = 4096
_FULL = np.iinfo(np.uint64).max


def input_hashes(x: np.ndarray) -> np.ndarray:
    """64-bit blake2b hash of each input's bytes.

    Parameters
    ----------
    x : numpy.ndarray
        Inputs ``(N, ...)`` as fed to the model (dtype matters: cast first).

    Returns
    -------
    numpy.ndarray
        uint64 ``(N,)``.
    """
    rows = np.ascontiguousarray(x).reshape(len(x), -1)
    return np.fromiter((int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little")
                        for r in rows), np.uint64, count=len(rows))


def sketch_update(sketch: np.ndarray | None, hashes: np.ndarray, size: int = SKETCH_SIZE) -> np.ndarray:
    """The bottom-``size`` distinct hashes of a sketch and new hashes (an exact merge of sketches).

    Parameters
    ----------
    sketch : numpy.ndarray or None
        Sorted uint64 sketch so far.
    hashes : numpy.ndarray
        uint64 hashes (or another sketch).
    size : int
        Hashes kept.

    Returns
    -------
    numpy.ndarray
        Sorted distinct uint64, at most ``size``.
    """
    both = hashes if sketch is None else np.concatenate([sketch, hashes])
    return np.unique(both.astype(np.uint64))[:size]


def sketch_to_json(sketch: np.ndarray, size: int = SKETCH_SIZE) -> dict:
    """JSON form kept in a profile header.

    Parameters
    ----------
    sketch : numpy.ndarray
        Sorted uint64 sketch.
    size : int
        The sketch's capacity (a full sketch is a sample; a partial one holds every input).

    Returns
    -------
    dict
        ``{"size": int, "hashes": [16-digit hex, ...]}``.
    """
    return {"size": int(size), "hashes": [f"{int(h):016x}" for h in sketch]}


def sketch_from_json(record: dict) -> tuple[np.ndarray, int]:
    """Inverse of :func:`sketch_to_json`.

    Parameters
    ----------
    record : dict
        The header entry.

    Returns
    -------
    tuple
        ``(sorted uint64 sketch, capacity)``.
    """
    return np.array([int(h, 16) for h in record["hashes"]], np.uint64), int(record["size"])


def training_overlap(record: dict, x: np.ndarray) -> tuple[int, int]:
    """How many of ``x`` can be checked against a profile's sketch, and how many were found.

    Parameters
    ----------
    record : dict
        The profile's ``input_sketch`` header entry.
    x : numpy.ndarray
        Calibration inputs, cast to the model's input dtype.

    Returns
    -------
    tuple of int
        ``(checkable, found)``; ``found / checkable`` estimates the share of ``x`` that the
        profile was built from.
    """
    sketch, size = sketch_from_json(record)
    hashes = input_hashes(x)
    limit = sketch[-1] if len(sketch) >= size else _FULL  # a partial sketch holds every training input
    checkable = hashes <= limit
    found = np.isin(hashes[checkable], sketch)
    return int(checkable.sum()), int(found.sum())
