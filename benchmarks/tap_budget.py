"""Taps chosen under a latency budget (nnwatch instrument --budget): does the choice meet the
budget, what does it cost against tapping every block, and does its value rule agree with
detection on real anomalies?

Part 1, MobileNetV3-Small (torchvision when installed, else nnwatch's re-implementation;
random weights, 1,000 classes), batch 1, one thread: the model instrumented with every
activation ("auto"), with its 13 block outputs (benchmarks/overhead.py's taps), and under
budgets of 1.05x and 1.10x of a plain IOBinding call (the budget covers the monitored call with
the compiled detectors); each profiled and calibrated on random inputs (random weights:
timings are real, layer values are not), then timed interleaved against the plain IOBinding
call: tapped only, monitored with the compiled detectors (what the budget covers) and
monitored with the fused default (adds Mahalanobis where it fits the fusion's cost budget).

Part 2, LeNet on MNIST: the value the rule gives each layer (generated corruptions of clean
training images only) against the same per-layer score's AUROC on the real anomaly sets of
benchmarks/detection.py (attacks, the other dataset, noise, corruptions): Spearman over layers.
Run: python benchmarks/tap_budget.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import add_ratios, interleaved, write
from detection import DATA, SPLITS, anomalies, say

BUDGETS = ("1.05x", "1.10x")


def part_mobilenet(quick: bool, folder: Path) -> dict:
    import onnxruntime as ort
    import torch

    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.errors import InputError
    from nnwatch.eval.tap_budget import instrument_within_budget
    from nnwatch.eval.zoo import edge_model
    from nnwatch.export.from_torch import export_plain
    from nnwatch.export.instrument import instrument, save_onnx
    from nnwatch.monitor.detectors import COMPILED, DEFAULT
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.monitor.runner import Runner, session_options
    from nnwatch.sources import ArraySource

    torch.set_num_threads(1)
    module, blocks, source = edge_model("mobilenet_v3_small")
    plain = folder / "plain.onnx"
    plain.write_bytes(export_plain(module, torch.zeros(1, 3, 224, 224)).SerializeToString())
    rng = np.random.default_rng(0)
    x = rng.random((250, 3, 224, 224), dtype=np.float32)
    variants, choices = {}, {}
    model, manifest = instrument(plain, layers="auto")
    save_onnx(model, folder / "auto.onnx")
    variants["every activation (auto)"] = folder / "auto.onnx"
    model, manifest = instrument(plain, layers=blocks)
    save_onnx(model, folder / "blocks.onnx")
    variants["13 block outputs"] = folder / "blocks.onnx"
    outcome = {}
    for budget in BUDGETS:
        say(f"mobilenet: choosing taps for {budget}")
        out = folder / f"budget{budget}.onnx"
        try:
            _, choice = instrument_within_budget(plain, out, x[:200], budget, rounds=100 if quick else 400)
        except InputError as exc:  # an honest answer too: record it
            outcome[budget] = f"refused: {exc}"
            continue
        choices[budget] = choice.to_dict()
        outcome[budget] = (f"kept {len(choice.chosen)} layers besides the classifier input; the monitored call "
                           f"measured {choice.predicted_us / choice.plain_us:.3f}x at instrument time")
        variants[f"--budget {budget}"] = out
    monitors, compiled = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, path in variants.items():
            runner = Runner(path, providers="cpu", threads=1)
            profile = build_profile(runner, ArraySource(x[:150], None, "random"), batch_size=32)
            mon = Monitor(runner, profile, detectors=DEFAULT, min_signature_samples=1)
            calibrate(mon, ArraySource(x[150:250], None, "random"), min_class_samples=1, batch_size=32)
            monitors[name] = Monitor(runner, mon.profile, min_signature_samples=1)
            compiled[name] = Monitor(runner, mon.profile, min_signature_samples=1, detectors=COMPILED)
    sess = ort.InferenceSession(str(plain), session_options(1), providers=["CPUExecutionProvider"])
    one = x[:1].copy()
    binding = sess.io_binding()
    logits = np.empty((1, 1000), np.float32)
    binding.bind_cpu_input(sess.get_inputs()[0].name, one)
    binding.bind_output(sess.get_outputs()[0].name, "cpu", 0, np.float32, [1, 1000], logits.ctypes.data)
    calls = {"plain (IOBinding)": lambda: sess.run_with_iobinding(binding)}
    for name, mon in monitors.items():
        mon.warmup((1,))
        ws = mon.runner.workspace(1)
        calls[f"{name}: tapped"] = lambda m=mon, w=ws: m.runner.run(one, w)
        calls[f"{name}: monitored"] = lambda m=mon: m.score(one, _record=False)
        compiled[name].warmup((1,))
        calls[f"{name}: compiled"] = lambda m=compiled[name]: m.score(one, _record=False)
    say("mobilenet: timing every variant interleaved")
    timing = interleaved(calls, 100 if quick else 600, warmup=10, budget_s=40 if quick else 240)
    add_ratios(timing, {"": "plain (IOBinding)"})
    taps = {name: len(m.manifest.taps) for name, m in monitors.items()}
    neurons = {name: int(m.tables.n_neurons) for name, m in monitors.items()}
    return {"source": source, "choices": choices, "outcome": outcome, "timing": timing, "taps": taps,
            "neurons": neurons}


def part_lenet(quick: bool, folder: Path) -> dict:
    import torch

    from nnwatch.eval.models import lenet, train_classifier
    from nnwatch.eval.tap_budget import layer_aurocs, layer_values
    from nnwatch.export.from_torch import export_plain
    from nnwatch.export.instrument import instrument
    from nnwatch.sources import load_idx

    torch.set_num_threads(1)
    n = SPLITS["mnist"]
    train, test = load_idx(DATA / "mnist", "train"), load_idx(DATA / "mnist", "test")
    other = load_idx(DATA / "fashion_mnist", "test").x
    a, b, c = n["val"], n["val"] + n["clean"], n["val"] + n["clean"] + n["sources"]
    say("lenet: training")
    net = train_classifier(lenet(), train.x, train.y, epochs=4 if quick else 10, seed=0, lr=2e-3)
    plain = export_plain(net, torch.from_numpy(train.x[:1])).SerializeToString()
    tapped = instrument(plain, layers="auto")[0].SerializeToString()
    say("lenet: anomaly sets")
    sets, _ = anomalies(net, test.x[b:c], test.y[b:c], other[: b - a], "fashion_mnist (other dataset)", quick)
    pick = np.random.default_rng(0).permutation(len(train.x))
    values = layer_values(tapped, train.x[pick[:2000]], "cpu")
    real = layer_aurocs(tapped, train.x[pick[:2000]], test.x[a:b], sets, "cpu")
    layers = list(values)
    rule = np.array([values[k] for k in layers])
    truth = np.array([np.mean(list(real[k].values())) for k in layers])
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    spearman = float(np.corrcoef(rank(rule), rank(truth))[0, 1]) if len(layers) > 2 else float("nan")
    return {"layers": layers, "rule_value": values, "real_auroc": real, "mean_real_auroc": dict(zip(layers, truth)),
            "spearman": spearman, "best_by_rule": layers[int(np.argmax(rule))],
            "best_by_real": layers[int(np.argmax(truth))]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-tapbudget-"))
    mobile = part_mobilenet(args.quick, folder)
    lenet_part = part_lenet(args.quick, folder)
    t = mobile["timing"]
    md = ["<!-- begin budget -->",
          "| MobileNetV3-Small taps | taps | neurons | budget | measured at instrument time | tapped / plain IOBinding | "
          "monitored (compiled detectors) / plain IOBinding | monitored (fused default) / plain IOBinding | "
          "fused default p50 µs |",
          "|---|---|---|---|---|---|---|---|---|"]
    for name in mobile["taps"]:
        budget = name.split("--budget ")[-1] if name.startswith("--budget") else "-"
        chosen = mobile["choices"].get(budget)
        at = f"{chosen['predicted_us'] / chosen['plain_us']:.3f}x" if chosen else "-"
        md.append(f"| {name} | {mobile['taps'][name]} | {mobile['neurons'][name]} | {budget} | {at} | "
                  f"{t[name + ': tapped']['ratio_p50']:.3f}x | **{t[name + ': compiled']['ratio_p50']:.3f}x** | "
                  f"{t[name + ': monitored']['ratio_p50']:.3f}x | "
                  f"{t[name + ': monitored']['p50_ms'] * 1e3:.0f} |")
    md.append("<!-- end budget -->")
    md += [""] + [f"--budget {b}: {text}" for b, text in mobile["outcome"].items()]
    md += ["", f"Plain IOBinding p50: {t['plain (IOBinding)']['p50_ms'] * 1e3:.0f} µs ({mobile['source']}).", "",
           "<!-- begin rule -->", "| LeNet layer | value by the rule (generated corruptions) | mean AUROC on real anomalies |",
           "|---|---|---|"]
    for layer in lenet_part["layers"]:
        md.append(f"| {layer} | {lenet_part['rule_value'][layer]:.3f} | {lenet_part['mean_real_auroc'][layer]:.3f} |")
    md += ["<!-- end rule -->", "", f"Spearman over layers: {lenet_part['spearman']:.2f}; best layer by the rule: "
           f"{lenet_part['best_by_rule']}, by real anomalies: {lenet_part['best_by_real']}."]
    write("tap_budget", {"mobilenet": mobile, "lenet": lenet_part, "quick": args.quick}, "\n".join(md))


if __name__ == "__main__":
    main()
