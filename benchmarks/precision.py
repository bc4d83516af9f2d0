"""The same monitor on FP32, FP16 and INT8 versions of one network, side by side (MNIST, LeNet).

One LeNet is trained on MNIST and exported; onnxruntime converts it to FP16 (float32 inputs
and outputs kept) and quantizes it statically to INT8 in both of its formats (QDQ and
QOperator; calibration: 512 training images). Each version is instrumented, profiled on the
training split, calibrated at a 5% target on the same validation images and scored on the
same clean test images and anomaly sets as benchmarks/detection.py (the attacks are made
against the float network and transferred: what an attacker without the deployed int8 file
does). Reported per version: accuracy and agreement with FP32, the AUROC of the default
detectors and the fused verdict on every set, the realized clean false-alarm rate, how well
the coverage score ranks inputs as the FP32 one does (Spearman), the profile size, and the
batch-1 monitored call against a plain IOBinding call of the same version, timed interleaved,
and how often the graph engine's verdicts differ from the compiled engine's on every input.
Data: ../shared/data. Run: python benchmarks/precision.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import add_ratios, interleaved, write
from detection import DATA, SPLITS, anomalies, say

DETECTORS = ("coverage", "nbc", "kmnc", "msp", "energy", "mahalanobis", "fused")
VERSIONS = ("fp32", "fp16", "int8 QDQ", "int8 QOperator")


def convert(fp32: Path, version: str, calib: np.ndarray, folder: Path) -> Path:
    import onnx

    if version == "fp32":
        return fp32
    dst = folder / f"{version.replace(' ', '_')}.onnx"
    if version == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(dst))
        return dst
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    name = onnx.load(str(fp32)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calib[i : i + 64]} for i in range(0, len(calib), 64)])

        def get_next(self):
            return next(self.batches, None)

    logging.disable(logging.WARNING)
    quantize_static(str(fp32), str(dst), Reader(),
                    quant_format=QuantFormat.QDQ if version.endswith("QDQ") else QuantFormat.QOperator)
    logging.disable(logging.NOTSET)
    return dst


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def engine_agreement(model: Path, profile, inputs: list) -> dict:  # type: ignore[no-untyped-def]
    """The default monitor on both engines, over the same inputs: how often their verdicts differ.

    The graph engine computes in float32 what the compiled one computes in float64: a decision
    can differ only where a score lies within float32 rounding of a calibration score.
    """
    from nnwatch.monitor.monitor import Monitor

    compiled = Monitor(model, profile, providers="cpu", threads=1)
    graph = Monitor(model, profile, providers="cpu", threads=1, engine="graph")
    x = np.concatenate(inputs)
    a = [compiled(x[i : i + 256]) for i in range(0, len(x), 256)]
    b = [graph(x[i : i + 256]) for i in range(0, len(x), 256)]
    d = compiled.columns.index(compiled.decision)

    def cat(vs, f):  # type: ignore[no-untyped-def]
        return np.concatenate([f(v) for v in vs])

    pa, pb = cat(a, lambda v: v.p_matrix[:, d]), cat(b, lambda v: v.p_matrix[:, d])
    fa, fb = cat(a, lambda v: v.flag_matrix), cat(b, lambda v: v.flag_matrix)
    calibrated = a[0].calibrated
    return {"inputs": len(x), "decision": compiled.decision,
            "pred_differ": int((cat(a, lambda v: v.pred) != cat(b, lambda v: v.pred)).sum()),
            "decision_flags_differ": int((cat(a, lambda v: v.flag) != cat(b, lambda v: v.flag)).sum()),
            "column_flags_differ": {c: int((fa[:, j] != fb[:, j]).sum()) for j, c in enumerate(compiled.columns)
                                    if calibrated[j]},
            "decision_p_max_abs_diff": float(np.abs(pa - pb).max())}


def main() -> None:
    import onnxruntime as ort
    import torch

    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.eval.evaluate import evaluate
    from nnwatch.eval.models import lenet, train_classifier
    from nnwatch.export.from_torch import export_plain
    from nnwatch.export.instrument import instrument_file
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.monitor.runner import session_options
    from nnwatch.profile.store import save_profile
    from nnwatch.sources import ArraySource, load_idx

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-precision-"))
    n = {k: v // (2 if args.quick else 1) for k, v in SPLITS["mnist"].items()}
    train, test = load_idx(DATA / "mnist", "train"), load_idx(DATA / "mnist", "test")
    other = load_idx(DATA / "fashion_mnist", "test").x
    a, b, c = n["val"], n["val"] + n["clean"], n["val"] + n["clean"] + n["sources"]
    val = ArraySource(test.x[:a], test.y[:a], f"mnist test[:{a}] (validation)")
    clean = ArraySource(test.x[a:b], test.y[a:b], f"mnist test[{a}:{b}] (clean test)")
    say(f"training LeNet on {len(train)} images")
    net = train_classifier(lenet(), train.x, train.y, epochs=4 if args.quick else 10, seed=0, lr=2e-3)
    fp32 = folder / "fp32.onnx"
    fp32.write_bytes(export_plain(net, torch.from_numpy(train.x[:1])).SerializeToString())
    say("attacks and corruptions (made against the float network)")
    sets, _ = anomalies(net, test.x[b:c], test.y[b:c], other[: len(clean)], "fashion_mnist (other dataset)", args.quick)
    calib = train.x[np.random.default_rng(0).permutation(len(train))[:512]]
    rows, monitors, plain, reference = {}, {}, {}, {}
    for version in VERSIONS:
        say(f"{version}: convert, instrument, profile, calibrate, evaluate")
        model = convert(fp32, version, calib, folder)
        inst = folder / f"{model.stem}.tapped.onnx"
        manifest = instrument_file(model, inst)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profile = build_profile(inst, train)
            mon = Monitor(inst, profile, providers="cpu", threads=1)
            calibrate(mon, val, fpr=0.05)
            mon = Monitor(inst, mon.profile, providers="cpu", threads=1,
                          detectors=[d for d in DETECTORS if d != "fused"] + list(mon.calibration.fusion["members"])
                          + ["fused"])
        save_profile(mon.profile, folder / f"{model.stem}.npz")
        ev = evaluate(mon, clean, sets)
        verdicts = [mon(clean.x[i : i + 256]) for i in range(0, len(clean), 256)]
        pred = np.concatenate([v.pred for v in verdicts])
        cov = np.concatenate([v.score_matrix[:, v.columns.index("coverage")] for v in verdicts])
        flags = np.concatenate([v.flag for v in verdicts])
        reference.setdefault("pred", pred)
        reference.setdefault("coverage", cov)
        aurocs = {}
        for row in ev.rows:
            if row["detector"] in DETECTORS:
                aurocs.setdefault(row["detector"], {})[row["set"]] = row["auroc"]
        rows[version] = {
            "taps": [f"{t.layer}({t.neurons}, {t.dtype})" for t in manifest.taps],
            "accuracy": float(np.mean(pred == clean.y)), "agreement_with_fp32": float(np.mean(pred == reference["pred"])),
            "coverage_spearman_with_fp32": spearman(cov, reference["coverage"]),
            "clean_false_alarm_rate": float(flags.mean()), "fusion_members": list(mon.calibration.fusion["members"]),
            "auroc": aurocs, "mean_auroc": {d: float(np.mean(list(v.values()))) for d, v in aurocs.items()},
            "model_kib": model.stat().st_size / 1024, "profile_kib": (folder / f"{model.stem}.npz").stat().st_size / 1024,
        }
        monitors[version] = mon
        rows[version]["engines"] = engine_agreement(inst, mon.profile, [clean.x] + list(sets.values()))
        sess = ort.InferenceSession(str(model), session_options(1), providers=["CPUExecutionProvider"])
        plain[version] = sess
    say("timing batch 1, every version interleaved")
    x = clean.x[:1].copy()
    calls = {}
    for version, sess in plain.items():
        binding = sess.io_binding()
        out = np.empty((1, 10), np.float32)
        binding.bind_cpu_input(sess.get_inputs()[0].name, x)
        binding.bind_output(sess.get_outputs()[0].name, "cpu", 0, np.float32, [1, 10], out.ctypes.data)
        monitors[version].warmup((1,))
        calls[f"{version} plain (IOBinding)"] = lambda s=sess, bd=binding: s.run_with_iobinding(bd)
        calls[f"{version} monitored"] = lambda m=monitors[version]: m.score(x, _record=False)
    timing = interleaved(calls, 300 if args.quick else 3000, warmup=20, budget_s=30 if args.quick else 120)
    add_ratios(timing, {"": "fp32 plain (IOBinding)"})
    for version in VERSIONS:
        rows[version]["batch1_plain_us"] = timing[f"{version} plain (IOBinding)"]["p50_ms"] * 1e3
        rows[version]["batch1_monitored_us"] = timing[f"{version} monitored"]["p50_ms"] * 1e3
        rows[version]["monitored_over_own_plain"] = rows[version]["batch1_monitored_us"] / rows[version]["batch1_plain_us"]
    md = ["<!-- begin precision -->",
          "| version | accuracy | agrees with FP32 | coverage rank corr. with FP32 | clean false alarms (target 5%) | "
          "mean AUROC: " + " / ".join(DETECTORS) + " | plain IOBinding µs | monitored µs | monitored / own plain | "
          "model KiB | profile KiB |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for version, r in rows.items():
        md.append(f"| {version} | {r['accuracy']:.3f} | {r['agreement_with_fp32']:.3f} | {r['coverage_spearman_with_fp32']:.3f} | "
                  f"{r['clean_false_alarm_rate']:.3f} | " + " / ".join(f"{r['mean_auroc'][d]:.3f}" for d in DETECTORS)
                  + f" | {r['batch1_plain_us']:.1f} | {r['batch1_monitored_us']:.1f} | {r['monitored_over_own_plain']:.2f}x | "
                  f"{r['model_kib']:.0f} | {r['profile_kib']:.0f} |")
    md.append("<!-- end precision -->")
    md += ["", "<!-- begin engines -->",
           "| version | inputs | decision | predictions that differ | decision flags that differ | "
           "largest decision p-value difference | column flags that differ |", "|---|---|---|---|---|---|---|"]
    for version, r in rows.items():
        e = r["engines"]
        columns = ", ".join(f"{c} {k}" for c, k in e["column_flags_differ"].items() if k) or "none"
        md.append(f"| {version} | {e['inputs']:,} | {e['decision']} | {e['pred_differ']} | {e['decision_flags_differ']} | "
                  f"{e['decision_p_max_abs_diff']:.2g} | {columns} |")
    md.append("<!-- end engines -->")
    md += ["", "AUROC of the fused verdict per set:", "", "| set | " + " | ".join(VERSIONS) + " |",
           "|---|" + "---|" * len(VERSIONS)]
    for s in rows["fp32"]["auroc"]["fused"]:
        md.append(f"| {s} | " + " | ".join(f"{rows[v]['auroc']['fused'][s]:.3f}" for v in VERSIONS) + " |")
    write("precision", {"versions": rows, "timing": timing, "quick": args.quick, "splits": n}, "\n".join(md),
          note="Thresholds calibrated on clean validation data only; timings interleaved in one process, 1 thread.")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    say(f"done in {time.perf_counter() - t0:.0f} s")
