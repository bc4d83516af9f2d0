"""``mcap:FILE[:TOPIC]``: image messages from an MCAP recording (``mcap``, ``mcap-ros2-support``,
``mcap-protobuf-support``).

Reads ROS 2 ``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage`` messages encoded
as CDR, and Foxglove's ``foxglove.RawImage`` and ``foxglove.CompressedImage`` encoded as
protobuf or JSON, as the Foxglove SDK and Foxglove's bridges record them (see
:mod:`nnwatch.recordings.ros` for the pixel encodings read). Without a TOPIC, the recording's
only image topic is read; several are refused with their names. Messages come in ``log_time``
order. Ids are ``{"frame": index in the topic, "stamp_ns": header.stamp (Foxglove: timestamp),
"log_time_ns": the recording's log time}``. The length comes from the file's summary statistics; a file
without a summary is read through once to count, and its messages come in file order (sorting
a stream by log time would hold it all in memory). A recording cut short (the recorder was
killed: no footer, a torn last chunk) is read up to the cut, with a warning. A message whose
bytes or image data cannot be decoded is skipped (warned once).
"""

from __future__ import annotations

import base64
import json
import warnings
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Iterator

from .._optional import require
from ..errors import InputError
from .pixels import CorruptFrame
from .preprocess import Preprocess
from .ros import FOXGLOVE_TYPES, image_type, message_pixels, stamp_ns
from .recording import Frame, RecordingSource, RecordingWarning
from .topics import choose_topic

MAGIC = b"\x89MCAP0\r\n"
ROS_ENCODINGS = {("cdr", "ros2msg")}  # (message encoding, schema encoding) read for ROS 2 types
FOXGLOVE_ENCODINGS = {("protobuf", "protobuf"), ("json", "jsonschema")}
# the fields a Foxglove JSON image message must have (protobuf messages always have every field)
_JSON_FIELDS = {"foxglove.RawImage": ("width", "height", "encoding", "step", "data"),
                "foxglove.CompressedImage": ("format", "data")}


def foxglove_json_message(schema_name: str, data: bytes) -> SimpleNamespace:
    """A Foxglove image message encoded as JSON (``data`` in base64), with attribute access.

    Parameters
    ----------
    schema_name : str
        ``foxglove.RawImage`` or ``foxglove.CompressedImage``.
    data : bytes
        The message's bytes.

    Returns
    -------
    types.SimpleNamespace
        Its fields; ``data`` as bytes, ``timestamp`` with ``sec`` and ``nsec``.

    Raises
    ------
    ValueError
        Not JSON, a missing field, or ``data`` that is not base64.
    """
    fields = json.loads(data)
    if not isinstance(fields, dict):
        raise ValueError("the message is not a JSON object")
    missing = [k for k in _JSON_FIELDS[schema_name] if k not in fields]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    fields["data"] = base64.b64decode(fields["data"], validate=True)
    stamp = fields.get("timestamp") or {}
    fields["timestamp"] = SimpleNamespace(sec=int(stamp.get("sec", 0)), nsec=int(stamp.get("nsec", 0)))
    return SimpleNamespace(**fields)


class McapSource(RecordingSource):
    """Images of one topic of an MCAP file.

    Parameters
    ----------
    path : str or Path
        The ``.mcap`` file.
    topic : str, optional
        The image topic (default: the only one).
    preprocess : Preprocess, str, dict or None
        Declared preprocessing.
    """

    time_ordered = True

    def __init__(self, path: str | Path, topic: str | None = None,
                 preprocess: Preprocess | str | dict | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"mcap:{path}" + (f":{topic}" if topic else ""), preprocess)
        if not self.path.is_file():
            raise InputError(f"mcap:{path} does not exist" if not self.path.exists() else f"mcap:{path} is not a file")
        with open(self.path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise InputError(f"mcap:{path} is not an MCAP file (no MCAP magic bytes at its start)")
        self._truncated: str | None = None  # why the file could not be read to its end, if so
        topics, counts, encodings, schema_encodings = self._scan()
        self.topic = choose_topic(f"mcap:{path}", topics, topic)
        self.type_name = image_type(topics[self.topic])
        self.schema_name = topics[self.topic]
        self.encoding = encodings[self.topic]
        allowed = FOXGLOVE_ENCODINGS if self.schema_name in FOXGLOVE_TYPES else ROS_ENCODINGS
        if (self.encoding, schema_encodings[self.topic]) not in allowed:
            raise InputError(f"mcap:{path}: topic {self.topic} ({self.schema_name}) is encoded as {self.encoding!r} "
                             f"with a {schema_encodings[self.topic]!r} schema; read are ROS 2 messages (cdr, ros2msg "
                             "schemas) and Foxglove image schemas (protobuf, or json with jsonschema); ROS 1 "
                             "messages are read from .bag files (rosbag:FILE.bag)")
        self._n = counts.get(self.topic)
        if self._truncated is not None:
            warnings.warn(RecordingWarning(
                f"mcap:{path} is cut short ({self._truncated}); reading the {self._n or 0} messages of "
                f"{self.topic} before the cut"), stacklevel=2)

    def _scan(self) -> tuple[dict[str, str], dict[str, int], dict[str, str], dict[str, str]]:
        """Topic -> type, topic -> message count (where known), topic -> message and schema encodings."""
        reader_mod = require("mcap.reader", extra="recordings")
        try:
            with open(self.path, "rb") as fh:
                summary = reader_mod.make_reader(fh).get_summary()
        except Exception as exc:  # the mcap package raises its own, unrelated exception types
            summary, self._truncated = None, f"no readable summary: {type(exc).__name__}: {exc}"
        if summary is None:  # a recording cut short, or written without a summary: read it through once
            return self._scan_messages(reader_mod)
        topics, encodings, schema_encodings, counts = {}, {}, {}, {}
        stats = summary.statistics.channel_message_counts if summary.statistics is not None else None
        for ch in summary.channels.values():
            schema = summary.schemas.get(ch.schema_id)
            topics[ch.topic] = schema.name if schema is not None else "(no schema)"
            encodings[ch.topic] = ch.message_encoding
            schema_encodings[ch.topic] = schema.encoding if schema is not None else ""
            if stats is not None:
                counts[ch.topic] = counts.get(ch.topic, 0) + int(stats.get(ch.id, 0))
        return topics, counts, encodings, schema_encodings

    def _scan_messages(self, reader_mod: Any) -> tuple[dict[str, str], dict[str, int], dict[str, str], dict[str, str]]:
        topics, encodings, schema_encodings, counts = {}, {}, {}, {}
        with open(self.path, "rb") as fh:
            for schema, channel, _ in self._messages(reader_mod.NonSeekingReader(fh).iter_messages(log_time_order=False),
                                                       scanning=True):
                topics[channel.topic] = schema.name if schema is not None else "(no schema)"
                encodings[channel.topic] = channel.message_encoding
                schema_encodings[channel.topic] = schema.encoding if schema is not None else ""
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
        if not topics:
            raise InputError(f"mcap:{self.path}: no message could be read ({self._truncated or 'the file is empty'})")
        return topics, counts, encodings, schema_encodings

    def _messages(self, records: Iterator[tuple], scanning: bool = False) -> Iterator[tuple]:
        """Records until the end of the file, or until the cut of a file that ends early."""
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # the mcap package raises its own, unrelated exception types
                if scanning and self._truncated is None:
                    self._truncated = f"{type(exc).__name__}: {exc}"
                if self._truncated is not None:
                    return
                raise InputError(f"mcap:{self.path}: cannot read the recording ({type(exc).__name__}: {exc})") \
                    from None
            yield record

    def _count(self) -> int | None:
        return self._n

    def _frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        reader_mod = require("mcap.reader", extra="recordings")
        factory = None
        if self.encoding == "cdr":
            factory = require("mcap_ros2.decoder", extra="recordings").DecoderFactory()
        elif self.encoding == "protobuf":
            factory = require("mcap_protobuf.decoder", extra="recordings").DecoderFactory()
        decoders: dict[int, Any] = {}
        with open(self.path, "rb") as fh:
            if self._truncated is None and reader_mod.make_reader(fh).get_summary() is not None:
                fh.seek(0)
                records = reader_mod.make_reader(fh).iter_messages(topics=[self.topic])
            else:
                fh.seek(0)
                # file order: log-time order on a stream would hold the whole file in memory
                records = reader_mod.NonSeekingReader(fh).iter_messages(topics=[self.topic], log_time_order=False)
            for index, (schema, channel, message) in enumerate(self._messages(records)):
                if stop is not None and index >= stop:
                    return
                if index < start:
                    continue
                frame_id: dict[str, Any] = {"frame": index, "stamp_ns": None, "log_time_ns": int(message.log_time)}
                if channel.schema_id not in decoders:
                    decoders[channel.schema_id] = self._decoder(factory, channel, schema)
                try:
                    msg = decoders[channel.schema_id](message.data)
                    frame_id["stamp_ns"] = stamp_ns(msg)
                except Exception as exc:  # malformed bytes: the deserializers' own error types
                    yield Frame(frame_id, None, error=f"{self.encoding}: {type(exc).__name__}: {exc}")
                    continue
                try:
                    pixels = message_pixels(self.type_name, msg, f"{self.name} frame {index}")
                except CorruptFrame as exc:
                    yield Frame(frame_id, None, error=str(exc))
                    continue
                yield Frame(frame_id, pixels)

    def _decoder(self, factory: Any, channel: Any, schema: Any) -> Any:
        if factory is None:  # Foxglove JSON
            name = self.schema_name
            return lambda data: foxglove_json_message(name, data)
        try:
            decoder = factory.decoder_for(channel.message_encoding, schema)
        except Exception as exc:  # mcap_ros2's McapROS2DecodeError and the msg parser's errors
            raise InputError(f"{self.name}: the {schema.name if schema else '?'} schema cannot be parsed "
                             f"({type(exc).__name__}: {exc})") from None
        if decoder is None:
            raise InputError(f"{self.name}: no decoder for encoding {channel.message_encoding!r} with a "
                             f"{schema.encoding if schema else 'missing'} schema")
        return decoder
