"""Common mistakes end in exit code 2 and a message naming the problem and what is accepted.

Each case is a command a new user actually typed (issue: a new user's first hour). Checks:
exit code 2, the message, no traceback, and no output file left behind.
"""

from __future__ import annotations

import hashlib
import subprocess
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
        (["screen", m, p, "--data", data, "--out", m, "--ray"], "is a file; nnwatch screen writes a folder there"),
        (["instrument", d / "fixed_plain.onnx", "--out", d / "nodir" / "x.onnx"], "folder .*nodir does not exist"),
        (["instrument", d / "fixed_plain.onnx", "--out", d / "x.onnx", "--layers", "per-scale"],
         "per-scale is for object detectors .*--layers auto"),
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
        # nothing a user gives is destroyed: an output that is an input, or of the wrong kind
        (["profile", m, "--data", data, "--out", m], "must end in .npz"),
        (["profile", m, "--data", data, "--out", d / "test.npz"], "same file as the input --data"),
        (["profile", m, "--data", data, "--out", d / "m.npz"], None),  # a profile may be named like the model
        (["calibrate", m, p, "--data", data, "--out", m], "must end in .npz"),
        (["calibrate", m, p, "--data", data, "--out", d / "test.npz"], "same file as the input --data"),
        (["instrument", d / "conv.onnx", "--out", d / "conv.onnx"], "same file as the input MODEL"),
        (["instrument", d / "conv.onnx", "--out", d / "." / "conv.onnx"], "same file as the input MODEL"),
        (["instrument", d / "conv.onnx", "--out", d / "conv_link.onnx"], "same file as the input MODEL"),
        (["screen", m, p, "--data", data, "--out", d / "scores.npz"], "must end in .json or .csv"),
        (["evaluate", m, p, "--id", data, "--ood", data, "--json", d / "r.html"], "must end in .json"),
        (["evaluate", m, p, "--id", data, "--ood", data, "--report", d / "r.json"], "must end in .html"),
        (["export", f"{d / 'good.py'}:make", "--input-shape", "1,1,8,8", "--out", d / "good.py"], "must end in .onnx"),
        # swapped arguments, percentages, labels
        (["screen", p, m, "--data", data, "--out", d / "s.json"], "look swapped: the order is nnwatch screen MODEL"),
        (["calibrate", p, m, "--data", data], "not an ONNX model.*the order is nnwatch calibrate MODEL.onnx PROFILE"),
        (["profile", m, "--data", f"npz:{d / 'onebased.npz'}", "--out", d / "k.npz"],
         "labels are >= 10.*look 1-based: subtract 1"),
        (["instrument", d / "regressor.onnx", "--out", d / "k.onnx"], "1 column; nnwatch monitors classifiers"),
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

    (d / "conv_link.onnx").unlink(missing_ok=True)
    (d / "conv_link.onnx").symlink_to(d / "conv.onnx")
    x, y = np.load(d / "test.npz")["x"], np.load(d / "test.npz")["y"]
    np.savez(d / "onebased.npz", x=x, y=y + 1)
    regressor = mlp_onnx(np.ones((64, 8)), np.zeros(8), np.ones((8, 1)), np.zeros(1))
    (d / "regressor.onnx").write_bytes(regressor.SerializeToString())
    inputs = [d / n for n in ("m.onnx", "p.npz", "test.npz", "conv.onnx", "good.py", "onebased.npz")]
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in inputs}
    for args, message in cases(d):
        code, text = run(capsys, *args)
        if message is None:
            assert code == 0, (args, text)
            continue
        assert code == 2, (args, text)
        assert re.search(message, text), (args, text)
        assert "pass 1/2" not in text, (args, "refused only after a pass over the data")
    assert not (d / "nodir").exists() and not (d / "e.onnx").exists() and not (d / "k.npz").exists()
    assert not (d / "k.onnx").exists() and not (d / "scores.npz").exists()
    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in inputs} == before


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
    assert code == 2 and "torch is not installed" in text and ".[demo]" in text  # as the README installs it


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


def test_percentages_and_misplaced_options_get_a_hint(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "M", "P", "--data", "x", "--fpr", "5"])
    assert exc.value.code == 2 and "did you mean 0.05 (5%)?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["screen", "M", "P", "--data", "x", "--out", "s.json", "--fpr", "0.01"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unrecognized arguments: --fpr 0.01" in err and "nnwatch calibrate" in err
    with pytest.raises(SystemExit):
        main(["screen", "M", "P", "--data", "x", "--out", "s.json", "--bach-size", "3"])
    assert "did you mean --batch-size?" in capsys.readouterr().err


def test_top_level_help_shows_the_workflow_in_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    steps = [out.index(f"nnwatch {c} ") for c in ("instrument", "profile", "calibrate", "screen", "evaluate")]
    assert steps == sorted(steps)


def test_warnings_print_as_one_line(d, capsys):
    x, y = np.load(d / "test.npz")["x"], np.load(d / "test.npz")["y"]
    np.savez(d / "scaled.npz", x=x * 255, y=y)  # a 0-255 image for a model trained on 0-1
    code, text = run(capsys, "screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'scaled.npz'}", "--out",
                     d / "scaled.csv", "--quiet")
    assert code == 0
    lines = [line for line in text.splitlines() if "warning" in line.lower()]
    assert lines and all(line.startswith("nnwatch: warning: ") for line in lines), lines
    assert "UserWarning" not in text and ".py:" not in text


def test_calibrating_on_the_training_data_is_named(d, capsys, digits_monitor_files):
    f = digits_monitor_files
    x, y = f["splits"]["train"]
    np.savez(d / "train.npz", x=x, y=y)
    code, text = run(capsys, "profile", d / "m.onnx", "--data", f"npz:{d / 'train.npz'}", "--out", d / "tp.npz",
                     "--quiet")
    assert code == 0
    code, text = run(capsys, "calibrate", d / "m.onnx", d / "tp.npz", "--data", f"npz:{d / 'train.npz'}", "--limit",
                     "300", "--quiet")
    assert code == 0 and "nnwatch: warning: all 300 calibration inputs" in text and "training data" in text
    code, text = run(capsys, "calibrate", d / "m.onnx", d / "tp.npz", "--data", f"npz:{d / 'test.npz'}", "--quiet")
    assert code == 0 and "training data" not in text


def test_screen_output_carries_the_labels(d, capsys):
    import csv

    code, _ = run(capsys, "screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'test.npz'}", "--out",
                  d / "labelled.csv", "--quiet")
    rows = list(csv.DictReader((d / "labelled.csv").open()))
    y = np.load(d / "test.npz")["y"]
    assert code == 0 and [int(r["label"]) for r in rows] == y.tolist()


@pytest.mark.parametrize("command", ["info", "evaluate"])
def test_a_reader_that_stops_early_costs_nothing(d, command):
    """``nnwatch ... | head``: files are written, the exit status is 0, no traceback."""
    report, results = d / f"pipe-{command}.html", d / f"pipe-{command}.json"
    np.savez(d / "noise.npz", x=np.random.default_rng(0).random((100, 64), dtype=np.float32))
    args = {"info": ["info", str(d / "p.npz")],
            "evaluate": ["evaluate", str(d / "m.onnx"), str(d / "p.npz"), "--id", f"npz:{d / 'test.npz'}", "--ood",
                         f"noise=npz:{d / 'noise.npz'}", "--report", str(report), "--json", str(results),
                         "--quiet"]}[command]
    proc = subprocess.Popen([sys.executable, "-m", "nnwatch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    if command == "evaluate":
        assert report.is_file() and results.is_file()


def test_screen_into_a_named_pipe_keeps_the_pipe(d, capsys):
    """``--out`` naming a FIFO writes through it (it is not replaced by a regular file); a reader
    that leaves early stops the command with 141, the shell's code for it, and no traceback."""
    import os
    import stat
    import threading

    for reader_reads, expected in ((None, 0), (40, 141)):
        fifo = d / f"scores-{expected}.csv"
        os.mkfifo(fifo)
        got = []

        def read(fifo=fifo, n=reader_reads):
            with open(fifo, "rb") as fh:
                got.append(fh.read() if n is None else fh.read(n))

        reader = threading.Thread(target=read)
        reader.start()
        code, text = run(capsys, "screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'test.npz'}", "--out",
                         fifo, "--quiet")
        reader.join(timeout=60)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert got and got[0]
        if expected == 0:
            assert code == 0 and got[0].count(b"\n") == len(np.load(d / "test.npz")["y"]) + 1
            assert len(got[0]) > 2 ** 16  # more than a pipe holds: the early reader below must cut the writer off
        else:
            assert code == 141 and "reader of an output pipe closed it" in text
