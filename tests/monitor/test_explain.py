"""Explanations of flagged inputs: member evidence and out-of-range neurons against their definitions."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nnwatch.calibration.fused_verdict import FUSED, split_halves
from nnwatch.errors import InputError
from nnwatch.kernels.fusion import fused_statistic, member_evidences
from nnwatch.kernels.layout import unpack_layers
from nnwatch.monitor.monitor import Monitor


@pytest.fixture(scope="module")
def explained(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", explain=True)
    x = f["splits"]["test"][0][:120].copy()
    x[:40] = np.random.default_rng(0).random(x[:40].shape, dtype=np.float32) * 3  # noise: flagged
    x[5, 3] = np.nan
    return mon, x, mon.score(x)


def test_only_flagged_inputs_are_explained(explained):
    mon, _, v = explained
    assert mon.decision == FUSED and v.flag.sum() >= 20
    assert all((e is not None) == bool(f) for e, f in zip(v.explanations, v.flag))
    assert v.explanations[5]["summary"] == "the input holds NaN or Inf"


def test_member_shares_are_each_members_conformal_evidence(explained):
    mon, _, v = explained
    cal = mon.calibration
    members = cal.fusion["members"]
    in_a = split_halves(cal.classes, cal.fusion["seed"])
    for b in np.flatnonzero(v.flag)[:10]:
        entry = v.explanations[b]
        if v.nonfinite_input[b]:
            continue
        by_name = {m["detector"]: m for m in entry["members"]}
        assert set(by_name) == set(members)
        assert sum(m["share"] for m in entry["members"]) == pytest.approx(1.0)
        assert entry["members"][0]["share"] >= entry["members"][-1]["share"]
        for m in members:
            block = cal.scores[in_a][:, cal.detectors.index(m)]  # all of half A: evidence is pooled over classes
            s = v.scores[m][b]
            n_ge = (block >= s).sum()
            if n_ge:  # the definition inside the calibration range: -log of the conformal p-value
                assert by_name[m]["evidence"] == pytest.approx(-np.log((1 + n_ge) / (len(block) + 1)))
            else:
                assert by_name[m]["evidence"] > np.log(len(block) + 1) - 1e-9
        counted = [m for m in entry["members"] if m["counted"]]
        assert len(counted) == (len(members) + 1) // 2 and all(m["share"] == 0 for m in entry["members"]
                                                                if not m["counted"])
        assert min(m["evidence"] for m in counted) >= max((m["evidence"] for m in entry["members"]
                                                            if not m["counted"]), default=-np.inf)
    # the strongest half of the evidence is what the fused statistic adds up
    tables = mon._fusion[0]  # noqa: SLF001  (the test compares two compilations of one rule)
    rows = np.flatnonzero(~v.nonfinite_input)
    e = -np.sort(-member_evidences(v.score_matrix[rows], v.pred[rows], tables), axis=1)
    np.testing.assert_allclose(e[:, : (e.shape[1] + 1) // 2].sum(axis=1),
                               fused_statistic(v.score_matrix[rows], v.pred[rows], tables), rtol=1e-12)


def test_neurons_are_the_furthest_outside_the_class_range(explained):
    mon, x, v = explained
    ranges = mon.profile.sections
    b = int(np.flatnonzero(v.flag & ~v.nonfinite_input)[0])
    entry = v.explanations[b]
    ws = mon.runner.workspace(1)
    mon.runner.run(mon.runner.check_input(x[b : b + 1]), ws)
    acts = np.concatenate(unpack_layers(ws.buf, 1, mon.runner.offsets), axis=1)[0].astype(np.float64)
    c = int(v.pred[b])
    row = c if mon.profile.header["class_counts"][c] >= mon.min_signature_samples else mon.profile.n_classes
    lo, hi = ranges.edges_lo[row].astype(np.float64), ranges.edges_hi[row].astype(np.float64)
    glo, ghi = ranges.edges_lo[-1].astype(np.float64), ranges.edges_hi[-1].astype(np.float64)
    width = hi - lo
    excess = np.maximum(lo - acts, 0) + np.maximum(acts - hi, 0)
    top = entry["neurons"][0]
    j = int(mon.runner.offsets[mon.manifest.layer_names.index(top["layer"])]) + top["neuron"]
    assert top["value"] == pytest.approx(acts[j], rel=1e-6)
    assert top["range"] == pytest.approx([lo[j], hi[j]], rel=1e-6)
    # the unit: the class range's width, or for a point range a share of the global range; the
    # neuron named first is the furthest out in that unit, and its excess is its distance over it
    in_unit = top["excess"] * np.where(width > 0, width, np.nan)
    if width[j] > 0:
        assert in_unit[j] == pytest.approx(excess[j], rel=1e-6)
    wide = width > 0
    assert top["excess"] >= np.max(excess[wide] / width[wide]) * (1 - 1e-9)
    assert ((glo <= ghi).all())
    assert entry["layers"][0]["outside"] == pytest.approx(max(
        ((excess[a:z] > 0).mean()) for a, z in zip(mon.runner.offsets[:-1], mon.runner.offsets[1:])))
    assert top["layer"] in entry["summary"] or "outside" in entry["summary"]


def test_explaining_is_off_by_default_and_refused_on_the_graph_engine(digits_monitor_files):
    f = digits_monitor_files
    v = Monitor(f["model"], f["profile"], providers="cpu")(f["splits"]["test"][0][:8])
    assert v.explanations is None and "why" not in v.records()[0]
    with pytest.raises(InputError, match="graph engine"):
        Monitor(f["model"], f["profile"], providers="cpu", engine="graph", explain=True)


def test_screen_explain_writes_a_why_column(digits_monitor_files, tmp_path, capsys):
    from nnwatch.cli.main import main

    f = digits_monitor_files
    x = f["splits"]["test"][0][:60].copy()
    x[:20] = np.random.default_rng(3).random(x[:20].shape, dtype=np.float32) * 3
    np.savez(tmp_path / "d.npz", x=x)
    assert main(["screen", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'd.npz'}",
                 "--out", str(tmp_path / "s.csv"), "--explain", "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert all((r["why"] != "") == (r["flag"] == "True") for r in rows)
    assert any("of the evidence" in r["why"] for r in rows)
