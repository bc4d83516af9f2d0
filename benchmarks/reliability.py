"""The long reliability runs, one command: soak, SIGKILL during saves, file fuzzing counts.

Writes benchmarks/results/reliability.{json,md} and docs/figures/soak.svg.
Run: python benchmarks/reliability.py [--calls 100000] [--kills 200] [--fuzz-runs 20000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def soak(calls: int) -> dict:
    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.export.instrument import instrument_file
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.sources import ArraySource
    from tests.conftest import trained_digits_mlp

    folder = Path(tempfile.mkdtemp(prefix="nnwatch-soak-"))
    model, splits = trained_digits_mlp()
    (folder / "plain.onnx").write_bytes(model.SerializeToString())
    instrument_file(folder / "plain.onnx", folder / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon = Monitor(folder / "m.onnx", build_profile(folder / "m.onnx", ArraySource(*splits["train"], "t")),
                      providers="cpu")
    calibrate(mon, ArraySource(*splits["val"], "v"))
    x = splits["test"][0]
    mon.warmup((1,))
    lat = np.empty(calls)
    rss = []
    for i in range(calls):
        t = time.perf_counter()
        mon(x[i % len(x)][None])
        lat[i] = (time.perf_counter() - t) * 1e3
        if i % max(calls // 200, 1) == 0:
            rss.append((i, rss_mb()))
    rss.append((calls, rss_mb()))
    tenth = calls // 10
    first, last = lat[:tenth], lat[-tenth:]
    start_rss = rss[len(rss) // 10][1]  # after warm-up allocations settle
    return {
        "calls": calls, "rss_mb_start": start_rss, "rss_mb_end": rss[-1][1], "rss_growth_mb": rss[-1][1] - start_rss,
        "p50_first_ms": float(np.percentile(first, 50)), "p50_last_ms": float(np.percentile(last, 50)),
        "p99_first_ms": float(np.percentile(first, 99)), "p99_last_ms": float(np.percentile(last, 99)),
        "rss_series": rss, "latency_p50_series": [
            (int(i), float(np.percentile(lat[i : i + tenth // 5], 50))) for i in range(0, calls, max(tenth // 5, 1))],
    }


def kills(n: int) -> dict:
    from tests.reliability.test_crash_safety import kill_while_saving

    return kill_while_saving(Path(tempfile.mkdtemp(prefix="nnwatch-kill-")), n, seed=7)


def fuzz(runs: int) -> dict:
    out = {}
    for test in ("test_byte_level_mutations", "test_structural_mutations", "test_header_mutations",
                 "test_manifest_json_mutations"):
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", f"tests/reliability/test_file_fuzz.py::{test}",
                               "--hypothesis-show-statistics", "-p", "no:cacheprovider",
                               "--hypothesis-seed=1"], cwd=ROOT, capture_output=True, text=True,
                              env={**__import__("os").environ, "NNWATCH_FUZZ_EXAMPLES": str(runs // 4)})
        m = re.search(r"(\d+) passing, (\d+) failing", proc.stdout)
        out[test] = {"passing": int(m.group(1)) if m else 0, "failing": int(m.group(2)) if m else -1,
                     "exit": proc.returncode}
    corpus = Path(tempfile.mkdtemp(prefix="nnwatch-corpus-"))
    from tests.reliability.test_crash_safety import make_profiles

    small = Path(tempfile.mkdtemp())
    a, _ = make_profiles(small)
    (corpus / "seed.npz").write_bytes(a.read_bytes()[:200_000] if a.stat().st_size > 200_000 else a.read_bytes())
    (corpus / "seed.json").write_bytes(b'{"format": "nnwatch.manifest", "version": 1, "taps": []}')
    proc = subprocess.run([sys.executable, "benchmarks/fuzz_profile.py", f"-runs={runs}", "-max_len=400000",
                           str(corpus)], cwd=ROOT, capture_output=True, text=True)
    done = re.findall(r"Done (\d+) runs", proc.stderr)
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    if proc.returncode and not done and "Uncaught Python exception" not in proc.stderr:
        raise SystemExit(f"reliability.py: the atheris fuzzer did not run:\n{proc.stderr[-600:]}")
    out["atheris"] = {"runs": int(done[-1]) if done else 0, "exit": proc.returncode,
                      "coverage_edges": int(cov[-1]) if cov else 0,
                      "crash": "Uncaught Python exception" in proc.stderr, "tail": proc.stderr[-600:]}
    return out


def figure(result: dict) -> None:
    from nnwatch.eval.svg import line_chart

    rss = np.array(result["soak"]["rss_series"], float)
    lat = np.array(result["soak"]["latency_p50_series"], float)
    svg_rss = line_chart({"RSS (MiB)": (rss[:, 0], rss[:, 1])}, "Soak: resident memory", "calls", "MiB",
                         limits=(0, rss[-1, 0], 0, rss[:, 1].max() * 1.1))
    svg_lat = line_chart({"p50 latency (ms)": (lat[:, 0], lat[:, 1])}, "Soak: batch-1 latency", "calls", "ms",
                         limits=(0, rss[-1, 0], 0, lat[:, 1].max() * 1.2))
    fig = ROOT / "docs" / "figures"
    fig.mkdir(parents=True, exist_ok=True)
    (fig / "soak_rss.svg").write_text(svg_rss)
    (fig / "soak_latency.svg").write_text(svg_lat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--fuzz-runs", type=int, default=20_000)
    args = ap.parse_args()
    import importlib.util

    if importlib.util.find_spec("atheris") is None:
        # checked before the hour of work: a result without the fuzzer would record 0 runs as if measured
        sys.exit("reliability.py: the coverage-guided fuzzer needs atheris; pip install atheris, then run again")
    result = {"soak": soak(args.calls)}
    print("soak done", file=sys.stderr)
    result["kills"] = kills(args.kills)
    print("kills done", file=sys.stderr)
    result["fuzz"] = fuzz(args.fuzz_runs)
    figure(result)
    s, k, f = result["soak"], result["kills"], result["fuzz"]
    hyp = sum(v["passing"] for n, v in f.items() if n != "atheris")
    md = [
        "<!-- begin figures -->", "| property | figure |", "|---|---|",
        f"| soak: batch-1 calls | {s['calls']:,} |",
        f"| soak: RSS start → end (growth) | {s['rss_mb_start']:.1f} → {s['rss_mb_end']:.1f} MiB ({s['rss_growth_mb']:+.2f} MiB) |",
        f"| soak: p50 first 10% → last 10% | {s['p50_first_ms']:.4f} → {s['p50_last_ms']:.4f} ms |",
        f"| soak: p99 first 10% → last 10% | {s['p99_first_ms']:.4f} → {s['p99_last_ms']:.4f} ms |",
        f"| SIGKILL during saves: kills / loadable afterwards | {k['kills']} / {k['loaded']} (old {k['old_or_new']['A']}, new {k['old_or_new']['B']}) |",
        f"| SIGKILL: orphaned temp files left at the end | {k['stale_temp_files']} |",
        f"| file fuzzing (hypothesis mutations), cases / failing | {hyp:,} / {sum(max(v['failing'], 0) for n, v in f.items() if n != 'atheris')} |",
        f"| coverage-guided fuzzing (atheris), runs / crashes | {f['atheris']['runs']:,} / {int(f['atheris']['crash'])} (edges covered: {f['atheris']['coverage_edges']}) |",
        "<!-- end figures -->",
    ]
    write("reliability", result, "\n".join(md), note="Long runs of the reliability suite.")


if __name__ == "__main__":
    main()
