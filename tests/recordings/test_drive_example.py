"""The README's synthetic drive: the example builds it, and the printed command screens it as written."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("mcap_ros2", reason="the drive example needs the recordings extra (in the test extra)")


def test_the_drive_example_builds_a_recording_its_printed_command_screens(tmp_path):
    out = tmp_path / "drive"
    built = subprocess.run([sys.executable, str(REPO / "examples" / "drive_recording.py"), "--out", str(out),
                            "--seconds", "20"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    command = built.stdout.splitlines()[-1].strip()
    assert command.startswith("nnwatch screen") and "--preprocess" not in command  # the model keeps it
    argv = shlex.split(command)
    screened = subprocess.run([sys.executable, "-m", "nnwatch", *argv[1:]], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
    assert screened.returncode == 0, screened.stderr[-2000:]
    assert (out / "verdicts.mcap").stat().st_size > 0 and (out / "timeline.html").stat().st_size > 0
    segments = json.loads((out / "segments.json").read_text())
    assert set(segments) >= {"clean", "attack"}
    # the screen's own summary line: everything flagged cannot pass for a monitor that sees the attack
    summary = next(line for line in screened.stdout.splitlines() if line.startswith("wrote"))
    share = float(summary.split("(")[1].split("%")[0])
    assert 0 < share < 60, summary
