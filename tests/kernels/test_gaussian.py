"""The serial Mahalanobis kernel against the textbook formula (x - mu)^T P (x - mu)."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels.gaussian import whitened_distances


def test_distances_equal_the_formula(rng):
    d, c = 17, 5
    a = rng.normal(size=(d, d))
    precision = a @ a.T + np.eye(d)
    means = rng.normal(size=(c, d))
    x = rng.normal(size=(40, d))
    evals, evecs = np.linalg.eigh(precision)
    whiten = np.ascontiguousarray(evecs * np.sqrt(evals))
    wm = means @ whiten
    got = whitened_distances(x, whiten, np.ascontiguousarray(wm.T), (wm ** 2).sum(axis=1))
    diff = x[:, None, :] - means[None, :, :]
    want = np.einsum("bcd,de,bce->bc", diff, precision, diff)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    x[3, 2] = np.nan
    assert np.isnan(whitened_distances(x, whiten, np.ascontiguousarray(wm.T), (wm ** 2).sum(axis=1))[3]).all()
    # a point on a mean: rounding below zero is clipped to 0
    at_mean = whitened_distances(means[:1].copy(), whiten, np.ascontiguousarray(wm.T), (wm ** 2).sum(axis=1))
    assert at_mean[0, 0] >= 0.0 and at_mean[0, 0] < 1e-9


def test_bad_shapes_are_refused(rng):
    w = np.eye(3)
    with pytest.raises(InputError):
        whitened_distances(np.zeros((2, 4)), w, np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(InputError):
        whitened_distances(np.zeros((2, 3), np.float32), w, np.zeros((3, 2)), np.zeros(2))
