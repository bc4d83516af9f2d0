"""Detection quality: coverage detectors vs baselines on MNIST (LeNet) and Fashion-MNIST (ResNet).

Anomalies: FGSM and PGD (L-inf, three eps each) and DeepFool (L2, minimal), successful attacks
only; the other dataset (MNIST <-> Fashion-MNIST), uniform and Gaussian noise, MNIST-C-style
corruptions (rotation, blur, low contrast, inversion, shift); and misclassified clean test
inputs (against correctly classified ones). Thresholds are calibrated on clean validation
data only (5% FPR). Data: ../shared/data. Run: python benchmarks/detection.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _common import write

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIGURES = ROOT / "docs" / "figures"
ROC_DETECTORS = ["coverage", "kmnc", "nbc", "msp", "energy", "mahalanobis", "knn", "boxes"]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def anomalies(model, x, y, other_x, other_name, quick):
    from nnwatch.eval import corruptions as cor
    from nnwatch.eval.attacks import deepfool, fgsm, pgd

    sets, success = {}, {}
    for eps in (0.05, 0.1, 0.2):
        adv, ok = fgsm(model, x, y, eps)
        sets[f"FGSM eps={eps}"], success[f"FGSM eps={eps}"] = adv[ok], float(ok.mean())
        adv, ok = pgd(model, x, y, eps, steps=5 if quick else 10)
        sets[f"PGD eps={eps}"], success[f"PGD eps={eps}"] = adv[ok], float(ok.mean())
    adv, ok = deepfool(model, x, y, max_iter=20 if quick else 50)
    sets["DeepFool (L2)"], success["DeepFool (L2)"] = adv[ok], float(ok.mean())
    l2 = np.linalg.norm((adv - x).reshape(len(x), -1), axis=1)[ok]
    sets[other_name] = other_x
    sets["uniform noise"] = cor.uniform_noise(x)
    sets["Gaussian noise s=0.3"] = cor.gaussian_noise(x, 0.3)
    sets["rotate 45"] = cor.rotate(x, 45)
    sets["blur r=1"] = cor.blur(x, 1)
    sets["low contrast"] = cor.contrast(x, 0.3, 0.4)
    sets["inverted"] = cor.invert(x)
    sets["shift 4px"] = cor.shift(x, 4, 4)
    return sets, success, float(np.median(l2)) if len(l2) else float("nan")


def run_dataset(name: str, quick: bool, folder: Path) -> dict:
    import torch

    from nnwatch.eval.evaluate import evaluate
    from nnwatch.eval.models import accuracy, lenet, train_classifier
    from nnwatch.eval.report import write_report
    from nnwatch.eval.zoo import fmnist_resnet
    from nnwatch.export.from_torch import export_module
    from nnwatch.monitor.detectors import DEFAULT
    from nnwatch.monitor.fit import build_profile, calibrate
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.sources import ArraySource, load_idx

    torch.set_num_threads(2)
    own, other = ("mnist", "fashion_mnist") if name == "mnist" else ("fashion_mnist", "mnist")
    train, test = load_idx(DATA / own, "train"), load_idx(DATA / own, "test")
    other_test = load_idx(DATA / other, "test")
    n_val = 2000 if name == "mnist" else 600
    n_test = (600 if quick else 2000) if name == "mnist" else (400 if quick else 1170)
    val = ArraySource(test.x[:n_val], test.y[:n_val], f"{own} test[:{n_val}] (validation)")
    clean = ArraySource(test.x[n_val : n_val + n_test], test.y[n_val : n_val + n_test], f"{own} test (held out)")
    say(f"{name}: training ({len(train)} images)")
    t0 = time.perf_counter()
    net = lenet() if name == "mnist" else fmnist_resnet()
    epochs = (4 if quick else 10) if name == "mnist" else (6 if quick else 25)
    net = train_classifier(net, train.x, train.y, epochs=epochs, seed=0, lr=2e-3)
    train_s = time.perf_counter() - t0
    acc = accuracy(net, clean.x, clean.y)
    say(f"{name}: accuracy {acc:.3f}; exporting, profiling, calibrating")
    manifest = export_module(net, torch.from_numpy(train.x[:1]), folder / f"{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(folder / f"{name}.onnx", train)
        mon = Monitor(folder / f"{name}.onnx", profile, detectors=DEFAULT, providers="cpu")
    calibrate(mon, val, fpr=0.05)
    say(f"{name}: attacks and corruptions")
    atk_x = clean.x[: 300 if quick else 1000]
    atk_y = clean.y[: len(atk_x)]
    other_x = other_test.x[: len(clean)]
    sets, success, df_l2 = anomalies(net, atk_x, atk_y, other_x, f"{other} (other dataset)", quick)
    say(f"{name}: scoring")
    ev = evaluate(mon, clean, sets)
    pred = np.concatenate([mon(clean.x[i : i + 256]).pred for i in range(0, len(clean), 256)])
    right, wrong = clean.x[pred == clean.y], clean.x[pred != clean.y]
    ev_mis = evaluate(mon, ArraySource(right, None, "correct"), {"misclassified": wrong})
    ev_mis.sets["misclassified"]["neg_scores"] = ev_mis.id_scores  # negatives: correctly classified
    ev.sets.update(ev_mis.sets)
    ev.rows.extend(ev_mis.rows)
    # Figures: AUROC heat map, ROC curves, histograms (inline in an HTML report and as SVG files).
    write_report(folder / f"{name}.html", ev, f"Detection on {own}", {"accuracy": f"{acc:.3f}"},
                 detectors_for_roc=ROC_DETECTORS)
    save_figures(name, ev)
    return {"dataset": own, "model": "LeNet" if name == "mnist" else "ResNet-style (3 stages)", "accuracy": acc,
            "train_images": len(train), "train_seconds": train_s, "taps": [f"{t.layer}({t.neurons})" for t in manifest.taps],
            "attack_success": success, "deepfool_median_l2": df_l2, "n_clean": len(clean),
            "n_misclassified": int(len(wrong)), "evaluation": ev.to_json()}


def save_figures(name: str, ev) -> None:
    from nnwatch.eval.metrics import roc_curve
    from nnwatch.eval.svg import heatmap, histogram, line_chart

    FIGURES.mkdir(parents=True, exist_ok=True)
    sets, dets, auc = ev.table("auroc")
    (FIGURES / f"{name}_auroc.svg").write_text(heatmap(auc, sets, dets, f"AUROC on {name}"))
    for s in ("PGD eps=0.1", "DeepFool (L2)", [k for k in sets if "other dataset" in k][0], "rotate 45", "misclassified"):
        series = {}
        neg = ev.sets[s].get("neg_scores", ev.id_scores)
        for d in ROC_DETECTORS:
            fpr, tpr, _ = roc_curve(neg[d], ev.sets[s]["scores"][d])
            series[d] = (fpr, tpr)
        if series:
            slug = s.split(" (")[0].replace(" ", "_").replace("=", "").replace(".", "")
            (FIGURES / f"{name}_roc_{slug}.svg").write_text(
                line_chart(series, f"ROC {name}: {s}", "false-positive rate", "true-positive rate", True, (0, 1, 0, 1)))
    slug_sets = ("PGD eps=0.1", [k for k in sets if "other dataset" in k][0])
    for s in slug_sets:
        slug = s.split(" (")[0].replace(" ", "_").replace("=", "").replace(".", "")
        (FIGURES / f"{name}_hist_{slug}.svg").write_text(
            histogram({"clean": ev.id_scores["coverage"], s: ev.sets[s]["scores"]["coverage"]}, f"{name}: {s}",
                      "coverage score"))
        (FIGURES / f"{name}_hist_{slug}_mahalanobis.svg").write_text(
            histogram({"clean": ev.id_scores["mahalanobis"], s: ev.sets[s]["scores"]["mahalanobis"]}, f"{name}: {s}",
                      "mahalanobis score"))


def markdown(results: list[dict]) -> str:
    out = []
    for r in results:
        ev = r["evaluation"]
        rows = ev["rows"]
        sets = list(dict.fromkeys(x["set"] for x in rows))
        dets = list(dict.fromkeys(x["detector"] for x in rows))
        auc = {(x["set"], x["detector"]): x for x in rows}
        out.append(f"### {r['dataset']}: {r['model']}, test accuracy {r['accuracy']:.3f}\n")
        out.append("AUROC (bold: best per row); n = anomalous samples; adversarial sets hold successful attacks only.\n")
        out.append("| set | n | attack success | " + " | ".join(dets) + " |")
        out.append("|---|---|---|" + "---|" * len(dets))
        for s in sets:
            vals = [auc[(s, d)]["auroc"] for d in dets]
            best = max(vals)
            cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals]
            succ = r["attack_success"].get(s)
            out.append(f"| {s} | {ev['sets'][s]} | {'' if succ is None else f'{succ:.2f}'} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("At the thresholds calibrated on clean validation data (5% FPR): detection rate (TPR@cal) of "
                   "`coverage`, `mahalanobis`, `msp`; realized false-positive rate on the held-out clean test set "
                   "in the last row.\n")
        out.append("| set | coverage | mahalanobis | knn | msp | energy | FPR@95%TPR coverage | FPR@95%TPR msp |")
        out.append("|---|---|---|---|---|---|---|---|")
        for s in sets:
            g = lambda d, k="tpr_cal": auc[(s, d)][k]  # noqa: E731
            out.append(f"| {s} | {g('coverage'):.3f} | {g('mahalanobis'):.3f} | {g('knn'):.3f} | {g('msp'):.3f} | "
                       f"{g('energy'):.3f} | {g('coverage', 'fpr_at_95tpr'):.3f} | {g('msp', 'fpr_at_95tpr'):.3f} |")
        first = sets[0]
        out.append(f"| clean test (false alarms) | {auc[(first, 'coverage')]['fpr_cal']:.3f} | "
                   f"{auc[(first, 'mahalanobis')]['fpr_cal']:.3f} | {auc[(first, 'knn')]['fpr_cal']:.3f} | "
                   f"{auc[(first, 'msp')]['fpr_cal']:.3f} | {auc[(first, 'energy')]['fpr_cal']:.3f} | | |")
        out.append(f"\nDeepFool median L2 perturbation: {r['deepfool_median_l2']:.2f}. Taps: {', '.join(r['taps'])}.\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-detection-"))
    results = [run_dataset(n, args.quick, folder) for n in ("mnist", "fmnist")]
    total = time.perf_counter() - t0
    md = markdown(results) + f"\nWhole benchmark: {total / 60:.1f} minutes. HTML reports: {folder}/*.html\n"
    write("detection", {"results": results, "seconds": total, "quick": args.quick}, md,
          note="Detection quality; thresholds calibrated on clean validation data only.")


if __name__ == "__main__":
    main()
