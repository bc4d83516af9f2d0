"""mcap:FILE[:TOPIC]: ROS 2 Image / CompressedImage messages, exact pixels, ids, refusals by name."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings import McapSource, Preprocess, RecordingWarning
from nnwatch.sources import open_source

from .conftest import compressed_msg, encode, image_msg, needs, smooth_rgb, write_mcap

RAW = Preprocess(scale=1.0, layout="NHWC")
T0 = 1_700_000_000_000_000_000
H, W = 6, 5


@pytest.fixture
def recording(tmp_path, rng):
    """/camera/image: rgb8 (row padding), bgr8, mono8, short data (corrupt), rgb8, plus a truncated CDR message;
    /camera/compressed: jpeg, png, garbage; /chatter: strings; /video: foxglove CompressedVideo."""
    needs("mcap", "mcap_ros2", "PIL")
    rgb = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(4)]
    mono = rng.integers(0, 256, (H, W), dtype=np.uint8)
    smooth = smooth_rgb(rng, H, W)
    image = [
        (image_msg(rgb[0], "rgb8", T0 + 1, pad=3), T0 + 100),
        (image_msg(rgb[1][:, :, ::-1].copy(), "bgr8", T0 + 2), T0 + 200),
        (image_msg(mono, "mono8", T0 + 3, pad=1), T0 + 300),
        (image_msg(rgb[2], "rgb8", T0 + 4, data=b"\x00" * 10), T0 + 400),
        (image_msg(rgb[3], "rgb8", T0 + 5), T0 + 500),
    ]
    compressed = [
        (compressed_msg(encode(smooth, "JPEG", quality=95, subsampling=0), "jpeg", T0 + 11), T0 + 150),
        (compressed_msg(encode(rgb[0], "PNG"), "png", T0 + 12), T0 + 250),
        (compressed_msg(b"\xff\xd8\xff garbage", "jpeg", T0 + 13), T0 + 350),
    ]
    path = tmp_path / "drive.mcap"
    write_mcap(path, {
        "/camera/image": ("sensor_msgs/msg/Image", image),
        "/camera/compressed": ("sensor_msgs/msg/CompressedImage", compressed),
        "/chatter": ("std_msgs/msg/String", [({"data": "hello"}, T0 + 120)]),
        "/video": ("foxglove_msgs/msg/CompressedVideo",
                   [({"timestamp": {"sec": 1, "nanosec": 0}, "frame_id": "c", "data": b"\x00\x00\x01",
                      "format": "h264"}, T0 + 130)]),
    }, raw={"/camera/image": [(b"\x00\x01\x00\x00\x05", T0 + 110)]})
    return path, {"rgb": rgb, "mono": mono, "smooth": smooth}


def read_all(src, batch_size=2):
    xs, ids = [], []
    for x, _, b in src.batches_with_ids(batch_size):
        xs.append(x)
        ids.extend(b)
    return np.concatenate(xs), ids


def test_image_topic_pixels_ids_and_skipped_frames(recording):
    path, arr = recording
    src = open_source(f"mcap:{path}:/camera/image", RAW)
    assert isinstance(src, McapSource) and len(src) == 6  # from the summary statistics
    with pytest.warns(RecordingWarning, match=r"skipped 2 undecodable frame\(s\): frame 1 .*frame 4 ") as rec:
        x, ids = read_all(src)
    assert len(rec) == 1
    assert [i["frame"] for i in ids] == [0, 2, 3, 5]
    assert [i["stamp_ns"] for i in ids] == [T0 + 1, T0 + 2, T0 + 3, T0 + 5]
    assert [i["log_time_ns"] for i in ids] == [T0 + 100, T0 + 200, T0 + 300, T0 + 500]
    np.testing.assert_array_equal(x[0], arr["rgb"][0])  # rgb8 with 3 bytes of padding per row
    np.testing.assert_array_equal(x[1], arr["rgb"][1])  # bgr8 back to RGB
    np.testing.assert_array_equal(x[2], np.repeat(arr["mono"][:, :, None], 3, axis=2))
    np.testing.assert_array_equal(x[3], arr["rgb"][3])
    assert [(i["frame"], i["log_time_ns"]) for i in src.skipped] == [(1, T0 + 110), (4, T0 + 400)]
    assert src.skipped[0]["stamp_ns"] is None  # the CDR could not be read
    assert src.skipped[1]["stamp_ns"] == T0 + 4


def test_mono_topic_as_gray_nchw(recording):
    path, arr = recording
    x, _ = next(open_source(f"mcap:{path}:/camera/image[3:4]", Preprocess(channels="gray", scale=1.0)).batches(4))
    assert x.shape == (1, 1, H, W)
    np.testing.assert_array_equal(x[0, 0], arr["mono"])


def test_compressed_topic_jpeg_close_png_exact(recording):
    path, arr = recording
    src = McapSource(path, "/camera/compressed", RAW)
    with pytest.warns(RecordingWarning, match="frame 2"):
        x, ids = read_all(src)
    assert [i["stamp_ns"] for i in ids] == [T0 + 11, T0 + 12]
    assert np.abs(x[0] - arr["smooth"]).mean() < 4.0
    np.testing.assert_array_equal(x[1], arr["rgb"][0])


def test_slices_count_every_message(recording):
    path, _ = recording
    src = open_source(f"mcap:{path}:/camera/image[2:]", RAW)
    assert len(src) == 4
    with pytest.warns(RecordingWarning):
        _, ids = read_all(src)
    assert [i["frame"] for i in ids] == [2, 3, 5]


def test_topic_choice_and_refusals(recording):
    path, _ = recording
    listed = r"image topics found: /camera/compressed, /camera/image"
    with pytest.raises(InputError, match=r"2 image topics; name one as mcap:.*:TOPIC: /camera/compressed "
                                         r"\(sensor_msgs/msg/CompressedImage\), /camera/image"):
        open_source(f"mcap:{path}")
    with pytest.raises(InputError, match=r"no topic /camera/depth in the recording; " + listed):
        open_source(f"mcap:{path}:/camera/depth")
    with pytest.raises(InputError, match=r"did you mean /camera/image\?"):
        open_source(f"mcap:{path}:camera/image")
    with pytest.raises(InputError, match=r"/chatter holds std_msgs/msg/String messages, not images.*" + listed):
        open_source(f"mcap:{path}:/chatter")
    with pytest.raises(InputError, match=r"foxglove_msgs/msg/CompressedVideo \(compressed video, e.g. H.264\)"):
        open_source(f"mcap:{path}:/video")


def test_the_only_image_topic_is_chosen(tmp_path, rng):
    needs("mcap", "mcap_ros2")
    path = tmp_path / "one.mcap"
    pixels = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    write_mcap(path, {"/cam": ("sensor_msgs/msg/Image", [(image_msg(pixels, "rgb8", 5), 7)]),
                      "/chatter": ("std_msgs/msg/String", [({"data": "x"}, 8)])})
    src = open_source(str(path), RAW)  # a bare .mcap path
    assert src.topic == "/cam"
    x, _, ids = next(src.batches_with_ids(4))
    np.testing.assert_array_equal(x[0], pixels)
    assert ids == [{"frame": 0, "stamp_ns": 5, "log_time_ns": 7}]


@pytest.mark.parametrize("encoding, match", [
    ("bayer_rggb8", r"encoding 'bayer_rggb8' is not supported \(a Bayer mosaic"),
    ("16UC1", r"encoding '16UC1' is not supported \(16-bit or float pixels"),
    ("mono16", r"encoding 'mono16' is not supported"),
    ("yuv422", r"encoding 'yuv422' is not supported; supported: rgb8, bgr8, mono8"),
])
def test_unsupported_encodings_are_refused_by_name(tmp_path, rng, encoding, match):
    needs("mcap", "mcap_ros2")
    path = tmp_path / "enc.mcap"
    msg = image_msg(rng.integers(0, 256, (2, 4), dtype=np.uint8), encoding, 1)
    write_mcap(path, {"/cam": ("sensor_msgs/msg/Image", [(msg, 1)])})
    with pytest.raises(InputError, match=match):
        list(McapSource(path).batches(2))


def test_compressed_depth_is_refused(tmp_path, rng):
    needs("mcap", "mcap_ros2", "PIL")
    path = tmp_path / "depth.mcap"
    png = encode(rng.integers(0, 256, (2, 2), dtype=np.uint8), "PNG")
    write_mcap(path, {"/depth": ("sensor_msgs/msg/CompressedImage",
                                 [(compressed_msg(png, "16UC1; compressedDepth png", 1), 1)])})
    with pytest.raises(InputError, match="compressedDepth, a depth image"):
        list(McapSource(path).batches(2))


def test_not_an_mcap_file(tmp_path):
    needs("mcap")
    path = tmp_path / "x.mcap"
    path.write_bytes(b"hello")
    with pytest.raises(InputError, match="is not an MCAP file"):
        McapSource(path)
    with pytest.raises(InputError, match="does not exist"):
        McapSource(tmp_path / "none.mcap")


@pytest.mark.parametrize("in_process", [False, True])
def test_an_early_close_stops_the_decoder(tmp_path, rng, in_process):
    import multiprocessing
    import threading

    from nnwatch.recordings.prefetch import THREAD_NAME, can_fork

    needs("mcap", "mcap_ros2")
    if in_process and not can_fork():
        pytest.skip("this platform cannot fork: decoding runs in a thread")
    path = tmp_path / "long.mcap"
    write_mcap(path, {"/cam": ("sensor_msgs/msg/Image", [(image_msg(rng.integers(0, 256, (4, 4), dtype=np.uint8),
                                                                    "mono8", i), i) for i in range(30)])})
    src = McapSource(path, "/cam", RAW)
    src.decode_in_process = in_process
    it = src.batches(1)
    next(it)
    decoders = multiprocessing.active_children()
    assert open_files(path, *[p.pid for p in decoders]) and len(decoders) == in_process  # the decoder holds it open
    it.close()
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME] and not multiprocessing.active_children()
    assert not open_files(path)  # and closed it before close() returned


def open_files(path, *pids):
    """Descriptors open on ``path`` in this process and the processes ``pids``."""
    import os

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd (Linux)")
    found = []
    for fds in ["/proc/self/fd"] + [f"/proc/{pid}/fd" for pid in pids]:
        for fd in os.listdir(fds):
            try:
                if os.readlink(os.path.join(fds, fd)) == str(path):
                    found.append((fds, fd))
            except OSError:
                pass
    return found
