"""The perception-loop example runs offline and reports its summary."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_perception_loop_runs():
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "perception_loop.py"), "--frames", "90",
                           "--hz", "60", "--quiet", "--budget-ms", "1000"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "summary" in out and "deadlines missed" in out and "stream alarms at frames" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    # The corrupted burst must be mostly flagged, clean frames mostly not.
    corrupted = lines["corrupted"]
    share = int(corrupted.split("(")[1].split("%")[0])
    assert share >= 50, out
    clean_share = int(lines["clean"].split("(")[1].split("%")[0])
    assert clean_share <= 25, out


def test_detector_example_writes_a_detector_and_scenes_its_printed_commands_read(tmp_path):
    """The README's detector example (few epochs here): its files, and its printed instrument command as written."""
    import shlex

    import numpy as np
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "detector_scenes.py"), "--out", "sc", "--epochs",
                           "1"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("trusted", "clean", "live"):
        assert np.load(tmp_path / "sc" / f"{name}.npz")["x"].shape[1:] == (1, 96, 96)
    with np.load(tmp_path / "sc" / "noise.npz") as z:
        assert z["boxes"].shape[2] == 4 and z["anomalous"].any()
    commands = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("nnwatch ")]
    assert [c.split()[1] for c in commands] == ["instrument", "profile", "calibrate", "screen", "evaluate"]
    done = subprocess.run([sys.executable, "-m", "nnwatch", *shlex.split(commands[0])[1:]], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "sc" / "monitored.onnx").is_file(), done.stderr[-2000:]
    bad = subprocess.run([sys.executable, str(REPO / "examples" / "detector_scenes.py"), "--epochs", "0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "--epochs must be at least 1" in bad.stderr
