"""``nnwatch calibrate | screen | evaluate | bench`` on a language detector file (DETECTOR.json).

The same commands as for classifiers: prompts JSONL (``prompt``, optional ``label``, ``id``
and ``image``) where a classifier takes array data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes
from ..errors import InputError
from ..heads.loading import DEFAULT_THREADS
from ..eval.provenance import describe, provenance

# Classifier options a language detector has no use for: refused when set, never ignored.
CLASSIFIER_ONLY = {"calibrate": {"min_class_samples": 20, "fuse": None, "fusion_budget": 0.10, "batch_size": 256,
                                 "providers": "auto"},
                   "screen": {"stream": False, "ray": False, "batch_size": 256, "providers": "auto"},
                   "evaluate": {"batch_size": 256, "providers": "auto"},
                   "bench": {"batch": 1, "iters": 300, "per_detector": False, "providers": "auto", "detectors": "all",
                             "demo": False}}


def check_language_args(args: argparse.Namespace) -> None:
    """Refuse options that only mean something for classifier models, and a PROFILE.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of calibrate, screen, evaluate or bench on a detector file.

    Raises
    ------
    InputError
        A PROFILE, or a classifier-only option set to other than its default.
    """
    if getattr(args, "profile", None):
        raise InputError(f"{args.model} is a language detector file: it takes no PROFILE (got {args.profile!r}); "
                         "prompts go in --data")
    for name, default in CLASSIFIER_ONLY.get(args.command, {}).items():
        if getattr(args, name, default) != default:
            raise InputError(f"--{name.replace('_', '-')} is for classifier models (MODEL.onnx PROFILE.npz); "
                             f"{args.model} is a language detector file")


def _monitor(args: argparse.Namespace, detectors: Any = None, decision: str = "auto", onnx: str | None = None) -> Any:
    from ..heads.language_monitor import LanguageMonitor

    return LanguageMonitor(args.model, threads=getattr(args, "threads", None) or DEFAULT_THREADS, detectors=detectors,
                           decision=decision, cache_dir=getattr(args, "cache_dir", None),
                           truncate=getattr(args, "truncate", False), quiet=getattr(args, "quiet", False),
                           onnx=onnx)


def _detector_names(value: str | None) -> Any:
    if value in (None, "all"):
        return value
    return [n.strip() for n in value.split(",") if n.strip()]


def _prompts(args: argparse.Namespace, spec: str, label: int | None = None) -> Any:
    from ..heads.prompts import load_prompts

    limit = getattr(args, "limit", None)
    parts = []
    for path in (p for p in spec.split(",") if p):  # --limit is per data source: per file
        part = load_prompts(path, label=label)
        parts.append(part.subset(range(min(limit, len(part)))) if limit else part)
    prompts = parts[0]
    for part in parts[1:]:
        prompts = prompts + part
    return prompts


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``nnwatch calibrate DETECTOR.json --data BENIGN.jsonl``: conformal calibration on benign prompts."""
    from ..heads.detector_file import save_detector
    from ..heads.training import check_hold_out

    check_language_args(args)
    prompts = _prompts(args, args.data, label=0)
    if (prompts.labels == 1).any():
        raise InputError(f"calibration prompts must all be benign (label 0); {int((prompts.labels == 1).sum())} in "
                         f"{args.data} are labelled unsafe: the false-positive guarantee is about benign prompts")
    check_hold_out(len(prompts), args.fpr, "--data")  # before the model loads
    mon = _monitor(args, detectors="all")
    cal = mon.calibrate(prompts, fpr=args.fpr, progress=not args.quiet)
    out = args.out or args.model
    save_detector(mon.detector, out)
    print(f"calibrated {len(cal.detectors)} detectors on {len(prompts)} benign prompts at fpr {cal.fpr:g}; wrote {out}")
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    """``nnwatch screen DETECTOR.json --data PROMPTS.jsonl --out SCORES.csv``."""
    from .output import write_records

    check_language_args(args)
    prompts = _prompts(args, args.data, label=-1)  # -1: the row has no label
    mon = _monitor(args, detectors=_detector_names(args.detectors), onnx=args.onnx)
    mon.require_calibration()
    v = mon.score(prompts, progress=not args.quiet)
    rows = v.records()
    for row, pid, label in zip(rows, prompts.ids, prompts.labels):
        row.pop("pred", None)
        row.pop("nonfinite_input", None)
        row["id"] = pid
        if label >= 0:
            row["label"] = int(label)
        row["p_value"] = row.pop("confidence")  # the decision detector's
    for name, p in v.p_values.items():
        for row, value in zip(rows, p):
            row[f"p.{name}"] = float(value)
    write_records(args.out, rows)
    print(f"wrote {args.out}: {len(rows)} prompts, {int(v.flag.sum())} flagged unsafe by {v.decision} at fpr "
          f"{mon.calibration_summary['fpr']:g}")
    return 0


def _sets(args: argparse.Namespace) -> dict[str, Any]:
    from ..heads.prompts import contrast_pairs

    if args.id or args.ood:
        raise InputError("--id/--ood are for classifier models; give a language detector labelled prompt sets with "
                         "--set NAME=FILE[,FILE...] (label 1 unsafe, 0 safe)")
    sets: dict[str, Any] = {}
    for spec in args.set or []:
        name, sep, files = spec.partition("=")
        if not sep or not name or not files:
            raise InputError(f"--set {spec!r}: expected NAME=FILE[,FILE...]")
        if name in sets:
            raise InputError(f"--set {name!r} given twice")
        sets[name] = _prompts(args, files)
    if args.contrast:
        sets["contrast_pairs"] = contrast_pairs("test")  # words never seen by `heads fit`
    if not sets:
        raise InputError("nothing to evaluate: give --set NAME=FILE[,FILE...] and/or --contrast")
    return sets


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``nnwatch evaluate DETECTOR.json --set test=A.jsonl,B.jsonl [--contrast] --json R.json``."""
    from ..heads.fit import chosen_row
    from ..heads.language_report import evaluation_markdown, evaluation_report
    from ..heads.set_evaluation import evaluate_sets

    check_language_args(args)
    sets = _sets(args)
    mon = _monitor(args, detectors="all")
    mon.require_calibration()
    start = time.perf_counter()
    res = evaluate_sets(mon, sets, progress=not args.quiet, log=None if args.quiet else print)
    res["seconds"] = time.perf_counter() - start
    res["default"] = mon.detector.default
    res["cv_chosen"] = {name: chosen_row(entry) for name, entry in mon.detector.cv.items()}
    # What the report reads of the detector file (not its weights: megabytes of numbers nobody cites).
    res["detector"] = {k: v for k, v in mon.detector.to_json().items() if k not in ("detectors", "cross_fit")}
    res["model"] = mon.detector.model
    res.update(provenance(["nnwatch"] + sys.argv[1:]))
    md = evaluation_markdown(res)
    if args.json:  # files first: a reader that stops early (| head) must not cost them
        atomic_write_bytes(args.json, json.dumps(res, indent=1, default=float).encode())
        atomic_write_bytes(Path(args.json).with_suffix(".md"), md.encode())
    if args.report:
        atomic_write_bytes(args.report, evaluation_report(res).encode())
    print(md)
    if args.json:
        print(f"wrote {args.json} and {Path(args.json).with_suffix('.md')}")
    if args.report:
        print(f"wrote {args.report}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``nnwatch bench DETECTOR.json --data PROMPTS.jsonl``: monitoring cost vs a plain prefill."""
    from ..heads.costs import monitoring_costs
    from ..heads.language_report import latency_table

    check_language_args(args)
    if not args.data:
        raise InputError("bench on a language detector needs --data PROMPTS.jsonl (prompts to time)")
    prompts = _prompts(args, args.data, label=0)
    mon = _monitor(args)
    texts = list(prompts.prompts[: args.timed_prompts])
    res = monitoring_costs(mon, texts, rounds=3, onnx=args.onnx, progress=None if args.quiet else print)
    res.update(provenance(["nnwatch"] + sys.argv[1:]))
    if args.json:  # files first: a reader that stops early (| head) must not cost them
        atomic_write_bytes(args.json, json.dumps(res, indent=1).encode())
        md = "\n".join([describe(res), "", "<!-- begin latency -->", *latency_table(res),
                        "<!-- end latency -->"]) + "\n"
        atomic_write_bytes(Path(args.json).with_suffix(".md"), md.encode())
    print("\n".join(latency_table(res)))
    if args.json:
        print(f"wrote {args.json} and {Path(args.json).with_suffix('.md')}")
    return 0
