"""Synthetic anomalies from clean inputs, against their definitions and, for images in [0, 1],
against the corruptions of nnwatch.eval.corruptions they generalize."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.calibration.synthetic_inputs import BLEND, BLUR, CONTRAST, NOISE, synthetic_inputs
from nnwatch.errors import InputError
from nnwatch.eval import corruptions as cor


@pytest.fixture()
def images():
    rng = np.random.default_rng(0)
    x = rng.random((12, 2, 7, 9)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 1, 6, 8] = 0.0, 1.0  # the range is [0, 1] exactly
    return x, rng.integers(0, 3, 12)


def test_images_in_the_unit_range_get_the_corruptions_they_generalize(images):
    x, pred = images
    out = synthetic_inputs(x, pred, seed=3)
    assert set(out) == {NOISE, BLEND, BLUR, CONTRAST} and all(v.dtype == x.dtype for v in out.values())
    np.testing.assert_array_equal(out[NOISE], cor.uniform_noise(x, seed=3))
    np.testing.assert_array_equal(out[BLUR], cor.blur(x, radius=2))
    np.testing.assert_allclose(out[CONTRAST], cor.contrast(x, factor=0.3), atol=1e-6)


def test_every_blend_is_the_mean_of_two_inputs_of_different_classes(images):
    x, pred = images
    out = synthetic_inputs(x, pred, seed=5)[BLEND]
    used = set()
    for row in out:
        pairs = [(k, j) for k in range(len(x)) for j in range(len(x))
                 if pred[k] != pred[j] and np.allclose(row, 0.5 * x[k] + 0.5 * x[j], atol=1e-6)]
        assert pairs, "a blend that is not the mean of two inputs of different classes"
        used.update(*pairs)
    assert used == set(range(len(x)))  # every input is blended into some anomaly


def test_channels_last_images_are_blurred_over_their_spatial_axes(images):
    x, pred = images
    last = np.ascontiguousarray(np.moveaxis(x, 1, 3))  # (N, H, W, C)
    got = synthetic_inputs(last, pred)[BLUR]
    np.testing.assert_array_equal(np.moveaxis(got, 3, 1), synthetic_inputs(x, pred)[BLUR])
    wide = np.zeros((3, 8, 5, 6), np.float32)  # 8 "channels" first, 6 last: not an image layout
    assert set(synthetic_inputs(wide, np.arange(3))) == {NOISE, BLEND}


def test_any_value_range_and_integer_inputs_stay_in_range():
    rng = np.random.default_rng(1)
    x = rng.integers(10, 200, (8, 3, 6, 6)).astype(np.uint8)
    pred = np.arange(8) % 2
    out = synthetic_inputs(x, pred)
    lo, hi = x.min(), x.max()
    for kind, v in out.items():
        assert v.dtype == np.uint8 and v.min() >= lo and v.max() <= hi, kind
    f = (x.astype(np.float64) - 100) / 7  # a normalized tensor: contrast moves towards the mean plus 0.4 of the range
    c = synthetic_inputs(f.astype(np.float32), pred)[CONTRAST]
    mean = f.mean(axis=(1, 2, 3), keepdims=True)
    expect = np.clip((f - mean) * 0.3 + mean + 0.4 * (f.max() - f.min()), f.min(), f.max())
    np.testing.assert_allclose(c, expect, atol=1e-5)


def test_non_images_get_noise_and_blends_only_and_one_class_still_blends():
    x = np.random.default_rng(2).normal(size=(10, 5)).astype(np.float32)
    out = synthetic_inputs(x, np.zeros(10, np.int64))
    assert set(out) == {NOISE, BLEND}
    assert out[NOISE].min() >= x.min() and out[NOISE].max() <= x.max()
    with pytest.raises(InputError, match="at least 2 inputs"):
        synthetic_inputs(x[:1], np.zeros(1))
    with pytest.raises(InputError, match="one prediction each"):
        synthetic_inputs(x, np.zeros(3))
