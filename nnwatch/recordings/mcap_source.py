"""``mcap:FILE[:TOPIC]``: ROS 2 image messages from an MCAP recording (``mcap`` + ``mcap-ros2-support``).

Reads ``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage`` messages encoded as CDR
(see :mod:`nnwatch.recordings.ros` for the encodings read). Without a TOPIC, the recording's
only image topic is read; several are refused with their names. Messages come in ``log_time``
order. Ids are ``{"frame": index in the topic, "stamp_ns": header.stamp, "log_time_ns":
the recording's log time}``. The length comes from the file's summary statistics (0 when the
file has none). A message whose CDR or image data cannot be decoded is skipped (warned once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from .._optional import require
from ..errors import InputError
from .pixels import CorruptFrame
from .preprocess import Preprocess
from .ros import image_type, message_pixels, stamp_ns
from .recording import Frame, RecordingSource
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

    def __init__(self, path: str | Path, topic: str | None = None,
                 preprocess: Preprocess | str | dict | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"mcap:{path}" + (f":{topic}" if topic else ""), preprocess)
        if not self.path.is_file():
            raise InputError(f"mcap:{path} does not exist" if not self.path.exists() else f"mcap:{path} is not a file")
        with open(self.path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise InputError(f"mcap:{path} is not an MCAP file (no MCAP magic bytes at its start)")
        topics, counts, encodings = self._scan()
        self.topic = choose_topic(f"mcap:{path}", topics, topic)
        self.type_name = image_type(topics[self.topic])
        if encodings[self.topic] != "cdr":
            raise InputError(f"mcap:{path}: topic {self.topic} is encoded as {encodings[self.topic]!r}; only ROS 2 "
                             "messages (cdr) are read (ROS 1 recordings are not supported)")
        self._n = counts.get(self.topic)

    def _scan(self) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
        """Topic -> type, topic -> message count (where the summary has statistics), topic -> encoding."""
        reader_mod = require("mcap.reader", extra="recordings")
        try:
            with open(self.path, "rb") as fh:
                summary = reader_mod.make_reader(fh).get_summary()
                if summary is None:  # no summary section (e.g. a recording cut short): read it through once
                    return self._scan_messages(reader_mod)
        except InputError:
            raise
        except Exception as exc:  # the mcap package raises its own, unrelated exception types
            raise InputError(f"mcap:{self.path}: cannot read the MCAP summary ({type(exc).__name__}: {exc})") from None
        topics, encodings, counts = {}, {}, {}
        stats = summary.statistics.channel_message_counts if summary.statistics is not None else None
        for ch in summary.channels.values():
            schema = summary.schemas.get(ch.schema_id)
            topics[ch.topic] = schema.name if schema is not None else "(no schema)"
            encodings[ch.topic] = ch.message_encoding
            if stats is not None:
                counts[ch.topic] = counts.get(ch.topic, 0) + int(stats.get(ch.id, 0))
        return topics, counts, encodings

    def _scan_messages(self, reader_mod: Any) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
        topics, encodings, counts = {}, {}, {}
        with open(self.path, "rb") as fh:
            for schema, channel, _ in reader_mod.NonSeekingReader(fh).iter_messages():
                topics[channel.topic] = schema.name if schema is not None else "(no schema)"
                encodings[channel.topic] = channel.message_encoding
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
        return topics, counts, encodings

    def _count(self) -> int | None:
        return self._n

    def _frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        reader_mod = require("mcap.reader", extra="recordings")
        factory = require("mcap_ros2.decoder", extra="recordings").DecoderFactory()
        decoders: dict[int, Any] = {}
        with open(self.path, "rb") as fh:
            reader = reader_mod.make_reader(fh)
            if reader.get_summary() is None:
                reader = reader_mod.NonSeekingReader(fh)
            for index, (schema, channel, message) in enumerate(reader.iter_messages(topics=[self.topic])):
                if stop is not None and index >= stop:
                    return
                if index < start:
                    continue
                frame_id: dict[str, Any] = {"frame": index, "stamp_ns": None, "log_time_ns": int(message.log_time)}
                if channel.schema_id not in decoders:
                    decoders[channel.schema_id] = factory.decoder_for(channel.message_encoding, schema)
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
