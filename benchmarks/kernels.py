"""Coverage kernels: Numba vs vectorized numpy vs the numpy oracle vs a per-neuron Python loop.

Also: effective bytes read per second next to this machine's copy bandwidth; the serial vs the
parallel kernel around PARALLEL_MIN_WORK, alone and right after an onnxruntime run whose
worker threads spin (the monitor's situation); and profile-building throughput.
Run: python benchmarks/kernels.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import interleaved, write

from nnwatch.kernels import reference as ref
from nnwatch.kernels.coverage import PARALLEL_MIN_WORK, coverage_scores, make_scratch
from nnwatch.kernels.layout import pack_layers
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import compile_tables

LAYOUTS = {"256 neurons (4x64)": [64] * 4, "2k neurons (64..1024)": [64, 128, 256, 512, 1024],
           "8k neurons (8x1024)": [1024] * 8}


def numpy_vectorized(layers, pred, t):
    """The whole batch at once with numpy: what a careful numpy user would write."""
    acts = np.concatenate(layers, axis=1)
    lo, hi = t.lo[pred], t.hi[pred]
    k = t.section_rare.shape[2]
    active = acts > t.threshold
    nc = np.where(active, t.on_rare[pred], t.off_rare[pred]).mean(1)
    inside = (acts >= lo) & (acts <= hi)
    sec = np.clip(((acts.astype(np.float64) - lo) * t.inv_width[pred]).astype(np.int64), 0, k - 1)
    rare_sec = np.take_along_axis(t.section_rare[pred], sec[:, :, None], axis=2)[:, :, 0]
    km = np.where(inside, rare_sec, 1).mean(1)
    below, above = acts < lo, acts > hi
    nbc = (below | above).mean(1)
    excess = (np.where(below, lo.astype(np.float64) - acts, 0) + np.where(above, acts - hi.astype(np.float64), 0))
    nbe = (excess * t.inv_unit[pred]).mean(1)
    tk, total, start = np.zeros(len(pred)), 0, 0
    for a in layers:
        kk = min(t.k_top, a.shape[1])
        top = np.argsort(-a, axis=1, kind="stable")[:, :kk]
        tk += np.take_along_axis(t.topk_rare[pred][:, start : start + a.shape[1]], top, axis=1).sum(1)
        total += kk
        start += a.shape[1]
    nonfinite = (~np.isfinite(acts)).sum(1)
    return np.stack([nc, km, tk / total, nbc, nbe, nonfinite], axis=1)


def python_loop(layers, pred, t):
    """Per-neuron Python loop, the way many coverage tools are written."""
    out = []
    k = t.section_rare.shape[2]
    for b, c in enumerate(pred):
        nc = km = nb = tk = total = nonf = 0
        ex = 0.0
        start = 0
        for a in layers:
            row = a[b].tolist()
            for j, v in enumerate(row):
                n = start + j
                nc += int(t.on_rare[c, n] if v > t.threshold[n] else t.off_rare[c, n])
                lo, hi = float(t.lo[c, n]), float(t.hi[c, n])
                if lo <= v <= hi:
                    km += int(t.section_rare[c, n, min(int((v - lo) * t.inv_width[c, n]), k - 1)])
                else:
                    km += 1
                    nb += 1
                    ex += ((lo - v) if v < lo else (v - hi)) * t.inv_unit[c, n]
                nonf += not np.isfinite(v)
            kk = min(t.k_top, len(row))
            for j in sorted(range(len(row)), key=lambda j: -row[j])[:kk]:
                tk += int(t.topk_rare[c, start + j])
            total += kk
            start += len(row)
        n_all = start
        out.append([nc / n_all, km / n_all, tk / total, nb / n_all, ex / n_all, nonf])
    return np.array(out)


def make_tables(sizes, rng):
    train = [rng.normal(size=(2000, n)).astype(np.float32) for n in sizes]
    labels = rng.integers(0, 10, 2000)
    b = ProfileBuilder(sizes, 10).update_ranges(train, labels).finish_ranges().update_sections(train, labels)
    return compile_tables(b.build("0" * 64, [str(i) for i in range(len(sizes))]), rare_rate=0.01, warn=False)


def copy_bandwidth_gbs() -> float:
    src = np.ones(64 * 2**20 // 4, np.float32)  # 64 MiB
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9  # read + write


def serial_vs_parallel(rng, quick, md):
    """Serial and parallel kernel p50 as batch x neurons crosses PARALLEL_MIN_WORK."""
    sizes = LAYOUTS["2k neurons (64..1024)"]
    t = make_tables(sizes, rng)
    n_total = sum(sizes)
    md.append(f"\nSerial vs parallel kernel, 2k neurons, nothing else running (PARALLEL_MIN_WORK = {PARALLEL_MIN_WORK:,} "
              "neuron evaluations per call):\n")
    md.append("<!-- begin parallel -->")
    md.append("| batch | neuron evaluations | serial ms | parallel ms | parallel / serial |")
    md.append("|---|---|---|---|---|")
    out = []
    for batch in (4, 16, 32, 64, 128, 512):
        layers = [rng.normal(size=(batch, n)).astype(np.float32) for n in sizes]
        buf, pred = pack_layers(layers), rng.integers(0, 10, batch)
        res = interleaved({"serial": lambda: coverage_scores(buf, batch, pred, t, parallel=False),
                           "parallel": lambda: coverage_scores(buf, batch, pred, t, parallel=True)},
                          20 if quick else 100, budget_s=10 if quick else 30)
        row = {"batch": batch, "work": batch * n_total, "serial_ms": res["serial"]["p50_ms"],
               "parallel_ms": res["parallel"]["p50_ms"]}
        row["ratio"] = row["parallel_ms"] / row["serial_ms"]
        out.append(row)
        md.append(f"| {batch} | {batch * n_total:,} | {row['serial_ms']:.3f} | {row['parallel_ms']:.3f} | {row['ratio']:.2f}x |")
    md.append("<!-- end parallel -->")
    return out


def _mlp_session(spinning: bool):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from nnwatch.monitor.runner import session_options

    width, rng = 512, np.random.default_rng(1)
    nodes, inits, prev = [], [], "x"
    for i in range(6):
        inits.append(numpy_helper.from_array(rng.normal(size=(width, width)).astype(np.float32) / 20, f"w{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), session_options(2, spinning), providers=["CPUExecutionProvider"])


def after_onnxruntime(rng, quick, md):
    """The kernel right after a 2-thread onnxruntime run (as in the monitor), spinning on and off."""
    import time as _time

    sizes = LAYOUTS["2k neurons (64..1024)"]
    t = make_tables(sizes, rng)
    batch = 64
    layers = [rng.normal(size=(batch, n)).astype(np.float32) for n in sizes]
    buf, pred = pack_layers(layers), rng.integers(0, 10, batch)
    x = rng.normal(size=(batch, 512)).astype(np.float32)
    md.append("\nThe kernel right after a 2-thread onnxruntime run (batch 64, 2k neurons), p50 of the kernel alone:\n")
    md.append("<!-- begin after_ort -->")
    md.append("| onnxruntime spinning | serial kernel ms | parallel kernel ms | parallel / serial | onnxruntime run ms |")
    md.append("|---|---|---|---|---|")
    out = []
    for spinning in (True, False):
        sess = _mlp_session(spinning)
        times = {"serial": [], "parallel": [], "ort": []}
        for r in range(40 if quick else 300):
            for kind in (("serial", "parallel") if r % 2 == 0 else ("parallel", "serial")):
                t0 = _time.perf_counter()
                sess.run(None, {"x": x})
                t1 = _time.perf_counter()
                coverage_scores(buf, batch, pred, t, parallel=kind == "parallel")
                t2 = _time.perf_counter()
                times[kind].append(t2 - t1)
                times["ort"].append(t1 - t0)
        row = {"spinning": spinning, **{f"{k}_ms": float(np.median(v) * 1e3) for k, v in times.items()}}
        row["ratio"] = row["parallel_ms"] / row["serial_ms"]
        out.append(row)
        md.append(f"| {'on' if spinning else 'off'} | {row['serial_ms']:.3f} | {row['parallel_ms']:.3f} | "
                  f"{row['ratio']:.2f}x | {row['ort_ms']:.3f} |")
    md.append("<!-- end after_ort -->")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows, md = [], []
    bandwidth = copy_bandwidth_gbs()
    md.append(f"numpy copy bandwidth (read+write): {bandwidth:.1f} GB/s\n")
    md.append("<!-- begin scoring -->")
    md.append("| layout | batch | numba | numba µs/call | numpy vectorized | numpy oracle | python loop | numba vs numpy | numba vs oracle | numba vs loop | numba GB/s (acts+tables) |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, sizes in LAYOUTS.items():
        t = make_tables(sizes, rng)
        for batch in (1, 64):
            layers = [rng.normal(size=(batch, n)).astype(np.float32) * 1.2 for n in sizes]
            pred = rng.integers(0, 10, batch)
            buf = pack_layers(layers)
            out = np.empty((batch, 6))
            scratch = make_scratch(batch, t.k_top)
            want = coverage_scores(buf, batch, pred, t)
            np.testing.assert_allclose(numpy_vectorized(layers, pred, t), want, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(ref.coverage_scores(layers, pred, t), want, rtol=1e-9, atol=1e-9)
            n_total = sum(sizes)
            loop_ok = n_total * batch <= (20_000 if args.quick else 140_000)
            if loop_ok:
                np.testing.assert_allclose(python_loop(layers, pred, t), want, rtol=1e-9, atol=1e-9)
            kind = "parallel" if batch > 1 and batch * n_total >= PARALLEL_MIN_WORK else "serial"
            calls = {
                "numba": lambda: coverage_scores(buf, batch, pred, t, out=out, scratch=scratch),
                "numpy": lambda: numpy_vectorized(layers, pred, t),
                "oracle": lambda: ref.coverage_scores(layers, pred, t),
            }
            if loop_ok:
                calls["loop"] = lambda: python_loop(layers, pred, t)
            rounds = 10 if args.quick else (30 if loop_ok and batch > 1 else 200)
            res = interleaved(calls, rounds, budget_s=20 if args.quick else 60)
            nb = res["numba"]["p50_ms"]
            bytes_read = batch * n_total * (4 + 4 + 4 + 8 + 8 + 4 + 1 + 3)
            row = {"layout": name, "neurons": n_total, "batch": batch, "numba_kernel": kind, **{f"{k}_ms": v["p50_ms"] for k, v in res.items()},
                   "speedup_vs_numpy": res["numpy"]["p50_ms"] / nb, "speedup_vs_oracle": res["oracle"]["p50_ms"] / nb,
                   "speedup_vs_loop": res["loop"]["p50_ms"] / nb if loop_ok else None,
                   "numba_gbs": bytes_read / (nb / 1e3) / 1e9}
            rows.append(row)
            loop_txt = f"{res['loop']['p50_ms']:.3f} ms" if loop_ok else "(skipped: too slow)"
            loop_ratio = f"{row['speedup_vs_loop']:.0f}x" if loop_ok else "-"
            md.append(f"| {name} | {batch} | {kind} | {nb * 1e3:.1f} | {res['numpy']['p50_ms']:.3f} ms | {res['oracle']['p50_ms']:.3f} ms | "
                      f"{loop_txt} | {row['speedup_vs_numpy']:.1f}x | {row['speedup_vs_oracle']:.1f}x | {loop_ratio} | {row['numba_gbs']:.2f} |")
    md.append("<!-- end scoring -->")
    parallel_rows = serial_vs_parallel(rng, args.quick, md)
    spin_rows = after_onnxruntime(rng, args.quick, md)
    md.append("\nProfile building (two passes, 2k neurons, 10 classes), inputs/s:\n")
    md.append("<!-- begin building -->")
    md.append("| samples | pass 1 inputs/s | pass 2 inputs/s |")
    md.append("|---|---|---|")
    build_rows = []
    sizes = LAYOUTS["2k neurons (64..1024)"]
    for n in ((1000, 4000) if args.quick else (1000, 4000, 16000)):
        data = [rng.normal(size=(n, s)).astype(np.float32) for s in sizes]
        labels = rng.integers(0, 10, n)
        b = ProfileBuilder(sizes, 10)
        t0 = time.perf_counter()
        for lo in range(0, n, 256):
            b.update_ranges([a[lo : lo + 256] for a in data], labels[lo : lo + 256])
        t1 = time.perf_counter()
        b.finish_ranges()
        for lo in range(0, n, 256):
            b.update_sections([a[lo : lo + 256] for a in data], labels[lo : lo + 256])
        t2 = time.perf_counter()
        build_rows.append({"samples": n, "pass1_per_s": n / (t1 - t0), "pass2_per_s": n / (t2 - t1)})
        md.append(f"| {n} | {n / (t1 - t0):,.0f} | {n / (t2 - t1):,.0f} |")
    md.append("<!-- end building -->")
    write("kernels", {"copy_bandwidth_gbs": bandwidth, "scoring": rows, "profile_building": build_rows,
                      "parallel_min_work": PARALLEL_MIN_WORK, "serial_vs_parallel": parallel_rows,
                      "after_onnxruntime": spin_rows}, "\n".join(md))


if __name__ == "__main__":
    main()
