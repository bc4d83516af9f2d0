"""The detector contract users program against: parameters, instances, features, estimators."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nnwatch.calibration.calibrate import calibrate
from nnwatch.errors import InputError, ModelMismatchError
from nnwatch.kernels.layout import layer_offsets, pack_layers
from nnwatch.monitor.detector import BatchView, Detector
from nnwatch.monitor.detectors import ALL
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.on_features import FeatureDetector
from nnwatch.monitor.registry import REGISTRY, make_detector, parse_detector_spec, register
from nnwatch.profile.store import load_profile, save_profile
from nnwatch.sources import ArraySource
from tests.monitor.test_detectors import setup, view  # noqa: F401  (the suite's fixture and batch)

STANDALONE = tuple(n for n in ALL if n != "fused")
HEAD = (np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_parameters_round_trip_through_make_detector(name):
    det = make_detector(name)
    again = make_detector(name, **det.params())
    assert again.params() == det.params() and type(again) is type(det)


def test_make_detector_names_what_it_refuses():
    with pytest.raises(InputError, match="takes no parameter 'pct'; it takes percentile=90.0"):
        make_detector("react", pct=95)
    with pytest.raises(InputError, match="percentile must be in"):
        make_detector("react", percentile=300)
    with pytest.raises(InputError, match="takes no parameters"):
        make_detector("msp", t=1)
    with pytest.raises(InputError, match="detector 'doctor'.*it takes temperature=1.0"):
        make_detector("doctor", temperature="warm")
    assert make_detector("ash", percentile=80, variant="b").params() == {"percentile": 80.0, "variant": "b"}
    assert make_detector("knn", k=7).params() == {"k": 7}
    assert make_detector("knn").params() == {}  # the scaled default records nothing, as before


@pytest.mark.parametrize("text, want", [
    ("react", ("react", {})),
    ("react:percentile=95", ("react", {"percentile": 95})),
    ("ash: percentile=85.5 , variant=b", ("ash", {"percentile": 85.5, "variant": "b"})),
    ("gen:gamma=0.2,top=10", ("gen", {"gamma": 0.2, "top": 10})),
])
def test_detector_specs_parse(text, want):
    assert parse_detector_spec(text) == want


@pytest.mark.parametrize("text, match", [
    ("react:percentile", "is not key=value"),
    ("react:percentile=90,percentile=95", "twice"),
    ("nope:x=1", "not found"),
    ("knn:k=0", "whole number >= 1"),
])
def test_bad_detector_specs_are_refused(text, match):
    with pytest.raises(InputError, match=match):
        parse_detector_spec(text)


def test_a_duplicate_registration_is_refused():
    class Mine(Detector):
        name = "msp"

    with pytest.raises(InputError, match="'msp' is taken by MaxSoftmax"):
        register(Mine)
    assert REGISTRY["msp"].__name__ == "MaxSoftmax"


@pytest.mark.parametrize("name", STANDALONE)
def test_a_batch_of_another_shape_is_refused_by_name(setup, name):  # noqa: F811
    det = make_detector(name).with_head(HEAD).fit(setup[0])
    good = view(setup)
    det.score(good)
    wider = [np.hstack([p, p[:, :1]]) for p in setup[2]]
    wide = BatchView(setup[3], pack_layers(wider), layer_offsets([7, 5]), tables=setup[1])
    with pytest.raises(InputError, match=rf"detector {name!r} was fitted on 3 classes and layers of \[6, 4\]"):
        det.score(wide)
    with pytest.raises(InputError, match="fitted on 3 classes"):
        det.score(view(setup, logits=np.zeros((9, 4), np.float32)))


@pytest.mark.parametrize("name", STANDALONE)
def test_a_saved_profile_fits_the_same_detector(setup, name, tmp_path):  # noqa: F811
    path = tmp_path / "p.npz"
    save_profile(setup[0], path)
    a = make_detector(name).with_head(HEAD).fit(setup[0]).score(view(setup))
    b = make_detector(name).with_head(HEAD).fit(load_profile(path)).score(view(setup))
    np.testing.assert_array_equal(a, b)


def test_parameters_reach_the_monitor_and_its_calibration(digits_monitor_files):
    f = digits_monitor_files
    x_val, y_val = f["splits"]["val"]
    profile = load_profile(f["profile"])
    profile.calibration = None
    mon = Monitor(f["model"], profile, detectors=["coverage", "react:percentile=95", make_detector("knn", k=3)],
                  providers="cpu")
    assert mon.detectors["react"].params() == {"percentile": 95.0} and mon.detectors["knn"].k_ == 3
    calibrate(mon, ArraySource(x_val, y_val, "val"), fpr=0.1, min_class_samples=5)
    # a bare name takes the parameters recorded with the calibration
    again = Monitor(f["model"], mon.profile, detectors=["coverage", "react", "knn"], providers="cpu")
    assert again.detectors["react"].params() == {"percentile": 95.0} and again.detectors["knn"].params() == {"k": 3}
    x = f["splits"]["test"][0][:20]
    np.testing.assert_array_equal(again.score(x).scores["react"], mon.score(x).scores["react"])
    with pytest.raises(ModelMismatchError):
        Monitor(f["model"], mon.profile, detectors=["coverage", "react:percentile=80", "knn"], providers="cpu")
    with pytest.raises(InputError, match="given twice"):
        Monitor(f["model"], profile, detectors=["react:percentile=95", "react:percentile=80"], providers="cpu")


def test_threaded_scoring_equals_serial(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], detectors=["coverage", "msp", "mahalanobis", "knn", "react"],
                  providers="cpu", threads=1)
    x = f["splits"]["test"][0][:64]
    serial = [mon.score(x[i:i + 8]).scores for i in range(0, 64, 8)]
    got: dict[int, dict] = {}

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = mon.score(x[i:i + 8]).scores

    threads = [threading.Thread(target=work, args=(i,)) for i in range(0, 64, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, want in zip(range(0, 64, 8), serial):
        for name in want:
            np.testing.assert_array_equal(got[k][name], want[name])


def _gaussian_classes(rng, n=900, c=3, d=6):
    mu = rng.normal(size=(c, d)) * 3
    y = rng.integers(0, c, n)
    return mu, y, (mu[y] + rng.normal(size=(n, d))).astype(np.float32)


def test_features_level_mahalanobis_and_knn_follow_their_formulas():
    rng = np.random.default_rng(3)
    mu, y, x = _gaussian_classes(rng)
    probe = np.vstack([x[:5], rng.normal(size=(5, 6)).astype(np.float32) * 8])
    logits = np.zeros((10, 3), np.float32)
    # Mahalanobis: min over classes of (x - mu_c)' S^-1 (x - mu_c), S the pooled class covariance
    got = FeatureDetector("mahalanobis").fit_features(x, y).score_features(probe, logits)
    x64 = x.astype(np.float64)
    means = np.stack([x64[y == c].mean(0) for c in range(3)])
    centred = x64 - means[y]
    precision = np.linalg.inv(centred.T @ centred / len(x64))
    want = np.min([np.einsum("nd,de,ne->n", probe - m, precision, probe - m) for m in means], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-3)
    # kNN (k given): distance to the k-th nearest unit-normalized training feature
    got = FeatureDetector("knn:k=4", feature_sample=len(x)).fit_features(x, y).score_features(probe, logits)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    dist = np.linalg.norm(unit(probe.astype(np.float64))[:, None] - unit(x64)[None], axis=2)
    np.testing.assert_allclose(got, np.sort(dist, axis=1)[:, 3], rtol=1e-6, atol=1e-7)


def test_features_level_scores_equal_the_monitors(digits_monitor_files):
    """The same activations and trusted labels give the monitor's profile, so the same scores."""
    from nnwatch.kernels.layout import unpack_layers
    from nnwatch.monitor.profiling import trusted_labels
    from nnwatch.monitor.runner import Runner

    f = digits_monitor_files
    runner = Runner(f["model"], providers="cpu")

    def tapped(x):  # the model's logits and its tapped layers
        ws = runner.workspace(len(x))
        runner.run(runner.check_input(x), ws)
        return ws.logits.copy(), [a.copy() for a in unpack_layers(ws.buf, ws.batch, runner.offsets)]

    x_train, y_train = f["splits"]["train"]
    logits, layers = tapped(x_train)
    trusted = trusted_labels(logits, y_train, 0.0)
    profile = load_profile(f["profile"])
    np.testing.assert_array_equal(np.asarray(profile.header["class_counts"]), np.bincount(trusted[trusted >= 0],
                                                                                        minlength=10))
    x = f["splits"]["test"][0][:40]
    mon = Monitor(f["model"], f["profile"], detectors=["coverage", "kmnc", "mahalanobis", "knn", "energy"],
                  providers="cpu")
    want = mon.score(x).scores
    test_logits, test_layers = tapped(x)
    for name in ("mahalanobis", "knn", "energy", "kmnc"):
        fd = FeatureDetector(name, k_sections=profile.header["k_sections"], k_top=profile.header["k_top"])
        fd.fit_features(layers, trusted, n_classes=10)
        np.testing.assert_allclose(fd.score_features(test_layers, test_logits), want[name], rtol=1e-9, err_msg=name)


def test_features_level_refuses_what_it_cannot_score():
    rng = np.random.default_rng(0)
    _, y, x = _gaussian_classes(rng)
    fd = FeatureDetector("energy").fit_features(x, y)
    with pytest.raises(InputError, match="layer sizes"):
        fd.score_features(x[:, :5], np.zeros((len(x), 3), np.float32))
    with pytest.raises(InputError, match="pass the logits"):
        fd.score_features(x)
    with pytest.raises(InputError, match="integer labels"):
        FeatureDetector("energy").fit_features(x, y.astype(float))


def test_the_estimator_clones_and_grid_searches(digits_monitor_files):
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from nnwatch.estimator import MonitorEstimator

    f = digits_monitor_files
    est = MonitorEstimator(f["model"], detectors=("coverage", "msp"), fpr=0.1, providers="cpu")
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert est.set_params(fpr=0.2) is est and est.fpr == 0.2
    with pytest.raises(InputError, match="no parameter 'alpha'"):
        est.set_params(alpha=1)
    x, y = f["splits"]["train"]
    pipe = Pipeline([("identity", FunctionTransformer()), ("monitor", est)])
    assert pipe.fit(x, y).predict(x[:10]).shape == (10,)

    def clean_pass_rate(estimator, X, y=None):  # a clean-data score: share passing
        return float((estimator.predict(X) == 1).mean())

    grid = GridSearchCV(MonitorEstimator(f["model"], detectors=("coverage", "msp"), providers="cpu"),
                        {"fpr": [0.05, 0.2]}, scoring=clean_pass_rate, cv=2)
    grid.fit(x, y)
    assert grid.best_params_ == {"fpr": 0.05} and sklearn.__version__
