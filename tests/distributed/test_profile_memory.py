"""A 1,000-class profile from many batches: the driver's memory stays at about two partials.

Each worker accumulates its whole share and sends one compressed partial; the driver merges
partials as they arrive (section counts in place). Before, every batch's full (C+1, N, k)
partial was collected on the driver at once: memory grew with the number of batches.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from nnwatch.distributed.profile import build_profile_ray
from nnwatch.distributed.screen import dataset_from_arrays
from nnwatch.export.instrument import instrument_file
from nnwatch.monitor.profiling import build_profile
from nnwatch.profile.schema import RangeStats, SectionStats
from nnwatch.sources import ArraySource
from tests.conftest import mlp_onnx

CLASSES, HIDDEN, FEATURES = 1000, 24, 8


def test_thousand_class_profile_memory_is_bounded(local_ray, tmp_path):
    rng = np.random.default_rng(0)
    model = mlp_onnx(rng.normal(size=(FEATURES, HIDDEN)), rng.normal(size=HIDDEN) * 0.1,
                     rng.normal(size=(HIDDEN, CLASSES)), np.zeros(CLASSES))
    (tmp_path / "plain.onnx").write_bytes(model.SerializeToString())
    manifest = instrument_file(tmp_path / "plain.onnx", tmp_path / "m.onnx")
    x = rng.normal(size=(3000, FEATURES)).astype(np.float32)
    dataset = dataset_from_arrays(x)
    n = sum(manifest.layer_sizes)
    edges = np.zeros((CLASSES + 1, n), np.float32)
    # One worker's partial: its pass-1 and pass-2 statistics.
    one_partial = (sum(a.nbytes for a in vars(RangeStats.empty(CLASSES, n, HIDDEN)).values())
                   + sum(a.nbytes for a in vars(SectionStats.empty(edges, edges, edges[0], 10)).values()))
    tracemalloc.start()
    try:
        profile = build_profile_ray(str(tmp_path / "m.onnx"), dataset, batch_size=30, concurrency=2, feature_sample=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    batches = len(x) // 30
    assert batches == 100  # the old design held 100 partials on the driver
    assert peak < 2 * one_partial, f"driver peak {peak / 2**20:.1f} MiB, one partial {one_partial / 2**20:.1f} MiB"
    single = build_profile(tmp_path / "m.onnx", ArraySource(x, None, "x"), batch_size=500)
    np.testing.assert_array_equal(profile.sections.section_hits, single.sections.section_hits)
    np.testing.assert_array_equal(profile.ranges.count, single.ranges.count)
    assert (profile.ranges.count[:-1] > 0).sum() > 50  # many classes really were populated
