"""The declared preprocessing against a plain numpy reference written here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.recordings.preprocess import PRESETS, Preprocess, load_preprocess

from .conftest import needs


def naive_nearest(pixels, out_h, out_w):
    h, w = pixels.shape[:2]
    rows = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(int), h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(int), w - 1)
    return pixels[rows][:, cols]


def naive(pixels, resize_hw, crop, channels, layout, scale, mean, std):
    """Definition-literal pipeline: nearest resize, center crop, channels, scale, normalize, layout."""
    x = pixels if resize_hw is None else naive_nearest(pixels, *resize_hw)
    if crop is not None:
        h, w = x.shape[:2]
        top, left = int(round((h - crop[0]) / 2)), int(round((w - crop[1]) / 2))
        x = x[top:top + crop[0], left:left + crop[1]]
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if channels == "gray" and x.shape[2] == 3:
        x = (0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2])[:, :, None]
    if channels != "gray" and x.shape[2] == 1:
        x = np.concatenate([x, x, x], axis=2)
    if channels == "bgr":
        x = x[:, :, [2, 1, 0]]
    x = (x * scale - np.array(mean)) / np.array(std)
    return x.transpose(2, 0, 1) if layout == "NCHW" else x


CASES = [
    dict(resize_hw=None, crop=None, channels="rgb", layout="NCHW", scale=1 / 255, mean=(0.0,), std=(1.0,)),
    dict(resize_hw=(6, 8), crop=(4, 6), channels="bgr", layout="NHWC", scale=1.0, mean=(1.0, 2.0, 3.0),
         std=(2.0, 4.0, 8.0)),
    dict(resize_hw=(20, 28), crop=(9, 9), channels="gray", layout="NCHW", scale=0.5, mean=(10.0,), std=(3.0,)),
    dict(resize_hw=None, crop=(5, 7), channels="rgb", layout="NHWC", scale=1 / 255, mean=(0.5,), std=(0.5,)),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("gray_input", [False, True])
def test_pipeline_matches_the_numpy_reference(case, gray_input, rng):
    needs("PIL")
    pixels = rng.integers(0, 256, (10, 14) if gray_input else (10, 14, 3), dtype=np.uint8)
    pre = Preprocess(resize=case["resize_hw"], crop=case["crop"], channels=case["channels"], layout=case["layout"],
                     scale=case["scale"], mean=case["mean"], std=case["std"], interpolation="nearest")
    got = pre.batch([pre.frame(pixels), pre.frame(pixels)])
    want = naive(pixels, **case)
    assert got.dtype == np.float32
    assert got.shape == (2,) + want.shape
    np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-5)
    # the batched path the sources use (per-frame resize, crop and channels, then one pass of
    # arithmetic over the batch) gives the same values bit for bit, also for mixed gray/RGB frames
    other = rng.integers(0, 256, (10, 14, 3) if gray_input else (10, 14), dtype=np.uint8)
    frames = [pixels, other, pixels]
    np.testing.assert_array_equal(pre.finish([pre.pixels(f) for f in frames]),
                                  pre.batch([pre.frame(f) for f in frames]))


def test_gray_output_has_one_channel_and_rgb_three(rng):
    pixels = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert Preprocess(channels="gray").frame(pixels).shape == (4, 5, 1)
    assert Preprocess(channels="rgb").frame(pixels[:, :, 0]).shape == (4, 5, 3)


def test_imagenet_preset_resizes_the_shorter_side_then_crops(rng):
    needs("PIL")
    from PIL import Image

    pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    pre = PRESETS["imagenet"]
    got = pre.batch([pre.frame(pixels)])[0]
    resized = np.asarray(Image.fromarray(pixels).resize((341, 256), Image.Resampling.BILINEAR))  # 400*256//300 = 341
    top, left = 16, int(round((341 - 224) / 2))
    ref = resized[top:top + 224, left:left + 224].astype(np.float64) / 255
    ref = (ref - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(got, ref.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, lo, hi", [("0-1", 0.0, 1.0), ("-1-1", -1.0, 1.0)])
def test_scaling_presets(name, lo, hi):
    pixels = np.array([[0, 255]], np.uint8)
    got = PRESETS[name].frame(pixels)
    np.testing.assert_allclose(got[0, 0], [lo] * 3, atol=1e-6)
    np.testing.assert_allclose(got[0, 1], [hi] * 3, atol=1e-6)


def test_json_file_and_dict(tmp_path):
    path = tmp_path / "pre.json"
    path.write_text(json.dumps({"resize": [32, 32], "channels": "gray", "mean": [0.5], "std": 0.25, "layout": "NHWC"}))
    pre = load_preprocess(path)
    assert pre == Preprocess(resize=(32, 32), channels="gray", mean=(0.5,), std=(0.25,), layout="NHWC")
    assert load_preprocess(pre.to_json()) == pre
    assert load_preprocess(None) == PRESETS["0-1"]
    assert load_preprocess("imagenet") is PRESETS["imagenet"]


@pytest.mark.parametrize("fields, match", [
    ({"channels": "rgba"}, "channels 'rgba' is not one of rgb, bgr, gray"),
    ({"layout": "CHW"}, "layout 'CHW' is not one of NCHW, NHWC"),
    ({"resize": [0, 3]}, "resize must be a positive int or"),
    ({"mean": [1, 2]}, "mean needs 1 or 3 finite values"),
    ({"std": [0.0]}, "std must not contain 0"),
    ({"scale": 0}, "scale must be a finite non-zero number"),
    ({"sizes": 3}, r"unknown fields \['sizes'\]; accepted: resize, crop"),
])
def test_bad_fields_are_refused_by_name(fields, match):
    with pytest.raises(InputError, match=match):
        load_preprocess(fields)


def test_unknown_preset_and_bad_files(tmp_path):
    with pytest.raises(InputError, match="neither a preset .*0-1, -1-1, imagenet.* nor a .json file"):
        load_preprocess("resnet")
    with pytest.raises(InputError, match="cannot read preprocess file"):
        load_preprocess(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a JSON object"):
        load_preprocess(bad)


def test_crop_larger_than_the_frame_is_refused():
    with pytest.raises(InputError, match=r"crop 8x8 is larger than the frame \(4x4\)"):
        Preprocess(crop=8).frame(np.zeros((4, 4), np.uint8))
