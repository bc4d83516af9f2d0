"""Fitted detector files: the search finds a planted head; files round-trip, and damaged or
foreign files are refused with a message naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.errors import ModelMismatchError, ProfileError
from nnwatch.heads.detector import load_detector, save_detector
from nnwatch.heads.linear import fit_gaussians, fit_logistic
from nnwatch.heads.search import fit_from_angles

L, H = 4, 3


def _planted(seed=0, n=60):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    angles = rng.uniform(1.0, 2.0, size=(n, L * H))
    angles[:, 2 * H + 1] -= 0.3  # low safe angle: passes the published filter
    angles[labels == 1, 2 * H + 1] += 1.5  # head L2H1 carries the signal
    return angles, labels


@pytest.fixture
def detector():
    angles, labels = _planted()
    return fit_from_angles(angles, labels, L, H, "toy", "a" * 64, ensemble_size=3)


def test_search_finds_the_planted_head(detector):
    angles, labels = _planted(seed=1)
    assert detector.variants["single"].heads == [(2, 1)]
    assert (2, 1) in detector.variants["ensemble"].heads
    for name, s in detector.scores(angles[:, [h[0] * H + h[1] for h in detector.heads]]).items():
        flag = s > detector.variants[name].threshold
        assert (flag == labels.astype(bool)).mean() > 0.9, name


def test_round_trip(detector, tmp_path):
    save_detector(detector, tmp_path / "d.json")
    back = load_detector(tmp_path / "d.json")
    assert back.heads == detector.heads
    x = np.random.default_rng(3).uniform(0, 3, size=(5, len(detector.heads)))
    for k in detector.variants:
        np.testing.assert_allclose(back.scores(x)[k], detector.scores(x)[k])
    back.check_model("a" * 64)
    with pytest.raises(ModelMismatchError, match="fitted for model 'toy'"):
        back.check_model("b" * 64)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "'format'"),
    (lambda d: d["variants"]["single"].update(heads=[[L, 0]]), "outside layers 0..3"),
    (lambda d: d["variants"]["single"].update(heads=[[0, H]]), "outside layers"),
    (lambda d: d["variants"]["single"].update(threshold=None), "threshold must be a finite number"),
    (lambda d: d["variants"]["ensemble"]["logistic"].update(weights=[1.0]), "logistic needs"),
    (lambda d: d["variants"]["ensemble"]["logistic"].update(scale=[0.0, 1.0, 1.0]), "scale must be positive"),
    (lambda d: d["variants"].pop("single"), "must include 'single'"),
    (lambda d: d.update(n_heads=True), "n_heads must be a positive integer"),
    (lambda d: d.update(fingerprint="x"), "fingerprint"),
])
def test_damaged_files_are_refused(detector, tmp_path, mutate, message):
    d = detector.to_json()
    mutate(d)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match=message):
        load_detector(path)


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"\x00\xff not json")
    with pytest.raises(ProfileError, match="not a head detector file"):
        load_detector(path)


def test_logistic_reaches_the_penalised_optimum():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    m = fit_logistic(x, y, l2=1.0)
    z = np.hstack([(x - m.mean) / m.scale, np.ones((200, 1))])
    w = np.append(m.weights, m.bias)
    p = 1 / (1 + np.exp(-z @ w))
    sw = np.where(y == 1, 0.5 / y.sum(), 0.5 / (1 - y).sum()) * len(y)
    grad = z.T @ (sw * (p - y)) + np.append(np.full(5, 1.0), 0.0) * w
    assert np.abs(grad).max() < 1e-6  # stationary point of the stated objective
    assert m.weights[0] == max(m.weights)


def test_gaussian_score_is_the_difference_of_mahalanobis_distances():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(100, 3))
    y = np.repeat([0, 1], 50)
    x[y == 1] += 2.0
    g = fit_gaussians(x, y)
    q = rng.normal(size=(4, 3))
    ref = [float((v - g.means[0]) @ g.precision @ (v - g.means[0]) - (v - g.means[1]) @ g.precision @ (v - g.means[1]))
           for v in q]
    np.testing.assert_allclose(g.score(q), ref, rtol=1e-10)


def test_mlp_coverage_baseline_matches_the_reference_kernel():
    from nnwatch.heads.evaluate import mlp_coverage_scores, mlp_coverage_tables
    from nnwatch.kernels.coverage import SCORE_NAMES
    from nnwatch.kernels.reference import coverage_scores

    rng = np.random.default_rng(6)
    safe = rng.normal(size=(80, 3 * 16)).astype(np.float32)
    tables = mlp_coverage_tables(safe, 3)
    query = rng.normal(0, 2, size=(10, 48)).astype(np.float32)
    got = mlp_coverage_scores(tables, query)
    ref = coverage_scores(np.split(query, 3, axis=1), np.zeros(10, np.int64), tables)
    np.testing.assert_allclose(got["coverage_kmnc_mlp"], ref[:, SCORE_NAMES.index("kmnc")])
    np.testing.assert_allclose(got["coverage_nbc_mlp"], ref[:, SCORE_NAMES.index("nbc")])
    assert got["coverage_nbc_mlp"].mean() > mlp_coverage_scores(tables, safe)["coverage_nbc_mlp"].mean()
