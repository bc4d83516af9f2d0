"""A fixed-rate perception loop with nnwatch in it: what a robotics user copies first.

Frames arrive at a fixed rate (default 30 Hz). Each frame goes through the monitored model in
one call; the loop prints the verdict, checks the frame against its deadline, and sleeps until
the next period. Mid-stream there is a burst of corrupted frames (a dirty lens, a camera
fault) and a burst of adversarial frames (PGD). The summary says how many of each were
flagged, how many clean frames raised false alarms, and whether any deadline was missed.

Run: python examples/perception_loop.py [--hz 30] [--frames 300] [--budget-ms 5] [--quiet] [--out RESULTS.json]
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


def make_stream(test_x, test_y, model, frames: int, seed: int = 0):
    """Clean frames with a corruption burst and an adversarial burst; labels say which is which."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(test_x), frames)
    x = test_x[idx].copy()
    kind = np.array(["clean"] * frames, dtype=object)
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
    ap.add_argument("--frames", type=int, default=300)
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
    test = prepared["test"]
    frames, kind = make_stream(test.x, test.y, prepared["torch_model"], args.frames)

    period = 1.0 / args.hz
    next_tick = time.perf_counter()
    missed, flagged, lat = 0, [], []
    print(f"running {args.frames} frames at {args.hz:g} Hz, budget {args.budget_ms} ms per call")
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        v = monitor(frame[None])
        elapsed_ms = (time.perf_counter() - start) * 1e3
        lat.append(elapsed_ms)
        late = time.perf_counter() > next_tick + period
        missed += late
        flagged.append(bool(v.flag[0]))
        if not args.quiet or v.flag[0] or late:
            mark = "FLAG" if v.flag[0] else "ok  "
            print(f"frame {i:4d} [{kind[i]:<11}] pred {v.pred[0]} {mark} conf {v.confidence[0]:.3f} "
                  f"{elapsed_ms:6.3f} ms{'  DEADLINE MISSED' if late else ''}{'  (degraded)' if v.degraded else ''}")
        next_tick += period
        time.sleep(max(0.0, next_tick - time.perf_counter()))

    flagged = np.array(flagged)
    print("\nsummary")
    groups = {}
    for k in ("clean", "corrupted", "adversarial", "attack failed", "misclassified clean"):
        m = kind == k
        if m.any():
            groups[k] = {"frames": int(m.sum()), "flagged": int(flagged[m].sum())}
            print(f"  {k:<19} {m.sum():4d} frames, flagged {flagged[m].sum():4d} ({flagged[m].mean():.0%})")
    stats = monitor.stats()
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    print(f"  latency per monitored call: p50 {p50:.3f} ms, p99 {p99:.3f} ms; "
          f"over budget {int(stats['overruns'])}; deadlines missed {missed} of {len(frames)}")
    if args.out:
        result = {**provenance(), "hz": args.hz, "frames": args.frames, "budget_ms": args.budget_ms, "groups": groups,
                  "latency_p50_ms": p50, "latency_p99_ms": p99, "over_budget": int(stats["overruns"]),
                  "deadlines_missed": int(missed)}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
