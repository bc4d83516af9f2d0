"""A small object detector and scenes to monitor it on, built offline in about three minutes.

Writes:

- ``OUT/detector.onnx``: a small one-stage detector (YOLOv8 output layout ``(B, 4 + 10, N)``,
  no NMS in the graph) trained on 2,000 synthetic 96x96 scenes of scikit-learn's bundled digits
  (1 torch thread), exported with ``nnwatch.export.from_torch.export_plain``;
- ``OUT/trusted.npz`` (profiling frames), ``OUT/clean.npz`` (calibration frames) and
  ``OUT/live.npz`` (frames to screen), each with ``x`` ``(N, 1, 96, 96)``;
- ``OUT/noise.npz`` and ``OUT/style.npz``: scenes with one anomalous object each (a noise patch;
  a digit thickened or inverted), with the drawn boxes (``boxes`` ``(N, K, 4)``, NaN-padded)
  and which are anomalous (``anomalous`` ``(N, K)``), as ``nnwatch evaluate`` reads them.

Digits for training, profiling, calibration and the test scenes come from disjoint parts of
the data set (scikit-learn's digits, split 60/20/20 by nnwatch.sources.load_digits). Then
(printed at the end)::

    nnwatch instrument OUT/detector.onnx --layout yolov8 --out OUT/monitored.onnx
    nnwatch profile OUT/monitored.onnx --data npz:OUT/trusted.npz --out OUT/objects.npz
    ...

Needs the demo extra: ``pip install -c constraints.txt -e ".[demo]"``.

Run: python examples/detector_scenes.py [--out scenes] [--epochs 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from nnwatch.eval.scenes import make_scenes
from nnwatch.objects.evaluation import DrawnObjects
from nnwatch.sources import load_digits

SCENE = {"size": 96, "per_frame": (1, 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="scenes", help="folder to write (created)")
    ap.add_argument("--epochs", type=int, default=20, help="detector training epochs")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        print("detector_scenes.py: --epochs must be at least 1", file=sys.stderr)
        return 2
    import torch

    from nnwatch.eval.detector_model import tiny_detector, train_detector
    from nnwatch.export.from_torch import export_plain

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, val, test = load_digits("train"), load_digits("val"), load_digits("test")
    scenes = make_scenes(train.x, train.y, 2000, seed=0, **SCENE)
    print(f"training the detector on {len(scenes)} scenes ({args.epochs} epochs, 1 thread) ...", file=sys.stderr)
    model = train_detector(tiny_detector(10), scenes, epochs=args.epochs, seed=0, progress=True)
    (out / "detector.onnx").write_bytes(export_plain(model, torch.from_numpy(scenes.images[:2])).SerializeToString())
    np.savez(out / "trusted.npz", x=make_scenes(train.x, train.y, 600, seed=1, **SCENE).images)
    np.savez(out / "clean.npz", x=make_scenes(val.x, val.y, 600, seed=2, **SCENE).images)
    np.savez(out / "live.npz", x=make_scenes(test.x, test.y, 300, seed=3, **SCENE).images)
    for anomaly in ("noise", "style"):
        s = make_scenes(test.x, test.y, 300, seed=4, anomaly=anomaly, **SCENE)
        boxes, anomalous = DrawnObjects(s.boxes, s.anomalous).padded()
        np.savez(out / f"{anomaly}.npz", x=s.images, boxes=boxes, anomalous=anomalous)
    o = args.out
    print(f"wrote {o}/detector.onnx and scenes (trusted, clean, live, noise, style). Next:\n"
          f"  nnwatch instrument {o}/detector.onnx --layout yolov8 --out {o}/monitored.onnx\n"
          f"  nnwatch profile {o}/monitored.onnx --data npz:{o}/trusted.npz --out {o}/objects.npz\n"
          f"  nnwatch calibrate {o}/monitored.onnx {o}/objects.npz --data npz:{o}/clean.npz\n"
          f"  nnwatch screen {o}/monitored.onnx {o}/objects.npz --data npz:{o}/live.npz --out {o}/objects.csv\n"
          f"  nnwatch evaluate {o}/monitored.onnx {o}/objects.npz --id npz:{o}/live.npz "
          f"--ood noise=npz:{o}/noise.npz --ood style=npz:{o}/style.npz --report {o}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
