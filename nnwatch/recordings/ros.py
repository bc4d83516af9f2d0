"""Image messages to pixels: ROS ``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage``,
and Foxglove's own ``foxglove.RawImage`` and ``foxglove.CompressedImage``.

Shared by the MCAP and the ROS bag readers; works on any decoded message object with the
ROS field names (``mcap_ros2``, ``rosbags`` and protobuf messages all give attribute access).
Foxglove's schemas use the same field names for the pixels (``width``, ``height``,
``encoding``, ``step``, ``data``; ``format``, ``data``) and carry a ``timestamp`` where ROS
messages carry ``header.stamp``; a raw image is read as an ``Image``, a compressed one as a
``CompressedImage``.

``Image`` encodings read: ``rgb8``, ``bgr8``, ``mono8`` and ``rgba8``/``bgra8`` (alpha
dropped). Rows are ``step`` bytes apart, so padded rows are read correctly. Bayer mosaics,
16-bit and float images (``bayer_*``, ``mono16``, ``16UC1``, ``32FC1`` ...) and every other
encoding are refused by name. ``CompressedImage`` frames must be JPEG or PNG
(``compressedDepth`` is refused). Other message types with image content, such as
``foxglove.CompressedVideo`` (H.264), are refused by the readers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .pixels import CorruptFrame, decode_bytes

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
FOXGLOVE_TYPES = {"foxglove.RawImage": IMAGE, "foxglove.CompressedImage": COMPRESSED}
VIDEO_TYPES = ("foxglove.CompressedVideo", "foxglove_msgs/msg/CompressedVideo")
ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def image_type(type_name: str) -> str | None:
    """The canonical image type of a schema / message type name, or None.

    Parameters
    ----------
    type_name : str
        ``sensor_msgs/msg/Image`` (ROS 2), ``sensor_msgs/Image`` (the short form), or a
        Foxglove schema name (``foxglove.RawImage``, ``foxglove.CompressedImage``).

    Returns
    -------
    str or None
        :data:`IMAGE`, :data:`COMPRESSED` or None.
    """
    if type_name in FOXGLOVE_TYPES:
        return FOXGLOVE_TYPES[type_name]
    short = type_name.replace("/msg/", "/")
    for full in IMAGE_TYPES:
        if short == full.replace("/msg/", "/"):
            return full
    return None


def refuse_type(topic: str, type_name: str) -> InputError:
    """The error for a topic whose messages are not images this package reads.

    Parameters
    ----------
    topic : str
        The topic.
    type_name : str
        Its message type / schema name.

    Returns
    -------
    InputError
        The error (to raise).
    """
    if type_name in VIDEO_TYPES:
        return InputError(f"topic {topic} holds {type_name} (compressed video, e.g. H.264), which is not read; "
                          "record sensor_msgs/msg/Image or CompressedImage (jpeg/png), or export the video's frames")
    return InputError(f"topic {topic} holds {type_name} messages, not images "
                      f"({' or '.join(IMAGE_TYPES + tuple(FOXGLOVE_TYPES))})")


def stamp_ns(msg: Any) -> int:
    """The message's time stamp in nanoseconds: ``header.stamp`` (ROS) or ``timestamp`` (Foxglove).

    Parameters
    ----------
    msg : object
        A decoded image message.

    Returns
    -------
    int
        ``sec * 10**9 + nanosec`` (ROS), ``seconds * 10**9 + nanos`` (Foxglove protobuf) or
        ``sec * 10**9 + nsec`` (Foxglove JSON).
    """
    if hasattr(msg, "header"):
        stamp = msg.header.stamp
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    stamp = msg.timestamp
    if hasattr(stamp, "seconds"):
        return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nsec)


def _buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, np.uint8).reshape(-1)


def image_pixels(msg: Any, what: str) -> np.ndarray:
    """Pixels of a ``sensor_msgs/msg/Image``.

    Parameters
    ----------
    msg : object
        The decoded message.
    what : str
        Names the frame (topic, index) in messages.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

    Raises
    ------
    InputError
        An unsupported encoding.
    CorruptFrame
        Sizes that do not fit the data.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise InputError(f"{what}: image encoding {encoding!r} is not supported{_hint(encoding)}; supported: "
                         f"{', '.join(ENCODINGS)}")
    channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * channels
    buf = _buffer(msg.data)
    if height < 1 or width < 1:
        raise CorruptFrame(f"empty image ({height}x{width})")
    if step < row:
        raise CorruptFrame(f"step {step} is less than width x channels = {row}")
    need = step * (height - 1) + row
    if buf.size < need:
        raise CorruptFrame(f"{buf.size} data bytes, {need} needed for {height}x{width} {encoding} with step {step}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1), writeable=False)
    pixels = np.array(rows).reshape(height, width, channels)
    if encoding == "mono8":
        return pixels[:, :, 0]
    if encoding.startswith("bgr"):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])


def _hint(encoding: str) -> str:
    if encoding.startswith("bayer_"):
        return " (a Bayer mosaic: debayer it to rgb8 first, e.g. with image_proc)"
    if encoding in ("mono16", "16UC1", "16SC1", "32FC1", "rgb16", "bgr16", "rgba16", "bgra16"):
        return " (16-bit or float pixels, e.g. depth: convert to mono8 or rgb8 with the scaling you want)"
    return ""


def compressed_pixels(msg: Any, what: str) -> np.ndarray:
    """Pixels of a ``sensor_msgs/msg/CompressedImage`` (JPEG or PNG).

    Parameters
    ----------
    msg : object
        The decoded message.
    what : str
        Names the frame in messages.

    Returns
    -------
    numpy.ndarray
        uint8 ``(H, W, 3)`` RGB or ``(H, W)`` gray.

    Raises
    ------
    InputError
        ``compressedDepth`` or a format other than JPEG/PNG.
    CorruptFrame
        Undecodable data.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise InputError(f"{what}: CompressedImage format {fmt!r} (compressedDepth, a depth image) is not supported; "
                         "jpeg and png color or mono8 images are")
    data = _buffer(msg.data)
    if data.size == 0:
        raise CorruptFrame("no data")
    return decode_bytes(data.tobytes(), what)


def message_pixels(type_name: str, msg: Any, what: str) -> np.ndarray:
    """Pixels of an Image or CompressedImage message.

    Parameters
    ----------
    type_name : str
        :data:`IMAGE` or :data:`COMPRESSED`.
    msg : object
        The decoded message.
    what : str
        Names the frame in messages.

    Returns
    -------
    numpy.ndarray
        uint8 pixels.

    Raises
    ------
    InputError
        Unsupported encoding or format.
    CorruptFrame
        Undecodable data.
    """
    if type_name == IMAGE:
        return image_pixels(msg, what)
    return compressed_pixels(msg, what)


__all__ = ["COMPRESSED", "CorruptFrame", "ENCODINGS", "IMAGE", "IMAGE_TYPES", "compressed_pixels", "image_pixels",
           "image_type", "message_pixels", "refuse_type", "stamp_ns"]
