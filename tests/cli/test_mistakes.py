"""Common mistakes end in exit code 2 and a message naming the problem and what is accepted.

Each case is a command a new user actually typed (issue: a new user's first hour). Checks:
exit code 2, the message, no traceback, and no output file left behind.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nnwatch.cli.main import main
from tests.conftest import conv_onnx, mlp_onnx

FACTORIES = {
    "syntax.py": "def make(:\n",
    "raises.py": "def make():\n    raise RuntimeError('no GPU here')\n",
    "notmodule.py": "def make():\n    return 42\n",
    "good.py": ("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"),
}


@pytest.fixture(scope="module")
def d(tmp_path_factory, digits_monitor_files):
    import torch

    f = digits_monitor_files
    d = tmp_path_factory.mktemp("mistakes")
    (d / "m.onnx").write_bytes(f["model"].read_bytes())
    (d / "p.npz").write_bytes(f["profile"].read_bytes())
    x, y = f["splits"]["test"]
    np.savez(d / "test.npz", x=x, y=y)
    np.savez(d / "flat3d.npz", x=x.reshape(-1, 8, 8))
    (d / "not.npz").write_text("x,y\n1,2\n")
    for name, text in FACTORIES.items():
        (d / name).write_text(text)
    torch.save({"w": [1, 2]}, d / "notstate.pt")
    torch.save(torch.nn.Linear(3, 2).state_dict(), d / "other.pt")
    fixed = mlp_onnx(np.ones((64, 8)), np.zeros(8), np.ones((8, 10)), np.zeros(10), batch=1)
    (d / "fixed_plain.onnx").write_bytes(fixed.SerializeToString())
    (d / "conv.onnx").write_bytes(conv_onnx(np.random.default_rng(0)).SerializeToString())
    return d


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out + err


def cases(d):
    m, p, data = d / "m.onnx", d / "p.npz", f"npz:{d / 'test.npz'}"
    return [
        (["profile", m, "--data", data, "--out", d / "nodir" / "p.npz"], "folder .*nodir does not exist"),
        (["calibrate", m, p, "--data", data, "--out", d / "nodir" / "p.npz"], "folder .*nodir does not exist"),
        (["screen", m, p, "--data", data, "--out", d / "nodir" / "s.json"], "folder .*nodir does not exist"),
        (["screen", m, p, "--data", data, "--out", d / "s.json", "--stream", "--ray"], "--stream needs the frames in order"),
        (["instrument", d / "fixed_plain.onnx", "--out", d / "nodir" / "x.onnx"], "folder .*nodir does not exist"),
        (["export", f"{d / 'good.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "nodir" / "x.onnx"],
         "folder .*nodir does not exist"),
        (["evaluate", m, p, "--id", data, "--ood", data, "--report", d / "nodir" / "r.html"], "nodir does not exist"),
        (["bench", m, p, "--json", d / "nodir" / "b.json"], "nodir does not exist"),
        (["profile", m, "--data", data, "--out", d], "is a folder; give a file name"),
        (["export", f"{d / 'good.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx", "--weights",
          d / "missing.pt"], "--weights .*missing.pt: file does not exist"),
        (["export", f"{d / 'good.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx", "--weights",
          d / "notstate.pt"], "not a readable torch state dict|expected a state dict"),
        (["export", f"{d / 'good.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx", "--weights",
          d / "other.pt"], "does not fit this module"),
        (["export", f"{d / 'syntax.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx"],
         "importing .*syntax.py.* failed: SyntaxError"),
        (["export", f"{d / 'raises.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx"],
         "make\\(\\) from .* raised RuntimeError: no GPU here"),
        (["export", f"{d / 'notmodule.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx"],
         "returned int, not a torch.nn.Module"),
        (["export", "nofile.py:make", "--input-shape", "1,1,8,8", "--out", d / "e.onnx"],
         "file nofile.py does not exist"),
        (["export", f"{d / 'good.py'}:make", "--input-shape", "1,3,8,8", "--out", d / "e.onnx"],
         "does not accept an input of shape \\(1, 3, 8, 8\\)"),
        (["bench", d / "fixed.onnx", d / "fixed.npz", "--batch", "4"], "fixed batch of 1.*--batch 1"),
        (["screen", m, p, "--data", f"npz:{d / 'flat3d.npz'}", "--out", d / "s.json"],
         "expected shape \\(batch, 64\\), got \\(\\d+, 8, 8\\)"),
        (["screen", m, p, "--data", f"npz:{d / 'not.npz'}", "--out", d / "s.json"], "is not an .npz archive"),
        (["screen", m, p, "--data", f"idx:{d}:val", "--out", d / "s.json"], "split 'val' is not one of train, test"),
        (["profile", m, "--data", data, "--out", d / "k.npz", "--k-top", "1000"], "k_top=1000 is larger than layer"),
        (["info", d / "nothere.onnx"], "does not exist"),
    ]


ARGPARSE = [
    ["calibrate", "M", "P", "--data", "x", "--batch-size", "0"],
    ["evaluate", "M", "P", "--id", "x", "--ood", "y", "--batch-size", "0"],
    ["bench", "M", "P", "--iters", "0"],
    ["screen", "M", "P", "--data", "x", "--out", "s.json", "--limit", "-5"],
    ["instrument", "M", "--out", "o.onnx", "--max-taps", "0"],
    ["profile", "M", "--data", "x", "--out", "p.npz", "--rare-rate", "2"],
    ["profile", "M", "--data", "x", "--out", "p.npz", "--ray", "--workers", "0"],
    ["screen", "M", "P", "--data", "x", "--out", "s.json", "--providers", "gpu"],
    ["calibrate", "M", "P", "--data", "x", "--fpr", "1.5"],
    ["calibrate", "M", "P", "--data", "x", "--fuse", "knn,bogus"],
    ["calibrate", "M", "P", "--data", "x", "--fusion-budget", "-0.5"],
    ["screen", "M", "P", "--data", "x", "--out", "s.json", "--stream", "--delta", "0"],
]


def test_every_listed_mistake_exits_2_with_a_message(d, capsys):
    fixed = d / "fixed.onnx"
    assert main(["instrument", str(d / "fixed_plain.onnx"), "--out", str(fixed)]) == 0
    x = np.random.default_rng(0).random((200, 64), dtype=np.float32)
    np.savez(d / "fixed_train.npz", x=x)
    assert main(["profile", str(fixed), "--data", f"npz:{d / 'fixed_train.npz'}", "--out", str(d / "fixed.npz"),
                 "--quiet", "--k-top", "2"]) == 0
    capsys.readouterr()
    import re

    for args, message in cases(d):
        code, text = run(capsys, *args)
        assert code == 2, (args, text)
        assert re.search(message, text), (args, text)
    assert not (d / "nodir").exists() and not (d / "e.onnx").exists() and not (d / "k.npz").exists()


@pytest.mark.parametrize("args", ARGPARSE, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_bad_numbers_are_refused_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected" in err or "invalid choice" in err


def test_missing_torch_names_the_extra(d, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a base install
    code, text = run(capsys, "export", f"{d / 'good.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "t.onnx")
    assert code == 2 and "torch is not installed" in text and "nnwatch[torch]" in text
    code, text = run(capsys, "demo", "--out", d / "demo")
    assert code == 2 and "torch is not installed" in text


def test_calibrating_on_too_little_data_says_which_classes_pooled(d, capsys):
    code, text = run(capsys, "calibrate", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'test.npz'}",
                     "--limit", "50", "--out", d / "small.npz", "--quiet")
    assert code == 0 and "warning: classes" in text and "calibration samples each" in text


def test_demo_writes_into_an_existing_folder(d, capsys, monkeypatch):
    from nnwatch.cli import commands

    ran = []
    monkeypatch.setattr(commands, "cmd_demo", lambda args: ran.append(args.out) or 0)
    (d / "demo-out").mkdir(exist_ok=True)
    assert main(["demo", "--out", str(d / "demo-out")]) == 0 and ran  # a folder is what demo writes into
    code, text = run(capsys, "demo", "--out", d / "nodir" / "demo")
    assert code == 2 and "does not exist" in text


def test_info_describes_model_and_profile(d, capsys):
    code, text = run(capsys, "info", d / "m.onnx")
    assert code == 0 and "instrumented by nnwatch" in text and "taps" in text
    code, text = run(capsys, "info", d / "p.npz")
    assert code == 0 and "calibrated: fpr 0.05" in text and "statistics digest" in text
