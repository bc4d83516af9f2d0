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


def map_to_parquet(dataset: Any, actor: type, actor_kwargs: dict[str, Any], out_dir: str, batch_size: int,
                   concurrency: int) -> float:
    """Score ``dataset`` on a pool of ``concurrency`` actors of class ``actor`` and write Parquet.

    Each actor is built once with ``actor_kwargs`` (paths, not objects, so Ray can restart it)
    and called on batches of ``batch_size`` rows in numpy format; each output block is written
    once, after its batch succeeded.

    Parameters
    ----------
    dataset : ray.data.Dataset
        The rows to score.
    actor : type
        Callable class: ``actor(**actor_kwargs)(batch) -> columns``.
    actor_kwargs : dict
        Its constructor's arguments.
    out_dir : str
        Output folder.
    batch_size, concurrency : int
        Rows per call and actors (both at least 1).

    Returns
    -------
    float
        Seconds from the start to the last file written.

    Raises
    ------
    InputError
        ``batch_size`` or ``concurrency`` below 1.
    """
    import time

    from ..errors import InputError

    if int(concurrency) < 1 or int(batch_size) < 1:
        raise InputError(f"workers and batch size must be >= 1, got {concurrency} and {batch_size}")
    ray = ray_module()
    start = time.perf_counter()
    scored = dataset.map_batches(
        actor, fn_constructor_kwargs=actor_kwargs, batch_size=int(batch_size),
        compute=ray.data.ActorPoolStrategy(size=int(concurrency)), num_cpus=actor_cpus(int(concurrency)),
        batch_format="numpy")
    scored.write_parquet(out_dir)
    return time.perf_counter() - start


__all__ = ["actor_cpus", "map_to_parquet", "ray_module"]
