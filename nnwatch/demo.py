"""`nnwatch demo`: the whole pipeline on scikit-learn's digits, offline, in about a minute.

Train a small CNN, export it instrumented, build the profile, calibrate at 5% FPR, then screen
clean test digits against FGSM/PGD attacks, noise and transformed digits; print the
evaluation and write an HTML report with ROC curves and score histograms.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ._optional import require
from .calibration.calibrate import calibrate
from .eval import corruptions as cor
from .eval.attacks import attack_correct, fgsm, pgd
from .eval.evaluate import evaluate
from .eval.models import accuracy, digits_cnn, train_classifier
from .eval.overhead import bench_overhead, machine
from .eval.report import write_json, write_report
from .export.from_torch import export_module
from .monitor.monitor import Monitor
from .monitor.profiling import build_profile
from .profile.store import save_profile
from .sources import ArraySource, load_digits


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def anomaly_sets(model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Adversarial, noise and transformed versions of source images (keep them out of the clean set).

    Parameters
    ----------
    model : torch.nn.Module
        The classifier under attack.
    x : numpy.ndarray
        Source images in [0, 1].
    y : numpy.ndarray
        Labels.

    Returns
    -------
    dict
        name -> images; adversarial sets hold only successful attacks on correctly
        classified sources.
    """
    sets: dict[str, np.ndarray] = {}
    for eps in (0.05, 0.1, 0.2):
        sets[f"fgsm eps={eps}"] = attack_correct(model, x, y, fgsm, "fgsm", eps=eps).x_adv
    for eps in (0.05, 0.1):
        sets[f"pgd eps={eps}"] = attack_correct(model, x, y, pgd, "pgd", eps=eps, steps=10).x_adv
    sets.update(cor.corruption_suite(x, rotate_deg=90, shift_px=2))
    return sets


def compact_table(ev: Any, decision: str) -> str:
    """AUROC of every detector per set, plus the decision detector's calibrated detection rate.

    Parameters
    ----------
    ev : Evaluation
        The evaluation.
    decision : str
        Decision detector.

    Returns
    -------
    str
        Fixed-width text table.
    """
    sets, dets, auc = ev.table("auroc")
    _, _, tpr = ev.table("tpr_cal")
    col = dets.index(decision)
    width = max(max(len(s) for s in sets), len("clean test (false alarms)")) + 2
    cols = [max(len(d), 5) + 2 for d in dets]
    lines = ["AUROC per detector (anomalous vs clean test digits); last column: share flagged by "
             f"'{decision}' at its calibrated 5% false-alarm target",
             " " * width + "".join(f"{d:>{w}}" for d, w in zip(dets, cols)) + f"{'flagged':>9}"]
    for i, s in enumerate(sets):
        lines.append(f"{s:<{width}}" + "".join(f"{v:{w}.3f}" for v, w in zip(auc[i], cols)) + f"{tpr[i, col]:9.3f}")
    fpr = float(ev.id_flags[decision].mean()) if decision in ev.id_flags else float("nan")
    lines.append(f"{'clean test (false alarms)':<{width}}" + " " * sum(cols) + f"{fpr:9.3f}")
    return "\n".join(lines)


def prepare_demo_model(out: Path, progress: bool = False, seed: int = 0, say: Any = None,
                       preprocess: Any = None) -> dict[str, Any]:
    """Train, export, profile and calibrate the demo's digits CNN into ``out``.

    Parameters
    ----------
    out : path
        Folder for model.onnx, plain.onnx and profile.npz.
    progress : bool
        Show progress bars.
    seed : int
        Training seed.
    say : callable, optional
        Receives progress messages.
    preprocess : str, dict or Preprocess, optional
        Recorded frames' preprocessing, kept in the model (see :func:`nnwatch.export.instrument`).

    Returns
    -------
    dict
        model_path, profile_path, torch_model, accuracy, manifest, monitor, test (data).
    """
    torch = require("torch", extra="demo")
    require("sklearn", extra="demo")
    say = say or (lambda msg: None)
    # One thread: a model this small trains ~50x slower with 2 threads when the cores are busy.
    torch.set_num_threads(1)
    out = Path(out)
    train, val, test = load_digits("train"), load_digits("val"), load_digits("test")
    say(f"[1/6] training a small CNN on scikit-learn digits ({len(train)} train / {len(val)} val / {len(test)} test)")
    model = train_classifier(digits_cnn(), train.x, train.y, epochs=40, seed=seed, progress=progress)
    acc = accuracy(model, test.x, test.y)
    say(f"      test accuracy {acc:.3f}")
    say("[2/6] exporting to ONNX with monitored activations")
    manifest = export_module(model, torch.from_numpy(train.x[:1]), out / "model.onnx", plain_out=out / "plain.onnx",
                             preprocess=preprocess)
    say(f"      taps: {', '.join(f'{t.layer}({t.neurons})' for t in manifest.taps)}")
    say("[3/6] building the training profile (two streaming passes)")
    profile = build_profile(out / "model.onnx", train, progress=progress)
    say(f"      trusted samples per class: {profile.header['class_counts']}")
    say("[4/6] calibrating thresholds at 5% FPR on clean validation digits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor = Monitor(out / "model.onnx", profile, providers="cpu")
    calibrate(monitor, val, fpr=0.05, min_class_samples=20)
    save_profile(monitor.profile, out / "profile.npz")
    return {"model_path": out / "model.onnx", "profile_path": out / "profile.npz", "torch_model": model,
            "accuracy": acc, "manifest": manifest, "monitor": monitor, "test": test}


def run_demo(out: str | Path = "nnwatch-demo", progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Run the demo and write its files.

    Parameters
    ----------
    out : path
        Output folder (created).
    progress : bool
        Show progress.
    seed : int
        Training seed.

    Returns
    -------
    dict
        Summary: accuracy, paths, decision detector results.
    """
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = prepare_demo_model(out, progress=progress, seed=seed, say=_say)
    model, acc, manifest, monitor, test = d["torch_model"], d["accuracy"], d["manifest"], d["monitor"], d["test"]
    _say("[5/6] attacking and corrupting test digits, screening everything")
    half = len(test) // 2  # clean negatives and the sources of the anomalies stay disjoint
    clean = ArraySource(test.x[:half], test.y[:half], "digits test (clean half)")
    sets = anomaly_sets(model, test.x[half:], test.y[half:])
    ev = evaluate(monitor, clean, sets)
    _say("[6/6] timing plain vs monitored inference (batch 1)")
    monitor.warmup((1,))
    timing = bench_overhead(monitor, out / "plain.onnx", test.x[:1], iters=300, warmup=30)
    summary = {
        "test_accuracy": acc, "evaluation": ev.to_json(), "latency_batch1": timing, "machine": machine(),
        "seconds": time.perf_counter() - t_start, "files": {k: str(out / k) for k in
                                                            ("model.onnx", "plain.onnx", "profile.npz", "report.html", "results.json")},
    }
    notes = {
        "model": "digits CNN (conv16-conv32-pool-conv32-fc64-fc10), trained here on CPU",
        "test accuracy": f"{acc:.3f}",
        "taps": ", ".join(f"{t.layer} ({t.neurons})" for t in manifest.taps),
        "calibration": "conformal per-class thresholds, 5% false-alarm target, clean validation digits",
        "adversarial sets": "successful attacks (prediction changed) on correctly classified digits of the test "
                            "half that is not the clean set",
        "plain p50 (batch 1)": f"{timing['plain']['p50_ms']:.3f} ms",
        "monitored p50 (batch 1)": f"{timing['monitored']['p50_ms']:.3f} ms ({timing['monitored']['ratio_p50']:.2f}x a "
                                   f"plain session.run, {timing['monitored']['ratio_p50_iobinding']:.2f}x a plain "
                                   "IOBinding call)",
        "machine": f"{summary['machine']['cpu']}, {summary['machine']['cores']} cores",
    }
    write_report(out / "report.html", ev, "nnwatch demo: coverage monitor on digits", notes,
                 detectors_for_roc=["coverage", "kmnc", "nbc", "msp", "energy", "mahalanobis"])
    write_json(out / "results.json", summary)
    print(compact_table(ev, monitor.decision))
    print()
    print(f"test accuracy {acc:.3f}; batch-1 latency: plain {timing['plain']['p50_ms']:.3f} ms, "
          f"monitored {timing['monitored']['p50_ms']:.3f} ms (p50; {timing['monitored']['ratio_p50']:.2f}x a plain "
          f"session.run, {timing['monitored']['ratio_p50_iobinding']:.2f}x a plain IOBinding call)")
    print(f"report: {out / 'report.html'}   results: {out / 'results.json'}   ({summary['seconds']:.0f} s)")
    return summary
