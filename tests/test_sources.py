"""Data sources: shared IDX data, npz without pickle, digits splits, clear errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.sources import load_digits, open_source
from tests.conftest import shared_data


def test_idx_from_shared_data():
    src = open_source(f"idx:{shared_data('mnist')}:train")
    assert src.x.shape == (4742, 1, 28, 28) and src.x.dtype == np.float32
    assert 0.0 <= src.x.min() and src.x.max() <= 1.0
    assert np.bincount(src.y).tolist() == [454, 526, 470, 468, 505, 416, 477, 517, 441, 468]
    test = open_source(f"idx:{shared_data('fashion_mnist')}:test")
    assert len(test) == 1770


def test_truncated_idx_is_refused(tmp_path):
    header = struct.pack(">IIII", 2051, 10, 28, 28)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + bytes(28 * 28 * 3))
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 2049, 10) + bytes(10))
    with pytest.raises(InputError, match="truncated"):
        open_source(f"idx:{tmp_path}")


def test_npz_is_fed_as_is(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0]))
    src = open_source(f"npz:{tmp_path / 'd.npz'}")
    np.testing.assert_array_equal(src.x, x)
    assert src.y.tolist() == [0, 1, 0]
    np.savez(tmp_path / "o.npz", x=np.array([object()], dtype=object))
    with pytest.raises(InputError, match="cannot read"):
        open_source(f"npz:{tmp_path / 'o.npz'}")
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 4)))
    with pytest.raises(InputError, match="empty"):
        open_source(f"npz:{tmp_path / 'e.npz'}")


def test_digits_splits_are_disjoint_and_complete():
    parts = [load_digits(s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 1797
    assert parts[0].x.shape[1:] == (1, 8, 8)


def test_unknown_source():
    with pytest.raises(InputError, match="unknown data source"):
        open_source("s3://bucket")
