"""The kernel tests pass as plain Python too (NUMBA_DISABLE_JIT=1).

With the JIT off, kernel bodies run as Python lines, so coverage tools see them (stumpy's
practice), and Python's own bounds and type checks apply to every index. The tests that are
about compilation itself (bounds-checked builds, the cache, the threading layer) are left out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOUT_COMPILATION = ("test_boundscheck.py", "test_cache_flags.py", "test_threads.py", "test_jit_off.py")


def test_kernel_tests_pass_with_the_jit_off():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    ignored = [arg for name in ABOUT_COMPILATION for arg in ("--ignore", f"tests/kernels/{name}")]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels", *ignored],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1]
