"""Cold start and threads of the language monitor: what a user waits for, quiet and with both cores busy.

Measured on SmolLM2-135M-Instruct with the shipped detector (or DETECTOR given with
--detector), each number from fresh processes:

- cold ``nnwatch heads guard`` on one prompt, first with an empty weights cache (the GGUF is
  de-quantized and written), then with the cache filled: the wall time of the whole command;
- warm per-prompt latency of the monitor (model loaded, one warm-up call), torch with 1
  intra-op thread (the default) and with 2, and the onnxruntime path (no torch);
- each of those quiet, and again while two busy-loop processes hold both cores (a machine
  shared with other work, as this project's often is).

The ratios (2 threads / 1 thread, busy / quiet) come from the same run.

Run: python benchmarks/language_start.py [--detector FILE] [--quick]   (about 6 min)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PROMPTS = ROOT.parent / "shared" / "data" / "prompts"

WARM = """
import json, sys, time
import numpy as np
from nnwatch.heads.language_monitor import LanguageMonitor
from nnwatch.heads.prompts import load_prompts
detector, threads, onnx, n = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None, int(sys.argv[4])
mon = LanguageMonitor(detector, threads=threads, onnx=onnx)
texts = list(load_prompts(sys.argv[5]).prompts)[:n]
mon.score(texts[:1])
ms = []
for t in texts:
    start = time.perf_counter()
    mon.score([t])
    ms.append((time.perf_counter() - start) * 1e3)
print(json.dumps({"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                  "torch": "torch" in sys.modules}))
"""


def spin(stop: float) -> None:
    while time.time() < stop:
        pass


class Busy:
    """Two processes spinning on both cores while the block runs."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.procs: list = []

    def __enter__(self) -> "Busy":
        if self.on:
            stop = time.time() + 3600
            self.procs = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(2)]
            for p in self.procs:
                p.start()
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
            p.join()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    from _common import write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="smollm2", help="detector file (default: the shipped smollm2)")
    ap.add_argument("--quick", action="store_true", help="fewer prompts (writes *_quick results)")
    args = ap.parse_args()
    n = 5 if args.quick else 20
    data = str(PROMPTS / "benign_test.jsonl")
    from nnwatch.heads.shipped import resolve

    detector = resolve(args.detector)
    rows, cold = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NNWATCH_CACHE_DIR": str(Path(tmp) / "cache")}
        onnx = str(Path(tmp) / "prefill.onnx")
        guard = [sys.executable, "-m", "nnwatch", "heads", "guard", detector, "--prompt", "How do I bake bread?", "--max-new-tokens", "1",
                 "--quiet"]
        for busy in (False, True):
            with Busy(busy):
                key = "busy" if busy else "quiet"
                if not busy:
                    cold["guard_empty_cache_s"] = timed(guard, env)
                cold[f"guard_cached_{key}_s"] = timed(guard, env)
        subprocess.run([sys.executable, "-m", "nnwatch", "heads", "export", "--out", onnx, "--quiet"], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        for busy in (False, True):
            for path, threads in (("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)):
                with Busy(busy):
                    out = subprocess.run([sys.executable, "-c", WARM, detector, str(threads),
                                          onnx if path == "onnxruntime" else "", str(n), data], check=True, env=env,
                                         cwd=ROOT, capture_output=True, text=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"path": path, "threads": threads, "load": "busy" if busy else "quiet", **res})
    by = {(r["path"], r["threads"], r["load"]): r["p50_ms"] for r in rows}
    ratios = {f"{p}_2_over_1_{load}": by[(p, 2, load)] / by[(p, 1, load)]
              for p in ("torch", "onnxruntime") for load in ("quiet", "busy")}
    lines = ["| step | seconds |", "|---|---|"]
    lines += [f"| {k.removesuffix('_s').replace('_', ' ')} | {v:.1f} |" for k, v in cold.items()]
    lines += ["", "| path | threads | cores | p50 ms / prompt | p90 ms | torch imported |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['threads']} | {r['load']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['torch']} |"
              for r in rows]
    lines += ["", "| 2 threads / 1 thread | ratio |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    write("language_start", {"detector": args.detector, "prompts": n, "cold": cold, "rows": rows, "ratios": ratios},
          "\n".join(lines), note="Cold times are whole commands in fresh processes; 'busy' = two spinning "
          "processes on the two cores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
