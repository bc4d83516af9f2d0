"""Inputs normalized otherwise than in training, though inside the training range, are named."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch import build_profile
from nnwatch.cli.main import main
from nnwatch.monitor.monitor import InputRangeWarning, Monitor
from nnwatch.profile.schema import channel_moments, channel_stats, merge_channel_stats
from tests.conftest import conv_onnx


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_channel_statistics_match_numpy(layout):
    rng = np.random.default_rng(0)
    x = rng.normal([0.2, -1.0, 3.0], [1.0, 0.5, 2.0], (20, 6, 5, 3))  # NHWC
    x[3, 2, 1, 0] = np.nan
    x[7, 0, 0, 2] = np.inf
    batch = np.moveaxis(x, 3, 1) if layout == "NCHW" else x
    stats = merge_channel_stats(merge_channel_stats({}, channel_stats(batch[:7])), channel_stats(batch[7:]))
    mean, sd = channel_moments(stats)
    for c in range(3):
        v = x[..., c].ravel()
        v = v[np.isfinite(v)]
        assert stats["count"][c] == v.size
        np.testing.assert_allclose([mean[c], sd[c]], [v.mean(), v.std()], rtol=1e-10)
    assert stats["axis"] == (1 if layout == "NCHW" else 3)
    assert channel_stats(x[:, :, :, 0]) is None and channel_stats(rng.random((4, 8, 9, 10))) is None
    assert merge_channel_stats(stats, channel_stats(np.moveaxis(batch, 1, 3) if layout == "NCHW" else
                                                    np.moveaxis(batch, 3, 1))) is None  # layouts differ


def test_inputs_normalized_otherwise_are_named(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "plain.onnx").write_bytes(conv_onnx(rng).SerializeToString())
    assert main(["instrument", str(tmp_path / "plain.onnx"), "--out", str(tmp_path / "m.onnx")]) == 0

    def images(n):  # dark images with bright strokes, in [0, 1]
        return np.clip(rng.beta(0.6, 2.4, (n, 1, 8, 8)), 0, 1).astype(np.float32)

    train = 2 * images(400) - 1  # the model was trained on (x - 0.5) / 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(tmp_path / "m.onnx", (train, None))
    assert profile.header["input_channel_stats"]["axis"] == 1
    mon = Monitor(tmp_path / "m.onnx", profile, providers="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        for _ in range(40):
            mon(2 * images(1) - 1)  # normalized as in training, one frame at a time: no warning
    mon = Monitor(tmp_path / "m.onnx", profile, providers="cpu")
    wrong = images(1)  # inside the training range [-1, 1], but 0-1
    assert wrong.min() >= train.min() and wrong.max() <= train.max()
    with pytest.warns(InputRangeWarning, match="normalized otherwise.*over the first 16 samples"):
        for _ in range(16):
            mon(images(1))
