"""Screening recordings: does decoding overlap the model, and does memory stay flat with length?

Built at run time, nothing downloaded: N grey 28x28 camera frames (smooth blobs plus sensor
noise), written as

- a folder of PNG files (``images:DIR``), and
- a ROS 2 MCAP of ``sensor_msgs/msg/CompressedImage`` (JPEG, quality 90) at 30 Hz (``mcap:FILE``).

Model: LeNet (``nnwatch.eval.models.lenet``, random weights: the cost is measured, not the
verdicts), exported instrumented, profiled on 2,000 frames and calibrated on 1,000 (the fused
default). For each source, the same run measures (best of 3, one onnxruntime thread):

- decode only: the source's batches (background decoding included), no model;
- model only: the monitored call on the decoded frames, held in memory, same batches;
- screening: ``nnwatch screen MODEL PROFILE --data SOURCE --out rows.csv`` run in this
  process (decoding in its background thread while the model runs), rows written to disk.

Pipeline efficiency = screening throughput / min(decode-only, model-only throughput): 1.0
means the slower stage alone sets the pace. Peak RSS of a separate ``nnwatch screen`` process
is compared at 10,000 and 100,000 frames of each source.

Run: python benchmarks/recordings.py [--quick]   (needs the demo and recordings extras)
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import write

HZ = 30
SIDE = 28


def frames(n: int, seed: int) -> np.ndarray:
    """``n`` uint8 28x28 frames: a few smooth blobs each, plus sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    centers = rng.uniform(4, SIDE - 4, (16, 2))
    out = np.empty((n, SIDE, SIDE), np.uint8)
    for i in range(n):
        c = centers[rng.integers(0, 16, 3)] + rng.normal(0, 1.5, (3, 2))
        img = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0) for cy, cx in c)
        out[i] = np.clip(img * 180 + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return out


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_folder(root: Path, n: int, seed: int) -> None:
    root.mkdir(parents=True)
    for start in range(0, n, 10_000):
        for i, f in enumerate(frames(min(10_000, n - start), seed + start)):
            (root / f"{start + i:06d}.png").write_bytes(encode(f, "PNG"))


def write_mcap(path: Path, n: int, seed: int) -> None:
    from mcap_ros2.writer import Writer

    sep = "=" * 80
    msgdef = (f"std_msgs/Header header\nstring format\nuint8[] data\n{sep}\nMSG: std_msgs/Header\n"
              f"builtin_interfaces/Time stamp\nstring frame_id\n{sep}\nMSG: builtin_interfaces/Time\n"
              "int32 sec\nuint32 nanosec")
    with open(path, "wb") as fh:
        writer = Writer(fh)
        schema = writer.register_msgdef("sensor_msgs/msg/CompressedImage", msgdef)
        for start in range(0, n, 10_000):
            for i, f in enumerate(frames(min(10_000, n - start), seed + start)):
                t = (start + i) * 1_000_000_000 // HZ
                msg = {"header": {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9}, "frame_id": "cam"},
                       "format": "jpeg", "data": encode(f, "JPEG")}
                writer.write_message("/cam", schema, msg, log_time=t, publish_time=t)
        writer.finish()


def prepare_model(work: Path) -> tuple[Path, Path]:
    import torch

    from nnwatch import build_profile, calibrate
    from nnwatch.eval.models import lenet
    from nnwatch.export.from_torch import export_module
    from nnwatch.monitor import Monitor
    from nnwatch.profile.store import save_profile

    torch.manual_seed(0)
    model = lenet().eval()
    export_module(model, torch.zeros(1, 1, SIDE, SIDE), work / "model.onnx")
    x = (frames(3000, 99).astype(np.float32) / 255.0)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(work / "model.onnx", x[:2000])
        mon = Monitor(work / "model.onnx", profile, providers="cpu", threads=1)
        calibrate(mon, x[2000:], fpr=0.05)
    save_profile(mon.profile, work / "profile.npz")
    return work / "model.onnx", work / "profile.npz"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(spec: str, n: int, model: Path, profile: Path, work: Path, repeats: int, batch: int) -> dict:
    from nnwatch.cli.main import main
    from nnwatch.monitor import Monitor
    from nnwatch.sources import open_source

    gray = '{"channels": "gray"}'
    (work / "gray.json").write_text(gray)
    pre = {"channels": "gray"}

    def decode_only():
        for _ in open_source(spec, pre).batches(batch):
            pass

    xs = [x for x, _ in open_source(spec, pre).batches(batch)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon = Monitor(model, profile, providers="cpu", threads=1)

    def model_only():
        for x in xs:
            mon.score(x)

    def screen():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["screen", str(model), str(profile), "--data", spec, "--preprocess", str(work / "gray.json"),
                         "--out", str(work / "rows.csv"), "--batch-size", str(batch), "--providers", "cpu",
                         "--quiet"]) == 0

    screen()  # warm: kernels compiled, files in the page cache
    t_decode, t_model, t_screen = best_of(decode_only, repeats), best_of(model_only, repeats), best_of(screen, repeats)
    rate = {"decode_only": n / t_decode, "model_only": n / t_model, "screening": n / t_screen}
    return {"frames": n, "frames_per_s": rate, "decode_us_per_frame": 1e6 * t_decode / n,
            "model_us_per_frame": 1e6 * t_model / n, "screening_us_per_frame": 1e6 * t_screen / n,
            "efficiency": rate["screening"] / min(rate["decode_only"], rate["model_only"])}


def peak_rss_mib(spec: str, model: Path, profile: Path, work: Path, batch: int) -> float:
    """Peak RSS of a separate ``nnwatch screen`` process over the whole source: the larger of the
    process itself and its decoding process (a fork of it, so sharing most of its pages)."""
    code = ("import resource, sys, warnings\nwarnings.simplefilter('ignore')\nfrom nnwatch.cli.main import main\n"
            "rc = main(sys.argv[1:])\n"
            "print(max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, "
            "resource.RUSAGE_CHILDREN)))\nsys.exit(rc)")
    args = [sys.executable, "-c", code, "screen", str(model), str(profile), "--data", spec, "--preprocess",
            str(work / "gray.json"), "--out", str(work / "rss.csv"), "--batch-size", str(batch), "--providers",
            "cpu", "--quiet"]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"screen failed: {done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024.0  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1,000 and 5,000 frames, one repeat")
    args = ap.parse_args()
    small, large = (1000, 5000) if args.quick else (10_000, 100_000)
    repeats, batch = (1 if args.quick else 3), 256
    rows, rss = {}, {}
    with tempfile.TemporaryDirectory(prefix="nnwatch-rec-") as tmp:
        work = Path(tmp)
        print("preparing the model ...", file=sys.stderr, flush=True)
        model, profile = prepare_model(work)
        for kind in ("images", "mcap"):
            for n in (small, large):
                t0 = time.perf_counter()
                if kind == "images":
                    write_folder(work / f"frames{n}", n, seed=n)
                    spec = f"images:{work / f'frames{n}'}"
                else:
                    write_mcap(work / f"drive{n}.mcap", n, seed=n)
                    spec = f"mcap:{work / f'drive{n}.mcap'}"
                print(f"{kind}: {n:,} frames written in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
                if n == small:
                    rows[kind] = measure(spec, n, model, profile, work, repeats, batch)
                    r = rows[kind]
                    print(f"  decode {r['decode_us_per_frame']:.1f} us/frame, model {r['model_us_per_frame']:.1f}, "
                          f"screening {r['screening_us_per_frame']:.1f}: efficiency {r['efficiency']:.2f}",
                          file=sys.stderr, flush=True)
                rss.setdefault(kind, {})[str(n)] = peak_rss_mib(spec, model, profile, work, batch)
                print(f"  peak RSS at {n:,} frames: {rss[kind][str(n)]:.0f} MiB", file=sys.stderr, flush=True)
    for kind in rss:
        rows[kind]["peak_rss_mib"] = rss[kind]
        rows[kind]["rss_ratio_large_small"] = rss[kind][str(large)] / rss[kind][str(small)]
    names = {"images": "folder of PNG files (images:)", "mcap": "MCAP of JPEG CompressedImage (mcap:)"}
    md = ["<!-- begin pipeline -->",
          "| source | frames | decode only | model only (monitored) | screening | efficiency | "
          f"peak RSS {small:,} / {large:,} frames |",
          "|---|---|---|---|---|---|---|"]
    for kind, r in rows.items():
        md.append(f"| {names[kind]} | {r['frames']:,} | {r['decode_us_per_frame']:.1f} µs/frame | "
                  f"{r['model_us_per_frame']:.1f} µs/frame | {r['screening_us_per_frame']:.1f} µs/frame | "
                  f"**{r['efficiency']:.2f}** | {r['peak_rss_mib'][str(small)]:.0f} / "
                  f"{r['peak_rss_mib'][str(large)]:.0f} MiB ({r['rss_ratio_large_small']:.2f}x) |")
    md.append("<!-- end pipeline -->")
    write("recordings", {"batch": batch, "threads": 1, "frame": f"{SIDE}x{SIDE} grey", "model": "LeNet (random weights)",
                         "sources": rows},
          "\n".join(md), note="Throughputs are the best of 3 runs; efficiency = screening / min(decode only, model only).")


if __name__ == "__main__":
    main()
