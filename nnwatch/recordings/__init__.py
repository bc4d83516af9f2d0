"""Recorded data read as streams: image folders, video, MCAP and ROS 2 bags.

Sources (``--data`` on the command line, or :func:`nnwatch.sources.open_source`):

- ``images:DIR`` / ``images:MANIFEST.csv``: PNG/JPEG, sorted; class subfolders give labels
  (:mod:`.images`);
- ``video:FILE``: frames through PyAV (:mod:`.video`);
- ``mcap:FILE[:TOPIC]``: ROS 2 ``sensor_msgs/msg/Image`` / ``CompressedImage`` (:mod:`.mcap_source`);
- ``rosbag:DIR[:TOPIC]``: the same from ROS 2 bags (:mod:`.rosbag`);

each optionally sliced, ``SOURCE[start:stop]``, or split into contiguous blocks by percentage,
``SOURCE[:80%]`` / ``SOURCE[80%:]`` (:mod:`.spec`). Frames go through one declared
:class:`~.preprocess.Preprocess` (presets ``0-1``, ``-1-1``, ``imagenet`` or a JSON file), are
decoded in a background thread a few batches ahead (:mod:`.prefetch`), and carry ids
(``batches_with_ids``). Nothing is loaded whole. The decoders are the ``recordings`` extra:
``pip install 'nnwatch[recordings]'``.
"""

from __future__ import annotations

from .images import ImageSource
from .mcap_source import McapSource
from .preprocess import PRESETS, Preprocess, load_preprocess, resolve_preprocess
from .rosbag import RosbagSource
from .spec import SCHEMES, Percent, open_recording, parse_slice, resolve_slice
from .recording import RecordingSource, RecordingWarning, spans_overlap
from .video import VideoSource

__all__ = ["ImageSource", "McapSource", "PRESETS", "Preprocess", "RecordingSource", "RecordingWarning",
           "RosbagSource", "SCHEMES", "Percent", "VideoSource", "load_preprocess", "open_recording", "parse_slice",
           "resolve_preprocess", "resolve_slice", "spans_overlap"]
