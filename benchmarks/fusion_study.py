"""Which rule should combine the fused verdict's members? A study on what a user has.

The rule, and then the membership, are chosen on clean validation data and synthetic anomalies
made from it (uniform noise, blends of two clean inputs of different classes, blur, low
contrast: :mod:`nnwatch.calibration.synthetic_inputs`, which calibration itself uses); the
benchmark's attacks, other dataset and corruptions of held-out sources
(benchmarks/detection.py's sets) only validate the choice.

Per model (the three of benchmarks/detection.py, trained the same way), every detector's
scores are computed once and cached; each rule is then a function of the member evidence
(:mod:`nnwatch.kernels.fusion`'s definition: conformal -log p against half A, pooled over
classes or per class (a class with fewer than 20 half-A samples compared with all of A), with
its exponential tail). Synthetic anomalies are scored against half B of the validation data
(clean data a user has, which half A never saw); the benchmark's sets against its clean test
images, which the choice never sees. Each rule keeps the guarantee the same way (the final conformal stage on half B), so
only power is compared. The members are those ``choose_members`` picks from the clean scores
(no cost budget): the candidates the evaluation's fusion uses; then, with the chosen rule, those
candidates against only the ones that separate the synthetic sets from clean half A
(:mod:`nnwatch.calibration.separation`, the rule calibration applies by default).

Writes benchmarks/results/fusion_study.json/.md. Run: python benchmarks/fusion_study.py
[--cache DIR] [--quick] (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _common import write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


CHOICE = " (synthetic, choice)"  # anomalies the membership is chosen on (half A's inputs, another draw)


def synthetic(x: np.ndarray, pred: np.ndarray, seed: int = 1, suffix: str = " (synthetic)") -> dict[str, np.ndarray]:
    """Anomalies a user can make from clean data alone: the library's own
    (:func:`nnwatch.calibration.synthetic_inputs.synthetic_inputs`, which calibration uses to
    choose the members)."""
    from nnwatch.calibration.synthetic_inputs import synthetic_inputs

    return {f"{kind}{suffix}": v for kind, v in synthetic_inputs(x, pred, seed).items()}


def score_dataset(name: str, quick: bool, cache: Path) -> dict:
    """Train the benchmark's model for ``name`` and score every detector on every set (cached)."""
    path = cache / f"{name}{'-quick' if quick else ''}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        return {k: data[k] for k in data.files}
    import torch

    import detection as bench
    from nnwatch.calibration.calibrate import collect_scores
    from nnwatch.eval.models import digits_cnn, lenet, train_classifier
    from nnwatch.eval.zoo import fmnist_resnet
    from nnwatch.export.from_torch import export_module
    from nnwatch.monitor.detectors import ALL
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.sources import load_digits, load_idx

    torch.set_num_threads(1)
    n = dict(bench.SPLITS[name])
    if quick:
        n = {k: v // 2 for k, v in n.items()}
    if name == "digits":
        train, val, test = load_digits("train"), load_digits("val"), load_digits("test")
        other_x = bench.mnist_as_digits(load_idx(bench.DATA / "mnist", "test").x)
        b, c = n["clean"], n["clean"] + n["sources"]
        val_x, clean_x, clean_y = val.x, test.x[:b], test.y[:b]
        other = "mnist"
    else:
        own, other = ("mnist", "fashion_mnist") if name == "mnist" else ("fashion_mnist", "mnist")
        train, test = load_idx(bench.DATA / own, "train"), load_idx(bench.DATA / own, "test")
        other_x = load_idx(bench.DATA / other, "test").x
        a, b, c = n["val"], n["val"] + n["clean"], n["val"] + n["clean"] + n["sources"]
        val_x, clean_x, clean_y = test.x[:a], test.x[a:b], test.y[a:b]
    src_x, src_y = test.x[b:c], test.y[b:c]
    say(f"{name}: training")
    net = {"mnist": lenet, "fmnist": fmnist_resnet, "digits": digits_cnn}[name]()
    epochs = {"mnist": (4, 10), "fmnist": (6, 25), "digits": (20, 40)}[name][0 if quick else 1]
    net = train_classifier(net, train.x, train.y, epochs=epochs, seed=0, lr=2e-3)
    model = cache / f"{name}.onnx"
    export_module(net, torch.from_numpy(train.x[:1]), model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(model, train)
        mon = Monitor(model, profile, detectors=[d for d in ALL if d != "fused"], providers="cpu")
    say(f"{name}: anomalies")
    sets, _ = bench.anomalies(net, src_x, src_y, other_x[: len(clean_x)], f"{other} (other dataset)", quick,
                              shift_px=2 if name == "digits" else 4)
    out: dict[str, np.ndarray] = {}
    val_scores, _, val_pred = collect_scores(mon, val_x)
    columns = list(val_scores)
    out["columns"] = np.array(columns)
    out["val"], out["val_pred"] = np.stack([val_scores[d] for d in columns], 1), val_pred
    from nnwatch.calibration.fused_verdict import split_halves

    in_a = split_halves(val_pred, 0)  # as calibration: the member choice makes its anomalies from half A
    sets = {"clean": clean_x, **sets, **synthetic(val_x, val_pred),
            **synthetic(val_x[in_a], val_pred[in_a], seed=2, suffix=CHOICE)}
    names = []
    for k, (set_name, x) in enumerate(sets.items()):
        say(f"{name}: scoring {set_name} ({len(x)})")
        scores, _, pred = collect_scores(mon, x)
        out[f"set{k}"], out[f"set{k}_pred"] = np.stack([scores[d] for d in columns], 1), pred
        names.append(set_name)
    out["set_names"] = np.array(names)
    clean_pred = out["set0_pred"]
    out["clean_correct"] = (clean_pred == clean_y).astype(np.int8)
    np.savez(path, **out)
    return out


# -- the rules ------------------------------------------------------------------------------------

def member_evidence(ref_scores: np.ndarray, ref_pred: np.ndarray, scores: np.ndarray, pred: np.ndarray,
                    n_classes: int, pooled: bool = False, tail: str = "linear") -> np.ndarray:
    """(N, m) evidence of each sample and member against half A: per class (or pooled) -log p, tail beyond max."""
    from nnwatch.kernels.fusion import TAIL_QUANTILE

    out = np.empty(scores.shape)
    groups = [np.arange(len(ref_pred))] if pooled else [np.flatnonzero(ref_pred == c) for c in range(n_classes)]
    every = np.arange(len(ref_pred))
    for c in range(n_classes):
        rows = np.flatnonzero(pred == c)
        if not len(rows):
            continue
        idx = groups[0] if pooled else groups[c]
        if len(idx) < 20:  # as the monitor: a class with too few samples is compared with everyone
            idx = every
        for k in range(scores.shape[1]):
            ref = np.sort(ref_scores[idx, k])
            n = len(ref)
            s = scores[rows, k]
            n_ge = n - np.searchsorted(ref, s, side="left")
            top, q = ref[-1], ref[int(TAIL_QUANTILE * (n - 1))]
            scale = max(top - q, 1e-9 * (1 + abs(top)))
            beyond = (s - top) / scale
            t = np.log(n + 1) + (beyond if tail == "linear" else np.log1p(np.maximum(beyond, 0)))
            e = np.where(n_ge > 0, -np.log((1 + n_ge) / (n + 1)), t)
            out[rows, k] = np.where(np.isfinite(s), e, np.inf)
    return out


def rules(e: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate combination of an evidence matrix (N, m)."""
    from scipy.special import gammaincc

    m = e.shape[1]
    fisher = e.sum(axis=1)
    tippett = e.max(axis=1)
    top = -np.sort(-e, axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        p_fisher = gammaincc(m, np.minimum(fisher, 1e300))  # P(Gamma(m) >= T): Fisher's p under independence
        p_tippett = -np.expm1(m * np.log1p(-np.exp(-np.minimum(tippett, 700))))  # 1 - (1 - min p)^m
        minp = -np.log(np.maximum(np.minimum(p_fisher, p_tippett), 1e-300))
        minp = np.where(np.isfinite(fisher) & np.isfinite(tippett),
                        np.where(minp >= 690, 690 + np.maximum(fisher, tippett) / 1e3, minp), np.inf)
    return {"fisher (sum)": fisher, "tippett (max)": tippett, "fisher or tippett (min p)": minp,
            "strongest 2": top[:, :2].sum(axis=1), "strongest half": top[:, : (m + 1) // 2].sum(axis=1),
            "strongest two thirds": top[:, : max(1, (2 * m + 2) // 3)].sum(axis=1)}


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    from nnwatch.eval.metrics import auroc as metric

    return float(metric(neg, pos))


def study(data: dict, members: list[str], variants: dict) -> dict:
    """AUROC of every rule and variant on every set (negatives: the clean test set)."""
    from nnwatch.calibration.fused_verdict import split_halves

    columns = list(data["columns"])
    cols = [columns.index(mb) for mb in members]
    n_classes = int(max(data["val_pred"].max(), data["set0_pred"].max())) + 1
    in_a = split_halves(data["val_pred"], 0)
    ref, ref_pred = data["val"][in_a][:, cols], data["val_pred"][in_a]
    names = list(data["set_names"])
    val_b, val_b_pred = data["val"][~in_a], data["val_pred"][~in_a]  # clean data a user has, unused by A

    def negatives(set_name: str, _: str) -> str:  # synthetic sets: against clean data the user has
        return "val_b" if "(synthetic" in set_name else "clean"

    out: dict = {}
    for variant, kwargs in variants.items():
        stats = {"val_b": rules(member_evidence(ref, ref_pred, val_b[:, cols], val_b_pred, n_classes, **kwargs))}
        for k, set_name in enumerate(names):
            e = member_evidence(ref, ref_pred, data[f"set{k}"][:, cols], data[f"set{k}_pred"], n_classes, **kwargs)
            stats[set_name] = rules(e)
        for rule in stats["clean"]:
            out[f"{rule} | {variant}"] = {s: auroc(stats[negatives(s, s)][rule], stats[s][rule])
                                          for s in names if s != "clean"}
    singles = {}
    for j, d in enumerate(columns):
        singles[d] = {s: auroc(val_b[:, j] if "(synthetic" in s else data["set0"][:, j], data[f"set{k}"][:, j])
                      for k, s in enumerate(names) if s != "clean"}
    return {"fused": out, "singles": singles, "members": members}


POOLS = {"runtime default": "COMPILED + mahalanobis", "every detector": "ALL"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", help="keep the scored sets here and reuse them (default: a fresh folder, so a run "
                    "measures the code it runs)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import tempfile

    from nnwatch.calibration.fused_verdict import choose_members
    from nnwatch.calibration.groups import calibration_from_scores
    from nnwatch.monitor.detectors import COMPILED

    cache = Path(args.cache or tempfile.mkdtemp(prefix="nnwatch-fusion-study-"))
    cache.mkdir(parents=True, exist_ok=True)
    variants = {"per-class evidence": {}, "pooled evidence": {"pooled": True}}
    result: dict = {"models": {}}
    for name in ("digits", "mnist", "fmnist"):
        data = score_dataset(name, args.quick, cache)
        columns = [str(c) for c in data["columns"]]
        n_classes = int(data["val_pred"].max()) + 1
        cal = calibration_from_scores(columns, data["val"], data["val_pred"], n_classes, 0.05, 20, warn=False)
        pools = {"runtime default": [c for c in COMPILED if c != "coverage"] + ["mahalanobis"],
                 "every detector": [c for c in columns if c != "coverage"]}
        result["models"][name] = {}
        for pool, candidates in pools.items():
            members = [str(m) for m in choose_members(cal, [c for c in candidates if c in columns])]
            say(f"{name}, {pool}: members {members}")
            entry = study(data, members, variants)
            entry["pool"] = candidates
            result["models"][name][pool] = entry
            # the same candidates, kept only where they separate the synthetic sets from clean half A
            separation = separating(data, members)
            say(f"{name}, {pool}, separating: members {separation.members}")
            entry = study(data, separation.members, variants)
            entry["pool"], entry["separation"] = candidates, separation.to_dict()
            result["models"][name][f"{pool}, separating members"] = entry
    result["choice"] = choose(result)
    result["membership"] = choose_membership(result, f"{result['choice']['rule']} | {result['choice']['evidence']}")
    print(summarize(result))
    write("fusion_study", result, summarize(result),
          note="AUROC of each rule; chosen on the synthetic sets only, the benchmark sets validate.")


def separating(data: dict, members: list[str]):  # type: ignore[no-untyped-def]
    """The members that separate anomalies made from half A's inputs (their own draw, not the sets
    the memberships are then compared on) from clean half A: what calibration does
    (:func:`nnwatch.calibration.separation.choose_separating`)."""
    from nnwatch.calibration.fused_verdict import split_halves
    from nnwatch.calibration.separation import choose_separating

    columns = list(data["columns"])
    cols = [columns.index(m) for m in members]
    in_a = split_halves(data["val_pred"], 0)
    synth = {s: data[f"set{k}"][:, cols] for k, s in enumerate(data["set_names"]) if s.endswith(CHOICE)}
    return choose_separating(members, data["val"][in_a][:, cols], synth)


def choose_membership(result: dict, rule: str) -> dict:
    """Every candidate, or only the separating ones: the one with the higher synthetic mean AUROC
    of ``rule`` over the models and pools (the only criterion); the benchmark sets validate."""
    means: dict[str, list[float]] = {"every candidate": [], "separating members": []}
    bench: dict[str, list[float]] = {"every candidate": [], "separating members": []}
    for pools in result["models"].values():
        for pool, r in pools.items():
            which = "separating members" if "separation" in r else "every candidate"
            synth, rest = _split(list(next(iter(r["singles"].values()))))
            means[which].append(float(np.mean([r["fused"][rule][s] for s in synth])))
            bench[which].append(float(np.mean([r["fused"][rule][s] for s in rest])))
    synthetic_mean = {k: float(np.mean(v)) for k, v in means.items()}
    return {"rule": rule, "chosen": max(synthetic_mean, key=synthetic_mean.get), "synthetic_mean": synthetic_mean,
            "benchmark_mean": {k: float(np.mean(v)) for k, v in bench.items()}}


def _split(sets: list[str]) -> tuple[list[str], list[str]]:
    synth = [s for s in sets if s.endswith("(synthetic)")]  # the choice's own draws are neither
    return synth, [s for s in sets if "(synthetic" not in s]


def choose(result: dict) -> dict:
    """The rule with the highest synthetic mean AUROC over models and pools (the only criterion)."""
    score: dict[str, list[float]] = {}
    for pools in result["models"].values():
        for r in pools.values():
            if "separation" in r:  # the rule is chosen on every candidate; membership after it
                continue
            synth, _ = _split(list(next(iter(r["singles"].values()))))
            for key, aucs in r["fused"].items():
                score.setdefault(key, []).append(float(np.mean([aucs[s] for s in synth])))
    means = {k: float(np.mean(v)) for k, v in score.items()}
    best = max(means, key=means.get)
    first = "fisher (sum) | per-class evidence"  # the rule nnwatch had before this study
    rule, evidence = best.split(" | ")
    return {"rule": rule, "evidence": evidence, "synthetic_mean": means[best], "first_rule_synthetic_mean": means[first],
            "by_rule": dict(sorted(means.items(), key=lambda kv: -kv[1]))}


def summarize(result: dict) -> str:
    c = result["choice"]
    lines = [f"Chosen on the synthetic sets (mean over the three models and both candidate pools): **{c['rule']}**, "
             f"{c['evidence']} ({c['synthetic_mean']:.4f}; the first rule, Fisher's sum of per-class evidence: "
             f"{c['first_rule_synthetic_mean']:.4f}).", "", "| rule | evidence | synthetic mean AUROC |", "|---|---|---|"]
    lines += [f"| {' | '.join(k.split(' | '))} | {v:.4f} |" for k, v in c["by_rule"].items()] + [""]
    m = result["membership"]
    lines += [f"Membership, with that rule: **{m['chosen']}** (synthetic mean AUROC over the models and pools: every "
              f"candidate {m['synthetic_mean']['every candidate']:.4f}, separating members "
              f"{m['synthetic_mean']['separating members']:.4f}; on the benchmark sets, which only validate: "
              f"{m['benchmark_mean']['every candidate']:.4f} and {m['benchmark_mean']['separating members']:.4f}).", "",
              "| model | pool | every candidate: synthetic / benchmark | separating members | synthetic / benchmark |",
              "|---|---|---|---|---|"]
    for name, pools in result["models"].items():
        for pool, r in pools.items():
            if "separation" in r:
                continue
            t = pools[f"{pool}, separating members"]
            synth, bench = _split(list(next(iter(r["singles"].values()))))

            def means(entry: dict) -> str:
                f = entry["fused"][m["rule"]]
                return f"{np.mean([f[s] for s in synth]):.4f} / {np.mean([f[s] for s in bench]):.4f}"

            lines.append(f"| {name} | {pool} | {means(r)} | {', '.join(t['members'])} | {means(t)} |")
    lines.append("")
    for name, pools in result["models"].items():
        for pool, r in pools.items():
            sets = list(next(iter(r["singles"].values())))
            synth, bench = _split(sets)
            best_member = {s: max(r["singles"][m][s] for m in r["members"]) for s in sets}
            best_single = {s: max(r["singles"][d][s] for d in r["pool"] if d in r["singles"]) for s in sets}
            single_mean = max(np.mean([r["singles"][d][s] for s in bench]) for d in r["pool"] if d in r["singles"])
            lines += [f"## {name}, {pool}: members {', '.join(r['members'])}", "",
                      f"Best single candidate's mean AUROC over the benchmark sets: {single_mean:.4f}.", "",
                      "| rule | evidence | synthetic mean | synthetic worst gap to best member | benchmark mean | "
                      "benchmark worst gap to best single | within 0.01 of best single |",
                      "|---|---|---|---|---|---|---|"]
            for key, aucs in sorted(r["fused"].items(), key=lambda kv: -np.mean([kv[1][s] for s in synth])):
                rule, variant = key.split(" | ")
                gap_syn = min(aucs[s] - best_member[s] for s in synth)
                gap_bench = min(aucs[s] - best_single[s] for s in bench)
                within = sum(aucs[s] >= best_single[s] - 0.01 for s in bench)
                lines.append(f"| {rule} | {variant} | {np.mean([aucs[s] for s in synth]):.4f} | {gap_syn:+.4f} | "
                             f"{np.mean([aucs[s] for s in bench]):.4f} | {gap_bench:+.4f} | {within}/{len(bench)} |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
