"""Screening throughput on Ray Data with 1 and 2 local workers vs the single-process monitor,
and the profile-merge equality check. Run: python benchmarks/distributed.py [--quick]

On this 2-core machine this measures overheads, not scaling: see docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import ray
    import torch

    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.distributed.profile import build_profile_ray
    from nnwatch.distributed.readers import ray_dataset
    from nnwatch.distributed.screen import dataset_from_arrays, screen_ray
    from nnwatch.eval.models import lenet, train_classifier
    from nnwatch.export.from_torch import export_module
    from nnwatch.monitor.detectors import COVERAGE
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.profile.store import save_profile
    from nnwatch.sources import ArraySource, load_idx

    warnings.simplefilter("ignore")
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-dist-"))
    train = load_idx(ROOT.parent / "shared" / "data" / "mnist", "train")
    test = load_idx(ROOT.parent / "shared" / "data" / "mnist", "test")
    torch.set_num_threads(1)
    net = train_classifier(lenet(), train.x, train.y, epochs=2, seed=0)
    export_module(net, torch.from_numpy(train.x[:1]), folder / "m.onnx")
    single = build_profile(folder / "m.onnx", train)
    mon = Monitor(folder / "m.onnx", single, providers="cpu", detectors=COVERAGE, threads=1)
    calibrate(mon, ArraySource(test.x[:1000], test.y[:1000], "val"))
    save_profile(mon.profile, folder / "p.npz")
    n = 2000 if args.quick else 8000
    x = test.x[1000 : 1000 + n]
    rows = []
    t = time.perf_counter()
    for lo in range(0, n, 256):
        mon(x[lo : lo + 256])
    single_s = time.perf_counter() - t
    rows.append({"mode": "single process (nnwatch screen)", "workers": 1, "seconds": single_s, "inputs_per_s": n / single_s})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = dataset_from_arrays(x).materialize()
    for workers in (1, 2):
        r = screen_ray(folder / "m.onnx", folder / "p.npz", ds, folder / f"out{workers}", batch_size=256,
                       concurrency=workers)
        rows.append({"mode": "Ray Data actor pool", "workers": workers, "seconds": r["seconds"],
                     "inputs_per_s": r["inputs_per_s"]})
    shards = folder / "shards"
    shards.mkdir()
    for i, lo in enumerate(range(0, n, 1000)):
        np.savez(shards / f"{i:03d}.npz", x=x[lo : lo + 1000])
    r = screen_ray(folder / "m.onnx", folder / "p.npz", ray_dataset(f"npzdir:{shards}"), folder / "out_shards",
                   batch_size=256, concurrency=2)
    rows.append({"mode": "Ray Data, .npz shards read by workers", "workers": 2, "seconds": r["seconds"],
                 "inputs_per_s": r["inputs_per_s"]})
    t = time.perf_counter()
    dist = build_profile_ray(str(folder / "m.onnx"), dataset_from_arrays(train.x, train.y), batch_size=256)
    profile_s = time.perf_counter() - t
    equal = all(np.array_equal(getattr(dist.ranges, k), getattr(single.ranges, k)) for k in ("count", "min", "max", "topk_count"))
    equal &= np.array_equal(dist.sections.section_hits, single.sections.section_hits)
    moments = float(np.abs(dist.ranges.m2 - single.ranges.m2).max())
    ray.shutdown()
    md = ["<!-- begin screening -->", "| mode | workers | inputs | seconds | inputs/s | vs single process |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['mode']} | {r['workers']} | {n} | {r['seconds']:.2f} | {r['inputs_per_s']:,.0f} | "
                  f"{r['inputs_per_s'] / rows[0]['inputs_per_s']:.2f}x |")
    md.append("<!-- end screening -->")
    md.append(f"\nDistributed profile of {len(train)} MNIST images (2 workers, two passes): {profile_s:.1f} s; "
              f"counts, ranges, top-k and section hits identical to the single-process profile: {equal}; "
              f"max |M2 difference|: {moments:.2e}.")
    write("distributed", {"rows": rows, "profile_equal": bool(equal), "m2_max_abs_diff": moments,
                          "profile_seconds": profile_s, "inputs": n, "train_images": len(train)}, "\n".join(md),
          note="Local Ray on the same 2 cores; ratios measured in the same run.")


if __name__ == "__main__":
    main()
