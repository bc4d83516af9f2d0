"""A public detector end to end: instrumented, profiled, calibrated, screened and timed.

The model is not in the repository and nothing is downloaded: give its file. Measured here on
YOLOX-nano's COCO export (``yolox_nano.onnx``, 416x416, 80 classes, batch 1, raw head without
decoding), obtained from the public GitHub repository Bigisland1729/object-detection-models;
the results record the file's sha256. There is no matching data offline, so the frames are
synthetic (scikit-learn digits on 416x416 canvases, grey in three channels, pixel values
0-255 as YOLOX reads them): the verdicts say nothing about COCO scenes, only that every step runs
on a real detector's graph and layout, and what it costs.

Run: python benchmarks/public_detector.py --model yolox_nano.onnx [--layout yolox] [--source TEXT]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def frames(n: int, seed: int, size: int) -> np.ndarray:
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.sources import load_digits

    d = load_digits()
    x = make_scenes(d.x, d.y, n, seed=seed, size=size, scale=(size // 7, size // 3)).images
    return np.repeat(x * 255.0, 3, axis=1).astype(np.float32)


def main() -> int:
    from _common import write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the detector's ONNX file")
    ap.add_argument("--layout", default="yolox", help="its output layout (preset or spec)")
    ap.add_argument("--source", default="github.com/Bigisland1729/object-detection-models, yolox_nano.onnx",
                    help="where the file came from (recorded)")
    args = ap.parse_args()
    path = Path(args.model)
    if not path.is_file():
        print(f"public_detector.py: no model file {path}; give a public detector's ONNX file with --model",
              file=sys.stderr)
        return 2
    from nnwatch.objects.cost import bench_detector
    from nnwatch.objects.instrument_detector import instrument_detector
    from nnwatch.objects.object_monitor import ObjectMonitor

    data = path.read_bytes()
    runs = {}
    for layers in ("auto", "per-scale"):  # the default taps, then one map per head scale
        print(f"public_detector: taps {layers}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        model, manifest = instrument_detector(data, args.layout, layers=layers)
        monitor = ObjectMonitor(model.SerializeToString(), threads=1)
        size = manifest.input_size[0]
        monitor.fit(frames(300, 1, size), progress=True)
        monitor.calibrate(frames(300, 2, size), alpha=0.05, progress=True)
        live = frames(100, 3, size)
        v = monitor.score(live)
        steps_s = time.perf_counter() - t0
        cost = bench_detector(monitor, [live[i:i + 1] for i in range(32)], rounds=200)
        t = cost["timing"]
        counts = monitor.objects_.profile_.header["class_counts"]
        runs[layers] = {"layout": manifest.layout.to_dict(), "input": list(manifest.input_size),
                        "taps": list(manifest.tensors), "channels": list(manifest.channels),
                        "map_sizes": [list(np.shape(m)[2:]) for m in monitor.infer(live[:1])[1]],
                        "profiled_objects": int(sum(counts)), "classes_seen": int(sum(c > 0 for c in counts)),
                        "fused_members": monitor.fused_members_,
                        "live_frames": len(live), "live_objects": int(len(v.objects)),
                        "live_frames_flagged": float(v.frame_flag.mean()), "steps_seconds": steps_s, "cost": cost,
                        "monitored_over_plain": t["monitored"]["ratio_p50"],
                        "monitored_over_plain_decode": t["monitored"]["ratio_p50_decode"]}
    result = {"source": args.source, "sha256": hashlib.sha256(data).hexdigest(), **runs["auto"],
              "per_scale": runs["per-scale"]}
    a, p = runs["auto"], runs["per-scale"]
    size = a["input"][0]

    def cost_text(r: dict) -> str:
        t = r["cost"]["timing"]
        return (f"plain p50 {t['plain']['p50_ms']:.2f} ms, plain + decoding and NMS {t['plain+decode']['p50_ms']:.2f} ms, "
                f"monitored {t['monitored']['p50_ms']:.2f} ms ({r['monitored_over_plain']:.3f}x plain, "
                f"{r['monitored_over_plain_decode']:.3f}x plain + decoding)")

    md = ("<!-- begin all -->\n" f"{args.source} (sha256 {result['sha256'][:16]}...), layout {manifest.layout.name!r}, input "
          f"{size}x{a['input'][1]}. Default taps (`--layers auto`): {a['taps']} ({a['channels']} channels, maps "
          f"{' and '.join('x'.join(map(str, s)) for s in a['map_sizes'])}). "
          f"Profiled {a['profiled_objects']} objects of {a['classes_seen']} classes on 300 synthetic frames; "
          f"calibrated on 300; {a['live_objects']} objects in {a['live_frames']} more frames, "
          f"{a['live_frames_flagged']:.1%} of them flagged (synthetic frames, not COCO: the verdicts mean "
          f"nothing here).\n\nCost at batch 1, {a['cost']['objects_per_frame']:.1f} objects per frame: {cost_text(a)}."
          f"\n\nOne map per head scale (`--layers per-scale`): {p['taps']} (maps "
          f"{', '.join('x'.join(map(str, s)) for s in p['map_sizes'])}); {p['live_objects']} live objects, "
          f"{p['live_frames_flagged']:.1%} of frames flagged; cost {cost_text(p)}.\n<!-- end all -->")
    write("public_detector", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
