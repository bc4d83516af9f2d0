"""Screen a Ray dataset: a pool of actors, each holding one Monitor; only scores leave them.

Output: Parquet files with one row per input: ``id``, ``pred``, ``flag``, ``confidence``,
``label`` (when the data has labels; -1 unknown) and ``score_<detector>`` columns. Actors are restarted and their batches retried by Ray if a
worker dies; each output block is written once, after its batch succeeded.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..monitor.detectors import COVERAGE
from ..monitor.monitor import Monitor
from . import map_to_parquet, ray_module


class _ScreenActor:
    """Ray actor: loads the model and profile once, scores batches."""

    def __init__(self, model: str, profile: str, detectors: Sequence[str], decision: str) -> None:
        self.monitor = Monitor(model, profile, providers="cpu", threads=1, detectors=detectors, decision=decision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.stack(list(batch["x"])) if batch["x"].dtype == object else batch["x"]
        v = self.monitor.score(x, _record=False)
        out = {"id": batch["id"], "pred": v.pred, "flag": v.flag, "confidence": v.confidence}
        if "y" in batch:  # labels travel with the rows (-1: unknown)
            out["label"] = np.asarray(batch["y"], np.int64)
        for name, values in v.scores.items():
            out[f"score_{name}"] = values
        return out


def screen_ray(model: str | os.PathLike, profile: str | os.PathLike, dataset: Any, out_dir: str | os.PathLike,
               batch_size: int = 256, concurrency: int = 2, detectors: Sequence[str] = COVERAGE,
               decision: str = "auto", actor: type = _ScreenActor) -> dict[str, Any]:
    """Score every row of ``dataset`` (columns ``id``, ``x``) and write Parquet to ``out_dir``.

    Parameters
    ----------
    model : path
        Instrumented ONNX model, readable by every worker.
    profile : path
        Calibrated profile, readable by every worker (paths, not objects, so Ray can restart
        actors).
    dataset : ray.data.Dataset
        Inputs with an ``id`` column.
    out_dir : path
        Output folder for Parquet files.
    batch_size : int
        Samples per monitored call.
    concurrency : int
        Actors.
    detectors : sequence of str
        Detectors to run.
    decision : str
        Detector that sets ``flag`` ("auto": as ``Monitor`` chooses).
    actor : type
        The actor class (a subclass of ``_ScreenActor`` to customise scoring).

    Returns
    -------
    dict
        ``inputs``, ``flagged``, ``seconds``, ``inputs_per_s``.
    """
    seconds = map_to_parquet(dataset, actor, {"model": os.fspath(model), "profile": os.fspath(profile),
                                              "detectors": list(detectors), "decision": decision},
                             os.fspath(out_dir), batch_size, concurrency)
    import pyarrow.parquet as pq

    table = pq.read_table(os.fspath(out_dir), columns=["flag"])
    n = table.num_rows
    flagged = int(np.asarray(table.column("flag")).sum())
    return {"inputs": n, "flagged": flagged, "seconds": seconds, "inputs_per_s": n / max(seconds, 1e-9)}


def dataset_from_arrays(x: np.ndarray, y: np.ndarray | None = None, ids: np.ndarray | None = None) -> Any:
    """A Ray dataset with columns ``id``, ``x`` (tensor) and optional ``y``.

    Parameters
    ----------
    x : numpy.ndarray
        Inputs ``(N, ...)``.
    y : numpy.ndarray, optional
        Labels.
    ids : numpy.ndarray, optional
        Input ids (default ``0..N-1``).

    Returns
    -------
    ray.data.Dataset
        The dataset.
    """
    ray = ray_module()
    cols: dict[str, np.ndarray] = {"id": np.arange(len(x)) if ids is None else np.asarray(ids), "x": x}
    if y is not None:
        cols["y"] = np.asarray(y, np.int64)
    return ray.data.from_items([{k: v[i] for k, v in cols.items()} for i in range(len(x))])
