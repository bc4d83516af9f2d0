"""``mcap:FILE[:TOPIC]``: ROS 2 image messages from an MCAP recording (``mcap`` + ``mcap-ros2-support``).

Reads ``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage`` messages encoded as CDR
(see :mod:`nnwatch.recordings.ros` for the encodings read). Without a TOPIC, the recording's
only image topic is read; several are refused with their names. Messages come in ``log_time``
order. Ids are ``{"frame": index in the topic, "stamp_ns": header.stamp, "log_time_ns":
the recording's log time}``. The length comes from the file's summary statistics; a file
without a summary is read through once to count, and its messages come in file order (sorting
a stream by log time would hold it all in memory). A recording cut short (the recorder was
killed: no footer, a torn last chunk) is read up to the cut, with a warning. A message whose CDR
or image data cannot be decoded is skipped (warned once).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

from .._optional import require
from ..errors import InputError
from .pixels import CorruptFrame
from .preprocess import Preprocess
from .ros import image_type, message_pixels, stamp_ns
from .recording import Frame, RecordingSource, RecordingWarning
from .topics import choose_topic

MAGIC = b"\x89MCAP0\r\n"


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
        if encodings[self.topic] != "cdr" or schema_encodings[self.topic] != "ros2msg":
            raise InputError(f"mcap:{path}: topic {self.topic} is encoded as {encodings[self.topic]!r} with a "
                             f"{schema_encodings[self.topic]!r} schema; only ROS 2 messages (cdr, ros2msg schemas) "
                             "are read (ROS 1 recordings are not supported)")
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
        factory = require("mcap_ros2.decoder", extra="recordings").DecoderFactory()
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
                except Exception as exc:  # malformed CDR: the deserializer's own error types
                    yield Frame(frame_id, None, error=f"CDR: {type(exc).__name__}: {exc}")
                    continue
                try:
                    pixels = message_pixels(self.type_name, msg, f"{self.name} frame {index}")
                except CorruptFrame as exc:
                    yield Frame(frame_id, None, error=str(exc))
                    continue
                yield Frame(frame_id, pixels)

    def _decoder(self, factory: Any, channel: Any, schema: Any) -> Any:
        try:
            decoder = factory.decoder_for(channel.message_encoding, schema)
        except Exception as exc:  # mcap_ros2's McapROS2DecodeError and the msg parser's errors
            raise InputError(f"{self.name}: the {schema.name if schema else '?'} schema cannot be parsed "
                             f"({type(exc).__name__}: {exc})") from None
        if decoder is None:
            raise InputError(f"{self.name}: no ROS 2 decoder for encoding {channel.message_encoding!r} with a "
                             f"{schema.encoding if schema else 'missing'} schema")
        return decoder
