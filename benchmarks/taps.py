"""MobileNetV3-Small with fewer block outputs tapped: how tapping sets the overhead.

For the last k of the 13 block outputs (the classifier input is always tapped), the batch-1
p50 of a monitored call (coverage detectors) as a multiple of a plain ``session.run`` and of a
plain IOBinding call of the untapped model, measured interleaved (nnwatch.eval.overhead).
Random weights (timing does not depend on them), 1,000 classes, 1 intra-op thread.
Run: python benchmarks/taps.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--blocks", type=int, nargs="+", default=[13, 8, 4, 2])
    args = ap.parse_args()

    import torch

    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.eval.overhead import bench_overhead
    from nnwatch.eval.zoo import edge_model
    from nnwatch.export.from_torch import export_plain
    from nnwatch.export.instrument import instrument, save_onnx
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.sources import ArraySource

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-taps-"))
    module, blocks, source = edge_model("mobilenet_v3_small")
    plain = export_plain(module, torch.zeros((1, 3, 224, 224))).SerializeToString()
    (folder / "plain.onnx").write_bytes(plain)
    rng = np.random.default_rng(0)
    data = rng.random((250, 3, 224, 224), dtype=np.float32)
    x = data[:1].copy()
    rows = []
    for k in args.blocks:
        model, manifest = instrument(plain, layers=blocks[-k:])
        path = folder / f"last{k}.onnx"
        save_onnx(model, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profile = build_profile(path, ArraySource(data[:150], None, "random"), batch_size=25)
            mon = Monitor(path, profile, detectors=("coverage",), threads=1, providers="cpu",
                          min_signature_samples=1)
            calibrate(mon, ArraySource(data[150:], None, "random"), min_class_samples=1, batch_size=25)
        mon.warmup((1,))
        res = bench_overhead(mon, folder / "plain.onnx", x, iters=60 if args.quick else 400, warmup=20, threads=1)
        rows.append({"blocks": k, "neurons": int(mon.tables.n_neurons), "taps": len(manifest.taps), **res})
        print(f"last {k} blocks: monitored {res['monitored']['ratio_p50_iobinding']:.2f}x IOBinding", flush=True)
    md = [f"MobileNetV3-Small ({source}, random weights, 1,000 classes), batch 1, 1 thread:", "",
          "<!-- begin taps -->",
          "| block outputs tapped | neurons | plain run p50 | plain IOBinding p50 | tapped / IOBinding | "
          "monitored / run | monitored / IOBinding |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| last {r['blocks']} | {r['neurons']} | {r['plain']['p50_ms']:.2f} ms | "
                  f"{r['plain (IOBinding)']['p50_ms']:.2f} ms | {r['tapped']['ratio_p50_iobinding']:.2f}x | "
                  f"{r['monitored']['ratio_p50']:.2f}x | {r['monitored']['ratio_p50_iobinding']:.2f}x |")
    md.append("<!-- end taps -->")
    write("mobilenet_taps", {"source": source, "rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
