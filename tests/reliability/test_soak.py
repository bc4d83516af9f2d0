"""A short soak in CI: memory does not grow with calls (benchmarks/reliability.py runs 10^5)."""

from __future__ import annotations

from nnwatch.monitor.monitor import Monitor


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def test_rss_stays_flat_over_calls(digits_monitor_files):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu")
    x = f["splits"]["test"][0]
    for i in range(1000):  # warm-up: workspaces, kernel compilation, allocator pools
        mon(x[i % len(x)][None])
    start = rss_mb()
    samples = []
    for i in range(8000):
        v = mon(x[i % len(x)][None])
        if i % 1000 == 0:
            samples.append(rss_mb())
        del v
    growth = rss_mb() - start
    # Per-call results are released; nothing accumulates per call (8000 calls x even 1 KiB = 8 MiB).
    assert growth < 4.0, (start, samples, growth)
    assert mon.stats()["calls"] == 9000
