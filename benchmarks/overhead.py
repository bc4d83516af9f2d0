"""Plain onnxruntime vs monitored inference, batch 1 and 64, on small CNNs.

Variants, timed interleaved in one process per model:
- plain: the untapped model, ``session.run`` (what a user runs today);
- plain (IOBinding): the untapped model into preallocated outputs (the best plain case);
- tapped: the instrumented model through nnwatch's runner (IOBinding), no detectors;
- monitored (coverage): tapped + input check + the compiled pass (coverage, calibrated decision);
- monitored (fused default): what ``Monitor(model, profile)`` runs after ``calibrate`` with the
  default detectors: the compiled columns (coverage family, MSP, max-logit, energy, and
  Mahalanobis where it fits the fusion's cost budget) and the fused verdict, all in the one
  compiled call;
- monitored (fused default, graph engine): the same monitor with ``engine="graph"``: the verdict
  computed inside the model's own onnxruntime call, as standard ONNX operators;
- monitored (fused default) + stream: the same call with a StreamMonitor attached (the stream
  advances inside the call's compiled pass);
- the same monitored (coverage) with conv maps reduced after the run instead of in the graph.
Peak RSS is measured per model in its own process. Run: python benchmarks/overhead.py [--quick]

``--providers cuda`` (or tensorrt) times the same variants on a GPU: the input is copied to the
device once per call, outputs come back into preallocated host buffers, and "tapped / plain"
then includes what exposing intermediate tensors costs that provider (lost fusions).
``--precisions fp16 int8`` adds the model converted to FP16 (onnxruntime's converter, float32
inputs and outputs kept) and statically quantized to INT8 (QDQ, calibrated on 16 random
inputs: for cost only), each instrumented the same way.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import add_ratios, interleaved, write

MODELS = ("digits_cnn", "lenet", "small_cnn", "mobilenet_v3_small", "resnet18")
EDGE = ("mobilenet_v3_small", "resnet18")


def small_cnn():
    import torch.nn as nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.ReLU()]

    return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         *block(64, 128), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128 * 16, 128), nn.ReLU(), nn.Linear(128, 10))


def convert(data: bytes, precision: str, input_shape: tuple) -> bytes:
    """The plain model in ``precision``: fp32 as is, fp16 by onnxruntime's converter, int8 by QDQ quantization."""
    if precision == "fp32":
        return data
    import onnx

    model = onnx.load_from_string(data)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return convert_float_to_float16(model, keep_io_types=True).SerializeToString()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    name = model.graph.input[0].name
    rng = np.random.default_rng(1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: rng.random((1,) + input_shape, dtype=np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ)
        return dst.read_bytes()


def build(name: str, folders: dict) -> str:
    """Export the plain model once, and per precision (folders: precision -> folder) the
    converted plain model and two instrumented variants; return where the network came from."""
    import torch

    from nnwatch.eval.models import digits_cnn, lenet
    from nnwatch.eval.zoo import edge_model
    from nnwatch.export.from_torch import export_plain
    from nnwatch.export.instrument import instrument, save_onnx

    torch.manual_seed(0)
    layers, source = "auto", "nnwatch.eval"
    if name in EDGE:
        module, layers, source = edge_model(name)  # taps: every block output (+ classifier input)
    else:
        module = {"digits_cnn": digits_cnn, "lenet": lenet, "small_cnn": small_cnn}[name]().eval()
    exported = export_plain(module, torch.zeros((1,) + SHAPES[name])).SerializeToString()
    for precision, folder in folders.items():
        data = convert(exported, precision, SHAPES[name])
        (folder / "plain.onnx").write_bytes(data)
        for where in ("graph", "kernel"):
            model, _ = instrument(data, layers=layers, reduce_in_graph=where == "graph")
            save_onnx(model, folder / f"{where}.onnx")
    return source


SHAPES = {"digits_cnn": (1, 8, 8), "lenet": (1, 28, 28), "small_cnn": (3, 32, 32),
          "mobilenet_v3_small": (3, 224, 224), "resnet18": (3, 224, 224)}


def run_one(name: str, quick: bool, threads: int, folder: Path, source: str = "", provider: str = "cpu",
            precision: str = "fp32", budget_s: float | None = None) -> dict:
    import onnx
    import onnxruntime as ort

    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.monitor.detectors import DEFAULT
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.monitor.providers import resolve_providers
    from nnwatch.monitor.runner import Runner, session_options
    from nnwatch.monitor.stream import StreamMonitor
    from nnwatch.profile.store import save_profile
    from nnwatch.sources import ArraySource

    shape = SHAPES[name]
    rng = np.random.default_rng(0)
    n_prof, n_cal = (150, 100) if name in EDGE else (400, 200)
    data = rng.random((n_prof + n_cal,) + shape, dtype=np.float32)
    out = {"model": name, "input_shape": list(shape), "threads": threads, "source": source, "provider": provider,
           "precision": precision}
    providers = resolve_providers(PROVIDERS[provider])
    monitors = {}
    profiles = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for where in ("graph", "kernel"):
            # Monitors of one model share its session: fewer thread pools competing for 2 cores.
            shared = Runner(folder / f"{where}.onnx", providers=providers, threads=threads)
            prof = build_profile(shared, ArraySource(data[:n_prof], None, "random"), batch_size=32)
            profiles[where] = prof
            for dets in ("coverage", "fused default"):
                if where == "kernel" and dets != "coverage":
                    continue
                mon = Monitor(shared, copy.deepcopy(prof), min_signature_samples=1,
                              detectors=("coverage",) if dets == "coverage" else DEFAULT)
                calibrate(mon, ArraySource(data[n_prof:], None, "random"), min_class_samples=1, batch_size=32)
                if dets != "coverage":  # what a user then gets: Monitor(model, calibrated profile)
                    out["fusion"] = mon.calibration.fusion
                    mon = Monitor(shared, mon.profile, min_signature_samples=1)
                    out["fused_default_columns"] = list(mon.columns)
                    graph = Monitor(shared, mon.profile, min_signature_samples=1, engine="graph")
                    monitors["monitored (fused default, graph engine)"] = graph
                    out["graph_nodes"] = len(onnx.load_from_string(graph.graph_model).graph.node)
                monitors[f"monitored ({dets}{', maps reduced after run' if where == 'kernel' else ''})"] = mon
    out["neurons"] = int(monitors["monitored (coverage)"].tables.n_neurons)
    sess = ort.InferenceSession(str(folder / "plain.onnx"), session_options(threads), providers=providers)
    out["session_providers"] = sess.get_providers()
    in_name = sess.get_inputs()[0].name
    runner = monitors["monitored (coverage)"].runner
    for batch in (1, 64):
        x = rng.random((batch,) + shape, dtype=np.float32)
        for m in monitors.values():
            m.warmup((batch,))
        ws = runner.workspace(batch)
        binding = sess.io_binding()
        n_out = sess.get_outputs()[0].shape[1]
        plain_out = np.empty((batch, n_out), np.float32)
        binding.bind_cpu_input(in_name, x)
        binding.bind_output(sess.get_outputs()[0].name, "cpu", 0, np.float32, [batch, n_out], plain_out.ctypes.data)
        calls = {"plain": lambda: sess.run(None, {in_name: x}),
                 "plain (IOBinding)": lambda: sess.run_with_iobinding(binding),
                 "tapped": lambda: runner.run(x, ws)}
        calls.update({k: (lambda m=m: m.score(x)) for k, m in monitors.items()})  # the call a user makes
        fused = monitors["monitored (fused default)"]
        # the same monitor on the same session, with a stream attached: it advances inside the call
        streamed = Monitor(fused.runner, fused.profile, min_signature_samples=1)
        streamed.warmup((batch,))
        StreamMonitor(streamed, delta=0.01)  # a fresh test per batch size; its bags grow while timed
        calls["monitored (fused default) + stream"] = lambda: streamed.score(x)
        if provider != "cpu":
            # onnxruntime copies a host-bound input to the GPU when it is bound, not per call:
            # the honest baseline binds device memory and copies each new input into it, as the
            # monitor does; the old binding stays as "input already on the GPU" (no transfer).
            on_device = ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), np.float32, "cuda", 0)
            gpu_binding = sess.io_binding()
            gpu_binding.bind_ortvalue_input(in_name, on_device)
            gpu_binding.bind_output(sess.get_outputs()[0].name, "cpu", 0, np.float32, [batch, n_out],
                                    plain_out.ctypes.data)

            def plain_gpu():
                on_device.update_inplace(x)
                sess.run_with_iobinding(gpu_binding)

            calls["plain (IOBinding, input already on the GPU)"] = calls.pop("plain (IOBinding)")
            calls["plain (IOBinding)"] = plain_gpu
        if name in EDGE:
            rounds = (20 if batch == 1 else 2) if quick else (300 if batch == 1 else 5)
        else:
            rounds = (100 if batch == 1 else 20) if quick else (1500 if batch == 1 else 150)
        res = interleaved(calls, rounds, warmup=5 if batch == 1 else 1,
                          budget_s=budget_s if budget_s else 30 if quick else 150)
        add_ratios(res, {"": "plain", "iobinding": "plain (IOBinding)"})
        for v in res.values():
            v["throughput_per_s"] = batch / (v["mean_ms"] / 1e3)
        out[f"batch{batch}"] = res
        if batch == 1:  # where the fixed per-call cost goes: each compiled pass and detector on its own
            from nnwatch.eval.overhead import detector_costs

            parts = {k: v["p50_us"] for k, v in detector_costs(
                monitors["monitored (fused default)"], x, iters=200 if quick else 2000).items()}
            out["batch1_parts_us"] = parts
            base = res["plain (IOBinding)"]["p50_ms"]
            added = (res["monitored (fused default)"]["p50_ms"] - base) * 1e3
            tapping = (res["tapped"]["p50_ms"] - base) * 1e3
            alone = {n for n, d in monitors["monitored (fused default)"].detectors.items() if d.timed_alone}
            scoring = sum(v for k, v in parts.items() if k not in alone)  # timed alone: also inside "compiled scores"
            out["batch1_breakdown_us"] = {"added": added, "tapping": tapping, "compiled pass": scoring,
                                          "rest": added - tapping - scoring,
                                          "stream added": (res["monitored (fused default) + stream"]["p50_ms"]
                                                           - res["monitored (fused default)"]["p50_ms"]) * 1e3,
                                          "graph engine added": (res["monitored (fused default, graph engine)"]
                                                                 ["p50_ms"] - base) * 1e3}
    mon = monitors["monitored (coverage)"]
    save_profile(profiles["graph"], folder / "profile.npz")
    out["profile_mb"] = (folder / "profile.npz").stat().st_size / 2**20
    out["monitor_memory_mb"] = mon.memory_bytes() / 2**20
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
LABELS = {"digits_cnn": "digits CNN", "lenet": "LeNet", "small_cnn": "small CNN", "mobilenet_v3_small": "MobileNetV3-Small",
          "resnet18": "ResNet-18"}


def summary_table(results: list[dict]) -> list[str]:
    """The docs table: both plain baselines side by side, monitored as a multiple of each."""
    md = ["<!-- begin summary -->",
          "| model (input, source) | threads | batch | plain run p50 | plain IOBinding p50 | tapped | coverage | "
          "fused default, compiled engine | fused default, graph engine | + stream (compiled) | "
          "coverage, maps reduced after run |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for batch in (1, 64):
        for r in results:
            v = r[f"batch{batch}"]
            shape = "x".join(str(d) for d in r["input_shape"])
            where = "" if r.get("provider", "cpu") == "cpu" and r.get("precision", "fp32") == "fp32" else \
                f", {r['precision']}, {r['provider']}"
            md.append(f"| {LABELS[r['model']]} ({shape}, {r['source']}{where}) | {r['threads']} | {batch} | "
                      f"{v['plain']['p50_ms']:.3f} ms | {v['plain (IOBinding)']['p50_ms']:.3f} ms | "
                      f"{v['tapped']['ratio_p50_iobinding']:.2f}x | "
                      f"{v['monitored (coverage)']['ratio_p50_iobinding']:.2f}x | "
                      f"**{v['monitored (fused default)']['ratio_p50_iobinding']:.2f}x** | "
                      f"**{v['monitored (fused default, graph engine)']['ratio_p50_iobinding']:.2f}x** | "
                      f"{v['monitored (fused default) + stream']['ratio_p50_iobinding']:.2f}x | "
                      f"{v['monitored (coverage, maps reduced after run)']['ratio_p50_iobinding']:.2f}x |")
    md += ["<!-- end summary -->", "", "<!-- begin breakdown -->",
           "| model | plain IOBinding p50 | added by the compiled engine | tapping | compiled pass | Python, copies, "
           "caches | stream step | added by the graph engine | graph nodes |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b = r["batch1_breakdown_us"]
        md.append(f"| {LABELS[r['model']]} | {r['batch1']['plain (IOBinding)']['p50_ms'] * 1e3:.1f} µs | "
                  f"{b['added']:.1f} µs | {b['tapping']:.1f} µs | {b['compiled pass']:.1f} µs | {b['rest']:.1f} µs | "
                  f"{b['stream added']:.1f} µs | "
                  f"{b['graph engine added']:.1f} µs | {r['graph_nodes']} |")
    md.append("<!-- end breakdown -->")
    return md


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", choices=MODELS, help="internal: run one model in this process")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="onnxruntime intra-op threads to measure")
    ap.add_argument("--folder", help="internal: where the built models are")
    ap.add_argument("--source", default="", help="internal: where the network definition came from")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--name", default="overhead", help="results file name (benchmarks/results/NAME.md|json)")
    ap.add_argument("--providers", nargs="+", default=["cpu"], choices=sorted(PROVIDERS))
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "fp16", "int8"))
    ap.add_argument("--budget-s", type=float, help="seconds each interleaved timing may take (default 150, quick 30)")
    args = ap.parse_args()
    if args.model:
        print(json.dumps(run_one(args.model, args.quick, args.threads[0], Path(args.folder), args.source,
                                 args.providers[0], args.precisions[0], args.budget_s)))
        return
    from nnwatch.errors import InputError
    from nnwatch.monitor.providers import resolve_providers

    for provider in args.providers:  # refuse before building anything
        try:
            resolve_providers(PROVIDERS[provider])
        except InputError as exc:
            print(f"overhead.py: --providers {provider}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    # Build (torch) here; measure in child processes that never import torch, so their peak
    # RSS is what a deployed monitor needs.
    folders, sources = {}, {}
    for name in args.models:
        mine = {p: Path(tempfile.mkdtemp(prefix=f"nnwatch-overhead-{name}-{p}-")) for p in args.precisions}
        source = build(name, mine)
        for precision, folder in mine.items():
            folders[name, precision], sources[name, precision] = folder, source
    results = []
    runs = [(m, t, p, q) for p in args.providers for q in args.precisions for t in args.threads for m in args.models]
    for name, threads, provider, precision in runs:
        cmd = [sys.executable, __file__, "--model", name, "--threads", str(threads), "--folder",
               str(folders[name, precision]), "--source", sources[name, precision], "--providers", provider,
               "--precisions", precision]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--budget-s", str(args.budget_s)] if args.budget_s else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"done {name} threads={threads} {provider} {precision}", file=sys.stderr)
    md = summary_table(results)
    md += ["", "All variants (p50 and p99 as multiples of each baseline):", "", "<!-- begin all -->",
           "| model | neurons | threads | batch | variant | p50 ms | p99 ms | p50 / run | p50 / IOBinding | p99 / IOBinding | inputs/s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        where = "" if r["provider"] == "cpu" and r["precision"] == "fp32" else f" {r['precision']} {r['provider']}"
        for batch in (1, 64):
            for variant, v in r[f"batch{batch}"].items():
                md.append(f"| {r['model']} {tuple(r['input_shape'])}{where} | {r['neurons']} | {r['threads']} | {batch} | {variant} | "
                          f"{v['p50_ms']:.3f} | {v['p99_ms']:.3f} | {v['ratio_p50']:.2f}x | {v['ratio_p50_iobinding']:.2f}x | "
                          f"{v['ratio_p99_iobinding']:.2f}x | {v['throughput_per_s']:,.0f} |")
    md += ["<!-- end all -->", "", "<!-- begin memory -->",
           "| model | threads | peak RSS (MiB, whole process, no torch) | monitor tables + buffers (MiB) | profile file (MiB) |",
           "|---|---|---|---|---|"]
    for r in results:
        where = "" if r["provider"] == "cpu" and r["precision"] == "fp32" else f" {r['precision']} {r['provider']}"
        md.append(f"| {r['model']}{where} | {r['threads']} | {r['peak_rss_mb']:.0f} | {r['monitor_memory_mb']:.2f} | {r['profile_mb']:.2f} |")
    md.append("<!-- end memory -->")
    write(args.name, {"models": results}, "\n".join(md))


if __name__ == "__main__":
    main()
