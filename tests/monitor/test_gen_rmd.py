"""GEN and RMD against their papers' formulas written plainly in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels.layout import layer_offsets, pack_layers
from nnwatch.monitor.detector import BatchView
from nnwatch.monitor.detectors.gen import GeneralizedEntropy
from nnwatch.monitor.registry import make_detector
from nnwatch.profile.builder import ProfileBuilder


def naive_gen(logits, gamma, top):
    out = []
    for z in logits.astype(np.float64):
        p = np.exp(z - z.max())
        p /= p.sum()
        p = np.sort(p)[::-1][: min(top, len(p))]
        out.append(sum(pj ** gamma * (1 - pj) ** gamma for pj in p))
    return np.array(out)


def naive_mahalanobis(x, mean, cov):
    prec = np.linalg.inv(cov)
    return np.array([(v - mean) @ prec @ (v - mean) for v in x])


@pytest.mark.parametrize("gamma, top", [(0.1, 100), (0.5, 3), (2.0, 1)])
def test_gen_is_the_generalized_entropy_of_the_top_m(gamma, top):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(40, 10)) * rng.uniform(0.1, 8, (40, 1))).astype(np.float32)
    det = GeneralizedEntropy(gamma, top).fit(None)  # nothing to learn from a profile
    view = BatchView(logits, np.zeros(40, np.float32), layer_offsets([1]))
    np.testing.assert_allclose(det.score(view), naive_gen(logits, gamma, top), rtol=1e-10)
    assert det.params() == {"gamma": gamma, "top": top}
    with pytest.raises(InputError, match="gamma > 0"):
        GeneralizedEntropy(0.0)


def test_rmd_is_class_minus_background_mahalanobis():
    rng = np.random.default_rng(3)
    n, d, classes = 600, 5, 3
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d)) * 3
    feats = (centres[y] + rng.normal(size=(n, d)) @ rng.normal(size=(d, d))).astype(np.float32)
    b = ProfileBuilder([d], classes, feature_layer=0).update_ranges([feats], y).finish_ranges()
    profile = b.update_sections([feats], y).build("0" * 64, ["f"])
    det = make_detector("rmd").fit(profile)
    probe = (rng.normal(size=(30, d)) * 4).astype(np.float32)
    logits = np.zeros((30, classes), np.float32)
    got = det.score(BatchView(logits, pack_layers([probe]), layer_offsets([d])))
    x64 = feats.astype(np.float64)
    within = sum(np.cov(x64[y == c].T, bias=True) * (y == c).sum() for c in range(classes)) / n
    md_c = np.stack([naive_mahalanobis(probe.astype(np.float64), x64[y == c].mean(0), within)
                     for c in range(classes)], axis=1)
    md_0 = naive_mahalanobis(probe.astype(np.float64), x64.mean(0), np.cov(x64.T, bias=True))
    # the detector adds a ridge of 1e-6 x the mean variance to each covariance: ~1e-5 relative
    np.testing.assert_allclose(got, md_c.min(axis=1) - md_0, rtol=1e-4, atol=1e-3)


def test_new_detectors_run_in_the_monitor_and_record_their_parameters(digits_monitor_files, tmp_path):
    import warnings

    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.profile.store import load_profile, save_profile

    f = digits_monitor_files
    mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu", detectors=("coverage", "gen", "rmd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = calibrate(mon, f["splits"]["val"])
    assert cal.settings["detector_params"]["gen"] == {"gamma": 0.1, "top": 100}
    save_profile(mon.profile, tmp_path / "p.npz")
    v = Monitor(f["model"], tmp_path / "p.npz", providers="cpu", detectors=("coverage", "gen", "rmd"))(
        f["splits"]["test"][0])
    assert set(v.p_values) == {"coverage", "gen", "rmd"} and np.isfinite(v.scores["rmd"]).all()


def test_layer_mahalanobis_is_the_mean_chi_square_standardized_distance_to_the_predicted_class():
    rng = np.random.default_rng(5)
    n, classes, sizes = 900, 3, [6, 4]
    y = rng.integers(0, classes, n)
    hidden = (rng.normal(size=(classes, 6)) * 2)[y] + rng.normal(size=(n, 6)) * rng.uniform(0.2, 2, 6)
    hidden[:, 5] = 0.0  # a dead neuron: its variance is floored, not divided by zero
    feats = (rng.normal(size=(classes, 4)) * 3)[y] + rng.normal(size=(n, 4)) @ rng.normal(size=(4, 4))
    layers = [hidden.astype(np.float32), feats.astype(np.float32)]
    b = ProfileBuilder(sizes, classes, feature_layer=1).update_ranges(layers, y).finish_ranges()
    profile = b.update_sections(layers, y).build("0" * 64, ["h", "f"])
    det = make_detector("mahalanobis_layers").fit(profile)
    probe = [(rng.normal(size=(20, s)) * 3).astype(np.float32) for s in sizes]
    pred = rng.integers(0, classes, 20)
    logits = np.eye(classes, dtype=np.float32)[pred]
    got = det.score(BatchView(logits, pack_layers(probe), layer_offsets(sizes)))
    h64, f64 = hidden.astype(np.float32).astype(np.float64), feats.astype(np.float32).astype(np.float64)
    # hidden layer: diagonal pooled within-class variance, floored at 1e-3 x its mean
    var = sum(((h64[y == c] - h64[y == c].mean(0)) ** 2).sum(0) for c in range(classes)) / n
    var = np.maximum(var, 1e-3 * var.mean())
    d_h = np.array([((p - h64[y == c].mean(0)) ** 2 / var).sum() for p, c in zip(probe[0].astype(np.float64), pred)])
    # feature layer: full tied covariance (ridge 1e-3 x mean variance on the diagonal)
    within = sum(np.cov(f64[y == c].T, bias=True) * (y == c).sum() for c in range(classes)) / n
    within = within + 1e-3 * np.trace(within) / 4 * np.eye(4)
    d_f = np.array([naive_mahalanobis(p[None], f64[y == c].mean(0), within)[0]
                    for p, c in zip(probe[1].astype(np.float64), pred)])
    want = ((d_h - 6) / np.sqrt(12) + (d_f - 4) / np.sqrt(8)) / 2
    np.testing.assert_allclose(got, want, rtol=1e-6)
