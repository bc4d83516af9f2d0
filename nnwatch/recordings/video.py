"""``video:FILE``: the first video stream of a file, decoded with PyAV (FFmpeg).

Frames come in decoding-output (presentation) order. Ids are ``{"frame": index, "time_s":
presentation time in seconds}`` (``time_s`` is None where the container gives no time). The
length is the stream's frame count when the container declares one, else 0 (unknown).
Frames before a slice's start are decoded (later frames depend on them) but not converted.
A packet FFmpeg cannot decode is skipped and counted as one frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from .._optional import require
from ..errors import InputError
from .preprocess import Preprocess
from .recording import Frame, RecordingSource

GRAY_FORMATS = ("gray", "gray8")


class VideoSource(RecordingSource):
    """Frames of a video file.

    Parameters
    ----------
    path : str or Path
        The video (any container and codec FFmpeg reads).
    preprocess : Preprocess, str, dict or None
        Declared preprocessing.
    """

    time_ordered = True

    def __init__(self, path: str | Path, preprocess: Preprocess | str | dict | None = None) -> None:
        super().__init__(f"video:{path}", preprocess)
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"video:{path} does not exist" if not self.path.exists() else
                             f"video:{path} is not a file")
        av = require("av")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    kinds = sorted({s.type for s in container.streams}) or ["none"]
                    raise InputError(f"video:{path} has no video stream (streams: {', '.join(kinds)})")
                stream = container.streams.video[0]
                context = stream.codec_context
                if context is None:  # FFmpeg in this PyAV build has no decoder for it
                    raise InputError(f"video:{path}: the installed PyAV (FFmpeg {av.__version__}) cannot decode its "
                                     f"codec ({getattr(stream, 'codec_tag', None) or 'unknown'}); convert it, e.g. "
                                     "ffmpeg -i IN -c:v libx264 OUT.mp4, or install a PyAV build with that decoder")
                self.codec = context.name
                self._n_frames = int(stream.frames or 0) or None
        except av.FFmpegError as exc:
            raise InputError(f"video:{path}: FFmpeg cannot open it: {exc}") from None

    def _count(self) -> int | None:
        return self._n_frames

    def _frames(self, start: int, stop: int | None) -> Iterator[Frame]:
        av = require("av")
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            base = stream.time_base
            index = 0
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    if packet.size == 0:  # the flush packet: nothing more to read
                        break
                    if index >= start:
                        yield Frame({"frame": index, "time_s": _seconds(packet.pts, base)}, None,
                                    error=f"FFmpeg ({self.codec}): {exc}")
                    index += 1
                    if stop is not None and index >= stop:
                        return
                    continue
                for frame in frames:
                    if index >= start:
                        yield Frame({"frame": index, "time_s": _seconds(frame.pts, base)}, _pixels(frame))
                    index += 1
                    if stop is not None and index >= stop:
                        return


def _seconds(pts: Any, base: Any) -> float | None:
    return None if pts is None or base is None else float(pts * base)


def _pixels(frame: Any) -> Any:
    if frame.format.name in GRAY_FORMATS:
        return frame.to_ndarray(format="gray")
    return frame.to_ndarray(format="rgb24")
