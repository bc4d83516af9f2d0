"""An ONNX file's model-level metadata (``metadata_props``), read without parsing its graph.

``onnx.load`` parses the whole ``ModelProto``, weights included, to answer "is this an
nnwatch model?"; on a large detector that is most of a command's start. The metadata is a
top-level field of the protobuf message (field 14, ``StringStringEntryProto`` entries), so it
can be read by walking the top-level fields and seeking past the others (the graph is one
length-delimited field). Tested against ``onnx.load(...).metadata_props``.
"""

from __future__ import annotations

import os
from typing import BinaryIO

METADATA_FIELD = 14  # ModelProto.metadata_props
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class NotAModelError(ValueError):
    """The bytes are not a well-formed protobuf message at the top level."""


def _varint(read: BinaryIO) -> int | None:
    """A base-128 varint from the stream; None at a clean end of the stream."""
    value = shift = 0
    while True:
        byte = read.read(1)
        if not byte:
            if shift == 0:
                return None
            raise NotAModelError("the file ends inside a field tag or length")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise NotAModelError("a varint longer than 10 bytes")


def _entry(data: bytes) -> tuple[str, str]:
    """``key`` (field 1) and ``value`` (field 2) of one StringStringEntryProto."""
    import io

    fields = {1: "", 2: ""}
    stream = io.BytesIO(data)
    while (tag := _varint(stream)) is not None:
        number, wire = tag >> 3, tag & 7
        if wire != _BYTES:
            raise NotAModelError("a metadata entry holds a field that is not a string")
        length = _varint(stream)
        raw = stream.read(length or 0)
        if length is None or len(raw) != length:
            raise NotAModelError("a metadata entry is cut short")
        if number in fields:
            fields[number] = raw.decode("utf-8", errors="replace")
    return fields[1], fields[2]


def read_model_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model file, key to value (a later duplicate key wins, as in a dict
    built from ``onnx.load``).

    Parameters
    ----------
    path : path-like
        An ONNX file.

    Returns
    -------
    dict
        Metadata keys and values; empty when the model has none.

    Raises
    ------
    NotAModelError
        The file is not a well-formed protobuf message (a top-level field runs past its end,
        or has a wire type protobuf does not use).
    OSError
        The file cannot be read.
    """
    meta: dict[str, str] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while (tag := _varint(f)) is not None:
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise NotAModelError("field number 0")
            if wire == _VARINT:
                if _varint(f) is None:
                    raise NotAModelError("the file ends inside a field")
            elif wire in (_FIXED64, _FIXED32):
                f.seek(8 if wire == _FIXED64 else 4, os.SEEK_CUR)
            elif wire == _BYTES:
                length = _varint(f)
                if length is None or f.tell() + length > size:
                    raise NotAModelError("a field runs past the end of the file")
                if number == METADATA_FIELD:
                    key, value = _entry(f.read(length))
                    meta[key] = value
                else:
                    f.seek(length, os.SEEK_CUR)  # the graph and its weights: skipped unread
            else:
                raise NotAModelError(f"wire type {wire} (groups or an unknown type) at the top level")
            if f.tell() > size:
                raise NotAModelError("a field runs past the end of the file")
    return meta
