"""Map reduction, non-finite counting and the packed layout against numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnwatch.kernels import reference as ref
from nnwatch.kernels.accumulate import count_nonfinite_rows, reduce_maps
from nnwatch.kernels.layout import layer_offsets, pack_layers, unpack_layers


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5), st.booleans(), st.integers(0, 999))
def test_reduce_maps_matches_reference(batch, channels, h, w, use_max, seed):
    maps = np.random.default_rng(seed).normal(size=(batch, channels, h, w)).astype(np.float32)
    out = np.empty(batch * channels, np.float32)
    reduce_maps(maps, out, use_max)
    np.testing.assert_allclose(out.reshape(batch, channels), ref.reduce_maps(maps, use_max), rtol=1e-6, atol=1e-6)


def test_count_nonfinite_rows():
    x = np.zeros((4, 3, 2), np.float32)
    x[1, 0, 0] = np.nan
    x[3, 2, 1] = np.inf
    x[3, 0, 0] = -np.inf
    assert count_nonfinite_rows(x).tolist() == [0, 1, 0, 2]


def test_pack_unpack_roundtrip(rng):
    layers = [rng.normal(size=(3, n)).astype(np.float32) for n in (4, 1, 6)]
    buf = pack_layers(layers)
    assert buf.shape == (3 * 11,)
    back = unpack_layers(buf, 3, layer_offsets([4, 1, 6]))
    for a, b in zip(layers, back):
        np.testing.assert_array_equal(a, b)
    # Sample-major: each sample's neurons are one contiguous row, the (B, N) joined-taps output.
    np.testing.assert_array_equal(buf.reshape(3, 11), np.concatenate(layers, axis=1))
