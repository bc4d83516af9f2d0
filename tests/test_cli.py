"""The CLI on an ONNX classifier nnwatch did not produce (built with onnx.helper + numpy)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from nnwatch.cli.main import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, digits_mlp):
    model, splits = digits_mlp
    d = tmp_path_factory.mktemp("cli")
    (d / "foreign.onnx").write_bytes(model.SerializeToString())
    for name, (x, y) in splits.items():
        np.savez(d / f"{name}.npz", x=x, y=y)
    rng = np.random.default_rng(1)
    np.savez(d / "noise.npz", x=rng.random((150, 64), dtype=np.float32))
    x_test = splits["test"][0]
    np.savez(d / "inverted.npz", x=(1.0 - x_test).astype(np.float32))
    return d


def cli(*args):
    return main([str(a) for a in args])


def test_full_pipeline(workdir, capsys):
    d = workdir
    assert cli("instrument", d / "foreign.onnx", "--out", d / "m.onnx") == 0
    assert "1 monitored layers" in capsys.readouterr().out
    assert cli("profile", d / "m.onnx", "--data", f"npz:{d / 'train.npz'}", "--out", d / "p.npz", "--quiet") == 0
    out = capsys.readouterr().out
    assert "trusted samples" in out
    assert cli("calibrate", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'val.npz'}", "--fpr", "0.05",
               "--min-class-samples", "10", "--quiet") == 0
    assert "thresholds for" in capsys.readouterr().out
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'test.npz'}", "--out", d / "s.json",
               "--quiet") == 0
    rows = json.loads((d / "s.json").read_text())
    assert len(rows) == 397 and {"index", "pred", "flag", "confidence", "score.coverage", "label"} <= set(rows[0])
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'noise.npz'}", "--out", d / "s.csv",
               "--quiet") == 0
    with open(d / "s.csv") as fh:
        noise_rows = list(csv.DictReader(fh))
    assert len(noise_rows) == 150
    assert np.mean([r["flag"] == "True" for r in noise_rows]) > 0.3  # six times the 5% target
    capsys.readouterr()
    assert cli("evaluate", d / "m.onnx", d / "p.npz", "--id", f"npz:{d / 'test.npz'}",
               "--ood", f"npz:{d / 'noise.npz'}", "--ood", f"npz:{d / 'inverted.npz'}",
               "--json", d / "e.json", "--report", d / "e.html") == 0
    printed = capsys.readouterr().out
    assert "AUROC" in printed and "mahalanobis" in printed
    result = json.loads((d / "e.json").read_text())
    aurocs = {(r["set"].split("/")[-1], r["detector"]): r["auroc"] for r in result["rows"]}
    assert aurocs[("noise.npz", "coverage")] > 0.9
    assert {"auroc", "aupr", "fpr_at_95tpr", "tpr_at_5fpr"} <= set(result["rows"][0])
    html = (d / "e.html").read_text()
    assert html.count("<svg") >= 4 and "ROC" in html
    assert cli("bench", d / "m.onnx", d / "p.npz", "--iters", "30", "--json", d / "b.json") == 0
    bench = json.loads((d / "b.json").read_text())
    assert bench["monitored"]["ratio_p50"] > 0 and bench["machine"]["cores"] >= 1


def test_errors_exit_2_with_message(workdir, capsys):
    d = workdir
    assert cli("profile", d / "foreign.onnx", "--data", f"npz:{d / 'train.npz'}", "--out", d / "x.npz") == 2
    assert "not instrumented" in capsys.readouterr().err
    assert cli("instrument", d / "foreign.onnx", "--out", d / "y.onnx", "--layers", "nope") == 2
    assert "'nope' not found; available" in capsys.readouterr().err
    assert cli("instrument", d / "missing.onnx", "--out", d / "y.onnx") == 2
    assert not (d / "y.onnx").exists()
    (d / "garbage.npz").write_bytes(b"garbage")
    cli("instrument", d / "foreign.onnx", "--out", d / "m2.onnx")
    assert cli("screen", d / "m2.onnx", d / "garbage.npz", "--data", f"npz:{d / 'test.npz'}", "--out", d / "z.json") == 2
    assert "not a .npz archive" in capsys.readouterr().err


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "nnwatch", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("export", "instrument", "profile", "calibrate", "screen", "evaluate", "bench", "demo"):
        assert command in proc.stdout


def test_export_with_weights(tmp_path, capsys):
    import torch

    from nnwatch.eval.models import digits_cnn

    torch.manual_seed(3)
    net = digits_cnn()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    assert cli("export", "nnwatch.eval.models:digits_cnn", "--input-shape", "2,1,8,8", "--out", tmp_path / "e.onnx",
               "--weights", tmp_path / "w.pt", "--layers", "3,9") == 0
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], want, rtol=1e-4, atol=1e-5)


def test_export_from_torch_factory(tmp_path, capsys):
    assert cli("export", "nnwatch.eval.models:digits_cnn", "--input-shape", "1,1,8,8", "--out", tmp_path / "e.onnx") == 0
    assert "4 monitored layers" in capsys.readouterr().out
    assert cli("export", "nnwatch.eval.models:digits_cnn", "--input-shape", "1,x", "--out", tmp_path / "f.onnx") == 2
