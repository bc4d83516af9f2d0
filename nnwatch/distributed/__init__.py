"""Profile building and screening on Ray Data (optional extra ``dist``; nothing else imports ray).

Each Ray actor loads the instrumented model once and keeps activations to itself: only
partial statistics (profile building) or per-input scores (screening) leave the actor.
"""

from __future__ import annotations

from typing import Any

from .._optional import require


def ray_module() -> Any:
    """Import ray, or say which extra to install.

    Returns
    -------
    module
        ``ray``.
    """
    ray = require("ray")
    require("ray.data")
    return ray


def actor_cpus(concurrency: int) -> float:
    """Logical CPUs per actor so that ``concurrency`` actors leave one CPU slot free.

    Ray Data starts actor pools before read tasks; actors holding every CPU slot leave
    none for reading shards or Parquet, and the dataset hangs (ray issue 44687). Each actor
    runs onnxruntime with one thread, so on small machines fractional slots lose nothing.

    Parameters
    ----------
    concurrency : int
        Actors in the pool.

    Returns
    -------
    float
        CPUs to request per actor: 1 where the cluster has room, less on small machines.
    """
    ray = ray_module()
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.05, min(1.0, (total - 1.0) / concurrency))


__all__ = ["actor_cpus", "ray_module"]
