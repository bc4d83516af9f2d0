"""Screen a Ray dataset with an object monitor: a pool of actors, each holding one detector
session and its calibrated state; only the verdict tables leave them.

Output: Parquet files with the rows ``nnwatch screen`` writes for a detector: one per object
(``x1, y1, x2, y2``, ``class``, ``score``, ``p``, ``flag`` and each member's score), and one
per frame without objects (object columns NaN, ``class`` -1, ``flag`` False); every row carries
its frame's ``id``, ``frame_p``, ``frame_flag``, ``image_p`` and ``frame_objects``. Frames are
judged one by one, so a frame's verdict does not depend on which worker or batch scored it.
The stream alarm needs the frames in order in one process and is not offered here.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InputError
from . import map_to_parquet

BOX = ("x1", "y1", "x2", "y2")


def object_table(verdicts: Any, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The verdicts of a batch as columns: one row per object, one per frame without objects.

    Parameters
    ----------
    verdicts : ObjectVerdicts
        From :meth:`nnwatch.objects.object_monitor.ObjectMonitor.score` on the batch.
    ids : numpy.ndarray
        ``(F,)`` the frames' ids.

    Returns
    -------
    dict
        Equal-length columns, frames in order and each frame's objects in the monitor's order.
    """
    det = verdicts.objects
    n_frames = len(verdicts.frame_p)
    if len(ids) != n_frames:
        raise InputError(f"{len(ids)} ids for {n_frames} frames")
    counts = np.bincount(det.frame, minlength=n_frames).astype(np.int64)
    reps = np.maximum(counts, 1)  # a frame without objects still gets its row
    row_frame = np.repeat(np.arange(n_frames), reps)
    starts = np.cumsum(reps) - reps
    first_object = np.cumsum(counts) - counts
    rows = starts[det.frame] + (np.arange(len(det)) - first_object[det.frame])  # each object's row
    n = len(row_frame)

    def objects(values: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
        out = np.full(n, fill, dtype)
        out[rows] = values
        return out

    table: dict[str, np.ndarray] = {"id": np.asarray(ids)[row_frame]}
    for j, name in enumerate(BOX):
        table[name] = objects(det.boxes[:, j], np.nan, np.float64)
    table["class"] = objects(det.cls, -1, np.int64)
    table["score"] = objects(det.score, np.nan, np.float64)
    table["p"] = objects(verdicts.object_p, np.nan, np.float64)
    table["flag"] = objects(verdicts.object_flag, False, bool)
    for j, name in enumerate(verdicts.member_names):
        table[name] = objects(verdicts.members[:, j], np.nan, np.float64)
    table["frame_p"] = np.asarray(verdicts.frame_p, np.float64)[row_frame]
    table["frame_flag"] = np.asarray(verdicts.frame_flag, bool)[row_frame]
    table["image_p"] = np.asarray(verdicts.image_p, np.float64)[row_frame]
    table["frame_objects"] = counts[row_frame]
    return table


class ObjectScreenActor:
    """Ray actor: loads the detector and its calibrated state once, scores batches of frames."""

    def __init__(self, model: str, state: str) -> None:
        from ..objects.monitor_state import load_object_monitor

        self.monitor = load_object_monitor(model, state, threads=1)
        if not hasattr(self.monitor, "frames_"):
            raise InputError(f"{state} is not calibrated; run nnwatch calibrate first")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.stack(list(batch["x"])) if batch["x"].dtype == object else batch["x"]
        return object_table(self.monitor.score(np.asarray(x, np.float32), members="all"), batch["id"])


def screen_objects_ray(model: str | os.PathLike, state: str | os.PathLike, dataset: Any, out_dir: str | os.PathLike,
                       batch_size: int = 64, concurrency: int = 2) -> dict[str, Any]:
    """Score every frame of ``dataset`` (columns ``id``, ``x``) and write the object table to ``out_dir``.

    Parameters
    ----------
    model : path
        Instrumented detector, readable by every worker.
    state : path
        Calibrated object monitor state (``nnwatch calibrate``), readable by every worker.
    dataset : ray.data.Dataset
        Frames ``(C, H, W)`` float with an ``id`` column.
    out_dir : path
        Output folder for Parquet files.
    batch_size : int
        Frames per monitored call.
    concurrency : int
        Actors.

    Returns
    -------
    dict
        ``frames``, ``flagged`` (frames), ``objects``, ``seconds``, ``frames_per_s``.
    """
    seconds = map_to_parquet(dataset, ObjectScreenActor, {"model": os.fspath(model), "state": os.fspath(state)},
                             os.fspath(out_dir), batch_size, concurrency)
    import pyarrow.parquet as pq

    table = pq.read_table(os.fspath(out_dir), columns=["id", "class", "frame_flag"])
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    frame_flag = np.asarray(table.column("frame_flag"))
    frames = len(set(ids.tolist()))
    flagged = len(set(ids[frame_flag].tolist()))
    objects = int((np.asarray(table.column("class")) >= 0).sum())
    return {"frames": frames, "flagged": flagged, "objects": objects, "seconds": seconds,
            "frames_per_s": frames / max(seconds, 1e-9)}
