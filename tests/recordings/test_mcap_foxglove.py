"""mcap: with Foxglove's own image schemas (foxglove.RawImage, foxglove.CompressedImage), encoded
as protobuf (written with foxglove-schemas-protobuf and mcap-protobuf-support, as the Foxglove
SDK records them) and as JSON (written with the mcap writer)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings import McapSource, Preprocess, RecordingWarning
from nnwatch.sources import open_source

from .conftest import encode, needs

RAW = Preprocess(scale=1.0, layout="NHWC")
T0 = 1_700_000_000_000_000_000


def write_protobuf(path, rgb, mono, png):
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
    from mcap_protobuf.writer import Writer

    def stamped(msg, ns):
        msg.timestamp.seconds, msg.timestamp.nanos = divmod(ns, 10**9)
        return msg

    h, w = mono.shape
    padded = np.concatenate([mono, np.full((h, 2), 0xAB, np.uint8)], axis=1)  # 2 bytes of row padding
    raws = [stamped(RawImage(width=w, height=h, encoding="rgb8", step=w * 3, data=rgb.tobytes(), frame_id="c"), T0 + 1),
            stamped(RawImage(width=w, height=h, encoding="mono8", step=w + 2, data=padded.tobytes()), T0 + 2),
            stamped(RawImage(width=w, height=h, encoding="rgb8", step=w * 3, data=b"\x00" * 5), T0 + 3),  # short
            stamped(RawImage(width=w, height=h, encoding="bgr8", step=w * 3, data=rgb[:, :, ::-1].tobytes()), T0 + 4)]
    with open(path, "wb") as fh:
        writer = Writer(fh)
        for i, msg in enumerate(raws):
            writer.write_message(topic="/cam/raw", message=msg, log_time=T0 + 100 + i, publish_time=T0 + 100 + i)
        comp = stamped(CompressedImage(format="png", data=encode(png, "PNG"), frame_id="c"), T0 + 9)
        writer.write_message(topic="/cam/png", message=comp, log_time=T0 + 200, publish_time=T0 + 200)
        writer.finish()


def write_json(path, png, bad_messages=()):
    from mcap.writer import Writer

    with open(path, "wb") as fh:
        writer = Writer(fh)
        writer.start()
        schema = writer.register_schema("foxglove.CompressedImage", "jsonschema", b"{}")
        channel = writer.register_channel("/cam/json", "json", schema)
        good = {"timestamp": {"sec": T0 // 10**9, "nsec": 7}, "frame_id": "c", "format": "png",
                "data": base64.b64encode(encode(png, "PNG")).decode()}
        for i, payload in enumerate([json.dumps(good).encode(), *bad_messages, json.dumps(good).encode()]):
            writer.add_message(channel, log_time=T0 + i, data=payload, publish_time=T0 + i)
        writer.finish()


@pytest.fixture
def pictures(rng):
    needs("mcap", "mcap_protobuf", "foxglove_schemas_protobuf", "PIL")
    return (rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), rng.integers(0, 256, (4, 5), dtype=np.uint8),
            rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))


def test_protobuf_raw_and_compressed_images(tmp_path, pictures):
    rgb, mono, png = pictures
    path = tmp_path / "sdk.mcap"
    write_protobuf(path, rgb, mono, png)
    src = open_source(f"mcap:{path}:/cam/raw", RAW)
    assert isinstance(src, McapSource) and len(src) == 4
    with pytest.warns(RecordingWarning, match=r"skipped 1 undecodable frame\(s\): frame 2"):
        batches = list(src.batches_with_ids(2))
    x = np.concatenate([b[0] for b in batches])
    ids = [i for b in batches for i in b[2]]
    np.testing.assert_array_equal(x[0], rgb)
    np.testing.assert_array_equal(x[1], np.repeat(mono[:, :, None], 3, axis=2))  # padded rows read by step
    np.testing.assert_array_equal(x[2], rgb)  # bgr8 back to RGB
    assert ids == [{"frame": f, "stamp_ns": T0 + f + 1, "log_time_ns": T0 + 100 + f} for f in (0, 1, 3)]
    x, _, ids = next(open_source(f"mcap:{path}:/cam/png", RAW).batches_with_ids(4))
    np.testing.assert_array_equal(x[0], png)
    assert ids == [{"frame": 0, "stamp_ns": T0 + 9, "log_time_ns": T0 + 200}]
    with pytest.raises(InputError, match=r"2 image topics; name one.*/cam/png \(foxglove.CompressedImage\), /cam/raw"):
        open_source(f"mcap:{path}")


def test_json_compressed_images_and_malformed_messages(tmp_path, pictures):
    _, _, png = pictures
    path = tmp_path / "bridge.mcap"
    write_json(path, png, bad_messages=[b"{not json", json.dumps({"format": "png"}).encode(),
                                        json.dumps({"format": "png", "data": "%%%"}).encode()])
    src = open_source(f"mcap:{path}", RAW)
    with pytest.warns(RecordingWarning, match=r"skipped 3 undecodable frame\(s\).*first: json: JSONDecodeError"):
        (x, _, ids), = list(src.batches_with_ids(8))
    assert len(x) == 2 and all((f == png).all() for f in x)
    assert [i["frame"] for i in ids] == [0, 4] and ids[0]["stamp_ns"] == (T0 // 10**9) * 10**9 + 7
    assert [s["frame"] for s in src.skipped] == [1, 2, 3]


def test_a_foxglove_schema_in_another_encoding_is_refused(tmp_path, pictures):
    from mcap.writer import Writer

    path = tmp_path / "odd.mcap"
    with open(path, "wb") as fh:
        writer = Writer(fh)
        writer.start()
        schema = writer.register_schema("foxglove.RawImage", "flatbuffer", b"\x00")
        channel = writer.register_channel("/cam", "flatbuffer", schema)
        writer.add_message(channel, log_time=T0, data=b"\x00", publish_time=T0)
        writer.finish()
    with pytest.raises(InputError, match=r"/cam \(foxglove.RawImage\) is encoded as 'flatbuffer'.*Foxglove image "
                                         r"schemas \(protobuf, or json with jsonschema\)"):
        open_source(f"mcap:{path}")
