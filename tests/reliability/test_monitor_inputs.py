"""Hostile inputs to a live Monitor: a clear error or a flagged verdict, and it keeps working."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnwatch.errors import InputError
from nnwatch.monitor.monitor import Monitor

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8, np.int64, np.bool_,
                          np.complex64, np.str_, np.object_, "datetime64[s]"])


@pytest.fixture(scope="module")
def monitor(digits_monitor_files):
    return Monitor(digits_monitor_files["model"], digits_monitor_files["profile"], providers="cpu")


@pytest.fixture(scope="module")
def clean(digits_monitor_files):
    x = digits_monitor_files["splits"]["test"][0][:8]
    return x


def _valid(v, batch):
    assert v.pred.shape == (batch,) and v.flag.shape == (batch,) and v.confidence.shape == (batch,)
    assert ((v.pred >= 0) & (v.pred < 10)).all()
    assert (v.flag[v.nonfinite_input]).all()
    assert (v.confidence[v.nonfinite_input] == 0).all()
    for s in v.scores.values():
        assert s.shape == (batch,) and not np.isnan(s).any()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_shapes_and_dtypes(monitor, clean, data):
    baseline = monitor(clean).scores["coverage"]
    dtype = data.draw(DTYPES)
    shape = data.draw(st.one_of(st.just((data.draw(st.integers(0, 5)), 64)),
                                hnp.array_shapes(min_dims=0, max_dims=4, max_side=70)))
    try:
        if np.dtype(dtype).kind in "fiub":
            x = data.draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype), allow_nan=True,
                                                                          allow_infinity=True)
                                     if np.dtype(dtype).kind == "f" else None))
        else:
            x = np.zeros(shape, dtype=dtype)
    except (ValueError, TypeError):
        return
    try:
        v = monitor(x)
    except InputError:
        pass
    else:
        assert x.ndim == 2 and x.shape[1] == 64 and x.shape[0] > 0
        _valid(v, x.shape[0])
    # Whatever happened, the monitor still answers clean inputs the same way.
    np.testing.assert_array_equal(monitor(clean).scores["coverage"], baseline)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e38, -1e38, 3e38])
def test_extreme_values_are_flagged_not_crashed(monitor, clean, value):
    x = clean.copy()
    x[2, 10] = value
    v = monitor(x)
    _valid(v, 8)
    assert v.flag[2]
    if np.isfinite(value):
        assert not v.nonfinite_input[2]  # huge but finite: flagged by its scores (or activations overflow)


def test_float64_overflowing_float32_counts_as_nonfinite(monitor, clean):
    x = clean.astype(np.float64)
    x[0, 0] = 1e300  # becomes inf when cast to the model's float32
    v = monitor(x)
    assert v.nonfinite_input[0] and v.flag[0]


def test_views_and_readonly_inputs(monitor, clean):
    want = monitor(clean).scores["coverage"]
    fortran = np.asfortranarray(clean)
    reversed_rows = clean[::-1][::-1]
    ro = clean.copy()
    ro.flags.writeable = False
    for x in (fortran, reversed_rows, ro, clean.tolist()):
        np.testing.assert_array_equal(monitor(x).scores["coverage"], want)
