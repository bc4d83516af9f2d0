"""video:FILE through PyAV: frames, ids (index, pts seconds), slices, length."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings import Preprocess, RecordingWarning, VideoSource
from nnwatch.sources import open_source

from .conftest import needs, smooth_rgb

RAW = Preprocess(scale=1.0, layout="NHWC")
RATE = 10


def write_video(path, frames, codec, pix_fmt, **options):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg build without {codec}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = pix_fmt
        stream.options = options
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def frames(rng):
    needs("av")
    return [np.roll(smooth_rgb(rng, 32, 48), 3 * i, axis=1) for i in range(12)]


def test_lossless_video_frames_exact_with_ids(tmp_path, frames):
    path = tmp_path / "clip.mkv"
    write_video(path, frames, "ffv1", "bgr0")
    src = open_source(f"video:{path}", RAW)
    assert isinstance(src, VideoSource)
    got, ids = [], []
    for x, y, batch_ids in src.batches_with_ids(5):
        assert y is None
        got.append(x)
        ids.extend(batch_ids)
    x = np.concatenate(got)
    assert x.shape == (12, 32, 48, 3)
    np.testing.assert_array_equal(x, np.stack(frames))
    assert [i["frame"] for i in ids] == list(range(12))
    np.testing.assert_allclose([i["time_s"] for i in ids], np.arange(12) / RATE, atol=1e-6)


def test_lossy_video_is_close_and_length_is_known(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames, "mpeg4", "yuv420p", qscale="2")
    src = VideoSource(path, RAW)
    assert len(src) == 12  # the mp4 declares its frame count
    x = np.concatenate([b for b, _ in src.batches(4)])
    assert x.shape == (12, 32, 48, 3)
    want = np.stack(frames).astype(np.float32)
    assert np.abs(x - want).mean() < 10.0  # 4:2:0 chroma on saturated colours
    errors = np.abs(x[:, None] - want[None]).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(12))  # each frame is its own source frame


def test_slice_keeps_frame_numbers_and_times(tmp_path, frames):
    path = tmp_path / "clip.mkv"
    write_video(path, frames, "ffv1", "bgr0")
    src = open_source(f"video:{path}[4:7]", RAW)
    x, _, ids = next(src.batches_with_ids(10))
    assert [i["frame"] for i in ids] == [4, 5, 6]
    np.testing.assert_allclose([i["time_s"] for i in ids], [0.4, 0.5, 0.6], atol=1e-6)
    np.testing.assert_array_equal(x, np.stack(frames[4:7]))


def test_gray_preprocessing_and_nchw(tmp_path, frames):
    path = tmp_path / "clip.mkv"
    write_video(path, frames, "ffv1", "bgr0")
    x, _ = next(open_source(f"video:{path}", Preprocess(channels="gray", resize=(16, 24))).batches(3))
    assert x.shape == (3, 1, 16, 24) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_missing_and_non_video_files(tmp_path):
    needs("av")
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"video:{tmp_path / 'none.mp4'}")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="FFmpeg cannot open it"):
        VideoSource(junk)


def test_percent_split_of_a_video(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames, "mpeg4", "yuv420p", qscale="2")
    head = [i["frame"] for _, _, b in open_source(f"video:{path}[:75%]", RAW).batches_with_ids(5) for i in b]
    tail = [i["frame"] for _, _, b in open_source(f"video:{path}[75%:]", RAW).batches_with_ids(5) for i in b]
    assert head == list(range(9)) and tail == [9, 10, 11]


def test_percent_split_needs_a_known_length(tmp_path, frames):
    path = tmp_path / "clip.mkv"
    write_video(path, frames, "ffv1", "bgr0")
    if len(VideoSource(path)) != 0:
        pytest.skip("this FFmpeg build writes a frame count into .mkv")
    with pytest.raises(InputError, match="a percentage slice needs the number of frames"):
        open_source(f"video:{path}[:50%]")


def test_an_undecodable_packet_is_skipped_and_named(tmp_path, rng):
    import av

    needs("av")
    frames = [np.full((16, 16, 3), 20 * i, np.uint8) for i in range(8)]
    path = tmp_path / "clip.avi"
    write_video(path, frames, "mjpeg", "yuvj420p")
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    pos, size = packets[4]
    data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()  # frame 4 becomes noise
    path.write_bytes(bytes(data))
    src = VideoSource(path, RAW)
    with pytest.warns(RecordingWarning, match=r"skipped 1 undecodable frame\(s\): frame 4 \(time_s 0.4\)"):
        batches = list(src.batches_with_ids(3))
    assert [i["frame"] for _, _, ids in batches for i in ids] == [0, 1, 2, 3, 5, 6, 7]
    x = np.concatenate([b[0] for b in batches])
    np.testing.assert_allclose(x[4:, 8, 8, 0], [100, 120, 140], atol=4)  # nothing after it is lost
    assert src.skipped == [{"frame": 4, "time_s": pytest.approx(0.4)}]
