"""Parallel kernels entered from several threads at once must not abort the process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_parallel_kernel_from_many_threads_in_subprocess(layer):
    # A threading-layer abort kills the interpreter, so run it in a child process.
    code = textwrap.dedent("""
        import threading, numpy as np
        from nnwatch.kernels.coverage import coverage_scores
        from nnwatch.kernels.layout import pack_layers
        from nnwatch.kernels import _jit
        from nnwatch.profile.builder import ProfileBuilder
        from nnwatch.profile.signature import compile_tables
        rng = np.random.default_rng(0)
        layers = [rng.normal(size=(200, 30)).astype(np.float32), rng.normal(size=(200, 20)).astype(np.float32)]
        labels = rng.integers(0, 4, 200)
        b = ProfileBuilder([30, 20], 4, k_top=3)
        b.update_ranges(layers, labels).finish_ranges().update_sections(layers, labels)
        tables = compile_tables(b.build("0" * 64, ["a", "b"]), min_class_samples=1)
        probe = [a[:64] * 1.5 for a in layers]
        buf = pack_layers(probe)
        pred = labels[:64]
        want = coverage_scores(buf, 64, pred, tables, parallel=False)
        errors = []
        def work():
            for _ in range(50):
                got = coverage_scores(buf, 64, pred, tables, parallel=True)
                if not np.array_equal(got, want):
                    errors.append("mismatch")
        threads = [threading.Thread(target=work) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("LAYER", _jit.threading_layer(), "ERRORS", len(errors))
    """)
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer == "workqueue":
        # Forces the unsafe layer: nnwatch's guard must serialize the parallel kernel.
        env["NUMBA_THREADING_LAYER"] = "workqueue"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERRORS 0" in proc.stdout
    if layer == "workqueue":
        assert "LAYER workqueue" in proc.stdout
    else:
        assert "LAYER workqueue" not in proc.stdout
