"""Build a profile with Ray: each worker accumulates its share, the driver merges as results arrive.

The dataset is split into one stream per worker (``Dataset.streaming_split``). In pass 1 every
worker runs the model over its stream and accumulates range statistics locally; it sends one
compressed partial when its stream ends, and the driver merges partials one at a time as they
arrive, so the driver holds the running result and at most one partial whatever the number of
batches. Pass 2 counts sections against the merged ranges (sent once through the object
store) the same way. The result equals the single-process profile: counts, ranges, sections and
the feature sample exactly, means and M2 to float64 rounding (Chan's merge).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..kernels.layout import unpack_layers
from ..monitor.profiling import manifest_reduction, trusted_labels
from ..monitor.runner import Runner
from ..profile.builder import ProfileBuilder
from ..profile.overlap import input_hashes, sketch_to_json, sketch_update
from ..profile.schema import Profile, RangeStats, SectionStats, input_stats, merge_input_stats
from . import actor_cpus, ray_module
from .stats_io import from_bytes, to_bytes


class ProfileWorker:
    """One worker's share of both passes (run as a Ray actor).

    Parameters
    ----------
    model : str
        Path of the instrumented model, readable by the worker.
    params : dict
        ProfileBuilder parameters plus ``min_confidence`` and ``batch_size``.
    stream : ray.data.DataIterator
        This worker's part of the dataset (iterated once per pass).
    """

    def __init__(self, model: str, params: dict[str, Any], stream: Any) -> None:
        self.runner = Runner(model, providers="cpu", threads=1)
        self.params = params
        self.stream = stream
        self.builder: ProfileBuilder | None = None

    def _batches(self):  # type: ignore[no-untyped-def]
        for batch in self.stream.iter_batches(batch_size=self.params["batch_size"], batch_format="numpy"):
            x = np.stack(list(batch["x"])) if batch["x"].dtype == object else batch["x"]
            x = self.runner.check_input(x)
            if getattr(self, "inputs", None) is not None and self.builder is not None and self.builder.sections_ is None:
                self.inputs = merge_input_stats(self.inputs, input_stats(x))
                self.sketch = sketch_update(self.sketch, input_hashes(x))
            ws = self.runner.workspace(x.shape[0])
            self.runner.run(x, ws)
            labels = trusted_labels(ws.logits, batch.get("y"), self.params["min_confidence"])
            yield unpack_layers(ws.buf, ws.batch, self.runner.offsets), labels

    def ranges(self) -> dict[str, Any]:
        """Pass 1 over this worker's stream.

        Returns
        -------
        dict
            ``partial`` (compressed RangeStats bytes), ``skipped``, ``rows``.
        """
        p = self.params
        self.builder = ProfileBuilder(p["layer_sizes"], p["n_classes"], p["k_sections"], p["k_top"], p["threshold"],
                                      p["feature_layer"], p["feature_sample"])
        rows = 0
        self.inputs: dict[str, float] | None = input_stats(np.zeros(0))
        self.sketch: np.ndarray | None = None
        for layers, labels in self._batches():
            self.builder.update_ranges(layers, labels)
            rows += len(labels)
        return {"partial": to_bytes(self.builder.ranges_, compress=True),
                "skipped": self.builder.skipped_nonfinite_, "rows": rows, "inputs": self.inputs,
                "sketch": self.sketch}

    def sections(self, edges: bytes) -> bytes:
        """Pass 2 over this worker's stream against the merged ranges.

        Parameters
        ----------
        edges : bytes
            The merged pass-1 RangeStats (compressed).

        Returns
        -------
        bytes
            Compressed SectionStats.
        """
        if self.builder is None:
            raise InputError("pass 2 needs pass 1 first: call ranges() before sections()")
        self.builder.with_edges(from_bytes(RangeStats, edges))
        for layers, labels in self._batches():
            self.builder.update_sections(layers, labels)
        return to_bytes(self.builder.sections_, compress=True)


def _as_completed(ray: Any, refs: list) -> Any:
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        yield ray.get(ready[0])


def build_profile_ray(model: str, dataset: Any, batch_size: int = 256, concurrency: int = 2, k_sections: int = 10,
                      k_top: int = 3, threshold: str | float = "mean", min_confidence: float = 0.0,
                      rare_rate: float = 0.01, feature_sample: int = 2000, dataset_name: str = "ray") -> Profile:
    """Two distributed passes over a Ray dataset with column ``x`` (and optional ``y``).

    Parameters
    ----------
    model : str
        Path of the instrumented ONNX model, readable by every worker.
    dataset : ray.data.Dataset
        Trusted training data.
    batch_size : int
        Samples per model call inside a worker.
    concurrency : int
        Workers (each holds one onnxruntime session and one partial profile).
    k_sections, k_top, threshold, min_confidence, rare_rate, feature_sample
        As for :func:`nnwatch.monitor.profiling.build_profile`.
    dataset_name : str
        Description stored in the profile.

    Returns
    -------
    Profile
        The merged profile.

    Raises
    ------
    InputError
        ``concurrency`` or ``batch_size`` below 1.
    """
    ray = ray_module()
    if int(concurrency) < 1 or int(batch_size) < 1:
        raise InputError(f"workers and batch size must be >= 1, got {concurrency} and {batch_size}")
    runner = Runner(model, providers="cpu", threads=1)
    man = runner.manifest
    feature_layer = man.layer_names.index(man.penultimate) if man.penultimate in man.layer_names else None
    driver = ProfileBuilder(man.layer_sizes, runner.n_classes, k_sections, k_top, threshold, feature_layer,
                            feature_sample)
    params = {"layer_sizes": man.layer_sizes, "n_classes": runner.n_classes, "k_sections": k_sections, "k_top": k_top,
              "threshold": threshold, "feature_layer": feature_layer, "feature_sample": driver.feature_sample,
              "min_confidence": min_confidence, "batch_size": int(batch_size)}
    streams = dataset.streaming_split(int(concurrency), equal=False)
    worker = ray.remote(num_cpus=actor_cpus(int(concurrency)))(ProfileWorker)
    workers = [worker.remote(str(model), params, s) for s in streams]

    # The first partial to arrive becomes the accumulator; each later one is merged and dropped,
    # so the driver holds the running result and one partial, however many batches there were.
    ranges: RangeStats | None = None
    driver.ranges_ = None  # type: ignore[assignment]
    skipped = seen = 0
    inputs: dict[str, float] | None = input_stats(np.zeros(0))
    sketch: np.ndarray | None = None
    for out in _as_completed(ray, [w.ranges.remote() for w in workers]):
        part = from_bytes(RangeStats, out.pop("partial"))
        if ranges is None:
            ranges = part
        else:
            merged = ranges.merge(part)  # keeps this side's feature sample; add the other's
            merged.add_sample(part.sample_feats, part.sample_keys, part.sample_class, driver.feature_sample)
            ranges = merged
        part = None
        skipped += int(out["skipped"])
        seen += int(out["rows"])
        inputs = merge_input_stats(inputs, out["inputs"])
        if out.get("sketch") is not None:
            sketch = sketch_update(sketch, out["sketch"])
    driver.ranges_ = ranges
    driver.skipped_nonfinite_ = skipped
    driver.finish_ranges()
    edges = ray.put(to_bytes(ranges, compress=True))
    driver.sections_ = sections = None
    for out in _as_completed(ray, [w.sections.remote(edges) for w in workers]):
        part = from_bytes(SectionStats, out)
        out = None
        sections = part if sections is None else sections.add(part)
        part = None
    driver.sections_ = sections
    for w in workers:
        ray.kill(w)
    profile = driver.build(man.fingerprint, man.layer_names, reduction=manifest_reduction(man), dataset=dataset_name,
                           min_confidence=min_confidence)
    profile.header["rare_rate"] = float(rare_rate)
    profile.header["samples_seen"] = seen
    profile.header["input_stats"] = inputs
    if sketch is not None:
        profile.header["input_sketch"] = sketch_to_json(sketch)
    return profile
