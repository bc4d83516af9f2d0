"""Ray datasets from the inputs offline screening sees, read inside the workers.

- ``npzdir:DIR``: every ``*.npz`` shard in DIR (array ``x``, optional ``y``); ids are
  ``"<shard name>:<row>"``, so outputs can be traced back to the shard. A shard without
  ``y`` gets label -1 (unknown: the model's prediction is trusted), so shards with and
  without labels can be mixed in one dataset.
- ``parquet:PATH``: Parquet file(s) with a tensor column ``x`` (as Ray writes numpy arrays),
  an ``id`` column and an optional ``y`` column.
- ``images:DIR`` / ``images:MANIFEST.csv``: listed on the driver, sharded by file: each worker
  decodes its own files (with the declared preprocessing); ids are the paths.
- ``video:``, ``mcap:``, ``rosbag:``: the recording is read and decoded inside one worker (never
  on the driver); ids are the frames' ids as JSON (frame, stamps).
- anything else: a local source (``npz:``, ``idx:``, ``digits``) loaded on the driver.

Undecodable frames are skipped in the workers (a recording's own warning, in the worker's log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..recordings.images import ImageSource
from ..sources import in_memory, open_source, takes_preprocess
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


def _decode_images(batch: dict[str, np.ndarray], preprocess: dict) -> dict[str, np.ndarray]:
    from ..recordings import load_preprocess
    from ..recordings.pixels import CorruptFrame, decode_file

    pre = load_preprocess(preprocess)
    keep, frames = [], []
    for i, path in enumerate(batch["path"]):
        try:
            frames.append(pre.pixels(decode_file(Path(path), f"images: {batch['id'][i]}")))
        except CorruptFrame:
            continue
        keep.append(i)
    if not frames:
        return {"id": np.zeros(0, object), "x": np.zeros((0, 1), np.float32), "y": np.zeros(0, np.int64)}
    return {"id": np.asarray(batch["id"])[keep], "x": pre.finish(frames), "y": np.asarray(batch["y"])[keep]}


def _decode_recording(row: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    out = []
    source = row["source"]
    source.decode_in_process = False  # inside a Ray worker: a thread, no fork of the worker
    for x, y, ids in source.batches_with_ids(64):
        for i in range(len(x)):
            out.append({"id": json.dumps(ids[i], sort_keys=True), "x": x[i], "y": -1 if y is None else int(y[i])})
    return out


def ray_dataset(spec: str, limit: int | None = None, preprocess: Any = None) -> Any:
    """Open a data source as a Ray dataset with columns ``id``, ``x`` and optional ``y``.

    Parameters
    ----------
    spec : str
        ``npzdir:DIR``, ``parquet:PATH``, a recording (``images:``, ``video:``, ``mcap:``,
        ``rosbag:``, optionally sliced) or a local source spec.
    limit : int, optional
        Only the first ``limit`` rows.
    preprocess : Preprocess, str, dict or None
        How recorded frames become model inputs (default ``"0-1"``).

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
    elif takes_preprocess(spec) and not spec.startswith("idx:"):
        source = open_source(spec, preprocess).limit(limit)  # listed and checked here, decoded in the workers
        fields = source.preprocess.to_json()
        if isinstance(source, ImageSource):
            part = slice(source.start, source.stop)
            rows = [{"path": str(source.root / rel), "id": rel, "y": -1 if label is None else int(label)}
                    for rel, label in zip(source.files[part], source.labels[part])]
            return ray.data.from_items(rows).map_batches(_decode_images, fn_kwargs={"preprocess": fields},
                                                          batch_format="numpy")
        return ray.data.from_items([{"source": source}]).flat_map(_decode_recording)
    else:
        from .screen import dataset_from_arrays

        src = in_memory(open_source(spec, preprocess if takes_preprocess(spec) else None))
        return dataset_from_arrays(src.x, src.y).limit(limit) if limit else dataset_from_arrays(src.x, src.y)
    return ds.limit(limit) if limit else ds
