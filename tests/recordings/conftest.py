"""Recordings built at test time (no binary fixtures): image folders, videos, MCAP files, ROS 2 bags."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import missing

HOW = 'pip install -c constraints.txt -e ".[recordings]"'

# ROS 2 message definitions as MCAP stores them (the type, then each dependency after a separator).
SEP = "=" * 80
TIME = "int32 sec\nuint32 nanosec"
HEADER = f"builtin_interfaces/Time stamp\nstring frame_id\n{SEP}\nMSG: builtin_interfaces/Time\n{TIME}"
IMAGE_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\n"
             f"uint8[] data\n{SEP}\nMSG: std_msgs/Header\n{HEADER}")
COMPRESSED_DEF = f"std_msgs/Header header\nstring format\nuint8[] data\n{SEP}\nMSG: std_msgs/Header\n{HEADER}"
STRING_DEF = "string data"
VIDEO_DEF = f"builtin_interfaces/Time timestamp\nstring frame_id\nuint8[] data\nstring format\n{SEP}\nMSG: builtin_interfaces/Time\n{TIME}"


def needs(*modules: str) -> None:
    """Skip (fail under NNWATCH_REQUIRE_ALL=1) when a decoder of the recordings extra is missing."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing(f"{module} (the recordings extra)", HOW)


def encode(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def smooth_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth image (JPEG and video codecs keep it close)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)


def stamp(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, pad: int = 0, data: bytes | None = None) -> dict:
    """A sensor_msgs/msg/Image dict; ``pad`` bytes of padding after every row."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1) if pad else rows
    return {"header": {"stamp": stamp(stamp_ns), "frame_id": "cam"}, "height": h, "width": w, "encoding": encoding,
            "is_bigendian": 0, "step": rows.shape[1] + pad, "data": padded.tobytes() if data is None else data}


def compressed_msg(data: bytes, fmt: str, stamp_ns: int) -> dict:
    return {"header": {"stamp": stamp(stamp_ns), "frame_id": "cam"}, "format": fmt, "data": data}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def write_mcap(path: Path, topics: dict[str, tuple[str, list]], raw: dict[str, list] | None = None,
               chunk_size: int = 1024 * 1024) -> None:
    """``topics``: topic -> (type, [(message dict, log_time_ns), ...]); ``raw``: topic -> [(bytes, log_time_ns)]
    written as they are (corrupt CDR) after the topic's first message."""
    from mcap_ros2.writer import Writer

    defs = {"sensor_msgs/msg/Image": IMAGE_DEF, "sensor_msgs/msg/CompressedImage": COMPRESSED_DEF,
            "std_msgs/msg/String": STRING_DEF, "foxglove_msgs/msg/CompressedVideo": VIDEO_DEF}
    with open(path, "wb") as fh:
        writer = Writer(fh, chunk_size=chunk_size)
        schemas = {}
        for topic, (kind, messages) in topics.items():
            if kind not in schemas:
                schemas[kind] = writer.register_msgdef(kind, defs[kind])
            for i, (msg, log_time) in enumerate(messages):
                writer.write_message(topic, schemas[kind], msg, log_time=log_time)
                if i == 0 and raw and topic in raw:
                    for data, t in raw[topic]:
                        writer._writer.add_message(channel_id=writer._channel_ids[topic], log_time=t,
                                                   publish_time=t, sequence=0, data=data)
        writer.finish()


def write_rosbag(path: Path, topics: dict[str, tuple[str, list]], storage: str = "sqlite3") -> None:
    """A ROS 2 bag (SQLite3 or MCAP storage) or, with ``storage="ros1"``, a ROS 1 ``.bag`` file:
    topic -> (type, [(message dict, timestamp_ns), ...])."""
    from rosbags.typesys import Stores, get_typestore

    if storage == "ros1":
        from rosbags.rosbag1 import Writer as Ros1Writer

        store = get_typestore(Stores.ROS1_NOETIC)
        with Ros1Writer(path) as writer:
            for topic, (kind, messages) in topics.items():
                conn = writer.add_connection(topic, kind, typestore=store)
                for msg, timestamp in messages:
                    writer.write(conn, timestamp, store.serialize_ros1(_ros_object(store.types, kind, msg), kind))
        return
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = get_typestore(Stores.LATEST)
    t = store.types
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        for topic, (kind, messages) in topics.items():
            conn = writer.add_connection(topic, kind, typestore=store)
            for msg, timestamp in messages:
                obj = _ros_object(t, kind, msg)
                writer.write(conn, timestamp, store.serialize_cdr(obj, kind))


def _ros_object(t: dict, kind: str, msg: dict):
    if kind == "std_msgs/msg/String":
        return t[kind](data=msg["data"])
    stamp_ = t["builtin_interfaces/msg/Time"](sec=msg["header"]["stamp"]["sec"],
                                              nanosec=msg["header"]["stamp"]["nanosec"])
    ros1 = "seq" in t["std_msgs/msg/Header"].__dataclass_fields__  # ROS 1 headers carry a sequence number
    header = t["std_msgs/msg/Header"](stamp=stamp_, frame_id=msg["header"]["frame_id"], **({"seq": 0} if ros1 else {}))
    data = np.frombuffer(msg["data"], np.uint8).copy()
    if kind == "sensor_msgs/msg/Image":
        return t[kind](header=header, height=msg["height"], width=msg["width"], encoding=msg["encoding"],
                       is_bigendian=0, step=msg["step"], data=data)
    return t[kind](header=header, format=msg["format"], data=data)
