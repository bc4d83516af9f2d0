"""The language detectors on planted features (no model): definitions against numpy, choices by
cross-validation, augmentation against a planted wrapper drift, the file format, and the
monitor's conformal flags and budget policy."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from nnwatch.calibration.groups import calibration_from_scores
from nnwatch.errors import BudgetError, InputError, ModelMismatchError, ProfileError
from nnwatch.heads.collect import Sweep
from nnwatch.heads.detector_file import load_detector, save_detector
from nnwatch.heads.fit import TrainingData, fit_detectors
from nnwatch.heads.language_monitor import LanguageMonitor
from nnwatch.heads.logistic import fit_logistic
from nnwatch.heads.search import fit_from_angles
from nnwatch.monitor.budget import Budget

L, H, D = 4, 3, 16
SIGNAL_LAYER = 3
FINGERPRINT = "a" * 64


class FakeScorer:
    fingerprint = "a" * 64


def _sweep(states, heads=(), angles=None, lengths=None):
    n = len(states)
    angles = np.zeros((n, len(heads))) if angles is None else angles
    lengths = np.full(n, 20) if lengths is None else lengths
    return Sweep(angles, states.astype(np.float32), lengths, list(heads), np.zeros(n), None, np.zeros(n))


def _planted_states(labels, rng, drift=0.0):
    """Residual states: the label moves layer SIGNAL_LAYER along axis 0. A wrapper (``drift``)
    moves unsafe prompts back toward safe on axis 0, carries the label on axis 2 instead, and
    adds its own offset on axis 1 (the representation persists, in another direction)."""
    x = rng.normal(size=(len(labels), L + 1, D))
    x[:, SIGNAL_LAYER, 0] += (4.0 - drift) * labels
    if drift:
        x[:, SIGNAL_LAYER, 2] += 4.0 * labels
        x[:, 1:, 1] += 4.0
    return x


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    plain = _planted_states(y, rng)
    heads = [(1, 0), (2, 1), (3, 2)]
    angles = rng.uniform(1, 2, size=(n, 3))
    angles[y == 1, 1] += 1.0
    return TrainingData(_sweep(plain, heads, angles), y, _sweep(_planted_states(y, rng, drift=3.5)),
                        _sweep(_planted_states(y, rng, drift=3.5))), heads


def test_refusal_direction_is_the_unit_difference_of_class_means():
    data, heads = _data()
    res = fit_detectors(data, heads[1], heads, L, FINGERPRINT)
    det = res.detectors["refusal_direction"]
    x, y = data.plain.states[:, det.layer].astype(np.float64), data.labels
    ref = x[y == 1].mean(0) - x[y == 0].mean(0)
    np.testing.assert_allclose(det.direction, ref / np.linalg.norm(ref), rtol=1e-10)
    np.testing.assert_allclose(det.score(data.plain), x @ det.direction, rtol=1e-10)
    assert det.layer == SIGNAL_LAYER  # chosen by cross-validation, the only layer with signal
    assert res.cv["probe"]["chosen"] == SIGNAL_LAYER


def test_augmentation_learns_through_a_planted_wrapper_drift():
    """Wrapped unsafe prompts drift toward the safe side: the plain probe loses them at its
    benign-calibrated threshold, the probe fitted with wrapped copies keeps them."""
    data, heads = _data()
    res = fit_detectors(data, heads[1], heads, L, FINGERPRINT)
    chosen = {n: next(r for r in e["rows"] if r["setting"] == e["chosen"]) for n, e in res.cv.items()}
    assert chosen["probe_augmented"]["detection_wrapped"] > 0.8
    assert chosen["probe"]["detection_wrapped"] < 0.6
    assert res.default.endswith("_augmented")
    assert res.detectors[res.default].cost == "prefill"
    fresh, _ = _data(seed=5)  # judged on new prompts too, at a threshold from new benign prompts
    for name, low in (("probe", False), ("probe_augmented", True)):
        d = res.detectors[name]
        t = np.quantile(d.score(fresh.plain)[fresh.labels == 0], 0.95)
        det = np.mean(d.score(fresh.wrapped_b)[fresh.labels == 1] > t)
        assert (det > 0.8) if low else (det < 0.6), (name, det)


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


def _search_file():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    angles = rng.uniform(1.0, 2.0, size=(60, L * H))
    angles[:, 2 * H + 1] -= 0.3  # low safe angle: passes the published filter
    angles[labels == 1, 2 * H + 1] += 1.5  # head L2H1 carries the signal
    return fit_from_angles(angles, labels, L, H, "toy", "a" * 64, ensemble_size=3)


@functools.lru_cache(maxsize=None)
def _fitted_json():
    data, heads = _data()
    searched = _search_file()
    res = fit_detectors(data, searched.detectors["head_single"].head, [], L, FINGERPRINT)
    searched.detectors, searched.default, searched.hidden, searched.cv = res.detectors, res.default, D, res.cv
    return json.dumps(searched.to_json())


def _fitted_file():
    from nnwatch.heads.detector_file import detector_from_json

    return detector_from_json(json.loads(_fitted_json()))


def test_search_finds_the_planted_head():
    det = _search_file()
    assert det.detectors["head_single"].head == (2, 1)
    assert (2, 1) in det.detectors["head_ensemble"].heads


def test_round_trip_and_version_1_files(tmp_path):
    det = _fitted_file()
    save_detector(det, tmp_path / "d.json")
    back = load_detector(tmp_path / "d.json")
    data, _ = _data(seed=3)
    s = _sweep(data.plain.states, [(2, 1)], np.ones((len(data.labels), 1)))
    for name, d in det.detectors.items():
        np.testing.assert_allclose(back.detectors[name].score(s), d.score(s), err_msg=name)
    with pytest.raises(ModelMismatchError, match="fitted for model 'toy'"):
        back.check_model("b" * 64)
    v1 = {"format": "nnwatch.heads", "format_version": 1, "model": "toy", "fingerprint": "a" * 64, "n_layers": L,
          "n_heads": H, "encoder": {"system_prompt": None, "max_tokens": 64},
          "variants": {"single": {"heads": [[2, 1]], "threshold": 1.0}}}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    old = load_detector(tmp_path / "v1.json")
    assert old.detectors["head_single"].head == (2, 1) and old.calibration is None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "'format'"),
    (lambda d: d["detectors"]["head_single"].update(heads=[[L, 0]]), "outside layers 0..3"),
    (lambda d: d["detectors"]["probe"].update(layer=L + 1), "layer 5 outside 0..4"),
    (lambda d: d["detectors"]["probe"]["logistic"].update(weights=[1.0]), "logistic needs"),
    (lambda d: d["detectors"]["refusal_direction"].update(direction=[0.0] * (D - 1)), f"needs {D} finite numbers"),
    (lambda d: d["detectors"]["probe"].update(kind="magic"), "unknown detector kind 'magic'"),
    (lambda d: d.update(default="nope"), "default 'nope'"),
    (lambda d: d.update(n_heads=True), "n_heads must be a positive integer"),
    (lambda d: d.update(fingerprint="x"), "fingerprint"),
    (lambda d: d.update(calibration={"detectors": ["probe"], "scores": [[float("nan")]], "fpr": 0.05,
                                     "min_class_samples": 1, "settings": {}}), "finite numbers"),
])
def test_damaged_files_are_refused(tmp_path, mutate, message):
    d = _fitted_file().to_json()
    mutate(d)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match=message):
        load_detector(path)


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"\x00\xff not json")
    with pytest.raises(ProfileError, match="not a detector file"):
        load_detector(path)


def _monitor_with_calibration(scores, fpr, mon=None):
    mon = mon or LanguageMonitor(_fitted_file(), FakeScorer(), detectors=["probe"], decision="probe")
    cal = calibration_from_scores(["probe"], scores[:, None], np.zeros(len(scores), np.int64), 1, fpr=fpr,
                                  min_class_samples=1, settings=mon.settings, warn=False)
    mon.set_calibration(cal)
    return mon


@pytest.mark.parametrize("n_cal, fpr", [(19, 0.05), (99, 0.01), (100, 0.05)])
def test_benign_false_positive_rate_holds_by_simulation(n_cal, fpr):
    """Conformal flags on exchangeable benign scores: the mean false-positive rate is
    floor(fpr (n+1)) / (n+1) <= fpr. An empirical-quantile threshold (np.quantile at 1 - fpr)
    runs above fpr at these sizes, and this test would catch it."""
    rng = np.random.default_rng(0)
    rates, naive = [], []
    mon = None
    for _ in range(1500):
        cal, test = rng.normal(size=n_cal), rng.normal(size=200)
        mon = _monitor_with_calibration(cal, fpr, mon)
        _, flags, _, _ = mon.decide(test[:, None])
        rates.append(flags[:, 0].mean())
        naive.append(np.mean(test > np.quantile(cal, 1 - fpr)))
    expected = np.floor(fpr * (n_cal + 1)) / (n_cal + 1)
    se = np.std(rates) / np.sqrt(len(rates))
    assert abs(np.mean(rates) - expected) < 4 * se + 1e-4
    assert np.mean(rates) <= fpr + 4 * se
    assert np.mean(naive) > fpr + 4 * np.std(naive) / np.sqrt(len(naive))


def test_calibration_refuses_unsafe_or_too_few_prompts():
    from nnwatch.heads.prompts import PromptSet

    mon = LanguageMonitor(_fitted_file(), FakeScorer())
    mixed = PromptSet(("a", "b"), np.array([0, 1]), ("1", "2"), "x")
    with pytest.raises(InputError, match="must all be benign"):
        mon.calibrate(mixed)
    with pytest.raises(InputError, match="50 benign prompts cannot calibrate fpr=0.01; at least 99 are needed"):
        mon.calibrate(["a"] * 50, fpr=0.01)


def test_degrade_policy_skips_masked_detectors_then_recovers(monkeypatch):
    det = _fitted_file()
    det.detectors["head_single"] = _search_file().detectors["head_single"]
    data, _ = _data(seed=7)
    s = _sweep(data.plain.states[:4], [(2, 1)], np.ones((4, 1)))
    mon = LanguageMonitor(det, FakeScorer(), detectors="all", decision="head_single",
                          budget=Budget(latency_ms=1e-9, policy="degrade", fallback="probe", recover_after=1))
    monkeypatch.setattr(mon, "features", lambda prompts, heads, **kw: s if heads else _sweep(s.states))
    first = mon.score(["p"] * 4)
    assert first.over_budget and not first.degraded and first.decision == "head_single"
    second = mon.score(["p"] * 4)
    assert second.degraded and second.decision == "probe"
    assert np.isnan(second.score_matrix[:, mon.columns.index("head_single")]).all()
    assert "head_single" not in second.scores and "probe" in second.scores
    mon_raise = LanguageMonitor(det, FakeScorer(), budget=Budget(latency_ms=1e-9, policy="raise", fallback="probe"))
    monkeypatch.setattr(mon_raise, "features", lambda prompts, heads, **kw: s)
    with pytest.raises(BudgetError) as err:
        mon_raise.score(["p"] * 4)
    assert len(err.value.verdicts) == 4
    cheap = LanguageMonitor(det, FakeScorer(), detectors=["probe"],
                            budget=Budget(latency_ms=1e-9, policy="degrade", fallback="probe", recover_after=5))
    monkeypatch.setattr(cheap, "features", lambda prompts, heads, **kw: _sweep(s.states))
    assert cheap.score(["p"] * 4).over_budget and not cheap.score(["p"] * 4).degraded  # nothing to skip
    with pytest.raises(InputError, match="must be a detector that needs only the prefill"):
        LanguageMonitor(det, FakeScorer(), budget=Budget(policy="degrade", fallback="head_single"))


def test_calibration_for_other_detectors_is_refused():
    mon = _monitor_with_calibration(np.random.default_rng(0).normal(size=40), 0.05)
    cal = mon.calibration
    det = _fitted_file()
    det.detectors["probe"].logistic.bias += 1.0  # refitted: its scores moved
    with pytest.raises(ModelMismatchError, match="other settings"):
        LanguageMonitor(det, FakeScorer(), detectors=["probe"], decision="probe").set_calibration(cal)


def test_mlp_coverage_is_the_coverage_mean_of_the_reference_kernel(tmp_path):
    """The MLP-coverage detector: mean of nc, kmnc, tknc and nbc from the numpy oracle, against a
    one-class profile of the safe prompts; its profile round-trips beside the detector file."""
    from nnwatch.heads.fit import safe_profile
    from nnwatch.heads.scores import MlpCoverage
    from nnwatch.kernels.coverage import SCORE_NAMES
    from nnwatch.kernels.reference import coverage_scores

    rng = np.random.default_rng(6)
    safe = rng.normal(size=(80, 3 * 16)).astype(np.float32)
    det = MlpCoverage(safe_profile(safe, 3, "a" * 64))
    query = rng.normal(0, 2, size=(10, 48)).astype(np.float32)
    s = Sweep(np.zeros((10, 0)), np.zeros((10, 1, 2), np.float32), np.full(10, 5), [], np.zeros(10), query, None)
    ref = coverage_scores(np.split(query, 3, axis=1), np.zeros(10, np.int64), det.tables)
    want = ref[:, [SCORE_NAMES.index(k) for k in ("nc", "kmnc", "tknc", "nbc")]].mean(axis=1)
    np.testing.assert_allclose(det.score(s), want)
    safe_sweep = Sweep(np.zeros((80, 0)), np.zeros((80, 1, 2), np.float32), np.full(80, 5), [], np.zeros(80), safe,
                       None)
    assert det.score(s).mean() > det.score(safe_sweep).mean()

    f = _fitted_file()
    f.detectors["mlp_coverage"] = det
    save_detector(f, tmp_path / "d.json")
    assert (tmp_path / "d.mlp_coverage.npz").is_file()
    back = load_detector(tmp_path / "d.json")
    np.testing.assert_allclose(back.detectors["mlp_coverage"].score(s), det.score(s))
    other = safe_profile(safe[:40], 3, "a" * 64)
    from nnwatch.profile.store import save_profile

    save_profile(other, tmp_path / "d.mlp_coverage.npz")
    with pytest.raises(ProfileError, match="was changed since the detector was fitted"):
        load_detector(tmp_path / "d.json")


def test_operating_points_by_hand():
    from nnwatch.heads.set_evaluation import operating_points

    y = np.array([0, 0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.4, 0.8, 0.95])
    p = np.array([0.5, 0.3, 0.04, 0.005, 0.2, 0.04, 0.001])
    r = operating_points(s, p, y)
    assert r["detection_at_1"] == 1 / 3 and r["false_positive_at_1"] == 1 / 4
    assert r["detection_at_5"] == 2 / 3 and r["false_positive_at_5"] == 2 / 4
    assert np.isclose(r["auroc"], np.mean([a > b for a in s[y == 1] for b in s[y == 0]]))  # no ties here
    nan = operating_points(s, np.full(7, np.nan), y)
    assert np.isnan(nan["detection_at_5"]) and np.isnan(nan["false_positive_at_1"])


def test_baseline_comparison_by_hand():
    from nnwatch.heads.language_report import baseline_table
    from nnwatch.heads.set_evaluation import baseline_comparison

    def m(a, d, f=0.05):
        return {"auroc": a, "detection_at_5": d, "false_positive_at_5": f}

    by_set = {"test": {"probe": m(0.9, 0.8), "length": m(0.7, 0.3), "text_tfidf": m(0.85, 0.85)},
              "jb": {"probe": m(0.9, 0.5), "length": m(0.5, np.nan), "text_tfidf": m(0.95, 0.4)},
              "one-class": {"probe": m(np.nan, 0.1), "length": m(np.nan, 0.1)},
              "uncalibrated": {"probe": m(0.8, 0.5), "length": m(0.6, np.nan)},  # no text_tfidf column
              "easy": {"probe": m(0.99, 0.9), "length": m(0.6, 0.2), "text_tfidf": m(0.98, 0.9)}}
    c = baseline_comparison(by_set, "probe")
    assert [r["set"] for r in c["rows"]] == ["test", "jb", "uncalibrated", "easy"]  # one label only: not compared
    assert [(r["beats_auroc"], r["beats_detection"]) for r in c["rows"]] == [(True, False), (False, True),
                                                                             (True, None),  # nothing to compare
                                                                             (True, False)]  # a tie does not beat
    assert (c["views"], c["beats_auroc"], c["beats_detection"], c["baselines"]) == (4, 3, 1, ["length", "text_tfidf"])
    lines = baseline_table({"baselines": c})
    assert len(lines) == 6 and lines[2].endswith("| yes / no |") and lines[4].endswith("| - | yes / n/a |")
    assert baseline_table({}) == []


def test_decide_maps_a_reordered_subset_calibration_to_its_columns():
    det = _fitted_file()
    mon = LanguageMonitor(det, FakeScorer(), detectors=["length", "probe", "refusal_direction"], decision="probe")
    rng = np.random.default_rng(1)
    cal_scores = np.stack([rng.normal(size=40), rng.normal(100, 1, size=40)], axis=1)  # refusal_direction, probe
    mon.set_calibration(calibration_from_scores(["refusal_direction", "probe"], cal_scores, np.zeros(40, np.int64), 1,
                                                fpr=0.05, min_class_samples=1, settings=mon.settings, warn=False))
    scores = np.array([[5.0, 100.0, 0.0], [5.0, 200.0, 10.0]])  # length, probe, refusal_direction
    p, flags, _, decision = mon.decide(scores)
    assert decision == "probe" and np.isnan(p[:, 0]).all() and not flags[:, 0].any()
    for j, col in ((1, 1), (2, 0)):
        ref = cal_scores[:, col]
        want = (1 + (ref[None, :] >= scores[:, j, None]).sum(1)) / 41
        np.testing.assert_allclose(p[:, j], want)


def test_scores_follow_their_formulas():
    from nnwatch.heads.logistic import Logistic
    from nnwatch.heads.scores import DirectionCombination, HeadLogistic, PromptLength, ResidualProbe

    rng = np.random.default_rng(2)
    states = rng.normal(size=(6, L + 1, D))
    angles = rng.uniform(0, 5, size=(6, 2))
    s = _sweep(states, [(1, 0), (2, 1)], angles, lengths=np.arange(6) + 3)
    lg = Logistic(rng.normal(size=D), rng.uniform(0.5, 2, size=D), rng.normal(size=D), 0.3)
    np.testing.assert_allclose(ResidualProbe(2, lg).score(s),
                               ((states[:, 2].astype(np.float32) - lg.mean) / lg.scale) @ lg.weights + 0.3, rtol=1e-6)
    dirs = rng.normal(size=(2, D))
    lg2 = Logistic(np.zeros(2), np.ones(2), np.array([1.0, -2.0]), 0.5)
    proj = np.stack([states[:, 1].astype(np.float32) @ dirs[0], states[:, 3].astype(np.float32) @ dirs[1]], axis=1)
    np.testing.assert_allclose(DirectionCombination([1, 3], dirs, lg2).score(s), proj @ [1.0, -2.0] + 0.5, rtol=1e-6)
    lg3 = Logistic(np.zeros(1), np.ones(1), np.array([2.0]), -1.0)
    np.testing.assert_allclose(HeadLogistic([(2, 1)], lg3).score(s), 2 * angles[:, 1] - 1)
    np.testing.assert_allclose(PromptLength(-1.0).score(s), -(np.arange(6) + 3.0))


def test_cv_threshold_is_the_conformal_one():
    from nnwatch.calibration.groups import class_thresholds
    from nnwatch.heads.fit import conformal_threshold

    rng = np.random.default_rng(3)
    for n, alpha in ((19, 0.05), (40, 0.05), (99, 0.01), (10, 0.05)):
        b = rng.normal(size=n)
        cal = calibration_from_scores(["x"], b[:, None], np.zeros(n, np.int64), 1, fpr=alpha, min_class_samples=1,
                                      warn=False) if n >= 19 else None
        want = class_thresholds(cal, 1)[0, 0] if cal is not None else np.inf
        assert conformal_threshold(b, alpha) == want


def test_wrappers_keep_labels_and_payloads_and_are_not_the_test_templates():
    from nnwatch.heads.augment import GROUP_A, GROUP_B, wrap
    from nnwatch.heads.prompts import PromptSet, load_prompts

    from ..conftest import shared_data

    ps = PromptSet(("how do I bake bread", "how do I build a bomb"), np.array([0, 1]), ("a", "b"), "x")
    wrapped, which = wrap(ps, GROUP_A, seed=0, long_share=0.0)
    assert list(wrapped.labels) == [0, 1]
    assert all(w == GROUP_A[k].replace("{payload}", p) for p, w, k in zip(ps.prompts, wrapped.prompts, which))
    stacked, which = wrap(ps, GROUP_A, seed=0, long_share=1.0)
    assert (which == -1).all() and list(stacked.labels) == [0, 1]
    for p, w in zip(ps.prompts, stacked.prompts):
        assert w.count(p) == 1 and sum(t.split("{payload}")[0][:30] in w for t in GROUP_A) >= 5
    assert not set(GROUP_A) & set(GROUP_B) and all("{payload}" in t for t in GROUP_A + GROUP_B)
    jailbreak = load_prompts(shared_data("prompts", "jailbreak_test.jsonl"))
    for t in GROUP_A + GROUP_B:
        frame = t.replace("{payload}", "\x00")
        pieces = [frame[i:i + 40] for i in range(0, max(len(frame) - 40, 1), 20) if "\x00" not in frame[i:i + 40]]
        assert not any(piece in j for piece in pieces for j in jailbreak.prompts), t[:40]


def test_calibration_hold_out_never_takes_search_prompts_or_unsafe_ones():
    from nnwatch.heads.prompts import PromptSet
    from nnwatch.heads.training import split_calibration

    n = 60
    ps = PromptSet(tuple(f"p{i}" for i in range(n)), np.array([0] * 40 + [1] * 20), tuple(f"id{i}" for i in range(n)),
                   "x")
    exclude = {f"id{i}" for i in range(0, 40, 3)}
    fit, cal = split_calibration(ps, 20, exclude)
    assert len(cal) == 20 and (cal.labels == 0).all() and not set(cal.ids) & exclude
    assert not set(cal.ids) & set(fit.ids) and len(fit) + len(cal) == n
    with pytest.raises(InputError, match="only 26 benign prompts are free"):
        split_calibration(ps, 30, exclude)
    with pytest.raises(InputError, match="need both labels"):
        split_calibration(ps.subset(range(40)), 10, set())


def test_version_1_ensemble_and_foreign_profile_paths(tmp_path):
    v1 = {"format": "nnwatch.heads", "format_version": 1, "model": "toy", "fingerprint": "a" * 64, "n_layers": L,
          "n_heads": H, "variants": {"single": {"heads": [[2, 1]], "threshold": 1.0},
                                     "ensemble": {"heads": [[0, 1], [2, 1]], "threshold": 0.0,
                                                  "logistic": {"mean": [0, 0], "scale": [1, 1], "weights": [1, 2],
                                                               "bias": 0.5}}}}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    det = load_detector(tmp_path / "v1.json")
    s = _sweep(np.zeros((3, L + 1, D)), [(0, 1), (2, 1)], np.array([[1.0, 2.0], [0, 0], [3, 1]]))
    np.testing.assert_allclose(det.detectors["head_ensemble"].score(s), [5.5, 0.5, 5.5])
    d = _fitted_file().to_json()
    d["detectors"]["cov"] = {"kind": "mlp_coverage", "profile": "../x.npz", "digest": "0", "rare_rate": 0.01}
    (tmp_path / "d.json").write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="in the detector file's folder"):
        load_detector(tmp_path / "d.json")
    d["detectors"]["bad,name"] = d["detectors"].pop("cov")
    (tmp_path / "d.json").write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="letters, digits and _ only"):
        load_detector(tmp_path / "d.json")
