"""images:DIR and images:MANIFEST.csv: order, labels, exact pixels, skipped files, mixed sizes, slices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings import ImageSource, Preprocess, RecordingWarning
from nnwatch.sources import as_source, in_memory, open_source

from .conftest import encode, needs, smooth_rgb

RAW = Preprocess(scale=1.0, layout="NHWC")  # pixels as decoded, float32, HWC


@pytest.fixture
def folder(tmp_path, rng):
    """An ImageFolder: cat/ (2 PNG RGB, one JPEG), dog/ (PNG gray, PNG in a nested folder)."""
    needs("PIL")
    root = tmp_path / "imgs"
    arrays = {
        "cat/b.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "cat/a.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "cat/c.JPG": smooth_rgb(rng, 6, 5),
        "dog/g.png": rng.integers(0, 256, (6, 5), dtype=np.uint8),
        "dog/sub/h.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
    }
    for rel, arr in arrays.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(arr, "JPEG" if rel.endswith("JPG") else "PNG", **({"quality": 95, "subsampling": 0} if
                                                                                     rel.endswith("JPG") else {})))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root, arrays


def test_folder_order_labels_classes_and_pixels(folder):
    root, arrays = folder
    src = open_source(f"images:{root}", RAW)
    assert isinstance(src, ImageSource) and len(src) == 5
    assert src.classes == ["cat", "dog"]
    batches = list(src.batches_with_ids(2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    ids = [i["path"] for b in batches for i in b[2]]
    assert ids == ["cat/a.png", "cat/b.png", "cat/c.JPG", "dog/g.png", "dog/sub/h.png"]
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1])
    for got, rel in zip(x, ids):
        want = arrays[rel] if arrays[rel].ndim == 3 else np.repeat(arrays[rel][:, :, None], 3, axis=2)
        if rel.endswith("JPG"):
            assert np.abs(got - want).mean() < 4.0
        else:
            np.testing.assert_array_equal(got, want)


def test_gray_preprocessing_gives_one_channel_nchw(folder):
    root, arrays = folder
    x, _ = next(open_source(f"images:{root}", Preprocess(channels="gray", scale=1.0)).batches(8))
    assert x.shape == (5, 1, 6, 5)
    np.testing.assert_array_equal(x[3, 0], arrays["dog/g.png"])


def test_unlabelled_when_images_sit_at_the_top(tmp_path, rng):
    needs("PIL")
    (tmp_path / "top.png").write_bytes(encode(rng.integers(0, 256, (4, 4), dtype=np.uint8), "PNG"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(encode(rng.integers(0, 256, (4, 4), dtype=np.uint8), "PNG"))
    src = ImageSource(tmp_path)
    assert src.classes is None
    x, y = next(src.batches(4))
    assert y is None and x.shape == (2, 3, 4, 4)


def test_manifest_keeps_row_order_and_labels(folder):
    root, arrays = folder
    csv = root / "list.csv"
    csv.write_text("path,label\ndog/g.png,4\ncat/a.png,2\n")
    x, y, ids = next(open_source(f"images:{csv}", RAW).batches_with_ids(8))
    assert [i["path"] for i in ids] == ["dog/g.png", "cat/a.png"]
    np.testing.assert_array_equal(y, [4, 2])
    np.testing.assert_array_equal(x[1], arrays["cat/a.png"])


@pytest.mark.parametrize("text, match", [
    ("file,label\na.png,1\n", "needs a column 'path'"),
    ("path,label\ncat/a.png,x\n", "label 'x' is not an integer"),
    ("path,label\ncat/a.png,1\ncat/b.png,\n", "label every row or none"),
    ("path,label\ncat/zz.png,1\n", "1 listed files do not exist .* cat/zz.png"),
    ("path,label\n", "has no rows"),
])
def test_bad_manifests_are_refused(folder, text, match):
    root, _ = folder
    csv = root / "bad.csv"
    csv.write_text(text)
    with pytest.raises(InputError, match=match):
        ImageSource(csv)


def test_a_corrupt_file_is_skipped_with_one_warning(folder):
    root, arrays = folder
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 5)
    (root / "cat" / "cut.jpg").write_bytes(encode(arrays["cat/c.JPG"], "JPEG")[:60])
    src = open_source(f"images:{root}", RAW)
    with pytest.warns(RecordingWarning, match=r"skipped 2 undecodable frame\(s\): cat/broken.png, cat/cut.jpg") as rec:
        x, y = in_memory(src, 3).x, None
    assert len(rec) == 1
    assert x.shape[0] == 5  # nothing after the broken files is lost
    assert [i["path"] for i in src.skipped] == ["cat/broken.png", "cat/cut.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second pass does not warn again
        assert sum(b[0].shape[0] for b in src.batches(4)) == 5
    assert y is None


def test_mixed_sizes_need_a_resize(folder, rng):
    root, _ = folder
    (root / "dog" / "z.png").write_bytes(encode(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8), "PNG"))
    with pytest.raises(InputError, match=r"different sizes: 6x5 \(cat/a.png\) and 9x7 \(dog/z.png\).*--preprocess "
                                         r"with a resize"):
        list(open_source(f"images:{root}").batches(2))
    x, _ = next(open_source(f"images:{root}", Preprocess(resize=(4, 4))).batches(10))
    assert x.shape == (6, 3, 4, 4)


def test_slices_and_limit(folder):
    root, _ = folder
    src = open_source(f"images:{root}[1:4]", RAW)
    assert len(src) == 3
    ids = [i["path"] for _, _, b in src.batches_with_ids(2) for i in b]
    assert ids == ["cat/b.png", "cat/c.JPG", "dog/g.png"]
    assert [i["path"] for i in next(src[1:].batches_with_ids(9))[2]] == ["cat/c.JPG", "dog/g.png"]
    assert len(open_source(f"images:{root}[3:]")) == 2
    assert len(src.limit(1)) == 1
    assert as_source(src) is src


@pytest.mark.parametrize("suffix, match", [("[::2]", "takes no step"), ("[-2:]", "non-negative"),
                                           ("[a:b]", r"\[a:b\] is not a slice")])
def test_bad_slices_are_refused(folder, suffix, match):
    root, _ = folder
    with pytest.raises(InputError, match=match):
        open_source(f"images:{root}{suffix}")


def test_missing_and_empty_folders(tmp_path):
    needs("PIL")
    with pytest.raises(InputError, match="does not exist"):
        open_source(f"images:{tmp_path / 'nope'}")
    with pytest.raises(InputError, match="no .png, .jpg, .jpeg files"):
        open_source(f"images:{tmp_path}")


def test_sixteen_bit_png_is_refused_by_name(tmp_path):
    needs("PIL")
    from PIL import Image

    Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 1000).save(tmp_path / "d.png")
    with pytest.raises(InputError, match="image mode I;16 is not supported"):
        list(ImageSource(tmp_path).batches(2))


def test_empty_slices_and_unreadable_folders_are_refused(folder):
    root, _ = folder
    with pytest.raises(InputError, match=r"the slice \[3:3\] is empty"):
        open_source(f"images:{root}[3:3]")
    with pytest.raises(InputError, match="no frames to read: the recording has 5 frames"):
        list(open_source(f"images:{root}[9:]").batches(2))
    for rel in ("cat/a.png", "cat/b.png"):
        (root / rel).write_bytes(b"broken")
    with pytest.raises(InputError, match=r"no frames to read: all 2 were undecodable"), \
            pytest.warns(RecordingWarning):
        list(open_source(f"images:{root}[:2]").batches(2))


def test_input_paths_of_recording_specs(tmp_path):
    import argparse

    from nnwatch.cli.paths import input_paths

    args = argparse.Namespace(command="screen", data=f"mcap:{tmp_path / 'r.mcap'}:/cam[0:5]",
                              id=f"images:{tmp_path}[2:]", ood=[f"cam=rosbag:{tmp_path / 'bag'}:/img"])
    assert input_paths(args) == [("--data", tmp_path / "r.mcap"), ("--id", tmp_path),
                                 ("--ood", tmp_path / "bag")]


def test_other_formats_are_refused_by_name(tmp_path, rng):
    needs("PIL")
    (tmp_path / "a.png").write_bytes(encode(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "BMP"))
    with pytest.raises(InputError, match="a.png: BMP data is not supported; frames must be PNG or JPEG"):
        list(ImageSource(tmp_path).batches(2))


def test_preprocess_is_a_public_name():
    import nnwatch

    assert nnwatch.Preprocess is Preprocess


def test_an_empty_class_folder_is_refused_and_hidden_ones_ignored(folder):
    root, _ = folder
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.png").write_bytes((root / "cat" / "a.png").read_bytes())
    (root / "cat" / ".hidden.png").write_bytes((root / "cat" / "a.png").read_bytes())
    src = ImageSource(root)
    assert src.classes == ["cat", "dog"] and len(src) == 5
    (root / "bird").mkdir()
    with pytest.raises(InputError, match="class folders bird hold no .png, .jpg, .jpeg files; every subfolder is a "
                                         "class"):
        ImageSource(root)
