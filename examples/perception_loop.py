"""A fixed-rate perception loop with nnwatch in it: what a robotics user copies first.

Frames arrive at a fixed rate (default 30 Hz). Each frame goes through the monitored model in
one call; the loop prints the verdict, checks the frame against its deadline, and sleeps until
the next period. First sensor noise slowly grows (each frame barely differs from the last,
so per-frame flags come late and scattered), then it clears, then
there is a burst of corrupted frames (a dirty lens, a camera fault) and a burst of adversarial
frames (PGD). A stream monitor (conformal test martingale, at most 1% chance of ever
alarming on clean frames) watches the decision's scores; an operator "confirms" each alarm
and the test restarts. The summary says how many frames of each kind were flagged, when the
stream alarms came, and whether any deadline was missed.

Run: python examples/perception_loop.py [--hz 30] [--frames 600] [--budget-ms 5] [--quiet] [--out RESULTS.json]
(offline; trains the demo's digits CNN first, about 10 s.) With --out, the summary is also
written as JSON with the machine, date, git revision and command (docs/results.md quotes
benchmarks/results/perception_loop.json, written this way).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from nnwatch.demo import prepare_demo_model
from nnwatch.eval import corruptions as cor
from nnwatch.eval.attacks import pgd, predict
from nnwatch.eval.provenance import provenance
from nnwatch.monitor import Budget, Monitor
from nnwatch.monitor.stream import StreamMonitor


def make_stream(test_x, test_y, model, frames: int, seed: int = 0):
    """Clean frames with a corruption burst and an adversarial burst; labels say which is which."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(test_x), frames)
    x = test_x[idx].copy()
    kind = np.array(["clean"] * frames, dtype=object)
    r0, r1 = int(frames * 0.05), int(frames * 0.30)  # gradual drift: sensor noise grows linearly
    for i in range(r0, r1):
        sigma = 0.3 * (i - r0 + 1) / (r1 - r0)
        x[i] = np.clip(x[i] + sigma * rng.standard_normal(x[i].shape), 0.0, 1.0)
        kind[i] = "drift"
    a, b = int(frames * 0.35), int(frames * 0.50)  # corruption burst
    c, d = int(frames * 0.70), int(frames * 0.80)  # adversarial burst
    faults = [cor.invert, lambda z: cor.gaussian_noise(z, 0.5, seed=1), lambda z: cor.contrast(z, 0.2, 0.5),
              lambda z: cor.rotate(z, 90)]
    for i in range(a, b):
        x[i] = faults[(i - a) * len(faults) // (b - a)](x[i : i + 1])[0]
        kind[i] = "corrupted"
    labels = test_y[idx[c:d]]
    correct = predict(model, x[c:d]) == labels
    adv, ok = pgd(model, x[c:d], labels, eps=0.1, steps=10)
    x[c:d] = adv
    # Only attacks on correctly classified frames that changed the prediction count as adversarial.
    kind[c:d] = np.where(correct & ok, "adversarial", np.where(correct, "attack failed", "misclassified clean"))
    return x, kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--budget-ms", type=float, default=5.0, help="latency budget of one monitored call")
    ap.add_argument("--quiet", action="store_true", help="print only flagged frames and the summary")
    ap.add_argument("--out", help="also write the summary to this JSON file")
    args = ap.parse_args()
    if args.out and not Path(args.out).resolve().parent.is_dir():
        ap.error(f"--out: folder {Path(args.out).parent} does not exist")

    folder = tempfile.mkdtemp(prefix="nnwatch-loop-")
    print("preparing the model (train, export, profile, calibrate) ...", flush=True)
    prepared = prepare_demo_model(folder, progress=True, say=lambda msg: print(msg, flush=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor = Monitor(prepared["model_path"], prepared["profile_path"], providers="cpu",
                          detectors=("coverage", "energy"), budget=Budget(latency_ms=args.budget_ms, policy="degrade"))
    monitor.warmup((1,))
    stream = StreamMonitor(monitor, delta=0.01)
    test = prepared["test"]
    frames, kind = make_stream(test.x, test.y, prepared["torch_model"], args.frames)

    period = 1.0 / args.hz
    next_tick = time.perf_counter()
    missed, flagged, lat, alarms = 0, [], [], []
    print(f"running {args.frames} frames at {args.hz:g} Hz, budget {args.budget_ms} ms per call")
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        v = monitor(frame[None])
        elapsed_ms = (time.perf_counter() - start) * 1e3
        lat.append(elapsed_ms)
        late = time.perf_counter() > next_tick + period
        missed += late
        flagged.append(bool(v.flag[0]))
        if not v.degraded and stream.update(v).alarm[0]:
            alarms.append(i)
            print(f"frame {i:4d} [{kind[i]:<11}] STREAM ALARM: the recent frames as a whole are not like the "
                  f"calibration data (statistic {stream.statistic:.3g}); restarting the test")
            stream.reset()
        if not args.quiet or v.flag[0] or late:
            mark = "FLAG" if v.flag[0] else "ok  "
            print(f"frame {i:4d} [{kind[i]:<11}] pred {v.pred[0]} {mark} conf {v.confidence[0]:.3f} "
                  f"{elapsed_ms:6.3f} ms{'  DEADLINE MISSED' if late else ''}{'  (degraded)' if v.degraded else ''}")
        next_tick += period
        time.sleep(max(0.0, next_tick - time.perf_counter()))

    flagged = np.array(flagged)
    print("\nsummary")
    groups = {}
    for k in ("clean", "drift", "corrupted", "adversarial", "attack failed", "misclassified clean"):
        m = kind == k
        if m.any():
            groups[k] = {"frames": int(m.sum()), "flagged": int(flagged[m].sum())}
            print(f"  {k:<19} {m.sum():4d} frames, flagged {flagged[m].sum():4d} ({flagged[m].mean():.0%})")
    drift = np.flatnonzero(kind == "drift")
    drift_alarm = next((i for i in alarms if drift[0] <= i <= drift[-1]), None) if drift.size else None
    first_flags = next((i for i in drift if flagged[max(drift[0], i - 9) : i + 1].sum() >= 5), None)
    print(f"  stream alarms at frames {alarms}; drift from frame {drift[0] if drift.size else '-'}: first stream alarm "
          f"{drift_alarm}, first time 5 of 10 frames flagged {first_flags}")
    stats = monitor.stats()
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    print(f"  latency per monitored call: p50 {p50:.3f} ms, p99 {p99:.3f} ms; "
          f"over budget {int(stats['overruns'])}; deadlines missed {missed} of {len(frames)}")
    if args.out:
        result = {**provenance(), "hz": args.hz, "frames": args.frames, "budget_ms": args.budget_ms, "groups": groups,
                  "latency_p50_ms": p50, "latency_p99_ms": p99, "over_budget": int(stats["overruns"]),
                  "deadlines_missed": int(missed), "stream_alarms": alarms,
                  "drift_first_frame": int(drift[0]) if drift.size else None,
                  "drift_last_frame": int(drift[-1]) if drift.size else None,
                  "drift_first_stream_alarm": drift_alarm, "drift_first_5_of_10_flagged":
                  None if first_flags is None else int(first_flags)}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
