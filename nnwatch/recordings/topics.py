"""Choosing the image topic of a robot recording (MCAP or ROS 2 bag)."""

from __future__ import annotations

from ..errors import InputError
from .ros import image_type, refuse_type


def _listing(topics: dict[str, str]) -> str:
    return ", ".join(f"{t} ({topics[t]})" for t in sorted(topics)) or "none"


def choose_topic(name: str, topics: dict[str, str], topic: str | None) -> str:
    """The topic to read: the one asked for, or the recording's only image topic.

    Parameters
    ----------
    name : str
        The source, for messages (``mcap:FILE``).
    topics : dict
        Topic -> message type of every topic in the recording.
    topic : str or None
        The topic asked for, if any.

    Returns
    -------
    str
        A topic of type Image or CompressedImage.

    Raises
    ------
    InputError
        The topic is missing or not an image topic (the image topics found are listed); no
        topic was given and there is not exactly one image topic.
    """
    images = {t: k for t, k in topics.items() if image_type(k) is not None}
    found = f"image topics found: {', '.join(sorted(images)) or 'none'}"
    if topic is not None:
        if topic not in topics:
            hint = f"; did you mean /{topic}?" if not topic.startswith("/") and f"/{topic}" in topics else ""
            raise InputError(f"{name}: no topic {topic} in the recording{hint}; {found} (all topics: "
                             f"{_listing(topics)})")
        if topic not in images:
            raise InputError(f"{name}: {refuse_type(topic, topics[topic])}; {found}")
        return topic
    if len(images) == 1:
        return next(iter(images))
    if not images:
        raise InputError(f"{name}: no image topics (sensor_msgs/msg/Image or CompressedImage); topics: "
                         f"{_listing(topics)}")
    raise InputError(f"{name}: {len(images)} image topics; name one as {name}:TOPIC: {_listing(images)}")
