"""Preprocessing declared once, at instrument time: every later command and the Python API read
pixels with it, and a different one is refused with what differs."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from nnwatch import build_profile
from nnwatch.errors import InputError
from nnwatch.monitor.runner import Runner
from nnwatch.sources import open_source

from .test_cli_recordings import cli, work  # noqa: F401  (the module fixture)


def write_idx(folder, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 0x0803, n, h, w) + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 0x0801, n) + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def declared(work):  # noqa: F811
    d = work
    (d / "gray-1-1.json").write_text(json.dumps({"channels": "gray", "mean": [0.5], "std": [0.5]}))
    assert cli("instrument", d / "plain.onnx", "--preprocess", d / "gray-1-1.json", "--out", d / "md.onnx") == 0
    return d


def test_the_model_carries_its_preprocessing(declared, capsys):
    d = declared
    assert Runner(d / "md.onnx").preprocess["mean"] == [0.5] and Runner(d / "m.onnx").preprocess is None
    capsys.readouterr()
    assert cli("info", d / "md.onnx") == 0
    assert '"channels": "gray"' in capsys.readouterr().out
    # no --preprocess: the model's is used (gray, (x/255 - 0.5) / 0.5), so the profile's inputs span [-1, 1]
    assert cli("profile", d / "md.onnx", "--data", f"images:{d / 'train'}", "--out", d / "pd.npz", "--quiet") == 0
    from nnwatch.profile.store import load_profile

    header = load_profile(d / "pd.npz").header
    assert header["preprocess"]["mean"] == [0.5] and header["input_stats"]["min"] < -0.2
    # the same one given explicitly is accepted; another is refused, naming what differs, before any work
    assert cli("calibrate", d / "md.onnx", d / "pd.npz", "--data", f"images:{d / 'calib'}", "--preprocess",
               d / "gray-1-1.json", "--min-class-samples", "5", "--quiet") == 0
    capsys.readouterr()
    assert cli("screen", d / "md.onnx", d / "pd.npz", "--data", f"images:{d / 'calib'}", "--preprocess", "0-1",
               "--out", d / "never.csv", "--quiet") == 2
    err = capsys.readouterr().err
    assert "differs from the preprocessing" in err and "channels 'gray' (model) vs 'rgb' (given)" in err
    assert "mean (0.5,) (model) vs (0.0,) (given)" in err and not (d / "never.csv").exists()
    # arrays are fed as stored, whatever the model declares
    np.savez(d / "arrays.npz", x=np.zeros((3, 1, 8, 8), np.float32))
    assert cli("screen", d / "md.onnx", d / "pd.npz", "--data", f"npz:{d / 'arrays.npz'}", "--out", d / "a.csv",
               "--quiet") == 0


def test_idx_images_are_read_with_the_declared_preprocessing(declared, tmp_path):
    d = declared
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    write_idx(tmp_path / "idx", images, rng.integers(0, 5, 30))
    assert open_source(f"idx:{tmp_path / 'idx'}").x.max() <= 1.0  # undeclared: x / 255 as before
    src = open_source(f"idx:{tmp_path / 'idx'}", {"channels": "gray", "mean": [0.5], "std": [0.5]})
    want = ((images.astype(np.float32) / 255 - 0.5) / 0.5)[:, None]
    np.testing.assert_allclose(src.x, want, rtol=0, atol=1e-6)
    profile = build_profile(d / "md.onnx", f"idx:{tmp_path / 'idx'}")  # the Python API reads it the model's way
    assert profile.header["input_stats"]["min"] == pytest.approx(want.min(), abs=1e-6)


def test_the_python_api_refuses_a_recording_read_otherwise(declared):
    d = declared
    with pytest.raises(InputError, match="differs from the preprocessing"):
        build_profile(d / "md.onnx", open_source(f"images:{d / 'train'}", "-1-1"))
