"""``rosbag:PATH[:TOPIC]``: ROS 2 bags (a folder with ``metadata.yaml``) and ROS 1 bags (a
``.bag`` file), read with ``rosbags``.

ROS 2 SQLite3 bags, and MCAP-storage bags, are read; ROS 1 bags (format 2.0, any chunk
compression ``rosbags`` reads) with the Noetic message definitions. Message types, encodings,
topic choice, ids and skipped frames are as for ``mcap:`` (:mod:`nnwatch.recordings.mcap_source`):
ids are ``{"frame", "stamp_ns", "log_time_ns"}`` where ``log_time_ns`` is the bag's receive
timestamp. The length is the bag's message count for the topic.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from .._optional import require
from ..errors import InputError
from .pixels import CorruptFrame
from .preprocess import Preprocess
from .ros import image_type, message_pixels, stamp_ns
from .recording import Frame, RecordingSource
from .topics import choose_topic


class RosbagSource(RecordingSource):
    """Images of one topic of a ROS 2 or ROS 1 bag.

    Parameters
    ----------
    path : str or Path
        The ROS 2 bag folder (or its ``metadata.yaml``), or a ROS 1 ``.bag`` file.
    topic : str, optional
        The image topic (default: the only one).
    preprocess : Preprocess, str, dict or None
        Declared preprocessing.
    """

    time_ordered = True

    def __init__(self, path: str | Path, topic: str | None = None,
                 preprocess: Preprocess | str | dict | None = None) -> None:
        super().__init__(f"rosbag:{path}" + (f":{topic}" if topic else ""), preprocess)
        self.path = Path(path)
        if self.path.name == "metadata.yaml":
            self.path = self.path.parent
        self.ros1 = self.path.is_file() and self.path.suffix == ".bag"
        if not self.ros1 and (not self.path.is_dir() or not (self.path / "metadata.yaml").is_file()):
            what = ("does not exist" if not self.path.exists() else
                    "is neither a ROS 2 bag folder (no metadata.yaml) nor a ROS 1 .bag file")
            raise InputError(f"rosbag:{path} {what}; pass a ROS 2 bag's folder or a ROS 1 .bag file")
        with self._reader() as reader:
            topics: dict[str, str] = {}
            counts: dict[str, int] = {}
            for conn in reader.connections:
                topics[conn.topic] = conn.msgtype
                counts[conn.topic] = counts.get(conn.topic, 0) + int(conn.msgcount)
        self.topic = choose_topic(f"rosbag:{path}", topics, topic)
        self.type_name = image_type(topics[self.topic])
        self._n = counts[self.topic]

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Any]:
        if self.ros1:
            module = require("rosbags.rosbag1", extra="recordings")
        else:
            module = require("rosbags.rosbag2", extra="recordings")
        try:
            reader = module.Reader(self.path)
            reader.open()
        except Exception as exc:  # rosbags' ReaderError and the storage plugins' own errors
            raise InputError(f"rosbag:{self.path}: cannot open the bag ({type(exc).__name__}: {exc})") from None
        try:
            yield reader
        finally:
            reader.close()

    def _count(self) -> int:
        return self._n

    def _frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        typesys = require("rosbags.typesys", extra="recordings")
        store = typesys.get_typestore(typesys.Stores.ROS1_NOETIC if self.ros1 else typesys.Stores.LATEST)
        deserialize = store.deserialize_ros1 if self.ros1 else store.deserialize_cdr
        what = "ROS 1 message" if self.ros1 else "CDR"
        with self._reader() as reader:
            conns = [c for c in reader.connections if c.topic == self.topic]
            for index, (conn, timestamp, raw) in enumerate(reader.messages(connections=conns)):
                if stop is not None and index >= stop:
                    return
                if index < start:
                    continue
                frame_id: dict[str, Any] = {"frame": index, "stamp_ns": None, "log_time_ns": int(timestamp)}
                try:
                    msg = deserialize(raw, conn.msgtype)
                    frame_id["stamp_ns"] = stamp_ns(msg)
                except Exception as exc:  # malformed bytes: the deserializer's own error types
                    yield Frame(frame_id, None, error=f"{what}: {type(exc).__name__}: {exc}")
                    continue
                try:
                    pixels = message_pixels(self.type_name, msg, f"{self.name} frame {index}")
                except CorruptFrame as exc:
                    yield Frame(frame_id, None, error=str(exc))
                    continue
                yield Frame(frame_id, pixels)
