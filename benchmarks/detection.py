"""Detection quality of every detector and the fused verdict on MNIST (LeNet), Fashion-MNIST
(ResNet-style) and scikit-learn digits (small CNN).

The test split is cut into three disjoint parts: validation (calibration), clean test (the
negatives) and sources (the originals of every derived anomaly). Anomalies: FGSM and PGD
(L-inf, three eps each) and DeepFool (L2, minimal) made from the correctly classified sources
and kept only where the prediction changed; the other dataset (MNIST <-> Fashion-MNIST);
uniform and Gaussian noise and MNIST-C-style corruptions (rotation, blur, low contrast,
inversion, shift) of the sources; and misclassified clean test inputs (against correctly
classified ones). For digits the other dataset is MNIST cut to 24x24 and average-pooled to 8x8,
and the shift is 2 pixels. Thresholds: conformal, 5% target, clean validation data only; the
fused verdict's members are chosen from those clean scores and cost alone. Per detector, the
cost of scoring one batch-1 call is timed on the monitor's own bound buffers.
Data: ../shared/data. Run: python benchmarks/detection.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
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
ROC_DETECTORS = ["fused", "coverage", "kmnc", "nbc", "msp", "energy", "mahalanobis", "knn", "vim"]
FUSED_COLUMNS = ("fused", "fused_default")  # over every detector / over the runtime default set
MODELS = {"mnist": "LeNet", "fmnist": "ResNet-style (3 stages)", "digits": "small CNN (3 conv)"}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def anomalies(model, x, y, other_x, other_name, quick, shift_px=4):
    """Anomalous sets from the source images ``x`` (disjoint from the clean negatives)."""
    from nnwatch.eval import corruptions as cor
    from nnwatch.eval.attacks import attack_correct, deepfool, fgsm, pgd

    sets, attacks = {}, {}
    runs = []
    for eps in (0.05, 0.1, 0.2):
        runs.append((f"FGSM eps={eps}", fgsm, {"eps": eps}))
        runs.append((f"PGD eps={eps}", pgd, {"eps": eps, "steps": 5 if quick else 10}))
    runs.append(("DeepFool (L2)", deepfool, {"max_iter": 20 if quick else 50}))
    for name, attack, kwargs in runs:
        result = attack_correct(model, x, y, attack, name, **kwargs)
        sets[name] = result.x_adv
        attacks[name] = result.summary()
        say(f"  {name}: {len(result.x_adv)}/{result.attempted} successful ({result.skipped} misclassified sources "
            "not attacked)")
    sets[other_name] = other_x
    sets.update(cor.corruption_suite(x, rotate_deg=45, shift_px=shift_px))
    return sets, attacks


SPLITS = {  # validation / clean test / anomaly sources, cut from the test split in this order
    "mnist": {"val": 2000, "clean": 2000, "sources": 1000},
    "fmnist": {"val": 600, "clean": 670, "sources": 500},
    "digits": {"clean": 180, "sources": 180},  # validation: the digits "val" split (359)
}


def mnist_as_digits(x: np.ndarray) -> np.ndarray:
    """MNIST images as 8x8 digits: centre 24x24 crop, 3x3 average pooling."""
    crop = x[:, :, 2:26, 2:26]
    return crop.reshape(len(x), 1, 8, 3, 8, 3).mean(axis=(3, 5)).astype(np.float32)


def run_dataset(name: str, quick: bool, folder: Path) -> dict:
    import torch

    from nnwatch.calibration.calibrate import by_cost, calibrate
    from nnwatch.calibration.fused_verdict import choose_members, split_halves
    from nnwatch.calibration.groups import calibration_groups
    from nnwatch.eval.evaluate import evaluate
    from nnwatch.eval.metrics import false_alarm_check
    from nnwatch.eval.models import accuracy, digits_cnn, lenet, train_classifier
    from nnwatch.eval.overhead import detector_costs
    from nnwatch.eval.report import write_report
    from nnwatch.eval.zoo import fmnist_resnet
    from nnwatch.export.from_torch import export_module
    from nnwatch.monitor.detectors import ALL, DEFAULT
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.sources import ArraySource, load_digits, load_idx

    torch.set_num_threads(1)  # tiny models: one thread is faster and robust to a busy machine
    n = dict(SPLITS[name])
    if quick:
        n = {k: v // 2 for k, v in n.items()}
    if name == "digits":
        own, other = "digits", "mnist"
        train, val_split, test = load_digits("train"), load_digits("val"), load_digits("test")
        other_x = mnist_as_digits(load_idx(DATA / "mnist", "test").x)
        n["val"] = len(val_split)
        b, c = n["clean"], n["clean"] + n["sources"]
        val = ArraySource(val_split.x, val_split.y, "digits val split (validation)")
        clean = ArraySource(test.x[:b], test.y[:b], f"digits test[:{b}] (clean test)")
        pool_x = np.concatenate([val_split.x, test.x[:b]])
    else:
        own, other = ("mnist", "fashion_mnist") if name == "mnist" else ("fashion_mnist", "mnist")
        train, test = load_idx(DATA / own, "train"), load_idx(DATA / own, "test")
        other_x = load_idx(DATA / other, "test").x
        a, b, c = n["val"], n["val"] + n["clean"], n["val"] + n["clean"] + n["sources"]
        val = ArraySource(test.x[:a], test.y[:a], f"{own} test[:{a}] (validation)")
        clean = ArraySource(test.x[a:b], test.y[a:b], f"{own} test[{a}:{b}] (clean test)")
        pool_x = test.x[:b]
    src_x, src_y = test.x[b:c], test.y[b:c]
    say(f"{name}: training ({len(train)} images)")
    t0 = time.perf_counter()
    net = {"mnist": lenet, "fmnist": fmnist_resnet, "digits": digits_cnn}[name]()
    epochs = {"mnist": (4, 10), "fmnist": (6, 25), "digits": (20, 40)}[name][0 if quick else 1]
    net = train_classifier(net, train.x, train.y, epochs=epochs, seed=0, lr=2e-3)
    train_s = time.perf_counter() - t0
    acc = accuracy(net, clean.x, clean.y)
    say(f"{name}: accuracy {acc:.3f}; exporting, profiling, calibrating")
    manifest = export_module(net, torch.from_numpy(train.x[:1]), folder / f"{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(folder / f"{name}.onnx", train)
        mon = Monitor(folder / f"{name}.onnx", profile, detectors=ALL, providers="cpu")
        calibrate(mon, val, fpr=0.05)
        # the evaluation's fusion over every detector: the redundancy rule, but no cost budget
        calibrate(mon, val, fpr=0.05,
                  fusion_members=choose_members(mon.calibration, by_cost(mon, mon.calibration.detectors)))
        # what a user gets without choosing detectors: the runtime default set and its fusion
        runtime = Monitor(folder / f"{name}.onnx", copy.deepcopy(profile), detectors=DEFAULT, providers="cpu")
        calibrate(runtime, val, fpr=0.05)
        runtime = Monitor(folder / f"{name}.onnx", runtime.profile, providers="cpu")  # what a user then runs
    say(f"{name}: fused verdict over {mon.calibration.fusion['members']}; timing each detector at batch 1")
    costs = detector_costs(mon, clean.x[:1], iters=300 if quick else 2000)
    costs_default = detector_costs(runtime, clean.x[:1], iters=300 if quick else 2000)
    say(f"{name}: attacks and corruptions of {len(src_x)} source images")
    other_x = other_x[: len(clean)]
    sets, attacks = anomalies(net, src_x, src_y, other_x, f"{other} (other dataset)", quick,
                              shift_px=2 if name == "digits" else 4)
    say(f"{name}: scoring")
    ev = evaluate(mon, clean, sets)
    add_column(ev, evaluate(runtime, clean, sets), "fused", "fused_default")
    pred = np.concatenate([mon(clean.x[i : i + 256]).pred for i in range(0, len(clean), 256)])
    right, wrong = clean.x[pred == clean.y], clean.x[pred != clean.y]
    ev_mis = evaluate(mon, ArraySource(right, None, "correct"), {"misclassified": wrong})
    add_column(ev_mis, evaluate(runtime, ArraySource(right, None, "correct"), {"misclassified": wrong}), "fused",
               "fused_default")
    ev_mis.sets["misclassified"]["neg_scores"] = ev_mis.id_scores  # negatives: correctly classified
    ev.sets.update(ev_mis.sets)
    ev.rows.extend(ev_mis.rows)
    say(f"{name}: the model's own errors (risk-coverage, bootstrap intervals)")
    errors = evaluate(mon, clean, {}, errors=True).errors
    errors["fused_default"] = evaluate(runtime, clean, {}, errors=True).errors["fused"]
    save_risk_coverage(name, errors)
    errors = {d: {k: v for k, v in e.items() if k != "curve"} for d, e in errors.items()}
    example = explanation_example(folder / f"{name}.onnx", runtime.profile, sets)
    intervals = auroc_intervals(ev)
    cal = mon.calibration
    groups = calibration_groups(cal.classes, mon.profile.n_classes, cal.fpr, cal.min_class_samples)
    pred_counts = np.bincount(pred, minlength=mon.profile.n_classes)
    blocks = [[c] for c in groups.own] + ([groups.pooled] if groups.pooled else [])
    sizes = [int(np.isin(cal.classes, b).sum()) if not (len(b) > 1 and groups.pooled_is_global) else len(cal.classes)
             for b in blocks]
    counts = [int(pred_counts[b].sum()) for b in blocks]
    false_alarms = {d: false_alarm_check(f, 0.05, groups=(sizes, counts)) for d, f in ev.id_flags.items()
                    if d not in FUSED_COLUMNS}
    # the fused verdicts are calibrated on half B of the validation data: their own group sizes
    half_b = cal.classes[~split_halves(cal.classes, cal.fusion["seed"])]
    groups_b = calibration_groups(half_b, mon.profile.n_classes, cal.fpr, cal.min_class_samples)
    blocks_b = [[c] for c in groups_b.own] + ([groups_b.pooled] if groups_b.pooled else [])
    sizes_b = [int(np.isin(half_b, b).sum()) if not (len(b) > 1 and groups_b.pooled_is_global) else len(half_b)
               for b in blocks_b]
    for d in FUSED_COLUMNS:
        false_alarms[d] = false_alarm_check(ev.id_flags[d], 0.05,
                                            groups=(sizes_b, [int(pred_counts[b].sum()) for b in blocks_b]))
    rates = [v["rate"] for v in false_alarms.values()]
    false_alarm_summary = {"detectors": len(rates), "min": min(rates), "max": max(rates),
                           "within_conformal": sum(v["within_target"] for v in false_alarms.values()),
                           "within_binomial": sum(v["rate"] <= v["target_high"] for v in false_alarms.values())}
    false_alarm_summary["repeated_splits"] = repeated_splits(mon, pool_x, n["val"])
    by_name = {}  # set -> detector -> metrics, for the docs to cite by name
    for row in ev.rows:
        by_name.setdefault(row["set"], {})[row["detector"]] = {k: row[k] for k in ("auroc", "tpr_cal", "fpr_at_95tpr")}
    # Figures: AUROC heat map, ROC curves, histograms (inline in an HTML report and as SVG files).
    write_report(folder / f"{name}.html", ev, f"Detection on {own}", {"accuracy": f"{acc:.3f}"},
                 detectors_for_roc=ROC_DETECTORS)
    save_figures(name, ev)
    return {"key": name, "dataset": own, "model": MODELS[name], "accuracy": acc,
            "fusion": mon.calibration.fusion, "fusion_default": runtime.calibration.fusion, "costs": costs,
            "costs_default": costs_default, "ranking": ranking(ev),
            "train_images": len(train), "train_seconds": train_s, "splits": n,
            "taps": [f"{t.layer}({t.neurons})" for t in manifest.taps],
            "attacks": attacks, "n_clean": len(clean), "n_misclassified": int(len(wrong)),
            "calibration_fpr": 0.05, "false_alarms": false_alarms, "false_alarm_summary": false_alarm_summary, "metrics": by_name, "evaluation": ev.to_json(),
            "errors": errors, "explanation_example": example, "auroc_intervals": intervals}


def auroc_intervals(ev, rounds: int = 500, seed: int = 0) -> dict:
    """Bootstrap 95% intervals (clean and anomalous resampled apart) of the fused verdicts' AUROC and of
    the best single detector's, per set: a few hundred images cannot resolve differences of 0.005."""
    from nnwatch.eval.metrics import auroc

    sets, dets, auc = ev.table("auroc")
    singles = [j for j, d in enumerate(dets) if d not in FUSED_COLUMNS]
    rng = np.random.default_rng(seed)
    out = {}
    for i, s in enumerate(sets):
        neg_all = ev.sets[s].get("neg_scores", ev.id_scores)
        best = dets[singles[int(np.argmax(auc[i, singles]))]]
        entry = {"best_single": best}
        for d in ("fused", "fused_default", best):
            neg, pos = neg_all[d], ev.sets[s]["scores"][d]
            values = [auroc(neg[rng.integers(0, len(neg), len(neg))], pos[rng.integers(0, len(pos), len(pos))])
                      for _ in range(rounds)]
            lo, hi = np.quantile(values, [0.025, 0.975])
            entry[d if d in FUSED_COLUMNS else "best"] = {"auroc": float(auc[i, dets.index(d)]),
                                                         "ci": [float(lo), float(hi)]}
        for d in FUSED_COLUMNS:  # the target: within 0.01 of the best single, or inside its interval
            entry[d]["meets_target"] = bool(entry[d]["auroc"] >= entry["best"]["auroc"] - 0.01
                                            or entry[d]["auroc"] >= entry["best"]["ci"][0])
        out[s] = entry
    return out


def explanation_example(model, profile, sets) -> dict | None:
    """Why the runtime default flagged one PGD input: the explanation a screen --explain prints."""
    from nnwatch.monitor.monitor import Monitor

    x = sets.get("PGD eps=0.1")
    if x is None or not len(x):
        return None
    from nnwatch.timing import interleaved

    mon = Monitor(model, profile, providers="cpu", explain=True, threads=1)
    v = mon(x[:64])
    flagged = np.flatnonzero(v.flag & ~v.nonfinite_input)
    if not len(flagged):
        return None
    b = int(flagged[0])
    # what explaining costs: a batch-1 call on this flagged input, explained and not (the same monitor's
    # settings, interleaved); an input that passes is never explained
    plain = Monitor(model, profile, providers="cpu", threads=1)
    one = x[b : b + 1]
    timed = interleaved({"explain off": lambda: plain(one), "explain on": lambda: mon(one)}, 500, warmup=20)
    return {"set": "PGD eps=0.1", "index": b, "pred": int(v.pred[b]), "p_value": float(v.confidence[b]),
            "decision": v.decision, "cost_us": {k: t["p50_ms"] * 1e3 for k, t in timed.items()},
            **v.explanations[b]}


def save_risk_coverage(name: str, errors: dict) -> None:
    from nnwatch.eval.svg import line_chart

    FIGURES.mkdir(parents=True, exist_ok=True)
    shown = [d for d in ("fused", "fused_default", "msp", "doctor", "energy", "mahalanobis", "coverage") if d in errors]
    if not shown:
        return
    top = max(float(errors[d]["curve"][1].max()) for d in shown)
    (FIGURES / f"{name}_risk_coverage.svg").write_text(line_chart(
        {d: errors[d]["curve"] for d in shown}, f"{name}: the model's errors, rejected in score order",
        "coverage (share answered)", "selective risk (errors among answered)", limits=(0, 1, 0, max(top, 1e-3))))


def repeated_splits(mon, pool: np.ndarray, n_val: int, splits: int = 300, seed: int = 0) -> dict:
    """Realized false alarms over many random validation/test cuts of the same clean images.

    One fixed cut can land above the target by chance, or because the two parts differ. Scoring
    the pooled clean images once and re-cutting them many times tells the two apart: under
    exchangeability the mean realized rate is at most the target.
    """
    from nnwatch.calibration.calibrate import collect_scores
    from nnwatch.calibration.fused_verdict import compile_fusion, fusion_spec
    from nnwatch.calibration.groups import calibration_from_scores, compile_conformal
    from nnwatch.kernels.conformal import conformal_p_values
    from nnwatch.kernels.fusion import fused_statistic

    scores, _, pred = collect_scores(mon, pool)
    names = list(mon.calibration.detectors)
    members = mon.calibration.fusion["members"]
    matrix = np.stack([scores[d] for d in names], axis=1)
    rng = np.random.default_rng(seed)
    rates = np.empty((splits, len(names) + 1))
    for r in range(splits):
        order = rng.permutation(len(pool))
        cal, rest = order[:n_val], order[n_val:]
        calib = calibration_from_scores(names, matrix[cal], pred[cal], mon.profile.n_classes, 0.05, 20, warn=False)
        tables, _ = compile_conformal(calib, names, mon.profile.n_classes)
        _, flags = conformal_p_values(matrix[rest], pred[rest], tables)
        calib.fusion = fusion_spec(calib, members, seed=r)  # a new A/B split with every cut
        member_tables, fused_tables = compile_fusion(calib, names, mon.profile.n_classes)
        t = fused_statistic(matrix[rest], pred[rest], member_tables)
        _, fused_flags = conformal_p_values(t[:, None], pred[rest], fused_tables)
        rates[r] = np.append(flags.mean(axis=0), fused_flags.mean())
    names = names + ["fused"]
    mean, se = rates.mean(axis=0), rates.std(axis=0, ddof=1) / np.sqrt(splits)
    return {"splits": splits, "mean": dict(zip(names, mean.tolist())), "se": dict(zip(names, se.tolist())),
            "max_mean": float(mean.max()), "max_mean_detector": names[int(mean.argmax())],
            "at_most_target": int((mean <= 0.05 + 2 * se).sum()), "detectors": len(names),
            "share_of_splits_above_target": dict(zip(names, (rates > 0.05).mean(axis=0).tolist()))}


def add_column(ev, other, name: str, as_name: str) -> None:
    """Add detector ``name`` of another evaluation of the same sets to ``ev`` as ``as_name``."""
    ev.id_scores[as_name] = other.id_scores[name]
    ev.id_flags[as_name] = other.id_flags[name]
    for s, entry in other.sets.items():
        ev.sets[s]["scores"][as_name] = entry["scores"][name]
        ev.sets[s]["flags"][as_name] = entry["flags"][name]
    ev.rows.extend({**row, "detector": as_name} for row in other.rows if row["detector"] == name)


def ranking(ev) -> dict:
    from nnwatch.monitor.detectors import ALL, DEFAULT

    """OpenOOD-style summary: per detector, mean AUROC / FPR@95%TPR / TPR at the calibrated
    threshold over the sets, rank per set (1 = best AUROC) and mean rank; and the targets of the
    fused verdict (gap to the best single detector per set, mean against every single one)."""
    sets, dets, auc = ev.table("auroc")
    _, _, fpr95 = ev.table("fpr_at_95tpr")
    _, _, tpr = ev.table("tpr_cal")
    order = (-auc).argsort(axis=1, kind="stable")
    ranks = np.empty_like(auc)
    for i in range(len(sets)):
        ranks[i, order[i]] = np.arange(1, len(dets) + 1)
    means = auc.mean(axis=0)
    out = {"sets": sets, "detectors": dets,
           "per_detector": {d: {"mean_auroc": float(means[j]), "mean_fpr95": float(fpr95[:, j].mean()),
                                "mean_tpr_cal": float(np.nanmean(tpr[:, j])), "mean_rank": float(ranks[:, j].mean()),
                                "ranks": ranks[:, j].astype(int).tolist()} for j, d in enumerate(dets)}}
    for fused, pool in (("fused", ALL), ("fused_default", DEFAULT)):
        # targets: against every single detector the fusion could have used
        singles = [j for j, d in enumerate(dets) if d in pool and d not in FUSED_COLUMNS]
        f = dets.index(fused)
        best = auc[:, singles].max(axis=1)
        best_names = [dets[singles[int(np.argmax(auc[i, singles]))]] for i in range(len(sets))]
        gap = auc[:, f] - best
        out[fused] = {"gap_to_best": dict(zip(sets, gap.tolist())), "best_single": dict(zip(sets, best_names)),
                      "sets_within_0.01": int((gap >= -0.01).sum()), "sets": len(sets),
                      "worst_gap": float(gap.min()), "worst_gap_set": sets[int(gap.argmin())],
                      "mean_auroc": float(means[f]), "best_single_mean": float(means[singles].max()),
                      "best_single_mean_detector": dets[singles[int(np.argmax(means[singles]))]],
                      "above_every_single_on_mean": bool(means[f] > means[singles].max()),
                      "pool": [dets[j] for j in singles]}
    return out


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
        sp = r["splits"]
        out.append(f"Test split cut into {sp['val']} validation (calibration), {sp['clean']} clean test (negatives) "
                   f"and {sp['sources']} source images (originals of the attacks and corruptions).\n")
        out.append("Attacks on the correctly classified sources; a success changed the prediction; only successes "
                   "are kept.\n")
        out.append(f"<!-- begin {r['key']}_attacks -->")
        out.append("| attack | attacked | successful | success rate | median L-inf | median L2 |")
        out.append("|---|---|---|---|---|---|")
        for a in r["attacks"].values():
            out.append(f"| {a['name']} | {a['attempted']} | {a['successful']} | {a['success_rate']:.2f} | "
                       f"{a['median_linf']:.3f} | {a['median_l2']:.2f} |")
        out.append(f"<!-- end {r['key']}_attacks -->")
        out.append("")
        out.append("AUROC (bold: best per row); n = anomalous samples.\n")
        out.append(f"<!-- begin {r['key']}_auroc -->")
        out.append("| set | n | " + " | ".join(dets) + " |")
        out.append("|---|---|" + "---|" * len(dets))
        for s in sets:
            vals = [auc[(s, d)]["auroc"] for d in dets]
            best = max(vals)
            cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals]
            out.append(f"| {s} | {ev['sets'][s]} | " + " | ".join(cells) + " |")
        out.append(f"<!-- end {r['key']}_auroc -->")
        out.append("")
        rk = r["ranking"]
        costs = r["costs"]
        fa_all = r["false_alarms"]
        out.append("Every detector over all sets, in the OpenOOD style (mean over the sets; rank 1 = best AUROC on a "
                   "set). Cost: median time of one batch-1 scoring call on the monitor's bound buffers, and the "
                   "arrays the detector holds; the compiled columns (coverage family, logit scores, Mahalanobis) "
                   "share one compiled scoring call, the fused verdict is part of the decision stage.\n")
        out.append(f"<!-- begin {r['key']}_ranking -->")
        out.append("| detector | mean AUROC | mean FPR@95%TPR | mean TPR@cal | mean rank | false alarms (clean) | "
                   "µs / call | table KiB |")
        out.append("|---|---|---|---|---|---|---|---|")
        for d in sorted(rk["per_detector"], key=lambda d: rk["per_detector"][d]["mean_rank"]):
            v = rk["per_detector"][d]
            shared = d not in costs and d not in FUSED_COLUMNS
            key = "compiled scores" if shared else ("decision" if d in FUSED_COLUMNS else d)
            c = (r["costs_default"] if d == "fused_default" else costs).get(key, {})
            us = f"{c['p50_us']:.1f}" + (" (shared)" if shared else "") if c else "-"
            kib = f"{c['table_bytes'] / 1024:.0f}" if c else "-"
            name = f"**{d}**" if d in FUSED_COLUMNS else d
            out.append(f"| {name} | {v['mean_auroc']:.3f} | {v['mean_fpr95']:.3f} | {v['mean_tpr_cal']:.3f} | "
                       f"{v['mean_rank']:.1f} | {fa_all[d]['rate']:.3f} | {us} | {kib} |")
        out.append(f"<!-- end {r['key']}_ranking -->")
        out.append("")
        out.append("Rank of every detector on every set (1 = best AUROC).\n")
        out.append(f"<!-- begin {r['key']}_ranks -->")
        out.append("| detector | " + " | ".join(rk["sets"]) + " |")
        out.append("|---|" + "---|" * len(rk["sets"]))
        for d in sorted(rk["per_detector"], key=lambda d: rk["per_detector"][d]["mean_rank"]):
            out.append(f"| {d} | " + " | ".join(str(x) for x in rk["per_detector"][d]["ranks"]) + " |")
        out.append(f"<!-- end {r['key']}_ranks -->")
        out.append("")
        out.append(f"<!-- begin {r['key']}_fused -->")
        for col, members, what in (("fused", r["fusion"]["members"], "every detector"),
                                   ("fused_default", r["fusion_default"]["members"], "the runtime default set")):
            fu = rk[col]
            out.append(f"- `{col}` (candidates: {what}; members chosen on clean data: {', '.join(members)}): mean "
                       f"AUROC {fu['mean_auroc']:.3f} against {fu['best_single_mean']:.3f} for the best single "
                       f"candidate on the mean ({fu['best_single_mean_detector']}); within 0.01 of the best single "
                       f"candidate on {fu['sets_within_0.01']} of {fu['sets']} sets; largest gap {fu['worst_gap']:+.3f} "
                       f"on {fu['worst_gap_set']} (best there: {fu['best_single'][fu['worst_gap_set']]}); realized "
                       f"false alarms on the clean test set {fa_all[col]['rate']:.3f} (binomial 95% interval of the 5% "
                       f"target up to {fa_all[col]['target_high']:.3f}).")
        out.append(f"<!-- end {r['key']}_fused -->")
        out.append("")
        out.append("At the conformal thresholds calibrated on clean validation data (target 5% false alarms): "
                   "detection rate (TPR@cal); realized false-alarm rate on the clean test set in the last row, with "
                   "its exact 95% interval.\n")
        out.append(f"<!-- begin {r['key']}_calibrated -->")
        out.append("| set | fused | coverage | mahalanobis | knn | msp | energy | FPR@95%TPR fused | FPR@95%TPR msp |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for s in sets:
            g = lambda d, k="tpr_cal": auc[(s, d)][k]  # noqa: E731
            out.append(f"| {s} | {g('fused'):.3f} | {g('coverage'):.3f} | {g('mahalanobis'):.3f} | {g('knn'):.3f} | "
                       f"{g('msp'):.3f} | {g('energy'):.3f} | {g('fused', 'fpr_at_95tpr'):.3f} | "
                       f"{g('msp', 'fpr_at_95tpr'):.3f} |")
        fa = r["false_alarms"]
        cell = lambda d: f"{fa[d]['rate']:.3f} [{fa[d]['low']:.3f}, {fa[d]['high']:.3f}]"  # noqa: E731
        worst = max(fa.values(), key=lambda v: v["rate"])
        out.append(f"| clean test (false alarms) | {cell('fused')} | {cell('coverage')} | {cell('mahalanobis')} | "
                   f"{cell('knn')} | {cell('msp')} | {cell('energy')} | | |")
        out.append(f"<!-- end {r['key']}_calibrated -->")
        ok = sum(v["within_target"] for v in fa.values())
        plain = sum(v["rate"] <= v["target_high"] for v in fa.values())
        out.append(f"\nRealized false alarms of the {len(fa)} calibrated detectors on {worst['n']} clean test images: "
                   f"{min(v['rate'] for v in fa.values()):.3f} to {worst['rate']:.3f}. A valid conformal calibration of "
                   f"these group sizes gives a realized rate in [{worst['conformal_low']:.3f}, {worst['conformal_high']:.3f}] "
                   f"95% of the time (calibration and test noise, simulated); {ok} of {len(fa)} detectors are at or below "
                   f"its upper end. Against the binomial interval of the 5% target alone (test noise only, upper end "
                   f"{worst['target_high']:.3f}): {plain} of {len(fa)}.\n")
        rs = r["false_alarm_summary"]["repeated_splits"]
        out.append(f"Over {rs['splits']} random re-cuts of the same validation and clean test images, the mean realized "
                   f"rate is at most the 5% target (within two standard errors) for {rs['at_most_target']} of "
                   f"{rs['detectors']} detectors; the highest mean is {rs['max_mean']:.4f} ({rs['max_mean_detector']}). "
                   f"The combined coverage score's realized rate was above 5% in "
                   f"{rs['share_of_splits_above_target']['coverage']:.0%} of the re-cuts.\n")
        out.append("The model's own errors on the clean test set: inputs rejected in score order (lower AURC is "
                   "better; E-AURC subtracts the best possible order), with 95% bootstrap intervals; coverage and "
                   "selective risk of the inputs the calibrated flag lets through.\n")
        out.append(f"<!-- begin {r['key']}_errors -->")
        out.append("| detector | AURC [95% CI] | E-AURC [95% CI] | coverage at flag | selective risk at flag | "
                   "errors flagged |")
        out.append("|---|---|---|---|---|---|")
        err = r["errors"]
        for d in sorted(err, key=lambda d: err[d]["aurc"]):
            e, f = err[d], err[d].get("at_flag") or {}
            sr = "-" if not f or not np.isfinite(f["selective_risk"]) else f"{f['selective_risk']:.4f}"
            out.append(f"| {d} | {e['aurc']:.4f} [{e['aurc_ci'][0]:.4f}, {e['aurc_ci'][1]:.4f}] | {e['e_aurc']:.4f} "
                       f"[{e['e_aurc_ci'][0]:.4f}, {e['e_aurc_ci'][1]:.4f}] | "
                       f"{f.get('coverage', float('nan')):.3f} | {sr} | {f.get('errors_caught', float('nan')):.3f} |")
        first = next(iter(err.values()))
        out.append(f"<!-- end {r['key']}_errors -->")
        out.append(f"\n{first['n_errors']} of {first['n']} clean test images misclassified (risk without a monitor "
                   f"{first['risk']:.4f}).\n")
        iv = r["auroc_intervals"]
        out.append(f"<!-- begin {r['key']}_intervals -->")
        out.append("| set | fused [95% CI] | fused_default [95% CI] | best single [95% CI] | targets met (fused, "
                   "default) |")
        out.append("|---|---|---|---|---|")
        for s, e in iv.items():
            c = lambda x: f"{x['auroc']:.3f} [{x['ci'][0]:.3f}, {x['ci'][1]:.3f}]"  # noqa: E731
            out.append(f"| {s} | {c(e['fused'])} | {c(e['fused_default'])} | {e['best_single']} {c(e['best'])} | "
                       f"{'yes' if e['fused']['meets_target'] else 'no'}, "
                       f"{'yes' if e['fused_default']['meets_target'] else 'no'} |")
        out.append(f"<!-- end {r['key']}_intervals -->\n")
        ex = r["explanation_example"]
        if ex:
            out.append(f"Why the runtime default flagged {ex['set']} input #{ex['index']} (predicted {ex['pred']}, "
                       f"p = {ex['p_value']:.3g}): {ex['summary']}. A batch-1 call on it: "
                       f"{ex['cost_us']['explain off']:.1f} µs unexplained, {ex['cost_us']['explain on']:.1f} µs "
                       "explained (p50).\n")
        out.append(f"Taps: {', '.join(r['taps'])}.\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-detection-"))
    results = [run_dataset(n, args.quick, folder) for n in ("mnist", "fmnist", "digits")]
    total = time.perf_counter() - t0
    md = markdown(results) + f"\nWhole benchmark: {total / 60:.1f} minutes. HTML reports: {folder}/*.html\n"
    write("detection", {"datasets": {r["key"]: r for r in results}, "seconds": total, "quick": args.quick}, md,
          note="Detection quality; thresholds calibrated on clean validation data only.")


if __name__ == "__main__":
    main()
