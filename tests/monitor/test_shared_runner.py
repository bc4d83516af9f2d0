"""Regression: one Runner shared by profiles and monitors with different k_top.

Before, the top-k work arrays were sized by the Runner and not rebuilt when k_top changed:
the kernel wrote past them (heap corruption at batch 1, threads overwriting each other's rows
in parallel mode). Now each monitor's compiled plan owns work arrays sized by its own tables;
this test compares every call with the numpy oracle, and under NUMBA_BOUNDSCHECK=1
(tests/kernels/test_boundscheck.py) any out-of-bounds index raises.
"""

from __future__ import annotations

import numpy as np

from nnwatch.kernels import reference as ref
from nnwatch.kernels.layout import unpack_layers
from nnwatch.monitor.detectors import COVERAGE
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.profiling import build_profile
from nnwatch.monitor.runner import Runner
from nnwatch.sources import ArraySource


def test_monitors_with_growing_k_top_on_one_runner(digits_monitor_files):
    f = digits_monitor_files
    runner = Runner(f["model"], providers="cpu")
    train = ArraySource(*f["splits"]["train"], "train")
    k_max = min(runner.manifest.layer_sizes)
    x = np.concatenate([f["splits"]["test"][0][:70], np.random.default_rng(0).random((30, 64), dtype=np.float32)])
    monitors = []
    for k_top in (1, k_max):  # small first: the old code kept the small work arrays
        profile = build_profile(runner, train, k_top=k_top)
        for parallel in (False, True):
            monitors.append(Monitor(runner, profile, detectors=COVERAGE, parallel=parallel,
                                    min_signature_samples=1))
    for _ in range(2):
        for mon in monitors:
            for batch in (x[:1], x[1:2], x):
                v = mon(batch)
                ws = mon.runner.workspace(len(batch))
                layers = unpack_layers(ws.buf, ws.batch, runner.offsets)
                want = ref.coverage_scores(layers, v.pred, mon.tables)
                for j, name in enumerate(("nc", "kmnc", "tknc", "nbc", "nb_excess")):
                    np.testing.assert_allclose(v.scores[name], want[:, j], rtol=1e-12, atol=1e-12, err_msg=name)
