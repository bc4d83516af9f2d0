"""Screening verdicts as an MCAP recording, to open in Foxglove beside the source recording.

The source is never touched: the verdicts go to a file of their own, one message per screened
frame on each of two channels, stamped with the source frame's times so the two recordings
line up on one timeline:

- ``/nnwatch/verdict`` (JSON, schema ``nnwatch.Verdict``): frame id, predicted class, flag,
  confidence (the decision's conformal p-value), the non-finite-input flag, per-detector
  scores, flags and p-values, the label where the source has one, and the stream alarm's
  statistics when ``--stream`` runs.
- ``/nnwatch/annotations`` (JSON, schema ``foxglove.ImageAnnotations``): a dot in the image's
  top-left corner (red when flagged, green otherwise) and a text line with the verdict, which
  Foxglove's Image panel draws over the camera frame with the same timestamp.

Times: each message's ``log_time`` and ``publish_time`` are the source message's ``log_time``
(``id.log_time_ns``); the annotation and verdict ``timestamp`` is the frame's ``header.stamp``
(``id.stamp_ns``), which is what Foxglove matches annotations to images by. A video frame has
only its presentation time (``id.time_s``), used for both.
"""

from __future__ import annotations

import json
from typing import IO, Any

from .._optional import require
from ..errors import InputError

VERDICT_TOPIC = "/nnwatch/verdict"
ANNOTATION_TOPIC = "/nnwatch/annotations"
VERDICT_SCHEMA = "nnwatch.Verdict"
ANNOTATION_SCHEMA = "foxglove.ImageAnnotations"

_TIME = {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}}
_COLOR = {"type": "object", "properties": {c: {"type": "number"} for c in "rgba"}}
_POINT2 = {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}
# The fields of Foxglove's ImageAnnotations schema that these messages use (the JSON encoding of
# https://docs.foxglove.dev/docs/visualization/message-schemas/image-annotations).
_ANNOTATION_JSON_SCHEMA = {
    "title": ANNOTATION_SCHEMA, "type": "object",
    "properties": {
        "circles": {"type": "array", "items": {"type": "object", "properties": {
            "timestamp": _TIME, "position": _POINT2, "diameter": {"type": "number"},
            "thickness": {"type": "number"}, "fill_color": _COLOR, "outline_color": _COLOR}}},
        "points": {"type": "array", "items": {"type": "object"}},
        "texts": {"type": "array", "items": {"type": "object", "properties": {
            "timestamp": _TIME, "position": _POINT2, "text": {"type": "string"}, "font_size": {"type": "number"},
            "text_color": _COLOR, "background_color": _COLOR}}},
    },
}
_VERDICT_JSON_SCHEMA = {
    "title": VERDICT_SCHEMA, "type": "object",
    "properties": {
        "timestamp": _TIME, "frame": {"type": "object"}, "index": {"type": "integer"},
        "pred": {"type": "integer"}, "flag": {"type": "boolean"}, "confidence": {"type": "number"},
        "nonfinite_input": {"type": "boolean"}, "label": {"type": "integer"},
        "why": {"type": "string", "description": "screen --explain: why a flagged frame was flagged"},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "flags": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "p_values": {"type": "object", "additionalProperties": {"type": "number"}},
        "stream": {"type": "object", "properties": {"statistic": {"type": "number"},
                                                    "class_statistic": {"type": "number"},
                                                    "alarm": {"type": "boolean"}}},
    },
}
_RED, _GREEN = {"r": 0.9, "g": 0.1, "b": 0.1, "a": 1.0}, {"r": 0.1, "g": 0.75, "b": 0.2, "a": 1.0}
_WHITE, _SHADE = {"r": 1.0, "g": 1.0, "b": 1.0, "a": 1.0}, {"r": 0.0, "g": 0.0, "b": 0.0, "a": 0.6}


def frame_times(row: dict[str, Any]) -> tuple[int, int]:
    """A screened row's ``(log_time, stamp)`` in nanoseconds, from its ``id.*`` columns.

    Parameters
    ----------
    row : dict
        One screen row with the source's frame id columns.

    Returns
    -------
    tuple of int
        ``log_time`` (the source message's, else the stamp, else the video time) and the
        frame's stamp (``header.stamp``, else the log time).

    Raises
    ------
    InputError
        The frame has no time (an image folder, a video frame without a presentation time).
    """
    log_time, stamp = row.get("id.log_time_ns"), row.get("id.stamp_ns")
    if log_time is None and stamp is None and row.get("id.time_s") is not None:
        log_time = stamp = int(round(float(row["id.time_s"]) * 1e9))
    log_time = stamp if log_time is None else log_time
    stamp = log_time if stamp is None else stamp
    if log_time is None:
        raise InputError(f"frame {row.get('index', '?')} has no time, so it has no place on an MCAP timeline; "
                         "MCAP output needs video:, mcap: or rosbag: sources (write .csv or .json instead)")
    return int(log_time), int(stamp)


def _time(ns: int) -> dict[str, int]:
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


def verdict_message(row: dict[str, Any], stamp: int) -> dict[str, Any]:
    """The ``/nnwatch/verdict`` message of one screened row.

    Parameters
    ----------
    row : dict
        One screen row (``index``, ``pred``, ``flag``, ``confidence``, ``score.*``, ``flag.*``,
        ``p.*``, ``id.*``, optional ``label`` and ``stream.*``).
    stamp : int
        The frame's stamp, ns.

    Returns
    -------
    dict
        JSON-ready message.
    """
    msg: dict[str, Any] = {"timestamp": _time(stamp), "frame": {}, "scores": {}, "flags": {}, "p_values": {}}
    groups = {"id.": msg["frame"], "score.": msg["scores"], "flag.": msg["flags"], "p.": msg["p_values"]}
    stream: dict[str, Any] = {}
    for key, value in row.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix + "." in groups:
            groups[prefix + "."][rest] = value
        elif dot and prefix == "stream":
            stream[rest] = value
        elif not dot:
            msg[key] = value
    if stream:
        msg["stream"] = stream
    return msg


def annotation_message(row: dict[str, Any], stamp: int) -> dict[str, Any]:
    """The ``foxglove.ImageAnnotations`` message drawn over one screened frame.

    Parameters
    ----------
    row : dict
        One screen row.
    stamp : int
        The frame's stamp, ns (Foxglove draws the annotation on the image with this stamp).

    Returns
    -------
    dict
        JSON-ready message.
    """
    t = _time(stamp)
    flagged = bool(row.get("flag"))
    text = f"{'FLAGGED' if flagged else 'ok'}  class {row.get('pred')}  p {float(row.get('confidence', float('nan'))):.3g}"
    if row.get("stream.alarm"):
        text += "  STREAM ALARM"
    if row.get("why"):  # screen --explain
        text += f"\n{row['why']}"
    return {
        "circles": [{"timestamp": t, "position": {"x": 10.0, "y": 10.0}, "diameter": 12.0, "thickness": 2.0,
                     "fill_color": _RED if flagged else _GREEN, "outline_color": _WHITE}],
        "points": [],
        "texts": [{"timestamp": t, "position": {"x": 22.0, "y": 15.0}, "text": text, "font_size": 12.0,
                   "text_color": _WHITE, "background_color": _SHADE}],
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnwatch")
    except PackageNotFoundError:
        return "(not installed)"


class VerdictMcapWriter:
    """Writes screened rows to an open binary file as MCAP (see the module docstring).

    Parameters
    ----------
    fh : binary file
        Open for writing; the caller closes it (after :meth:`finish`).
    metadata : dict of str, optional
        A ``nnwatch`` metadata record (model, profile, source, decision ...).
    """

    def __init__(self, fh: IO[bytes], metadata: dict[str, str] | None = None) -> None:
        writer_mod = require("mcap.writer", extra="recordings")
        self._writer = writer_mod.Writer(fh)
        self._writer.start(profile="", library=f"nnwatch {_version()}")
        ids = {}
        for topic, name, schema in ((VERDICT_TOPIC, VERDICT_SCHEMA, _VERDICT_JSON_SCHEMA),
                                    (ANNOTATION_TOPIC, ANNOTATION_SCHEMA, _ANNOTATION_JSON_SCHEMA)):
            schema_id = self._writer.register_schema(name=name, encoding="jsonschema",
                                                     data=json.dumps(schema).encode())
            ids[topic] = self._writer.register_channel(topic=topic, message_encoding="json", schema_id=schema_id)
        self._verdicts, self._annotations = ids[VERDICT_TOPIC], ids[ANNOTATION_TOPIC]
        if metadata:
            self._writer.add_metadata("nnwatch", {k: str(v) for k, v in metadata.items()})
        self.messages = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append one message per row on each channel.

        Parameters
        ----------
        rows : list of dict
            Screen rows with ``id.*`` time columns.

        Raises
        ------
        InputError
            A row without a time.
        """
        for row in rows:
            log_time, stamp = frame_times(row)
            seq = self.messages
            self._writer.add_message(self._verdicts, log_time=log_time, publish_time=log_time, sequence=seq,
                                     data=json.dumps(verdict_message(row, stamp), default=float).encode())
            self._writer.add_message(self._annotations, log_time=log_time, publish_time=log_time, sequence=seq,
                                     data=json.dumps(annotation_message(row, stamp)).encode())
            self.messages += 1

    def finish(self) -> None:
        """Write the summary and footer (the file is complete after this)."""
        self._writer.finish()
