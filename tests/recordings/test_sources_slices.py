"""Slices and npy: on the array sources; the source protocol the rest of nnwatch relies on."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings import RecordingSource, parse_slice
from nnwatch.sources import ArraySource, in_memory, open_source


@pytest.fixture
def npz(tmp_path, rng):
    x = rng.random((10, 3), dtype=np.float32)
    y = np.arange(10) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    return path, x, y


def test_npz_slices(npz):
    path, x, y = npz
    src = open_source(f"npz:{path}[2:5]")
    np.testing.assert_array_equal(src.x, x[2:5])
    np.testing.assert_array_equal(src.y, y[2:5])
    assert src.name.endswith("[2:5]")
    assert len(open_source(f"npz:{path}[:4]")) == 4
    assert len(open_source(f"{path}[7:]")) == 3  # a bare .npz path, sliced
    assert len(open_source(f"npz:{path}[8:100]")) == 2  # Python semantics: stop past the end


@pytest.mark.parametrize("suffix, match", [("[5:2]", r"slice \[5:2\] of 10 samples is empty"),
                                           ("[0:4:2]", "takes no step"), ("[-3:]", "non-negative"),
                                           ("[1]", r"\[1\] is not a slice")])
def test_bad_slices(npz, suffix, match):
    path, _, _ = npz
    with pytest.raises(InputError, match=match):
        open_source(f"npz:{path}{suffix}")


def test_parse_slice():
    assert parse_slice("digits:train") == ("digits:train", None)
    assert parse_slice("video:a.mp4[3:]") == ("video:a.mp4", (3, None))
    assert parse_slice("mcap:r.mcap:/cam[:9]") == ("mcap:r.mcap:/cam", (0, 9))


def test_npy_is_memory_mapped_with_optional_labels(tmp_path, rng):
    x = rng.random((6, 2, 2), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(6))
    src = open_source(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}[1:4]")
    assert isinstance(src.x, np.memmap)
    np.testing.assert_array_equal(src.x, x[1:4])
    np.testing.assert_array_equal(src.y, [1, 2, 3])
    assert open_source(str(tmp_path / "x.npy")).y is None
    np.save(tmp_path / "f.npy", np.arange(6.0))
    with pytest.raises(InputError, match="integer class labels are needed"):
        open_source(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'f.npy'}")
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"npy:{tmp_path / 'none.npy'}")


def test_preprocess_is_refused_for_array_sources(npz):
    path, _, _ = npz
    with pytest.raises(InputError, match="--preprocess applies to pixels .*npz: data is fed to the model as stored"):
        open_source(f"npz:{path}", "imagenet")


def test_unknown_scheme_lists_the_recordings(tmp_path):
    with pytest.raises(InputError, match=r"images:DIR, images:MANIFEST.csv, video:FILE, mcap:FILE\[:TOPIC\] or "
                                         r"rosbag:DIR\|FILE\.bag\[:TOPIC\]"):
        open_source("camera:/dev/video0")


def test_in_memory_gathers_a_recording(tmp_path, rng):
    from .conftest import encode, needs

    needs("PIL")
    folder = tmp_path / "imgs"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        (folder / name / "1.png").write_bytes(encode(rng.integers(0, 256, (3, 3), dtype=np.uint8), "PNG"))
    src = open_source(f"images:{folder}")
    assert isinstance(src, RecordingSource)
    arrays = in_memory(src, 1)
    assert isinstance(arrays, ArraySource) and arrays.x.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(arrays.y, [0, 1])


def test_percent_slices_cut_contiguous_blocks_that_meet(npz):
    path, x, _ = npz
    head = open_source(f"npz:{path}[:75%]")
    tail = open_source(f"npz:{path}[75%:]")
    np.testing.assert_array_equal(np.concatenate([head.x, tail.x]), x)  # in order, no shuffle, nothing lost
    assert len(head) == 7 and len(tail) == 3
    np.testing.assert_array_equal(open_source(f"npz:{path}[10%:30%]").x, x[1:3])
    assert parse_slice("video:a.mp4[12.5%:]")[1][0].value == 12.5
    with pytest.raises(InputError, match="between 0% and 100%"):
        open_source(f"npz:{path}[:120%]")


def test_percent_slice_of_a_recording(tmp_path, rng):
    from .conftest import encode, needs

    needs("PIL")
    for i in range(10):
        (tmp_path / f"{i}.png").write_bytes(encode(rng.integers(0, 256, (2, 2), dtype=np.uint8), "PNG"))
    ids = [f["path"] for _, _, b in open_source(f"images:{tmp_path}[80%:]").batches_with_ids(4) for f in b]
    assert ids == ["8.png", "9.png"]
