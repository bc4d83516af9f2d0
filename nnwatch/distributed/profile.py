"""Build a profile with Ray Data: partial statistics per batch, merged exactly on the driver.

Pass 1 computes range statistics per batch inside actors; the driver merges them; pass 2
counts sections against the merged ranges (sent to the actors as bytes); the driver merges
those. The result equals the single-process profile: counts, ranges, sections and the
feature sample exactly, means and M2 to float64 rounding (Chan's merge).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..monitor.fit import manifest_reduction, trusted_labels
from ..monitor.runner import Runner
from ..profile.builder import ProfileBuilder
from ..profile.schema import Profile, RangeStats, SectionStats
from ..kernels.layout import unpack_layers
from . import actor_cpus, ray_module
from .stats_io import from_bytes, to_bytes


class _ProfilePass:
    """Ray actor: one pass of profile statistics over the batches it receives."""

    def __init__(self, model: str, params: dict[str, Any], edges: bytes | None = None) -> None:
        self.runner = Runner(model, providers="cpu", threads=1)
        self.params = params
        self.edges = None if edges is None else from_bytes(RangeStats, edges)

    def _builder(self) -> ProfileBuilder:
        p = self.params
        return ProfileBuilder(p["layer_sizes"], p["n_classes"], p["k_sections"], p["k_top"], p["threshold"],
                              p["feature_layer"], p["feature_sample"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self.runner.check_input(np.stack(list(batch["x"])) if batch["x"].dtype == object else batch["x"])
        y = batch.get("y")
        ws = self.runner.workspace(x.shape[0])
        self.runner.run(x, ws)
        labels = trusted_labels(ws.logits, y, self.params["min_confidence"])
        layers = unpack_layers(ws.buf, ws.batch, self.runner.offsets)
        b = self._builder()
        if self.edges is None:
            b.update_ranges(layers, labels)
            out = to_bytes(b.ranges_)
        else:
            b.with_edges(self.edges).update_sections(layers, labels)
            out = to_bytes(b.sections_)
        skipped = b.skipped_nonfinite_
        return {"partial": np.array([out], dtype=object), "skipped": np.array([skipped], np.int64),
                "rows": np.array([x.shape[0]], np.int64)}


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
        Samples per model call inside an actor.
    concurrency : int
        Actors (each holds one onnxruntime session).
    k_sections, k_top, threshold, min_confidence, rare_rate, feature_sample
        As for :func:`nnwatch.monitor.fit.build_profile`.
    dataset_name : str
        Description stored in the profile.

    Returns
    -------
    Profile
        The merged profile.
    """
    ray_module()
    runner = Runner(model, providers="cpu", threads=1)
    man = runner.manifest
    feature_layer = man.layer_names.index(man.penultimate) if man.penultimate in man.layer_names else None
    params = {"layer_sizes": man.layer_sizes, "n_classes": runner.n_classes, "k_sections": k_sections, "k_top": k_top,
              "threshold": threshold, "feature_layer": feature_layer, "feature_sample": feature_sample,
              "min_confidence": min_confidence}
    driver = ProfileBuilder(man.layer_sizes, runner.n_classes, k_sections, k_top, threshold, feature_layer,
                            feature_sample)

    def run_pass(edges: bytes | None) -> list[dict[str, Any]]:
        kwargs = {"model": str(model), "params": params, "edges": edges}
        return dataset.map_batches(_ProfilePass, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                                   concurrency=concurrency, num_cpus=actor_cpus(concurrency),
                                   batch_format="numpy").take_all()

    ranges = driver.ranges_
    skipped = seen = 0
    for row in run_pass(None):
        part = from_bytes(RangeStats, row["partial"])
        merged = ranges.merge(part)  # keeps this side's feature sample; add the other's
        merged.add_sample(part.sample_feats, part.sample_keys, part.sample_class, driver.feature_sample)
        ranges = merged
        skipped += int(row["skipped"])
        seen += int(row["rows"])
    driver.ranges_ = ranges
    driver.skipped_nonfinite_ = skipped
    driver.finish_ranges()
    sections = driver.sections_
    for row in run_pass(to_bytes(ranges)):
        sections = sections.merge(from_bytes(SectionStats, row["partial"]))
    driver.sections_ = sections
    profile = driver.build(man.fingerprint, man.layer_names, reduction=manifest_reduction(man), dataset=dataset_name,
                           min_confidence=min_confidence)
    profile.header["rare_rate"] = float(rare_rate)
    profile.header["samples_seen"] = seen
    return profile
