"""Pass profile statistics between Ray workers as bytes (plain .npz, no pickle)."""

from __future__ import annotations

import io
from dataclasses import fields
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def to_bytes(obj: object, compress: bool = False) -> bytes:
    """Serialize a dataclass of numpy arrays.

    Parameters
    ----------
    obj : dataclass
        RangeStats or SectionStats.
    compress : bool
        zlib-compress the archive (per-class counts are mostly zeros for many-class models).

    Returns
    -------
    bytes
        An .npz archive.
    """
    buf = io.BytesIO()
    save = np.savez_compressed if compress else np.savez
    save(buf, **{f.name: getattr(obj, f.name) for f in fields(obj)})  # type: ignore[arg-type]
    return buf.getvalue()


def from_bytes(cls: type[T], data: bytes) -> T:
    """Rebuild a dataclass written by :func:`to_bytes`.

    Parameters
    ----------
    cls : type
        RangeStats or SectionStats.
    data : bytes
        The archive.

    Returns
    -------
    object
        An instance of ``cls``.
    """
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return cls(**{f.name: z[f.name] for f in fields(cls)})  # type: ignore[call-arg]
