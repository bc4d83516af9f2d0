"""The fused verdict against its definition in numpy, its guarantee by simulation, its refusals.

Definition (nnwatch/calibration/fused_verdict.py, nnwatch/kernels/fusion.py): split the calibration per
class into halves A and B; a member's evidence is -log of its conformal p-value against all of A
(classes pooled), continued beyond A's maximum by (s - max) / (max - 90% quantile); T = the sum of
the ceil(m / 2) largest evidences; the fused p-value is conformal against B's T of the group.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch.calibration.calibrate import by_cost, calibrate
from nnwatch.calibration.fused_verdict import (
    FUSED,
    add_fusion,
    choose_members,
    compile_fusion,
    fusion_spec,
    spearman,
    split_halves,
)
from nnwatch.calibration.groups import (
    CalibrationWarning,
    calibration_from_scores,
    calibration_groups,
    compile_conformal,
)
from nnwatch.errors import InputError, ModelMismatchError
from nnwatch.kernels.conformal import conformal_p_values
from nnwatch.kernels.fusion import fused_statistic
from nnwatch.monitor.monitor import Monitor
from nnwatch.profile.schema import Calibration
from nnwatch.profile.store import load_profile, save_profile
from nnwatch.sources import ArraySource

ALPHA = 0.05


def group_rows(classes, c, n_classes, alpha, min_class_samples):
    """Rows of the calibration group of class c (own, pooled or global), as calibrate.py defines them."""
    g = calibration_groups(classes, n_classes, alpha, min_class_samples)
    if c in g.own:
        return classes == c
    return np.ones(len(classes), bool) if g.pooled_is_global else np.isin(classes, g.pooled)


def naive_evidence(ref, s):
    ref = np.sort(ref)
    n = len(ref)
    if not np.isfinite(s):
        return np.inf
    n_ge = int(np.sum(ref >= s))
    if n_ge:
        return -np.log((1 + n_ge) / (n + 1))
    scale = max(ref[-1] - ref[int(0.9 * (n - 1))], 1e-9 * (1 + abs(ref[-1])))
    return np.log(n + 1) + (s - ref[-1]) / scale


def naive_fused(cal, members, scores, classes, n_classes):
    """(T, p) of rows of member scores, from the calibration's raw scores, one sample at a time:
    the evidence of each member pooled over classes, T the strongest half summed, p per class group."""
    in_a = split_halves(cal.classes, cal.fusion["seed"])
    cols = [cal.detectors.index(m) for m in members]
    cb = cal.classes[~in_a]
    sa, sb = cal.scores[in_a][:, cols], cal.scores[~in_a][:, cols]

    def stat(row, c):  # member evidence against all of half A; the strongest ceil(m / 2) added up
        evidence = sorted((naive_evidence(sa[:, k], row[k]) for k in range(len(cols))), reverse=True)
        return sum(evidence[: (len(cols) + 1) // 2])

    t_b = np.array([stat(r, c) for r, c in zip(sb, cb)])
    t = np.array([stat(r, c) for r, c in zip(scores, classes)])
    low, high = np.empty(len(t)), np.empty(len(t))
    for i, c in enumerate(classes):
        ref = t_b[group_rows(cb, c, n_classes, cal.fpr, cal.min_class_samples)]
        # Inside the calibration range T is a sum of -log(k / (n + 1)), so different rank tuples
        # can give the same T in exact arithmetic (-log(2/31) - log(3/31) = -log(1/31) - log(6/31))
        # and differ by an ulp in floating point, where numpy's and the kernel's log may also
        # differ. Such near-ties may count either way: the p-value is bracketed by both counts.
        tol = 1e-9 * max(1.0, abs(t[i])) if np.isfinite(t[i]) else 0.0
        low[i] = (1 + np.sum(ref > t[i] + tol)) / (len(ref) + 1)
        high[i] = (1 + np.sum(ref >= t[i] - tol)) / (len(ref) + 1)
    return t, (low, high)


def assert_bracketed(p, bounds):
    low, high = bounds
    assert ((p >= low - 1e-15) & (p <= high + 1e-15)).all(), np.flatnonzero((p < low - 1e-15) | (p > high + 1e-15))


def synthetic_calibration(rng, n_per_class=(60, 45, 8), members=3, seed=0):
    classes = np.repeat(np.arange(len(n_per_class)), n_per_class)
    latent = rng.standard_normal(len(classes))
    scores = latent[:, None] * 0.7 + rng.standard_normal((len(classes), members)) + classes[:, None] * 0.5
    scores[:, 1] = np.round(scores[:, 1], 1)  # ties
    names = [f"d{k}" for k in range(members)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cal = calibration_from_scores(names, scores, classes, len(n_per_class), ALPHA, 20)
    cal.fusion = fusion_spec(cal, names, seed)
    return cal, names


@pytest.mark.parametrize("members", [1, 2, 3, 4, 5])
def test_fused_statistic_and_p_value_follow_the_definition(members):
    rng = np.random.default_rng(members)
    cal, names = synthetic_calibration(rng, members=max(members, 2))
    if members == 1:
        names = names[:1]
        cal.fusion = fusion_spec(cal, names, 0)
    columns = ["x"] + names  # members are columns 1.. of the monitor's matrix
    tables, fused_cal = compile_fusion(cal, columns, 3)
    live = rng.standard_normal((300, len(columns))) * 2.5  # far beyond the calibration too
    live[0, 1] = np.inf
    live[1, len(columns) - 1] = np.nan
    classes = rng.integers(0, 3, 300)
    t = fused_statistic(live, classes, tables)
    p, flags = conformal_p_values(t[:, None], classes, fused_cal)
    want_t, want_p = naive_fused(cal, names, live[:, 1:], classes, 3)
    np.testing.assert_allclose(t, want_t, rtol=1e-12)
    assert np.isinf(t[:2]).all()
    assert_bracketed(p[:, 0], want_p)
    np.testing.assert_array_equal(flags[:, 0], p[:, 0] <= ALPHA)


def test_halves_split_every_class_evenly_and_reproducibly():
    classes = np.repeat(np.arange(4), [10, 11, 1, 0][:4])
    a = split_halves(classes, 3)
    for c in range(3):
        assert abs(a[classes == c].sum() - (~a)[classes == c].sum()) <= 1
    np.testing.assert_array_equal(a, split_halves(classes, 3))
    assert not np.array_equal(split_halves(np.zeros(40, np.int64), 1), split_halves(np.zeros(40, np.int64), 2))


def fused_rates(rng, n, rule, splits=1000, members=4, n_test=100):
    rates = np.empty(splits)
    for i in range(splits):
        cov = 0.6 * np.ones((members, members)) + 0.4 * np.eye(members)  # dependent members
        cal_s = rng.multivariate_normal(np.zeros(members), cov, n)
        test_s = rng.multivariate_normal(np.zeros(members), cov, n_test)
        names = [f"d{k}" for k in range(members)]
        cal = Calibration(detectors=names, scores=cal_s, classes=np.zeros(n, np.int64), fpr=ALPHA,
                          min_class_samples=1)
        cal.fusion = fusion_spec(cal, names, seed=i)
        rates[i] = rule(cal, names, test_s).mean()
    return rates


def library_fused_flags(cal, names, test_s):
    tables, fused_cal = compile_fusion(cal, names, 1)
    t = fused_statistic(test_s, np.zeros(len(test_s), np.int64), tables)
    return conformal_p_values(t[:, None], np.zeros(len(t), np.int64), fused_cal)[1][:, 0]


def double_use_flags(cal, names, test_s):
    """The tempting wrong rule: calibrate T on the same samples that made the member p-values."""
    whole = Calibration(detectors=names, scores=cal.scores, classes=cal.classes, fpr=ALPHA, min_class_samples=1)
    member_tables, _ = compile_conformal(whole, names, 1)
    from nnwatch.kernels.fusion import FusionTables, tail_scales

    tables = FusionTables(members=np.arange(len(names), dtype=np.int64), ref=member_tables.ref,
                          starts=member_tables.starts, ends=member_tables.ends,
                          scale=tail_scales(member_tables.ref, member_tables.starts, member_tables.ends))
    zeros = np.zeros(len(cal.classes), np.int64)
    t_cal = fused_statistic(cal.scores, zeros, tables)
    t_cal_tables, _ = compile_conformal(Calibration(["t"], t_cal[:, None], zeros, ALPHA, 1), ["t"], 1)
    t = fused_statistic(test_s, np.zeros(len(test_s), np.int64), tables)
    return conformal_p_values(t[:, None], np.zeros(len(t), np.int64), t_cal_tables)[1][:, 0]


@pytest.mark.parametrize("n", [40, 120])
def test_fused_false_alarms_stay_below_the_target_and_double_use_would_not(n):
    rates = fused_rates(np.random.default_rng(n), n, library_fused_flags)
    se = rates.std(ddof=1) / np.sqrt(len(rates))
    assert rates.mean() <= ALPHA + 3 * se
    wrong = fused_rates(np.random.default_rng(n), n, double_use_flags)
    assert wrong.mean() > ALPHA + 3 * wrong.std(ddof=1) / np.sqrt(len(wrong))


def test_members_skip_near_copies_in_cost_order():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(300)
    scores = np.stack([base, np.exp(base) + 1e-3 * rng.standard_normal(300), rng.standard_normal(300),
                       -base * 2, np.zeros(300)], axis=1)
    cal = Calibration(["a", "a_copy", "b", "a_negated", "constant"], scores, np.zeros(300, np.int64), ALPHA, 20)
    assert choose_members(cal, ["a", "a_copy", "b", "a_negated", "constant"]) == ["a", "b", "constant"]
    assert choose_members(cal, ["a_copy", "a", "b"]) == ["a_copy", "b"]  # the cheaper one is kept
    with pytest.raises(InputError, match="is calibrated"):
        choose_members(cal, ["coverage", "unknown"])


def test_spearman_matches_ranks_correlated_plainly():
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((50, 3)), 1)
    ranks = np.empty_like(x)
    for j in range(3):  # mean ranks of ties, written out
        for i in range(50):
            ranks[i, j] = np.sum(x[:, j] < x[i, j]) + (np.sum(x[:, j] == x[i, j]) + 1) / 2
    np.testing.assert_allclose(spearman(x), np.corrcoef(ranks.T), atol=1e-12)


def test_too_small_a_calibration_gets_no_fusion():
    cal = Calibration(["a"], np.zeros((30, 1)), np.zeros(30, np.int64), ALPHA, 20)
    with pytest.raises(InputError, match="at least 39 are needed"):
        fusion_spec(cal, ["a"])
    with pytest.warns(CalibrationWarning, match="no fused verdict"):
        assert add_fusion(cal, ["a"]).fusion is None


@pytest.fixture(scope="module")
def fused_monitor(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu")
    return mon


def test_the_monitor_decides_with_the_fused_verdict_as_defined(fused_monitor, digits_monitor_files):
    mon = fused_monitor
    cal = mon.calibration
    assert mon.decision == FUSED and mon.calibrated and cal.fusion is not None
    members = cal.fusion["members"]
    assert "coverage" not in members and set(members) <= set(mon.columns)
    x = np.concatenate([digits_monitor_files["splits"]["test"][0][:60],
                        np.random.default_rng(0).random((20, 64), dtype=np.float32) * 3])
    x[3, 0] = np.nan
    v = mon(x)
    ok = ~v.nonfinite_input
    t, p = naive_fused(cal, members, np.stack([v.scores[m] for m in members], 1)[ok], v.pred[ok], 10)
    # the live statistic and the calibration half's are computed by the same compiled function
    tables, _ = compile_fusion(cal, list(mon.columns), 10)
    np.testing.assert_array_equal(fused_statistic(v.score_matrix[ok], v.pred[ok], tables), v.scores[FUSED][ok])
    np.testing.assert_allclose(v.scores[FUSED][ok], t, rtol=1e-12)
    assert_bracketed(v.p_values[FUSED][ok], p)
    np.testing.assert_array_equal(v.flags[FUSED], v.p_values[FUSED] <= cal.fpr)
    np.testing.assert_array_equal(v.flag, v.flags[FUSED] | v.nonfinite_input)
    np.testing.assert_array_equal(v.confidence, np.where(ok, v.p_values[FUSED], 0.0))
    assert np.isinf(v.scores[FUSED][3]) and v.flag[3] and v.confidence[3] == 0


def test_fusion_survives_save_and_load(fused_monitor, digits_monitor_files, tmp_path):
    save_profile(fused_monitor.profile, tmp_path / "p.npz")
    loaded = load_profile(tmp_path / "p.npz")
    assert loaded.calibration.fusion == fused_monitor.calibration.fusion
    x = digits_monitor_files["splits"]["test"][0][:30]
    again = Monitor(digits_monitor_files["model"], loaded, providers="cpu")
    np.testing.assert_array_equal(again(x).p_values[FUSED], fused_monitor(x).p_values[FUSED])


def test_a_monitor_without_the_members_refuses_or_falls_back(fused_monitor, digits_monitor_files):
    f = digits_monitor_files
    members = fused_monitor.calibration.fusion["members"]
    fewer = tuple(c for c in fused_monitor.columns if c != members[-1])
    with pytest.raises(ModelMismatchError, match=f"does not run \\['{members[-1]}'\\]"):
        Monitor(f["model"], fused_monitor.profile, providers="cpu", detectors=fewer, decision=FUSED)
    with pytest.warns(UserWarning, match="fused verdict unavailable"):
        mon = Monitor(f["model"], fused_monitor.profile, providers="cpu", detectors=fewer)
    assert mon.decision == "coverage" and mon.calibrated


def test_an_uncalibrated_fused_column_is_nan_and_cannot_decide(digits_monitor_files):
    f = digits_monitor_files
    profile = load_profile(f["profile"])
    profile.calibration = None
    mon = Monitor(f["model"], profile, providers="cpu")
    v = mon(f["splits"]["test"][0][:5])
    assert mon.decision == "coverage" and np.isnan(v.scores[FUSED]).all() and FUSED not in v.flags
    with pytest.raises(ModelMismatchError, match="needs a calibration with a fused verdict"):
        Monitor(f["model"], profile, providers="cpu", decision=FUSED)


def test_users_can_name_the_members(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cal = calibrate(mon, ArraySource(*f["splits"]["val"], "val"), fusion_members=("msp", "kmnc"))
    assert cal.fusion["members"] == ["msp", "kmnc"] and mon.decision == FUSED
    with pytest.raises(InputError, match="not among the calibrated detectors"):
        calibrate(mon, ArraySource(*f["splits"]["val"], "val"), fusion_members=("knn",))


def test_members_over_the_cost_budget_are_skipped():
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((200, 3))
    cal = Calibration(["kmnc", "mahalanobis", "knn"], scores, np.zeros(200, np.int64), ALPHA, 20)
    costs = {"mahalanobis": 9, "knn": 40}  # kmnc: compiled, free
    assert choose_members(cal, ["kmnc", "mahalanobis", "knn"], costs=costs, budget=10.0) == ["kmnc", "mahalanobis"]
    assert choose_members(cal, ["kmnc", "mahalanobis", "knn"], costs=costs, budget=5.0) == ["kmnc"]
    spec = add_fusion(cal, ["kmnc", "mahalanobis", "knn"], costs=costs, budget=10.0, model_macs=100).fusion
    assert spec["costs"] == {"kmnc": 0, "mahalanobis": 9, "knn": 40} and spec["budget"] == 10.0
    assert spec["model_macs"] == 100


def test_a_default_monitor_runs_only_the_compiled_columns_and_the_members(fused_monitor, digits_monitor_files):
    from nnwatch.monitor.detectors import COMPILED

    members = fused_monitor.calibration.fusion["members"]
    assert set(fused_monitor.columns) == set(COMPILED) | set(members) | {FUSED}
    f = digits_monitor_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu", detectors=COMPILED + ("knn", FUSED))
        cal = calibrate(mon, ArraySource(*f["splits"]["val"], "val"), fusion_members=("knn", "kmnc"))
    reloaded = Monitor(f["model"], mon.profile, providers="cpu")  # detectors=None: the members come along
    assert "knn" in reloaded.columns and reloaded.decision == FUSED and cal.fusion["costs"]["knn"] > 0


def test_the_cli_fuses_named_members_and_refuses_unknown_ones(digits_monitor_files, tmp_path, capsys):
    from nnwatch.cli.main import main

    f = digits_monitor_files
    np.savez(tmp_path / "val.npz", x=f["splits"]["val"][0], y=f["splits"]["val"][1])
    out = tmp_path / "p.npz"
    assert main(["calibrate", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'val.npz'}",
                 "--fuse", "knn,msp", "--out", str(out), "--quiet"]) == 0
    assert "fused verdict over knn, msp" in capsys.readouterr().out
    assert load_profile(out).calibration.fusion["members"] == ["knn", "msp"]
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(f["model"]), str(f["profile"]), "--data", "x", "--fuse", "knn,nope"])
    assert exc.value.code == 2 and "cannot fuse ['nope']; choose among" in capsys.readouterr().err


def test_membership_is_counted_so_two_calibrations_agree(digits_monitor_files):
    """Member costs are multiply-adds, not timings: the same data gives the same fusion, loaded or not."""
    f = digits_monitor_files
    records = []
    for _ in range(2):
        mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu",
                      detectors=("coverage", "kmnc", "msp", "mahalanobis", "knn", FUSED))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            records.append(calibrate(mon, ArraySource(*f["splits"]["val"], "val")).fusion)
    assert records[0] == records[1]
    maha = mon.detectors["mahalanobis"]
    d, c = maha.whiten_.shape[0], maha.whitened_means_t_.shape[1]
    assert records[0]["costs"]["mahalanobis"] == d * d + d * c
    assert records[0]["costs"]["knn"] == mon.detectors["knn"].bank_.size + mon.profile.n_classes  # bank, logits
    assert records[0]["model_macs"] == mon.manifest.macs > 0
    assert records[0]["budget"] == pytest.approx(0.10 * mon.manifest.macs)
    chosen = set(records[0]["members"])
    assert all(records[0]["costs"][m] <= records[0]["budget"] for m in chosen)


def test_every_detector_outside_the_shared_pass_counts_and_a_zero_budget_admits_none(digits_monitor_files):
    from nnwatch.monitor.detectors import MORE

    f = digits_monitor_files
    mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu",
                  detectors=("coverage", "kmnc", "msp", "mahalanobis") + MORE + (FUSED,))
    costs, model_macs = mon.counted_costs()
    assert set(costs) == {n for n, d in mon.detectors.items() if d.compiled_source is None or d.timed_alone}
    assert all(c > 0 for c in costs.values()), costs
    layers = mon.detectors["mahalanobis_layers"]
    assert costs["mahalanobis_layers"] >= sum(a.size for a in layers.means_)
    assert costs["rmd"] > costs["mahalanobis"]  # its background whitening too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        cal = calibrate(mon, ArraySource(*f["splits"]["val"], "val"), fusion_budget=0.0)
    assert not set(cal.fusion["members"]) & set(costs), cal.fusion["members"]


def test_members_that_do_not_separate_synthetic_anomalies_are_left_out(digits_monitor_files):
    """The default calibration keeps, of the candidates choose_members keeps, those the rule of
    nnwatch.calibration.separation keeps on anomalies made from half A; it reads half A only."""
    from nnwatch.calibration.calibrate import separating_members
    from nnwatch.calibration.fused_verdict import split_halves
    from nnwatch.calibration.separation import Separation

    f = digits_monitor_files
    x, y = f["splits"]["val"]
    detectors = ("coverage", "nc", "kmnc", "tknc", "nbc", "msp", "max_logit", "mahalanobis", FUSED)

    def calibrated(inputs):
        mon = Monitor(f["model"], load_profile(f["profile"]), providers="cpu", detectors=detectors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            return mon, calibrate(mon, ArraySource(inputs, y, "val"))

    mon, cal = calibrated(x)
    record = cal.fusion["separation"]
    candidates = list(record["auroc"])
    assert candidates == choose_members(cal, [c for c in by_cost(mon, cal.detectors)], costs=cal.fusion["costs"],
                                        budget=cal.fusion["budget"])
    sep = Separation.from_dict(record)
    gain = sep.separations()
    best = max(gain.values())
    assert cal.fusion["members"] == record["members"] == [m for m in candidates if gain[m] >= 0.5 * best]
    # the record is what separating_members gives on the same half
    in_a = split_halves(cal.classes, cal.fusion["seed"])
    again = separating_members(mon, x, cal.classes, cal.scores, cal.detectors, candidates, in_a)
    assert again.to_dict() == record
    # half B's inputs do not enter: changing them (where their predicted class, hence the split,
    # stays) leaves the members and the table as they were
    other = x.copy()
    moved = np.where(~in_a[:, None], 0.05 * np.random.default_rng(0).standard_normal(x.shape), 0).astype(np.float32)
    same = mon(x + moved).pred == mon(x).pred
    other[same] += moved[same]
    assert (other != x).any(axis=1).sum() > 50
    _, cal_b = calibrated(other)
    np.testing.assert_array_equal(cal_b.classes, cal.classes)
    assert not np.array_equal(cal_b.scores, cal.scores)
    assert cal_b.fusion["separation"] == record
    # given members, or separate=False, choose nothing by separation
    mon2 = Monitor(f["model"], load_profile(f["profile"]), providers="cpu", detectors=detectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        plain = calibrate(mon2, ArraySource(x, y, "val"), separate=False)
    assert "separation" not in plain.fusion and plain.fusion["members"] == candidates


def test_a_damaged_separation_record_is_refused(fused_monitor, tmp_path):
    import copy

    from nnwatch.errors import ProfileError

    profile = copy.deepcopy(fused_monitor.profile)
    fusion = profile.calibration.fusion
    assert "separation" in fusion
    fusion["separation"]["members"] = []
    save_profile(profile, tmp_path / "bad.npz")
    with pytest.raises(ProfileError, match="separation table does not match"):
        load_profile(tmp_path / "bad.npz")


def test_near_copies_are_judged_on_half_a_only():
    """The redundancy check reads the member half: two detectors that are near-copies over all the
    calibration data, but not on half A, both join (half B calibrates what A chose)."""
    from nnwatch.calibration.fused_verdict import REDUNDANCY, spearman, split_halves

    rng = np.random.default_rng(3)
    classes = np.repeat(np.arange(4), 60)
    in_a = split_halves(classes, 0)
    a = rng.standard_normal(len(classes))
    b = np.where(in_a, a + 0.3 * rng.standard_normal(len(classes)), a)  # identical on half B
    scores = np.stack([a, b], axis=1)
    assert abs(spearman(scores[in_a])[0, 1]) < REDUNDANCY <= abs(spearman(scores)[0, 1])
    cal = Calibration(["kmnc", "msp"], scores, classes, ALPHA, 20)
    assert choose_members(cal, ["kmnc", "msp"]) == ["kmnc"]  # over all rows: a near-copy
    assert add_fusion(cal, ["kmnc", "msp"]).fusion["members"] == ["kmnc", "msp"]


def test_the_cli_can_skip_the_separation(digits_monitor_files, tmp_path, capsys):
    from nnwatch.cli.main import main

    f = digits_monitor_files
    x, y = f["splits"]["val"]
    np.savez(tmp_path / "val.npz", x=x, y=y)
    out = tmp_path / "p.npz"
    code = main(["calibrate", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'val.npz'}",
                 "--no-separate", "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0 and "chosen from the clean scores and cost" in text, text
    assert "separation" not in load_profile(out).calibration.fusion
    main(["calibrate", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'val.npz'}", "--out",
          str(out), "--quiet"])
    assert "separation" in load_profile(out).calibration.fusion
    assert "separating anomalies made from the calibration data" in capsys.readouterr().out
