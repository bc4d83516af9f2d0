"""A synthetic "drive": a ROS 2 MCAP recording of camera frames to screen with one command.

Builds, offline and in about half a minute:

- ``OUT/model.onnx`` and ``OUT/profile.npz``: the demo's digits CNN, instrumented with the
  recording's preprocessing (kept in the model), profiled and calibrated at 5% false alarms
  (the same steps as ``nnwatch demo``); ``OUT/plain.onnx``: the model without taps;
- ``OUT/drive.mcap``: 60 s of a 30 Hz camera, ``sensor_msgs/msg/CompressedImage`` (PNG) on
  ``/camera/image/compressed``, every frame a test digit (never trained or calibrated on)
  shown at 64x64 with a little sensor noise. From 25 s the contrast slowly fades (fog on the
  lens, 15 s); from 40 s come 3 s of adversarial frames (PGD, eps 0.1, against this model);
  then clean frames again. Header stamps at 30 Hz; log times 5 ms later (transport);
- ``OUT/preprocess.json``: how a 64x64 camera frame becomes the model's 8x8 input (the same
  steps the model keeps; for other models instrumented from ``plain.onnx``);
- ``OUT/segments.json``: which frames are clean, fog and attack.

Then screen it (the command is printed at the end)::

    nnwatch screen OUT/model.onnx OUT/profile.npz --data mcap:OUT/drive.mcap \\
        --stream --out OUT/verdicts.mcap --report OUT/timeline.html

and open ``OUT/timeline.html`` in a browser, or ``OUT/drive.mcap`` and ``OUT/verdicts.mcap``
together in Foxglove. Needs the demo and recordings extras:
``pip install -c constraints.txt -e ".[demo,recordings]"``.

Run: python examples/drive_recording.py [--out drive] [--seconds 60]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

from nnwatch.demo import prepare_demo_model
from nnwatch.eval.attacks import pgd, predict

HZ = 30
PREPROCESS = {"channels": "gray", "resize": [8, 8], "interpolation": "nearest"}  # a 64x64 camera frame -> 8x8
UPSCALE = 8  # 8x8 digits shown as 64x64 camera frames
TOPIC = "/camera/image/compressed"
START_NS = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC
SEP = "=" * 80
COMPRESSED_IMAGE = ("std_msgs/Header header\nstring format\nuint8[] data\n" + SEP + "\nMSG: std_msgs/Header\n"
                    "builtin_interfaces/Time stamp\nstring frame_id\n" + SEP + "\nMSG: builtin_interfaces/Time\n"
                    "int32 sec\nuint32 nanosec")


def drive_frames(test_x: np.ndarray, test_y: np.ndarray, model, seconds: float, seed: int = 0):
    """The frames in [0, 1] (N, 8, 8) and each frame's kind (clean, fog, attack)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * HZ)
    idx = rng.integers(0, len(test_x), n)
    x = np.clip(test_x[idx, 0] + rng.normal(0.0, 0.01, (n, 8, 8)), 0.0, 1.0).astype(np.float32)
    kind = np.array(["clean"] * n, dtype=object)
    f0, f1 = int(n * 25 / 60), int(n * 40 / 60)  # fog: contrast fades linearly to 40%, toward mid grey
    for i in range(f0, f1):
        c = 1.0 - 0.6 * (i - f0 + 1) / (f1 - f0)
        x[i] = c * x[i] + (1.0 - c) * 0.5
        kind[i] = "fog"
    a0, a1 = f1, min(n, f1 + 3 * HZ)  # a burst of adversarial frames
    labels = test_y[idx[a0:a1]]
    adv, _ = pgd(model, x[a0:a1, None], labels, eps=0.1, steps=10)
    changed = predict(model, adv) != labels
    x[a0:a1] = adv[:, 0]
    kind[a0:a1] = np.where(changed, "attack", "attack (failed)")
    return x, kind


def png(frame: np.ndarray) -> bytes:
    from PIL import Image

    pixels = np.round(np.kron(frame, np.ones((UPSCALE, UPSCALE))) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_drive(path: Path, frames: np.ndarray) -> None:
    from mcap_ros2.writer import Writer

    with open(path, "wb") as fh:
        writer = Writer(fh)
        schema = writer.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_IMAGE)
        for i, frame in enumerate(frames):
            stamp = START_NS + i * 1_000_000_000 // HZ
            msg = {"header": {"stamp": {"sec": stamp // 10**9, "nanosec": stamp % 10**9}, "frame_id": "camera"},
                   "format": "png", "data": png(frame)}
            writer.write_message(TOPIC, schema, msg, log_time=stamp + 5_000_000, publish_time=stamp + 5_000_000)
        writer.finish()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="drive", help="folder for the model, profile and recording (default: drive)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the drive (default 60)")
    args = ap.parse_args()
    if args.seconds < 10:
        print("drive_recording.py: --seconds must be at least 10 (the drive has four segments)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    demo = prepare_demo_model(out, say=say, preprocess=PREPROCESS)
    test = demo["test"]
    say(f"[5/6] building {args.seconds:g} s of camera frames at {HZ} Hz (fog from 25 s, an attack burst at 40 s)")
    frames, kind = drive_frames(test.x, test.y, demo["torch_model"], args.seconds)
    say(f"[6/6] writing {out / 'drive.mcap'}")
    write_drive(out / "drive.mcap", frames)
    (out / "preprocess.json").write_text(json.dumps(PREPROCESS, indent=1) + "\n")
    segments = {k: [int(i) for i in np.flatnonzero(kind == k)] for k in dict.fromkeys(kind)}
    (out / "segments.json").write_text(json.dumps(
        {k: {"frames": len(v), "first": v[0], "last": v[-1]} for k, v in segments.items()}, indent=1) + "\n")
    print(f"wrote {out}/drive.mcap ({len(frames)} frames on {TOPIC}), model.onnx (keeps its preprocessing), "
          "plain.onnx (the model without taps), profile.npz, preprocess.json, segments.json\nscreen it:\n"
          f"  nnwatch screen {out}/model.onnx {out}/profile.npz --data mcap:{out}/drive.mcap "
          f"--stream --out {out}/verdicts.mcap --report {out}/timeline.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
