"""Run the kernel tests again with Numba's bounds checking on (NUMBA_BOUNDSCHECK=1).

Numba does not check indices by default: an out-of-bounds write corrupts memory silently.
With the flag, the same write raises IndexError, so a kernel that indexes out of bounds for
any tested input fails here instead of corrupting a process later. The on-disk kernel cache
is turned off in the child so that every kernel is compiled with the checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = """
import numpy as np
from nnwatch.kernels._jit import njit

@njit()
def read(a, i):
    return a[i]

try:
    read(np.zeros(2), 5)
except IndexError:
    print("bounds checked")
"""


def test_kernel_tests_pass_with_bounds_checking():
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NNWATCH_NUMBA_CACHE="0")
    probe = subprocess.run([sys.executable, "-c", SENTINEL], env=env, capture_output=True, text=True, cwd=ROOT)
    assert "bounds checked" in probe.stdout, probe.stderr  # the flag really is active in the child
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/kernels", "tests/monitor/test_shared_runner.py", "tests/monitor/test_decide.py",
         "tests/monitor/test_fusion.py", "tests/monitor/test_stream.py", "tests/monitor/test_verdicts.py",
         "--deselect", "tests/kernels/test_boundscheck.py::test_kernel_tests_pass_with_bounds_checking"],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
