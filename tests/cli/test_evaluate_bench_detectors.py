"""evaluate and bench do what a user means: no calibration needed to compare, the model's own errors,
the detectors the monitor runs, --detector NAME:key=value."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.cli.main import main


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_mlp):
    model, splits = digits_mlp
    d = tmp_path_factory.mktemp("evalcli")
    (d / "plain.onnx").write_bytes(model.SerializeToString())
    for name, (x, y) in splits.items():
        np.savez(d / f"{name}.npz", x=x, y=y)
    np.savez(d / "noise.npz", x=np.random.default_rng(1).random((120, 64), dtype=np.float32))
    assert main(["instrument", str(d / "plain.onnx"), "--out", str(d / "m.onnx")]) == 0
    assert main(["profile", str(d / "m.onnx"), "--data", f"npz:{d / 'train.npz'}", "--out", str(d / "raw.npz"),
                 "--quiet"]) == 0
    return d


def test_evaluate_without_calibration_compares_what_needs_none(work, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(work / "m.onnx"), str(work / "raw.npz"), "--id", f"npz:{work / 'test.npz'}",
                 "--ood", f"noise=npz:{work / 'noise.npz'}", "--json", str(work / "e.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "note: the fused verdict" in out and "needs a calibration" in out
    rows = json.loads((work / "e.json").read_text())["rows"]
    assert {r["detector"] for r in rows} >= {"coverage", "msp", "mahalanobis"} and "fused" not in {r["detector"] for r in rows}


def test_evaluate_errors_reports_risk_coverage_per_detector(work, capsys):
    assert main(["calibrate", str(work / "m.onnx"), str(work / "raw.npz"), "--data", f"npz:{work / 'val.npz'}",
                 "--out", str(work / "cal.npz"), "--quiet", "--detector", "react:percentile=95"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(work / "m.onnx"), str(work / "cal.npz"), "--id", f"npz:{work / 'test.npz'}",
                 "--errors", "--json", str(work / "err.json"), "--report", str(work / "err.html"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "AURC" in out and "selective risk at flag" in out
    errors = json.loads((work / "err.json").read_text())["errors"]
    assert {"msp", "fused", "mahalanobis"} <= set(errors)
    for entry in errors.values():
        lo, hi = entry["aurc_ci"]
        assert lo <= entry["aurc"] <= hi and entry["e_aurc"] >= -1e-12 and 0 <= entry["at_flag"]["coverage"] <= 1
    assert "risk-coverage" in (work / "err.html").read_text()


def test_evaluate_errors_needs_labels(work, capsys):
    code = main(["evaluate", str(work / "m.onnx"), str(work / "cal.npz"), "--id", f"npz:{work / 'noise.npz'}",
                 "--errors", "--quiet"])
    assert code == 2 and "has no labels" in capsys.readouterr().err


def test_a_calibrated_parameter_is_used_later_and_a_different_one_refused(work, capsys):
    capsys.readouterr()
    assert main(["screen", str(work / "m.onnx"), str(work / "cal.npz"), "--data", f"npz:{work / 'test.npz'}",
                 "--out", str(work / "s.csv"), "--quiet", "--detector", "react"]) == 0
    code = main(["screen", str(work / "m.onnx"), str(work / "cal.npz"), "--data", f"npz:{work / 'test.npz'}",
                 "--out", str(work / "s2.csv"), "--quiet", "--detector", "react:percentile=80"])
    err = capsys.readouterr().err
    assert code == 2 and "react" in err and "calibrate again" in err


@pytest.mark.parametrize("spec, match", [("react:pct=1", "takes no parameter 'pct'"),
                                          ("react:percentile", "is not key=value"), ("nope", "not found")])
def test_bad_detector_options_exit_2_before_any_work(work, capsys, spec, match):
    with pytest.raises(SystemExit) as exc:  # argparse's own exit: the option is refused while parsing
        main(["screen", str(work / "m.onnx"), str(work / "cal.npz"), "--data", f"npz:{work / 'test.npz'}",
              "--out", str(work / "never.csv"), "--detector", spec])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and match in err and "Traceback" not in err and not (work / "never.csv").exists()


def test_bench_times_what_the_monitor_runs_and_names_the_costliest_part(work, capsys):
    capsys.readouterr()
    assert main(["bench", str(work / "m.onnx"), str(work / "cal.npz"), "--iters", "20", "--threads", "1",
                 "--json", str(work / "b.json")]) == 0
    out = capsys.readouterr().out
    record = json.loads((work / "b.json").read_text())
    assert "the costliest part of its scoring" in out
    assert "react" not in record["detectors"] and "fused" in record["detectors"]  # not run by the monitor


def test_one_detector_set_twice_differently_is_refused(work, capsys):
    code = main(["screen", str(work / "m.onnx"), str(work / "cal.npz"), "--data", f"npz:{work / 'test.npz'}",
                 "--out", str(work / "twice.csv"), "--detector", "react:percentile=95", "--detector",
                 "react:percentile=90"])
    assert code == 2 and "set 'react' twice" in capsys.readouterr().err and not (work / "twice.csv").exists()
