"""The on-disk kernel cache is keyed by the flags that change generated code.

Numba's own cache key ignores NUMBA_BOUNDSCHECK: a kernel compiled in a bounds-checked run and
cached would be loaded by every later normal run (slower, and in the last bit different where
fastmath contractions were given up). Here a cached kernel that reads out of bounds is compiled
first with the flag and the cache on, then run again without the flag against the same cache:
the second run must get an unchecked kernel, and the bit-exact tests must pass in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nnwatch.kernels._jit import DEFAULT_CODEGEN, flag_cache_dir

ROOT = Path(__file__).resolve().parents[2]
KERNEL = """
import numpy as np
from nnwatch.kernels._jit import njit


@njit()
def read(a, i):
    return a[i]
"""
PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import probe_kernel
try:
    probe_kernel.read(np.zeros(2), 5)
    print("unchecked")
except IndexError:
    print("checked")
"""


def _run(folder: Path, cache: Path, checked: bool) -> str:
    env = dict(os.environ, NNWATCH_NUMBA_CACHE="1", NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_BOUNDSCHECK", None)
    if checked:
        env["NUMBA_BOUNDSCHECK"] = "1"
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder)], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_bounds_checked_run_does_not_leave_checked_kernels_for_normal_runs(tmp_path):
    (tmp_path / "probe_kernel.py").write_text(KERNEL)
    cache = tmp_path / "cache"
    assert _run(tmp_path, cache, checked=True) == "checked"
    assert _run(tmp_path, cache, checked=False) == "unchecked"
    assert _run(tmp_path, cache, checked=True) == "checked"  # and the checked kernels are still there for the next
    assert any(p.name.startswith("flags-") for p in cache.iterdir())


def test_bit_exact_tests_pass_after_a_bounds_checked_run_with_the_cache_on(tmp_path):
    cache = tmp_path / "cache"
    tests = ["tests/kernels/test_compact.py"]
    base = dict(os.environ, NNWATCH_NUMBA_CACHE="1", NUMBA_CACHE_DIR=str(cache))
    base.pop("NUMBA_BOUNDSCHECK", None)
    for env in (dict(base, NUMBA_BOUNDSCHECK="1"), base):
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], env=env,
                             capture_output=True, text=True, cwd=ROOT, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


def test_default_flags_keep_numbas_own_cache_location():
    assert flag_cache_dir(dict(DEFAULT_CODEGEN)) is None
    checked = flag_cache_dir(dict(DEFAULT_CODEGEN, boundscheck=1))
    assert checked is not None and "boundscheck1" in checked
    assert flag_cache_dir(dict(DEFAULT_CODEGEN, opt=0)) != checked
