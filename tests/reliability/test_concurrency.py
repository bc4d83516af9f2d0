"""N threads x M calls on one Monitor give exactly the serial results, parallel kernel on."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nnwatch.monitor.detectors import COVERAGE, DEFAULT
from nnwatch.monitor.monitor import Monitor

THREADS, CALLS = 8, 60


@pytest.mark.parametrize("parallel, detectors", [(False, DEFAULT), (True, DEFAULT), (False, COVERAGE)])
def test_threads_times_calls_equal_serial(digits_monitor_files, parallel, detectors):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu", parallel=parallel, detectors=detectors)
    x = f["splits"]["test"][0]
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 64, 24)
    starts = rng.integers(0, len(x) - 64, 24)
    batches = [x[s : s + n] for s, n in zip(starts, sizes)]
    serial = [mon(b) for b in batches]
    mismatches, done = [], []
    barrier = threading.Barrier(THREADS)

    def work(seed):
        order = np.random.default_rng(seed).integers(0, len(batches), CALLS)
        barrier.wait()  # start together: maximal overlap
        for i in order:
            v = mon(batches[i])
            same = (np.array_equal(v.pred, serial[i].pred) and np.array_equal(v.flag, serial[i].flag)
                    and np.array_equal(v.confidence, serial[i].confidence)
                    and all(np.array_equal(v.scores[k], serial[i].scores[k]) for k in v.scores))
            if not same:
                mismatches.append(int(i))
        done.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(done) == THREADS
    assert mismatches == []
    assert mon.stats()["calls"] == len(batches) + THREADS * CALLS
