"""Ray datasets from the inputs offline screening sees, read inside the workers.

- ``npzdir:DIR``: every ``*.npz`` shard in DIR (array ``x``, optional ``y``); ids are
  ``"<shard name>:<row>"``, so outputs can be traced back to the shard. A shard without
  ``y`` gets label -1 (unknown: the model's prediction is trusted), so shards with and
  without labels can be mixed in one dataset.
- ``parquet:PATH``: Parquet file(s) with a tensor column ``x`` (as Ray writes numpy arrays),
  an ``id`` column and an optional ``y`` column.
- anything else: a local source (``npz:``, ``idx:``, ``digits``) loaded on the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..sources import in_memory, open_source
from . import ray_module


def _load_shard(row: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(row["path"])
    with np.load(path, allow_pickle=False) as data:
        if "x" not in data.files:
            raise InputError(f"{path}: no array named 'x'")
        x = data["x"]
        y = data["y"] if "y" in data.files else None
    if y is not None and len(y) != len(x):
        raise InputError(f"{path}: {len(x)} inputs but {len(y)} labels")
    return [{"id": f"{path.name}:{i}", "x": x[i], "y": -1 if y is None else int(y[i])} for i in range(len(x))]


def ray_dataset(spec: str, limit: int | None = None) -> Any:
    """Open a data source as a Ray dataset with columns ``id``, ``x`` and optional ``y``.

    Parameters
    ----------
    spec : str
        ``npzdir:DIR``, ``parquet:PATH`` or a local source spec.
    limit : int, optional
        Only the first ``limit`` rows.

    Returns
    -------
    ray.data.Dataset
        The dataset.

    Raises
    ------
    InputError
        Missing folder, no shards, or a Parquet file without an ``x`` column.
    """
    ray = ray_module()
    scheme, _, rest = spec.partition(":")
    if scheme == "npzdir":
        shards = sorted(Path(rest).glob("*.npz")) if Path(rest).is_dir() else []
        if not shards:
            raise InputError(f"npzdir: no .npz shards in {rest!r}")
        ds = ray.data.from_items([{"path": str(p)} for p in shards]).flat_map(_load_shard)
    elif scheme == "parquet":
        if not Path(rest).exists() and "://" not in rest:
            raise InputError(f"parquet: {rest!r} does not exist")
        ds = ray.data.read_parquet(rest)
        if "x" not in ds.schema().names:
            raise InputError(f"parquet: {rest!r} has no column 'x' (columns: {ds.schema().names})")
        if "id" not in ds.schema().names:
            raise InputError(f"parquet: {rest!r} has no column 'id'; add one so results can be traced back")
    else:
        from .screen import dataset_from_arrays

        src = in_memory(open_source(spec))
        return dataset_from_arrays(src.x, src.y).limit(limit) if limit else dataset_from_arrays(src.x, src.y)
    return ds.limit(limit) if limit else ds
