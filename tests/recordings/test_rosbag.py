"""rosbag:DIR|FILE.bag[:TOPIC]: ROS 2 bags (SQLite3 and MCAP storage) and ROS 1 bags, written
with rosbags at test time."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings import Preprocess, RecordingWarning, RosbagSource
from nnwatch.sources import open_source

from .conftest import compressed_msg, encode, image_msg, needs, write_rosbag

RAW = Preprocess(scale=1.0, layout="NHWC")
T0 = 1_650_000_000_000_000_000


@pytest.fixture(params=["sqlite3", "mcap", "ros1"])
def bag(request, tmp_path, rng):
    needs("rosbags", "PIL")
    rgb = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    mono = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    png = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    path = tmp_path / ("run.bag" if request.param == "ros1" else "run")
    write_rosbag(path, {
        "/cam/image": ("sensor_msgs/msg/Image", [
            (image_msg(rgb, "rgb8", T0 + 1, pad=2), T0 + 10),
            (image_msg(rgb[:, :, ::-1].copy(), "bgr8", T0 + 2), T0 + 20),
            (image_msg(mono, "mono8", T0 + 3), T0 + 30),
            (image_msg(rgb, "rgb8", T0 + 4, data=b"\x01\x02"), T0 + 40),
        ]),
        "/cam/compressed": ("sensor_msgs/msg/CompressedImage", [(compressed_msg(encode(png, "PNG"), "png", T0 + 5),
                                                                 T0 + 50)]),
        "/chatter": ("std_msgs/msg/String", [({"data": "hi"}, T0 + 15)]),
    }, storage=request.param)
    return path, {"rgb": rgb, "mono": mono, "png": png}


def test_bag_pixels_ids_and_skips(bag):
    path, arr = bag
    src = open_source(f"rosbag:{path}:/cam/image", RAW)
    assert isinstance(src, RosbagSource) and len(src) == 4
    with pytest.warns(RecordingWarning, match=r"skipped 1 undecodable frame\(s\): frame 3 \(stamp_ns "):
        batches = list(src.batches_with_ids(2))
    x = np.concatenate([b[0] for b in batches])
    ids = [i for b in batches for i in b[2]]
    np.testing.assert_array_equal(x[0], arr["rgb"])
    np.testing.assert_array_equal(x[1], arr["rgb"])
    np.testing.assert_array_equal(x[2], np.repeat(arr["mono"][:, :, None], 3, axis=2))
    assert ids == [{"frame": i, "stamp_ns": T0 + i + 1, "log_time_ns": T0 + 10 * (i + 1)} for i in range(3)]
    assert [s["frame"] for s in src.skipped] == [3]


def test_compressed_topic_and_slice(bag):
    path, arr = bag
    x, _, ids = next(open_source(f"rosbag:{path}:/cam/compressed[0:1]", RAW).batches_with_ids(4))
    np.testing.assert_array_equal(x[0], arr["png"])
    assert ids[0]["stamp_ns"] == T0 + 5
    x, _ = next(open_source(f"rosbag:{path}:/cam/image[1:2]", RAW).batches(4))
    np.testing.assert_array_equal(x[0], arr["rgb"])


def test_bare_bag_folder_and_topic_refusals(bag):
    path, _ = bag
    with pytest.raises(InputError, match=r"2 image topics; name one as rosbag:.*:TOPIC"):
        open_source(str(path))  # a bare bag folder is read as rosbag:
    with pytest.raises(InputError, match=r"/chatter holds std_msgs/msg/String messages, not images.*image topics "
                                         r"found: /cam/compressed, /cam/image"):
        open_source(f"rosbag:{path}:/chatter")
    with pytest.raises(InputError, match=r"no topic /none in the recording"):
        open_source(f"rosbag:{path}:/none")


def test_non_bags_are_refused(tmp_path):
    needs("rosbags")
    broken = tmp_path / "old.bag"
    broken.write_bytes(b"#ROSBAG V2.0\n")
    with pytest.raises(InputError, match=r"rosbag:.*old.bag: cannot open the bag"):
        open_source(f"rosbag:{broken}")
    with pytest.raises(InputError, match="neither a ROS 2 bag folder .* nor a ROS 1 .bag file"):
        open_source(f"rosbag:{tmp_path}")
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"rosbag:{tmp_path / 'missing'}")
