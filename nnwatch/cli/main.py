"""Argument parsing and dispatch. The CLI's shape is a public contract: extend, don't rename."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import NnwatchError
from .paths import check_argument_order, check_outputs, resolve_shipped
from .types import (budget_text, detector_names, detector_names_any, detector_with_params, non_negative_float,
                    positive_int, unit_interval)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Option help with its default (where there is one), and examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and not action.required and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _layers(text: str) -> str | list[str]:
    return text if text in ("auto", "per-scale") else [t for t in text.split(",") if t]


DESCRIPTION = """Runtime monitor for neural-network inference: is this input like what the model was trained on?

workflow for a classifier, in order:
  1. nnwatch instrument MODEL.onnx --out monitored.onnx             (or nnwatch export, from PyTorch)
  2. nnwatch profile monitored.onnx --data TRAIN --out profile.npz  (trusted training data)
  3. nnwatch calibrate monitored.onnx profile.npz --data HELD_OUT --fpr 0.05   (clean data the profile never saw)
  4. nnwatch screen monitored.onnx profile.npz --data SOURCE --out flags.csv
     nnwatch evaluate monitored.onnx profile.npz --id CLEAN --ood [NAME=]ANOMALOUS
     nnwatch bench monitored.onnx profile.npz
     nnwatch compile monitored.onnx profile.npz --out compiled/   (ONNX files for any runtime)
language models: nnwatch heads search -> heads fit -> calibrate / screen / evaluate DETECTOR.json
try it offline:  nnwatch demo

data SOURCE: npz:FILE | npy:FILE[,LABELS.npy] | idx:DIR[:train|test] | digits[:train|val|test]
             | images:DIR | images:MANIFEST.csv | video:FILE | mcap:FILE[:TOPIC] | rosbag:DIR|FILE.bag[:TOPIC]
  any SOURCE may end in a slice [start:stop] (non-negative, no step), e.g. video:run.mp4[100:400],
  or a contiguous split by percentage: [:80%] to profile, [80%:] to calibrate;
  recordings (images, video, mcap, rosbag) are streamed and go through --preprocess PRESET|FILE.json
  (presets 0-1, -1-1, imagenet; default 0-1: RGB, x/255, NCHW float32)"""


DATA_HELP = ("npz:FILE | npy:FILE[,LABELS.npy] | idx:DIR[:train|test] | digits[:train|val|test] | images:DIR | "
             "images:MANIFEST.csv (path,label) | video:FILE | mcap:FILE[:TOPIC] | rosbag:DIR|FILE.bag[:TOPIC] (ROS "
             "2 bag folder or ROS 1 .bag; sensor_msgs Image/CompressedImage; in MCAP also foxglove.RawImage/"
             "CompressedImage), each optionally sliced SOURCE[start:stop], e.g. "
             "mcap:drive.mcap:/camera/image_raw[0:500], or split into contiguous blocks: [:80%%] and [80%%:]")
PREPROCESS_HELP = ("how recorded frames (images:, video:, mcap:, rosbag:) become the model's input: a preset (0-1: "
                   "RGB x/255 NCHW; -1-1: (x/255-0.5)/0.5; imagenet: resize 256, crop 224, ImageNet mean/std) or a "
                   "JSON file with fields resize, crop, channels (rgb|bgr|gray), layout (NCHW|NHWC), scale, mean, "
                   "std, interpolation (default: 0-1)")


def build_parser() -> argparse.ArgumentParser:
    """The ``nnwatch`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
        Parser with one sub-parser per command.
    """
    p = argparse.ArgumentParser(prog="nnwatch", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    p.subcommands = sub.choices  # type: ignore[attr-defined]  # name -> parser, for option hints

    e = sub.add_parser("export", help="torch module -> instrumented ONNX", description="torch module -> instrumented ONNX",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch export models.py:make_net --input-shape 1,1,28,28 --out monitored.onnx --weights net.pt")
    e.add_argument("factory", help="MODULE:FACTORY (or FILE.py:FACTORY) returning a torch.nn.Module")
    e.add_argument("--input-shape", required=True, help="example input shape, e.g. 1,1,28,28")
    e.add_argument("--out", required=True, help="instrumented ONNX model to write")
    e.add_argument("--layers", default="auto", type=_layers, help="auto, or comma-separated module paths / tensor names")
    e.add_argument("--plain-out", help="also write the untapped model here")
    e.add_argument("--weights", help="state_dict file (.pt) to load into the module")
    _instrument_options(e)

    i = sub.add_parser("instrument", help="ONNX -> instrumented ONNX (any classifier)", description="ONNX -> instrumented ONNX (any classifier)",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch instrument classifier.onnx --out monitored.onnx")
    i.add_argument("model", help="ONNX classifier (logits output), or an object detector with --layout")
    i.add_argument("--out", required=True, help="instrumented ONNX model to write")
    i.add_argument("--layout", metavar="PRESET|SPEC.json",
                   help="the model is an object detector whose outputs read with this layout: yolov8 (raw "
                        "(B, 4 + C, N) head; NMS by nnwatch), yolov5 or yolox ((B, N, 5 + C) with objectness; "
                        "yolox decodes its grid), nms ((B, K, 6) rows x1, y1, x2, y2, score, class), "
                        "boxes-scores-classes (three outputs), or a JSON spec of the layout fields")
    i.add_argument("--layers", default="auto", type=_layers,
                   help="auto, or comma-separated tensor / node names; for a detector also per-scale (the last "
                        "feature map at each of the last --max-taps (default 3) map sizes: one per head scale on "
                        "multi-scale heads such as YOLOv8 and YOLOX)")
    _instrument_options(i)
    i.add_argument("--budget", type=budget_text, metavar="RATIO|MS",
                   help="choose the taps so that a batch-1 monitored call (compiled detectors) stays within RATIO "
                        "(e.g. 1.05x) of a plain IOBinding call, or within MS (e.g. 2.5ms), measured here; needs --data")
    i.add_argument("--data", metavar="SOURCE", help="with --budget: clean inputs to judge each layer (>= 40)")
    i.add_argument("--budget-samples", type=positive_int, default=400, help="with --budget: inputs of --data used")
    i.add_argument("--providers", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="with --budget: where to measure (the provider the model will run on)")

    pr = sub.add_parser("profile", help="build the training profile (y in SOURCE: trusted = correctly classified)", description="build the training profile (y in SOURCE: trusted = correctly classified)",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch profile monitored.onnx --data npz:train.npz --out profile.npz")
    pr.add_argument("model", help="instrumented ONNX model (nnwatch instrument / export)")
    pr.add_argument("--data", required=True, help=DATA_HELP + "; with --ray also npzdir:DIR (shards read by the "
                    "workers) | parquet:PATH (columns id, x[, y])")
    pr.add_argument("--out", required=True, help="profile (.npz) to write")
    pr.add_argument("--k-sections", type=positive_int, default=10, help="k of k-multisection coverage")
    pr.add_argument("--k-top", type=positive_int, default=3, help="k of top-k coverage (at most the smallest layer)")
    pr.add_argument("--threshold", default="mean", help="neuron-coverage threshold: 'mean' or a number")
    pr.add_argument("--min-confidence", type=unit_interval(False, False), default=0.0,
                    help="minimum softmax confidence of a trusted training sample")
    pr.add_argument("--rare-rate", type=unit_interval(False, True), default=0.01,
                    help="a state is rare for a class below this share of its samples")
    _ray_option(pr)
    _common(pr)

    c = sub.add_parser("calibrate", help="per-class thresholds at a target FPR on clean held-out data (updates PROFILE, or DETECTOR.json from benign prompts)", description="per-class thresholds at a target FPR on clean held-out data (updates PROFILE, or DETECTOR.json from benign prompts)",
                         formatter_class=HelpFormatter, epilog="examples:\n  nnwatch calibrate monitored.onnx profile.npz --data npz:val.npz --fpr 0.05\n"
                                "  nnwatch calibrate heads.json --data benign.jsonl --fpr 0.05 --out recalibrated.json")
    c.add_argument("model", help="instrumented ONNX model (nnwatch instrument / export), or a language detector file (DETECTOR.json; smollm2: the one shipped with nnwatch)")
    c.add_argument("profile", nargs="?", help="profile (.npz) built for MODEL (not for a detector file)")
    c.add_argument("--data", required=True, help="clean held-out data, never the profile's training data: " + DATA_HELP
                   + " (read into memory); for a detector file: benign prompts JSONL (FILE[,FILE...])")
    c.add_argument("--fpr", type=unit_interval(True, True), default=0.05,
                   help="target false-alarm rate of the conformal flags")
    c.add_argument("--min-class-samples", type=positive_int, default=None,
                   help="calibration samples a class needs for a threshold of its own (fewer: pooled); default 20 "
                        "for classifiers; object detectors pool every class unless it is given")
    c.add_argument("--fuse", type=detector_names, metavar="NAME,...",
                   help="members of the fused verdict (default: chosen from the clean scores and cost; for an "
                        "object detector, the members that tell synthetic anomalies made from the clean frames from "
                        "clean objects)")
    c.add_argument("--no-separate", action="store_true",
                   help="fuse every candidate that is no near-copy and fits the budget (for an object detector: every "
                        "member), without the check on anomalies made from the calibration data")
    c.add_argument("--fusion-budget", type=non_negative_float, default=0.10, metavar="SHARE",
                   help="a Python detector, or Mahalanobis, joins the fused verdict only if its multiply-adds per "
                        "sample are at most this share of the model's own, both counted, not timed (0: the free "
                        "compiled columns only)")
    _detector_option(c)
    c.add_argument("--error-risk", type=unit_interval(True, True), metavar="RATE",
                   help="also calibrate the error verdict: answer only where an answered input is wrong with "
                        "probability at most RATE (certified at --error-delta; needs labels in --data); screen then "
                        "writes an 'answer' column")
    c.add_argument("--error-detector", default="msp", help="the score the error verdict thresholds (msp, doctor, ...; "
                   "added to the calibrated detectors)")
    c.add_argument("--error-delta", type=unit_interval(True, True), default=0.05, metavar="DELTA",
                   help="allowed probability, over the calibration data, that the chance of an answered input "
                        "being wrong exceeds --error-risk")
    c.add_argument("--out", help="write the calibrated profile (or detector file) here instead of updating it in place")
    c.add_argument("--truncate", action="store_true",
                   help="detector file only: keep the last max_tokens tokens of an over-long prompt instead of refusing")
    _common(c)

    s = sub.add_parser("screen", help="per-input scores and flags to JSON, CSV or MCAP", description="per-input scores and flags to JSON, CSV or MCAP, and a timeline",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch screen monitored.onnx profile.npz --data npz:log.npz --out scores.csv")
    s.add_argument("model", help="instrumented ONNX model (nnwatch instrument / export), or a language detector file (DETECTOR.json; smollm2: the one shipped with nnwatch)")
    s.add_argument("profile", nargs="?", help="profile (.npz) built for MODEL (not for a detector file)")
    s.add_argument("--data", required=True, help=DATA_HELP + "; for a detector file: prompts JSONL (FILE[,FILE...])")
    s.add_argument("--detectors", help="detector file only: 'all' or comma-separated columns (default: those that "
                   "need only the prefill)")
    _detector_option(s)
    s.add_argument("--onnx", help="detector file only: score on this exported prefill (nnwatch heads export) "
                   "with onnxruntime")
    s.add_argument("--truncate", action="store_true",
                   help="detector file only: keep the last max_tokens tokens of an over-long prompt instead of refusing")
    s.add_argument("--out", required=True, help="SCORES.json, SCORES.csv or VERDICTS.mcap (a recording of verdict "
                   "and Foxglove image-annotation channels on the source's timeline: video:, mcap:, rosbag: sources); "
                   "with --ray: a folder of Parquet files")
    s.add_argument("--report", metavar="TIMELINE.html", help="also draw a self-contained timeline: p-values and "
                   "the stream alarm over time, flags marked, thumbnails of the most anomalous frames (classifiers)")
    s.add_argument("--explain", action="store_true",
                   help="classifier models: say why each flagged input was flagged, in a 'why' column (the fused "
                        "verdict's member with most of the evidence, the neuron furthest outside the predicted "
                        "class's range, the layer most outside); also under the report's thumbnails")
    s.add_argument("--stream", action="store_true",
                   help="treat the inputs as one stream in order: add a drift test (conformal test martingale) "
                        "whose chance of ever alarming on clean data is at most --delta")
    s.add_argument("--delta", type=unit_interval(True, True), default=0.01,
                   help="with --stream: bound on the probability of a false stream alarm")
    s.add_argument("--threads", type=positive_int,
                   help="onnxruntime intra-op threads (torch's for a detector file). Default: a classifier on a "
                        "recording (images:, video:, mcap:, rosbag:) gets one fewer than the cores, the decoder "
                        "runs on the last; on other data onnxruntime's default; object and language detectors 1")
    _ray_option(s)
    _common(s)

    ev = sub.add_parser("evaluate", help="AUROC/AUPR/FPR@95TPR/TPR@5FPR per detector, clean vs anomalous sets", description="AUROC/AUPR/FPR@95TPR/TPR@5FPR per detector, clean vs anomalous sets",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch evaluate monitored.onnx profile.npz --id npz:test.npz --ood npz:noise.npz --report report.html")
    ev.add_argument("model", help="instrumented ONNX model (nnwatch instrument / export), or a language detector file (DETECTOR.json; smollm2: the one shipped with nnwatch)")
    ev.add_argument("profile", nargs="?", help="profile (.npz) built for MODEL (not for a detector file)")
    ev.add_argument("--id", help="clean (in-distribution) test data (classifier models): " + DATA_HELP)
    ev.add_argument("--ood", action="append", help="anomalous data, optionally named: NAME=SOURCE (repeatable; "
                    "classifier models)")
    ev.add_argument("--set", action="append", metavar="NAME=FILE[,FILE...]",
                    help="detector file: a labelled prompt set (label 1 unsafe, 0 safe); repeatable")
    ev.add_argument("--truncate", action="store_true",
                    help="detector file only: keep the last max_tokens tokens of an over-long prompt instead of refusing")
    ev.add_argument("--contrast", action="store_true",
                    help="detector file: add the test half of the built-in safe-but-alarming prompts with their "
                         "unsafe counterparts")
    ev.add_argument("--errors", action="store_true",
                    help="classifier models: also measure how each detector discards the model's own mistakes on the "
                         "--id set (it needs labels): risk-coverage curves, AURC and E-AURC with bootstrap intervals, "
                         "coverage and selective risk at the calibrated flag (--ood then optional)")
    _detector_option(ev)
    ev.add_argument("--json", help="write results as JSON here")
    ev.add_argument("--report", help="write an HTML report with ROC curves and histograms here")
    _common(ev)

    b = sub.add_parser("bench", help="latency/throughput/memory of plain vs monitored inference", description="latency/throughput/memory of plain vs monitored inference",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch bench monitored.onnx profile.npz --threads 1 --detectors coverage")
    b.add_argument("model", nargs="?", help="instrumented ONNX model (nnwatch instrument / export; an object detector "
                   "instrumented with --layout), or a language detector file (DETECTOR.json; smollm2: the one shipped "
                   "with nnwatch)")
    b.add_argument("profile", nargs="?", help="profile (.npz) built for MODEL, or an object detector's state "
                   "(objects.npz; not for a detector file)")
    b.add_argument("--data", help="detector file: prompts JSONL to time (FILE[,FILE...]); object detector: frames to "
                   "time (a source, e.g. npz:scenes.npz; default random frames)")
    b.add_argument("--timed-prompts", type=positive_int, default=20, help="detector file: prompts timed")
    b.add_argument("--onnx", help="detector file: also time an exported prefill (nnwatch heads export)")
    b.add_argument("--quiet", action="store_true", help="no progress lines")
    b.add_argument("--demo", action="store_true", help="benchmark the demo's digits CNN (trains it first)")
    b.add_argument("--batch", type=positive_int, default=1, help="batch size to time")
    b.add_argument("--iters", type=positive_int, default=300, help="timed rounds (each runs every variant once); "
                   "classifier models (a detector file times --timed-prompts prompts, 3 rounds each)")
    b.add_argument("--threads", type=positive_int, help="onnxruntime intra-op threads (for a detector file: torch's and onnxruntime's, default 1)")
    b.add_argument("--detectors", help="'all' (the default set, calibrated or not) or comma-separated detector names "
                   "(e.g. coverage); default: what the monitor runs with this profile (its calibrated verdict)")
    _detector_option(b)
    b.add_argument("--providers", default="auto", choices=("auto", "cpu", "cuda"), help="onnxruntime execution providers")
    b.add_argument("--per-detector", action="store_true", help="also time each detector's own scoring and its tables")
    b.add_argument("--json", help="also write the measurements as JSON here")

    co = sub.add_parser("compile", help="the calibrated monitor as ONNX files for any runtime (tapped, verdict, merged)",
                        description="the calibrated monitor as ONNX files any ONNX runtime executes: the tapped model "
                                    "(one extra output, the verdict input), the verdict model (standard ops, opset "
                                    "17) and both merged",
                        formatter_class=HelpFormatter,
                        epilog="example:\n  nnwatch compile monitored.onnx profile.npz --out compiled/")
    co.add_argument("model", help="instrumented ONNX model (nnwatch instrument; taps joined, the default)")
    co.add_argument("profile", help="calibrated profile (.npz)")
    co.add_argument("--out", required=True, help="folder for tapped.onnx, verdict.onnx, monitored.onnx, verdict.json")
    co.add_argument("--expose", type=detector_names_any, metavar="NAME,...",
                    help="columns of the scores / p_values / counts / flags outputs (default: all)")
    co.add_argument("--no-merged", action="store_true", help="do not write the merged model")

    from .heads import add_parser as add_heads_parser

    add_heads_parser(sub)

    inf = sub.add_parser("info", help="what a model, profile or head-detector file holds", description="what a model, profile or head-detector file holds",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch info profile.npz")
    inf.add_argument("file", help="MODEL.onnx, PROFILE.npz or DETECTOR.json (smollm2: the shipped detector)")

    d = sub.add_parser("demo", help="the whole pipeline on scikit-learn digits, offline", description="the whole pipeline on scikit-learn digits, offline",
                         formatter_class=HelpFormatter, epilog="example:\n  nnwatch demo --out nnwatch-demo")
    d.add_argument("--out", default="nnwatch-demo", help="folder for the report, results and models")
    return p


def _instrument_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reduction", choices=("mean", "max"), default="mean", help="how conv maps become one value per channel")
    p.add_argument("--reduce-in", choices=("graph", "kernel"), default="graph",
                   help="reduce conv maps in the graph (small outputs) or after the run (no extra ops)")
    p.add_argument("--max-taps", type=positive_int, help="auto: keep only the last N activation taps; per-scale (detectors): the last N map sizes")
    p.add_argument("--preprocess", metavar="PRESET|FILE.json",
                   help="record how recorded frames (images:, video:, mcap:, rosbag:, idx:) become this model's "
                        "input; every later command reads them so and refuses another: " + PREPROCESS_HELP.split(
                            "input: ", 1)[1])


def _ray_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", action="store_true", help="run on Ray (needs nnwatch[dist]): a local instance, or the "
                   "cluster at --ray-address")
    p.add_argument("--ray-address", default="local", metavar="ADDRESS",
                   help="with --ray: 'local' starts a local instance; 'auto', HOST:PORT or ray://HOST:PORT joins a cluster")
    p.add_argument("--workers", type=positive_int, default=2, help="with --ray: actors, each holding one model session")


def _detector_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", action="append", type=detector_with_params, metavar="NAME[:key=value,...]",
                   help="classifier models: run this detector with these parameters (repeatable), e.g. "
                        "react:percentile=95 or ash:variant=b; replaces the default's own instance of NAME. "
                        "Parameters given at calibrate time are recorded and used by later commands")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=positive_int, default=256, help="samples per onnxruntime call")
    p.add_argument("--limit", type=positive_int, help="use only the first N samples of each data source")
    p.add_argument("--preprocess", metavar="PRESET|FILE.json",
                   help=PREPROCESS_HELP + "; where the model was instrumented with one, that one is used and another "
                   "is refused")
    p.add_argument("--providers", default="auto", choices=("auto", "cpu", "cuda"), help="onnxruntime execution providers")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="also show the libraries' own log lines (Ray)")


# Options people try on the wrong command, and where the setting really lives.
MISPLACED = {
    ("screen", "--fpr"): "screen flags at the false-alarm rate the profile was calibrated at; choose the rate with "
                         "`nnwatch calibrate MODEL.onnx PROFILE.npz --data CLEAN --fpr RATE --out OTHER.npz`",
    ("evaluate", "--fpr"): "evaluate reports the flags at the calibrated rate (and TPR at 5% FPR); choose the rate "
                           "with `nnwatch calibrate ... --fpr RATE`",
    ("evaluate", "--data"): "evaluate takes --id CLEAN and --ood [NAME=]SOURCE (repeatable)",
    ("profile", "--fpr"): "the false-alarm rate is set when calibrating: `nnwatch calibrate ... --fpr RATE`",
}


def unrecognized_message(parser: argparse.ArgumentParser, command: str | None, extra: Sequence[str]) -> str:
    """Name unrecognized arguments, with where a misplaced option belongs or the closest option.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The top-level parser (from :func:`build_parser`).
    command : str or None
        The sub-command given.
    extra : sequence of str
        Arguments no parser took.

    Returns
    -------
    str
        The message.
    """
    import difflib

    lines = [f"unrecognized arguments: {' '.join(extra)}"]
    sub = getattr(parser, "subcommands", {}).get(command) if command else None
    options = sorted(o for a in (sub._actions if sub is not None else []) for o in a.option_strings)
    for arg in extra:
        name = arg.split("=", 1)[0]
        if not name.startswith("-"):
            continue
        if (command, name) in MISPLACED:
            lines.append(f"{name}: {MISPLACED[(command, name)]}")
            continue
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        if close:
            lines.append(f"{name}: did you mean {close[0]}?")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 success (also when stdout's reader stopped reading), 2 bad input or usage,
        130 interrupted.
    """
    from .console import cli_console

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = getattr(args, "command", None)
        target = getattr(parser, "subcommands", {}).get(command, parser)
        target.error(unrecognized_message(parser, command, extra))
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    from . import commands

    with cli_console():
        try:
            resolve_shipped(args)
            check_outputs(args)
            check_argument_order(args)
            return int(getattr(commands, f"cmd_{args.command}")(args) or 0)
        except NnwatchError as exc:
            sub = getattr(args, "heads_command", None)
            print(f"nnwatch {args.command}{' ' + sub if sub else ''}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # an output named as a pipe (FIFO) whose reader stopped early
            print(f"nnwatch {args.command}: stopped: the reader of an output pipe closed it", file=sys.stderr)
            return 141  # 128 + SIGPIPE, what a shell reports for a producer whose reader left
