"""A local Ray instance with 2 CPUs, started per test module."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the distributed tests need nnwatch[dist] (in the test extra)")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
