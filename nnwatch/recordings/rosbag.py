"""``rosbag:PATH[:TOPIC]``: ROS 2 bags (a folder with ``metadata.yaml``) read with ``rosbags``.

SQLite3 bags, and MCAP-storage bags, are read. Message types, encodings, topic choice, ids and
skipped frames are as for ``mcap:`` (:mod:`nnwatch.recordings.mcap_source`): ids are
``{"frame", "stamp_ns", "log_time_ns"}`` where ``log_time_ns`` is the bag's receive timestamp.
The length is the bag's message count for the topic. ROS 1 bags (``.bag`` files) are not read:
convert them with ``rosbags-convert --src FILE.bag --dst FOLDER``.
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
    """Images of one topic of a ROS 2 bag.

    Parameters
    ----------
    path : str or Path
        The bag folder (or its ``metadata.yaml``).
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
        if self.path.is_file() and self.path.suffix == ".bag":
            raise InputError(f"rosbag:{path} is a ROS 1 bag, which is not read; convert it to ROS 2 with "
                             f"`rosbags-convert --src {path} --dst FOLDER` and pass rosbag:FOLDER")
        if not self.path.is_dir() or not (self.path / "metadata.yaml").is_file():
            what = "does not exist" if not self.path.exists() else "is not a ROS 2 bag folder (no metadata.yaml)"
            raise InputError(f"rosbag:{path} {what}; pass the bag's folder")
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
        rosbag2 = require("rosbags.rosbag2", extra="recordings")
        try:
            reader = rosbag2.Reader(self.path)
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
        store = typesys.get_typestore(typesys.Stores.LATEST)
        with self._reader() as reader:
            conns = [c for c in reader.connections if c.topic == self.topic]
            for index, (conn, timestamp, raw) in enumerate(reader.messages(connections=conns)):
                if stop is not None and index >= stop:
                    return
                if index < start:
                    continue
                frame_id: dict[str, Any] = {"frame": index, "stamp_ns": None, "log_time_ns": int(timestamp)}
                try:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
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
