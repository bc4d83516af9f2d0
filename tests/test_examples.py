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
