"""End to end: profile, calibrate, screen and evaluate a small conv model on images:, mcap: and sliced sources."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nnwatch.cli.main import main
from tests.conftest import conv_onnx

from .conftest import encode, image_msg, needs, write_mcap

T0 = 1_700_000_000_000_000_000


def cli(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    needs("PIL", "mcap", "mcap_ros2")
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp("rec-cli")
    (d / "plain.onnx").write_bytes(conv_onnx(rng).SerializeToString())

    def blobs(n):
        base = rng.integers(60, 200, (1, 8, 8))
        return np.clip(base + rng.normal(0, 20, (n, 8, 8)), 0, 255).astype(np.uint8)

    for name, n in (("train", 80), ("calib", 60)):
        (d / name).mkdir()
        for i, img in enumerate(blobs(n)):
            (d / name / f"{i:03d}.png").write_bytes(encode(img, "PNG"))
    for cls in ("a", "b"):
        (d / "labelled" / cls).mkdir(parents=True)
        for i, img in enumerate(blobs(3)):
            (d / "labelled" / cls / f"{i}.png").write_bytes(encode(img, "PNG"))
    frames = [np.kron(img, np.ones((2, 2), np.uint8)) for img in blobs(7)]  # 16x16 camera frames
    messages = [(image_msg(f, "mono8", T0 + i, pad=2), T0 + 1000 + i) for i, f in enumerate(frames)]
    messages[0] = (image_msg(frames[0], "mono8", T0, data=b"\x00"), T0 + 1000)  # the first frame is corrupt
    write_mcap(d / "drive.mcap", {"/cam": ("sensor_msgs/msg/Image", messages)})
    (d / "gray.json").write_text(json.dumps({"channels": "gray"}))
    (d / "gray16.json").write_text(json.dumps({"channels": "gray", "resize": [8, 8]}))
    assert cli("instrument", d / "plain.onnx", "--out", d / "m.onnx") == 0
    return d


def test_profile_calibrate_screen_on_recordings(work, capsys):
    d = work
    assert cli("profile", d / "m.onnx", "--data", f"images:{d / 'train'}", "--preprocess", d / "gray.json",
               "--out", d / "p.npz", "--quiet") == 0
    assert "of 80; per class" in capsys.readouterr().out
    assert cli("calibrate", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'calib'}", "--preprocess",
               d / "gray.json", "--min-class-samples", "5", "--quiet") == 0
    assert "from 60 clean samples" in capsys.readouterr().out
    from nnwatch.profile.store import load_profile

    assert load_profile(d / "p.npz").header["preprocess"]["channels"] == "gray"  # recorded with the profile
    assert cli("info", d / "p.npz") == 0
    assert 'frames preprocessed as {"channels": "gray", "crop": null' in capsys.readouterr().out

    capsys.readouterr()
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"mcap:{d / 'drive.mcap'}:/cam[:6]",
               "--preprocess", d / "gray16.json", "--out", d / "s.csv", "--batch-size", "3", "--quiet") == 0
    err = capsys.readouterr().err  # the CLI prints warnings as "nnwatch: warning: ..." lines
    assert err.count("undecodable") == 1 and "skipped 1 undecodable frame(s): frame 0 (stamp_ns" in err
    with open(d / "s.csv") as fh:
        rows = list(csv.DictReader(fh))
    # the corrupt frame 0 has a row of its own: its ids and error, no verdict; nothing after it is lost
    assert [r["index"] for r in rows] == ["", "0", "1", "2", "3", "4"]
    assert rows[0]["error"] and rows[0]["flag"] == "" and all(r["error"] == "" for r in rows[1:])
    assert [int(r["id.frame"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert [int(r["id.stamp_ns"]) for r in rows] == [T0 + i for i in (0, 1, 2, 3, 4, 5)]
    assert [int(r["id.log_time_ns"]) for r in rows] == [T0 + 1000 + i for i in (0, 1, 2, 3, 4, 5)]
    rows = rows[1:]
    assert {"pred", "flag", "confidence", "score.coverage"} <= set(rows[0])

    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'labelled'}", "--preprocess",
               d / "gray.json", "--out", d / "s.json", "--quiet") == 0
    rows = json.loads((d / "s.json").read_text())
    assert [r["id.path"] for r in rows] == [f"{c}/{i}.png" for c in "ab" for i in range(3)]
    assert [r["label"] for r in rows] == [0, 0, 0, 1, 1, 1]

    capsys.readouterr()
    assert cli("evaluate", d / "m.onnx", d / "p.npz", "--id", f"images:{d / 'calib'}[:30]", "--preprocess",
               d / "gray16.json", "--ood", f"cam=mcap:{d / 'drive.mcap'}", "--quiet") == 0
    assert "AUROC" in capsys.readouterr().out


def profiled(d):
    """The calibrated profile of the first test, built here when that test did not run first."""
    if not (d / "p.npz").exists():
        assert cli("profile", d / "m.onnx", "--data", f"images:{d / 'train'}", "--preprocess", d / "gray.json",
                   "--out", d / "p.npz", "--quiet") == 0
        assert cli("calibrate", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'calib'}", "--preprocess",
                   d / "gray.json", "--min-class-samples", "5", "--quiet") == 0


def test_cli_refusals_name_the_problem(work, capsys):
    d = work
    profiled(d)
    assert cli("profile", d / "m.onnx", "--data", f"images:{d / 'labelled'}", "--out", d / "x.npz", "--quiet") == 2
    # the default preprocessing gives RGB: 3 channels for a 1-channel model; refused before any pass
    assert ("frames come out as (3, 8, 8) (NCHW, rgb, from --preprocess 0-1 (the default)) but the model takes "
            "(1, 8, 8) per sample; set channels (gray: 1 channel)") in capsys.readouterr().err
    assert cli("calibrate", d / "m.onnx", d / "p.npz", "--data", f"mcap:{d / 'drive.mcap'}", "--preprocess",
               d / "gray.json", "--quiet") == 2
    assert "frames come out as (1, 16, 16) (NCHW, gray" in capsys.readouterr().err
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"mcap:{d / 'drive.mcap'}:/nope", "--out",
               d / "y.csv", "--quiet") == 2
    assert "no topic /nope in the recording; image topics found: /cam" in capsys.readouterr().err
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'train'}", "--preprocess", "vgg",
               "--out", d / "y.csv", "--quiet") == 2
    assert "neither a preset (0-1, -1-1, imagenet) nor a .json file" in capsys.readouterr().err
    (d / "gray-1-1.json").write_text(json.dumps({"channels": "gray", "mean": [0.5], "std": [0.5]}))
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'calib'}[:4]", "--preprocess",
               d / "gray-1-1.json", "--out", d / "z.csv", "--quiet") == 0
    assert ("the profile was built from frames preprocessed otherwise (mean [0.0] -> [0.5], std [1.0] -> [0.5])"
            in capsys.readouterr().err)


def test_data_help_names_the_recordings(capsys):
    with pytest.raises(SystemExit):
        main(["screen", "--help"])
    out = capsys.readouterr().out
    for text in ("images:DIR", "video:FILE", "mcap:FILE[:TOPIC]", "rosbag:DIR|FILE.bag[:TOPIC]", "SOURCE[start:stop]",
                 "--preprocess"):
        assert text in out


def test_estimator_splits_a_recording_in_contiguous_blocks(work, monkeypatch):
    import nnwatch.estimator as est
    from nnwatch.recordings import Preprocess
    from nnwatch.sources import open_source

    seen = {}
    monkeypatch.setattr(est, "build_profile", lambda model, data, **kw: seen.setdefault("profile", data.x))
    monkeypatch.setattr(est, "Monitor", lambda *a, **kw: "monitor")
    monkeypatch.setattr(est, "calibrate", lambda mon, data, **kw: seen.setdefault("calibration", data.x))
    src = open_source(f"mcap:{work / 'drive.mcap'}", Preprocess(channels="gray", resize=(8, 8)))
    with pytest.warns(UserWarning, match="frame 0"):  # the fixture's corrupt first frame
        est.MonitorEstimator(work / "m.onnx", calibration_fraction=0.5).fit(src)
    frames = np.concatenate([x for x, _ in src.batches(10)])
    np.testing.assert_array_equal(seen["profile"], frames[:3])  # the first half profiles, the last calibrates
    np.testing.assert_array_equal(seen["calibration"], frames[3:])


def test_evaluate_api_takes_recordings(work):
    from nnwatch.eval.evaluate import evaluate
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.sources import open_source

    gray = json.loads((work / "gray16.json").read_text())
    profile = work / "api-profile.npz"
    assert cli("profile", work / "m.onnx", "--data", f"images:{work / 'train'}", "--preprocess", work / "gray.json",
               "--out", profile, "--quiet") == 0
    assert cli("calibrate", work / "m.onnx", profile, "--data", f"images:{work / 'calib'}", "--preprocess",
               work / "gray.json", "--min-class-samples", "5", "--quiet") == 0
    mon = Monitor(work / "m.onnx", profile, providers="cpu")
    clean = open_source(f"images:{work / 'calib'}[:20]", {"channels": "gray"})
    with pytest.warns(UserWarning, match="frame 0"):
        ev = evaluate(mon, clean, {"cam": open_source(f"mcap:{work / 'drive.mcap'}", gray)})
    assert ev.sets["cam"]["n"] == 6


def test_screen_on_arrays_keeps_its_columns(work, capsys):
    d = work
    profiled(d)
    rng = np.random.default_rng(5)
    np.savez(d / "frames.npz", x=rng.random((9, 1, 8, 8), dtype=np.float32), y=np.arange(9) % 5)
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"npz:{d / 'frames.npz'}[2:]", "--out", d / "a.csv",
               "--stream", "--batch-size", "4", "--quiet") == 0
    with open(d / "a.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["index"] for r in rows] == [str(i) for i in range(7)]
    assert [r["label"] for r in rows] == [str(i % 5) for i in range(2, 9)]
    assert {"stream.statistic", "stream.class_statistic", "stream.alarm", "flag", "score.coverage"} <= set(rows[0])
    assert not [k for k in rows[0] if k.startswith("id.")]  # arrays carry no ids; the index names the row


def test_the_model_leaves_the_decoder_its_core(work, monkeypatch, capsys):
    """A recording decoded in a forked process gets onnxruntime threads for the other cores, not
    spinning; --threads overrides; array data keeps onnxruntime's defaults."""
    import os

    import nnwatch.monitor.monitor as monitor_module
    from nnwatch.recordings.prefetch import can_fork

    d = work
    profiled(d)
    seen = []
    original = monitor_module.Monitor.__init__

    def spy(self, *args, **kwargs):
        seen.append((kwargs.get("threads"), kwargs.get("spinning", True)))
        original(self, *args, **kwargs)

    monkeypatch.setattr(monitor_module.Monitor, "__init__", spy)
    np.savez(d / "arrays.npz", x=np.zeros((4, 1, 8, 8), np.float32))
    gray = ("--preprocess", d / "gray.json")
    for data, extra in ((f"images:{d / 'calib'}[:8]", gray), (f"images:{d / 'calib'}[:8]", (*gray, "--threads", "3")),
                        (f"npz:{d / 'arrays.npz'}", ())):
        assert cli("screen", d / "m.onnx", d / "p.npz", "--data", data, "--out", d / "t.csv", "--quiet", *extra) == 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    beside = (max(1, cores - 1), False) if can_fork() else (None, True)
    assert seen == [beside, (3, True), (None, True)]


def test_undecodable_frames_become_rows_with_their_error(work, tmp_path, capsys):
    """Corrupt files anywhere in a folder (first, middle, last) each get a row with their id and
    error; every decodable frame is still screened, in order."""
    d = work
    profiled(d)
    folder = tmp_path / "frames"
    folder.mkdir()
    names = sorted(p.name for p in (d / "calib").iterdir())[:7]
    for name in names:
        (folder / name).write_bytes((d / "calib" / name).read_bytes())
    bad = ["000_first.png", "003_mid.png", "999_last.png"]
    for name in bad:
        (folder / name).write_bytes(b"not a png")
    capsys.readouterr()
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{folder}", "--preprocess", d / "gray.json",
               "--out", tmp_path / "s.json", "--batch-size", "3", "--quiet") == 0
    out = capsys.readouterr().out
    assert "7 inputs" in out and "3 undecodable frame(s) skipped, each a row with its error" in out
    rows = json.loads((tmp_path / "s.json").read_text())
    assert sorted(r["id.path"] for r in rows) == sorted(names + bad)
    errors = {r["id.path"]: r for r in rows if r["error"]}
    assert set(errors) == set(bad) and all(r["flag"] is None and r["index"] is None for r in errors.values())
    screened = [r for r in rows if not r["error"]]
    assert [r["index"] for r in screened] == list(range(7)) and [r["id.path"] for r in screened] == names


def test_a_recording_with_no_decodable_frame_is_refused(work, tmp_path, capsys):
    d = work
    profiled(d)
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"not a png")
    out = tmp_path / "s.csv"
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{folder}", "--preprocess", d / "gray.json",
               "--out", out, "--quiet") == 2
    assert "no frames to read: all 2 were undecodable" in capsys.readouterr().err and not out.exists()
