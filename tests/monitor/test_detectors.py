"""Conformance suite run over every registered detector."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError, NotFittedError
from nnwatch.kernels.layout import layer_offsets, pack_layers
from nnwatch.monitor.detector import BatchView
from nnwatch.monitor.detectors import ALL, DEFAULT, MORE
from nnwatch.monitor.registry import REGISTRY, make_detector
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import compile_tables

STANDALONE = tuple(n for n in ALL if n != "fused")  # the fused column needs a monitor (test_fusion.py)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    layers = [rng.normal(size=(200, 6)).astype(np.float32), rng.normal(size=(200, 4)).astype(np.float32)]
    labels = rng.integers(0, 3, 200)
    b = ProfileBuilder([6, 4], 3, feature_layer=1).update_ranges(layers, labels).finish_ranges()
    profile = b.update_sections(layers, labels).build("c" * 64, ["a", "b"])
    tables = compile_tables(profile, min_class_samples=1)
    probe = [a[:9] * 1.7 for a in layers]
    logits = rng.normal(size=(9, 3)).astype(np.float32)
    return profile, tables, probe, logits


def view(setup, probe=None, logits=None):
    _, tables, p, z = setup
    p = p if probe is None else probe
    z = z if logits is None else logits
    return BatchView(z, pack_layers(p), layer_offsets([6, 4]), tables=tables)


def test_default_detectors_are_registered():
    make_detector("nc")
    assert set(DEFAULT) <= set(REGISTRY)
    with pytest.raises(InputError, match="detector 'nope' not found; available"):
        make_detector("nope")


HEAD = (np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32), np.zeros(3, np.float32))


def test_detectors_that_recompute_logits_refuse_a_model_without_head(setup):
    for name in MORE:
        det = make_detector(name)
        if det.needs_head:
            with pytest.raises(NotFittedError, match="needs the classifier head"):
                det.fit(setup[0])


@pytest.mark.parametrize("name", STANDALONE)
def test_conformance(setup, name):
    profile = setup[0]
    det = make_detector(name).with_head(HEAD)
    with pytest.raises(NotFittedError):
        det.score(view(setup))
    assert det.fit(profile) is det
    s = det.score(view(setup))
    assert s.shape == (9,) and s.dtype == np.float64 and np.isfinite(s).all()
    # Scores are a function of each sample alone.
    alone = det.score(view(setup, [p[3:4] for p in setup[2]], setup[3][3:4]))
    np.testing.assert_allclose(alone, s[3:4], rtol=1e-9)


@pytest.mark.parametrize("name", STANDALONE)
def test_nonfinite_scores_inf(setup, name):
    det = make_detector(name).with_head(HEAD).fit(setup[0])
    probe = [p.copy() for p in setup[2]]
    logits = setup[3].copy()
    probe[1][0, :] = np.nan
    logits[0, 0] = np.nan
    s = det.score(view(setup, probe, logits))
    if det.cost == "full":
        assert np.isinf(s[0])
    else:
        assert np.isinf(s[0]) and np.isfinite(s[1:]).all()
