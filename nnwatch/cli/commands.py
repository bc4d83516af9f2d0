"""One function per subcommand; each imports what it needs when it runs."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from .._validate import short_list
from ..errors import InputError, ModelError
from .console import separation_lines, warn
from .output import RecordWriter, skipped_rows
from .ray_setup import ray_init


def _instrument_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.layers == "per-scale":
        raise InputError("--layers per-scale is for object detectors (instrument with --layout); a classifier's taps "
                         "are auto or named: --layers auto or --layers NAME[,NAME...]")
    return {"layers": args.layers, "reduction": args.reduction, "reduce_in_graph": args.reduce_in == "graph",
            "max_taps": args.max_taps, "preprocess": getattr(args, "preprocess", None)}


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise InputError(f"--input-shape must be comma-separated integers like 1,1,28,28, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise InputError(f"--input-shape must be positive, got {text!r}")
    return dims


def _tap_line(t: Any) -> str:
    reduced = " (in graph)" if t.in_graph and t.reduction != "none" else ""
    quantized = f"  {t.dtype}, scale {t.scale:.6g}, zero point {t.zero_point}" if t.dtype != "float32" else ""
    return f"{t.layer:<32} {t.neurons:>6}  {t.reduction}{reduced}{quantized}"


def _print_manifest(manifest: Any, out: str) -> None:
    print(f"wrote {out}: {len(manifest.taps)} monitored layers, {sum(manifest.layer_sizes)} neurons")
    for t in manifest.taps:
        print(f"  {_tap_line(t)}")


def cmd_export(args: argparse.Namespace) -> int:
    """``nnwatch export``."""
    from .._optional import require
    from ..export.from_torch import export_module, load_factory, load_weights

    torch = require("torch")
    shape = _shape(args.input_shape)
    module = load_factory(args.factory)
    if args.weights:
        load_weights(module, args.weights)
    example = torch.zeros(shape)
    manifest = export_module(module, example, args.out, plain_out=args.plain_out, **_instrument_kwargs(args))
    _print_manifest(manifest, args.out)
    return 0


def cmd_instrument(args: argparse.Namespace) -> int:
    """``nnwatch instrument``."""
    from ..export.instrument import instrument_file

    if getattr(args, "layout", None) is not None:
        from . import objects

        return objects.cmd_instrument(args)

    if getattr(args, "budget", None) is None:
        if getattr(args, "data", None) is not None:
            raise InputError("--data is only used with --budget; drop it or add --budget 1.05x")
        if getattr(args, "providers", "cpu") != "cpu":
            raise InputError("--providers is only used with --budget (where to measure); instrumenting does not run "
                             "the model")
        try:
            manifest = instrument_file(args.model, args.out, **_instrument_kwargs(args))
        except ModelError as e:  # e.g. outputs that are not (batch, classes) logits
            from . import objects

            hint = objects.layout_hint(args.model)
            if hint is None:
                raise
            raise ModelError(f"{e}; {hint}") from None
        _print_manifest(manifest, args.out)
        return 0
    from ..eval.tap_budget import instrument_within_budget

    if args.data is None:
        raise InputError("--budget needs --data SOURCE: clean inputs (at least 40) to judge which layers are worth "
                         "tapping, e.g. --data npz:train.npz")
    if args.layers != "auto" or args.max_taps is not None:
        raise InputError("--budget chooses the layers itself; drop --layers / --max-taps")
    from ..monitor.providers import resolve_providers

    resolve_providers(args.providers)  # an unavailable provider is refused before any work
    from ..recordings import load_preprocess
    from ..sources import takes_preprocess

    declared = None if args.preprocess is None else load_preprocess(args.preprocess)  # checked before any work
    x = _source(args.data, args.budget_samples, declared if takes_preprocess(args.data) else None, in_memory=True).x
    if len(x) < 40:
        raise InputError(f"--budget needs at least 40 clean inputs in --data to judge layers; {args.data} gives "
                         f"{len(x)} (with --budget-samples {args.budget_samples})")
    print(f"measuring every candidate tap on {args.providers} (batch 1) and judging it on {len(x)} clean inputs ...",
          file=sys.stderr, flush=True)
    manifest, choice = instrument_within_budget(args.model, args.out, x, args.budget, reduction=args.reduction,
                                                reduce_in_graph=args.reduce_in == "graph", providers=args.providers,
                                                preprocess=declared)
    _print_manifest(manifest, args.out)
    print(f"budget {args.budget}: plain {choice.plain_us:.1f} us; with the chosen taps a monitored call (compiled "
          f"detectors) measured {choice.predicted_us:.1f} us ({choice.predicted_us / choice.plain_us:.3f}x) against "
          f"{choice.budget_us:.1f} us; {len(choice.chosen)} of {len(choice.costs_us)} candidate layers kept")
    return 0


def _language(args: argparse.Namespace) -> bool:
    """Whether MODEL is a language detector file (``.json``); otherwise check the classifier arguments."""
    if args.model and str(args.model).endswith(".json"):
        if getattr(args, "preprocess", None):
            raise InputError("--preprocess is for image recordings fed to a classifier, not for a language detector "
                             f"file ({args.model}); drop it")
        if getattr(args, "detector", None):
            raise InputError("--detector NAME:key=value is for classifier models; a language detector file names its "
                             "columns with --detectors")
        for flag, unset in (("explain", False), ("errors", False), ("error_risk", None), ("error_detector", "msp"),
                            ("error_delta", 0.05)):
            if getattr(args, flag, unset) != unset:
                raise InputError(f"--{flag.replace('_', '-')} is for classifier models (MODEL.onnx PROFILE.npz); "
                                 f"{args.model} is a language detector file")
        if args.command == "bench" and args.detectors is None:
            args.detectors = "all"  # unset: what the language bench expects of an unset --detectors
        return True
    if args.model and not getattr(args, "profile", None) and not getattr(args, "demo", False):
        raise InputError(f"{args.command} needs MODEL.onnx PROFILE.npz (or a language detector DETECTOR.json); "
                         "PROFILE is missing")
    if args.command == "evaluate":
        if not args.id or not (args.ood or args.errors):
            raise InputError("evaluate on a classifier needs --id CLEAN and at least one --ood SOURCE, or --errors "
                             "(the model's own mistakes on --id)")
        if args.set or args.contrast:
            raise InputError("--set/--contrast are for language detector files; a classifier takes --id/--ood")
    language_only = {"screen": ("detectors", "truncate", "onnx"), "bench": ("data", "onnx"),
                     "calibrate": ("truncate",), "evaluate": ("truncate",)}.get(args.command, ())
    for flag in language_only:
        if getattr(args, flag, None):
            raise InputError(f"--{flag} is for language detector files (DETECTOR.json), not for {args.model}")
    return False


def _source(spec: str, limit: int | None, preprocess: Any = None, in_memory: bool = False,
            batch_size: int = 256, model_input: tuple | None = None, profile: Any = None,
            spans: list | None = None, runner: Any = None) -> Any:
    """The source a spec names, cut to ``limit``; pixels read with the preprocessing the model
    (``runner``) declares, another ``preprocess`` refused; where it is a recording, checked against the
    model's per-sample input shape (``model_input``), the preprocessing the profile was built with and
    the frames it was profiled and calibrated on; in memory where the command needs every sample at
    once. The recording span read is appended to ``spans``.
    """
    from ..recordings import resolve_preprocess
    from ..sources import in_memory as to_memory
    from ..sources import open_source, takes_preprocess

    given = preprocess
    declared = getattr(runner, "preprocess", None) is not None and takes_preprocess(spec)
    if declared:
        preprocess = resolve_preprocess(preprocess, runner.preprocess, str(getattr(runner, "where", "the model")))
    source = open_source(spec, preprocess).limit(limit)
    span = source.span() if hasattr(source, "span") else None
    if spans is not None:
        spans.append(span)
    if profile is not None:
        _same_preprocess(source, profile)
        _same_recording(source.name, span, profile, calibrating=spans is not None)
    if model_input is not None:
        source = _fits_model(source, model_input, given, declared)
    return to_memory(source, batch_size) if in_memory else source


def _same_preprocess(source: Any, profile: Any) -> None:
    """Warn when a recording's frames are preprocessed otherwise than the profile's training frames were."""
    built = profile.header.get("preprocess")
    pre = getattr(source, "preprocess", None)
    if built is None or pre is None:
        return
    # Pixel values and channels, not geometry: another camera may need another resize to the same input.
    now = pre.to_json()
    differ = [f"{k} {built.get(k)} -> {now[k]}" for k in ("channels", "layout", "scale", "mean", "std")
              if built.get(k) != now[k]]
    if differ:
        warn(f"{source.name}: the profile was built from frames preprocessed otherwise ({', '.join(differ)}); the "
             "scores would compare unlike inputs: pass the profile's preprocessing with --preprocess")


def _same_recording(name: str, span: dict | None, profile: Any, calibrating: bool) -> None:
    """Warn when frames come from the recording the profile was built or calibrated on."""
    from ..recordings import spans_overlap

    if span is None:
        return
    uses = [("built", profile.header.get("profiled_on"))]
    if not calibrating:
        uses.append(("calibrated", profile.header.get("calibrated_on")))
    for what, used in uses:
        if not used or used.get("recording") != span["recording"]:
            continue
        frames = f"[{used['start']}:{'' if used['stop'] is None else used['stop']}]"
        if spans_overlap(span, used):
            warn(f"{name}: the profile was {what} on frames {frames} of this recording, and some of them are read "
                 "again here; scores of frames the monitor has seen say nothing about new data")
        else:
            warn(f"{name}: the profile was {what} on frames {frames} of the same recording; neighbouring frames are "
                 "near-duplicates, so frames near the cut look more familiar than new data would (docs/coverage.md)")


def _fits_model(source: Any, input_shape: tuple, preprocess: Any, declared: bool = False) -> Any:
    """Refuse, before any pass, recorded frames that come out in another shape than the model takes.

    The first frame is decoded to see the shape (the model's own check would only name the
    shapes, not the ``--preprocess`` fields that decide them).
    """
    from ..recordings import RecordingSource

    if not isinstance(source, RecordingSource):
        return source
    import warnings

    with warnings.catch_warnings():  # skipped frames are reported once, by the real pass
        warnings.simplefilter("ignore")
        first = source.slice(0, None)  # a copy: its own skipped list and warning
        first.decode_in_process = False  # one frame: a thread, not a process forked for it
        batches = first.batches(1)
        x, _ = next(batches)
        batches.close()
    got = tuple(x.shape[1:])
    if len(got) == len(input_shape) and all(w is None or w == g for w, g in zip(input_shape, got)):
        return source
    want = "(" + ", ".join("?" if d is None else str(d) for d in input_shape) + ")"
    pre = source.preprocess
    origin = ("the preprocessing the model was instrumented with" if declared else
              f"--preprocess {preprocess if isinstance(preprocess, str) else '0-1 (the default)'}")
    fix = ("instrument the original model again with a --preprocess that gives that shape" if declared else
           "set channels (gray: 1 channel), resize / crop and layout in a --preprocess JSON file")
    raise InputError(f"{source.name}: frames come out as {got} ({pre.layout}, {pre.channels}, from {origin}) but "
                     f"the model takes {want} per sample; {fix}{_shape_example(input_shape)}")


def _shape_example(input_shape: tuple) -> str:
    """A --preprocess JSON that gives the model's per-sample shape, where it can be read off."""
    import json

    if len(input_shape) != 3 or any(not isinstance(d, int) for d in input_shape):
        return ""
    if input_shape[0] in (1, 3):
        channels, (h, w), layout = input_shape[0], input_shape[1:], "NCHW"
    elif input_shape[2] in (1, 3):
        channels, (h, w), layout = input_shape[2], input_shape[:2], "NHWC"
    else:
        return ""
    spec = {"channels": "gray" if channels == 1 else "rgb", "resize": [h, w], "layout": layout}
    return f", e.g. {json.dumps(spec)}"


def _with_detector_options(args: argparse.Namespace, names: Any, profile: Any) -> Any:
    """The detector set with ``--detector NAME:key=value`` applied: each replaces NAME's default instance."""
    from ..monitor.monitor import default_detectors
    from ..monitor.registry import parse_detector_spec

    specs = getattr(args, "detector", None) or []
    if not specs:
        return names
    given: dict[str, str] = {}
    for spec in specs:
        name, params = parse_detector_spec(spec)
        if name in given and parse_detector_spec(given[name])[1] != params:
            raise InputError(f"--detector {given[name]} and --detector {spec} set {name!r} twice; give one")
        given[name] = spec
    base = tuple(names) if names is not None else default_detectors(profile)
    return [given.pop(n, n) for n in base] + list(given.values())


def _threads_beside_decoding(args: argparse.Namespace) -> tuple[int | None, bool]:
    """The intra-op threads and spinning of onnxruntime for a classifier command.

    ``--threads`` when given. Otherwise, when ``--data`` is a recording (images:, video:, mcap:,
    rosbag:) that decodes in a process of its own, one thread fewer than the cores this process
    may use, and no spinning: idle onnxruntime threads spin on a core for a while after each
    call, and that is the decoder's core. Else onnxruntime's defaults.
    """
    import os

    from ..recordings.spec import SCHEMES

    if getattr(args, "threads", None):
        return int(args.threads), True
    data = getattr(args, "data", None)
    if isinstance(data, str) and data.split(":", 1)[0] in SCHEMES and not getattr(args, "ray", False):
        from ..recordings.prefetch import can_fork

        if can_fork():
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            return max(1, cores - 1), False
    return None, True


def _monitor(args: argparse.Namespace, profile: Any = None, extra: tuple[str, ...] = (),
             every_default: bool = False) -> Any:
    import warnings

    from ..monitor.detectors import DEFAULT
    from ..monitor.monitor import Monitor
    from ..profile.store import load_profile

    if every_default or getattr(args, "detector", None):
        profile = load_profile(args.profile) if profile is None else profile
    base = DEFAULT
    if every_default:  # the default set plus the saved fusion's members
        cal = profile.calibration
        fused = cal is not None and cal.fusion is not None
        extra = tuple(extra) + (tuple(cal.fusion["members"]) if fused else ())
        base = DEFAULT if fused else tuple(d for d in DEFAULT if d != "fused")  # it needs a calibration
    detectors = tuple(dict.fromkeys(base + tuple(extra))) if extra or every_default else None
    detectors = _with_detector_options(args, detectors, profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads, spinning = _threads_beside_decoding(args)
        mon = Monitor(args.model, profile if profile is not None else args.profile, providers=args.providers,
                      detectors=detectors, explain=bool(getattr(args, "explain", False)), threads=threads,
                      spinning=spinning)
    for w in caught:
        warn(str(w.message))
    return mon


def cmd_profile(args: argparse.Namespace) -> int:
    """``nnwatch profile``."""
    from . import objects

    if objects.is_detector(args.model):
        return objects.cmd_profile(args)
    from ..monitor.profiling import build_profile
    from ..monitor.runner import Runner
    from ..profile.store import save_profile

    threshold: str | float = args.threshold
    if threshold != "mean":
        try:
            threshold = float(threshold)
        except ValueError:
            raise InputError(f"--threshold must be 'mean' or a number, got {args.threshold!r}") from None
    if args.ray:
        from ..distributed.profile import build_profile_ray
        from ..distributed.readers import ray_dataset

        preprocess = _ray_preprocess(args)
        ray_init(args)
        dataset = ray_dataset(args.data, args.limit, preprocess)
        profile = build_profile_ray(args.model, dataset, batch_size=args.batch_size,
                                    concurrency=args.workers, k_sections=args.k_sections, k_top=args.k_top,
                                    threshold=threshold, min_confidence=args.min_confidence, rare_rate=args.rare_rate,
                                    dataset_name=args.data)
        total = profile.header.get("samples_seen", "?")
    else:
        from ..sources import takes_preprocess

        if takes_preprocess(args.data):  # pixels: read as the model declares
            runner = Runner(args.model, providers=args.providers)
            source = _source(args.data, args.limit, args.preprocess, runner=runner)
        else:
            source = _source(args.data, args.limit, args.preprocess)
            runner = Runner(args.model, providers=args.providers)
        source = _fits_model(source, runner.manifest.input_shape, args.preprocess, runner.preprocess is not None)
        total = len(source) or "?"  # 0: a stream that does not declare its length
        profile = build_profile(runner, source, batch_size=args.batch_size,
                                k_sections=args.k_sections, k_top=args.k_top, threshold=threshold,
                                min_confidence=args.min_confidence, rare_rate=args.rare_rate, progress=not args.quiet)
    save_profile(profile, args.out)
    counts = profile.header["class_counts"]
    print(f"wrote {args.out}: {sum(counts)} trusted samples of {total}; per class {counts}")
    weak = [c for c, n in enumerate(counts) if n < 10]
    if weak:
        warn(f"classes {short_list(weak)} have fewer than 10 trusted samples; monitors use the global signature for "
             "them")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``nnwatch calibrate``."""
    from . import objects

    if getattr(args, "no_separate", False) and args.fuse:
        raise InputError("--no-separate and --fuse both choose the fused members; give one (--fuse names them, "
                         "--no-separate skips the check on anomalies made from the calibration data)")
    if objects.is_detector(args.model):
        return objects.cmd_calibrate(args)
    if args.min_class_samples is None:  # unset: the classifier's default (detectors pool every class)
        args.min_class_samples = 20
    if _language(args):
        from . import language

        return language.cmd_calibrate(args)
    import warnings

    from ..calibration.calibrate import calibrate
    from ..calibration.groups import CalibrationWarning, calibration_groups
    from ..profile.store import save_profile

    mon = _monitor(args, extra=tuple(args.fuse or ()) + ((args.error_detector,) if args.error_risk else ()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # the groups are reported below, in full
        spans: list = []
        data = _source(args.data, args.limit, args.preprocess, in_memory=True, batch_size=args.batch_size,
                       model_input=mon.manifest.input_shape, profile=mon.profile, spans=spans, runner=mon.runner)
        cal = calibrate(mon, data, fpr=args.fpr, min_class_samples=args.min_class_samples,
                        batch_size=args.batch_size, progress=not args.quiet, fusion_members=args.fuse,
                        fusion_budget=args.fusion_budget, error_risk=args.error_risk,
                        error_detector=args.error_detector, error_delta=args.error_delta,
                        separate=not args.no_separate)
    if spans[0] is not None:  # screening the same recording later is warned about
        mon.profile.header["calibrated_on"] = spans[0]
    else:
        mon.profile.header.pop("calibrated_on", None)
    out = args.out or args.profile
    save_profile(mon.profile, out)
    n_classes = mon.profile.n_classes
    groups = calibration_groups(cal.classes, n_classes, cal.fpr, cal.min_class_samples)
    thresholds = mon.decision_thresholds()
    print(f"wrote {out}: conformal thresholds for {len(cal.detectors)} detectors at fpr {cal.fpr} from "
          f"{cal.scores.shape[0]} clean samples ({len(groups.own)} of {n_classes} classes with their own threshold)")
    if cal.fusion is not None:
        how = "given" if args.fuse else (
            "no near-copies, within the cost budget, and separating anomalies made from the calibration data: "
            "nnwatch info shows the table" if cal.fusion.get("separation") else "chosen from the clean scores and cost")
        print(f"  decision: fused verdict over {', '.join(cal.fusion['members'])} ({how}; each half of the calibration "
              "data calibrates one stage)")
    print(f"  {mon.decision} thresholds per class: " + ", ".join(f"{t:.4g}" for t in thresholds))
    if cal.errors is not None:
        e = cal.errors
        if e["certified"]:
            print(f"  error verdict: answer where {e['detector']} <= {e['threshold']:.4g}; an answered input is wrong "
                  f"with probability at most {e['risk']:g}, with confidence {1 - e['delta']:g} (certified on "
                  f"{e['answered']} held-out answers, {e['errors']} wrong; coverage {e['coverage']:.3f})")
        else:
            warn(f"error verdict: no threshold certifies a risk of {e['risk']:g} at confidence {1 - e['delta']:g} "
                 f"from {e['n']} labelled samples; every answer is withheld. Ask for a larger risk, or calibrate on "
                 "more labelled data")
    if groups.pooled:
        warn(groups.describe())
    return 0


def _ray_preprocess(args: argparse.Namespace) -> Any:
    """The preprocessing Ray workers read pixels with: the model's declared one, else ``--preprocess``."""
    from ..sources import takes_preprocess

    if not takes_preprocess(args.data):
        if args.preprocess:
            raise InputError(f"--preprocess applies to pixels (images:, video:, mcap:, rosbag:, idx:); {args.data} "
                             "is fed to the model as stored: drop --preprocess")
        return None
    from ..monitor.runner import Runner
    from ..recordings import resolve_preprocess

    return resolve_preprocess(args.preprocess, Runner(args.model, providers="cpu").preprocess, args.model)


def cmd_screen(args: argparse.Namespace) -> int:
    """``nnwatch screen``."""
    from . import objects

    if objects.is_detector(args.model):
        return objects.cmd_screen(args)
    if _language(args):
        from . import language

        if args.report:
            raise InputError("--report draws a timeline of screened frames (a classifier on recordings); for a "
                             "detector file drop it, or use nnwatch evaluate --report for ROC curves")
        return language.cmd_screen(args)
    from .._progress import Progress

    if args.ray:
        from ..distributed.readers import ray_dataset
        from ..distributed.screen import screen_ray

        if args.stream:
            raise InputError("--stream needs the frames in order in one process; drop --ray")
        if args.report:
            raise InputError("--report draws one timeline from frames in order in one process; drop --ray")
        if args.explain:
            raise InputError("--explain reads each flagged input's activations in this process; drop --ray")

        preprocess = _ray_preprocess(args)
        ray_init(args)
        summary = screen_ray(args.model, args.profile, ray_dataset(args.data, args.limit, preprocess), args.out,
                             batch_size=args.batch_size, concurrency=args.workers)
        print(f"wrote {args.out}/: {summary['inputs']} inputs, {summary['flagged']} flagged, "
              f"{summary['inputs_per_s']:,.0f} inputs/s with {args.workers} workers")
        return 0

    mon = _monitor(args)
    if not mon.calibrated:
        warn("the profile is not calibrated; flags are all False and confidence NaN (run `nnwatch calibrate` first)")
    stream = None
    if args.stream:
        from ..monitor.stream import StreamMonitor

        if not mon.calibrated:
            raise InputError("--stream needs a calibrated profile (nnwatch calibrate)")
        stream = StreamMonitor(mon, delta=args.delta)
    source = _source(args.data, args.limit, args.preprocess, model_input=mon.manifest.input_shape,
                     profile=mon.profile, runner=mon.runner)
    if args.out.lower().endswith(".mcap") and not getattr(source, "time_ordered", False):
        raise InputError(f"--out {args.out}: an MCAP timeline needs frames with times (video:, mcap: or rosbag: "
                         f"sources); {source.name} has none: write .csv or .json")
    timeline = None
    if args.report:
        from .._optional import require
        from ..eval.timeline import Timeline

        require("PIL.Image", extra="recordings")  # thumbnails: refused now, not after the pass
        timeline = Timeline(mon.calibration.fpr if mon.calibrated else None,
                            None if stream is None else 2 / args.delta, decision=mon.decision)
    notes = {"model": args.model, "profile": args.profile, "source": source.name, "decision": mon.decision}
    bar = Progress(len(source), "screening", not args.quiet)
    with_ids = getattr(source, "batches_with_ids", None)  # recordings name their frames (path, frame, stamps)
    batches = (with_ids(args.batch_size, with_skipped=True) if with_ids else
               ((x, y, None, []) for x, y in source.batches(args.batch_size)))
    rows_for_skipped = not args.out.lower().endswith(".mcap")  # a verdict timeline has no verdict to show for them
    flagged = n = 0
    skipped: list[dict[str, Any]] = []  # undecodable frames not yet written
    n_skipped = 0
    with contextlib.closing(batches), RecordWriter(args.out, metadata=notes) as out:
        # an error while scoring stops the decoding thread at once, and leaves no half-written file
        for x, y, ids, passed in batches:
            skipped.extend(passed)
            n_skipped += len(passed)
            if x is None:  # frames skipped after the last batch (the last item; the source then checks it read any)
                continue
            cols = _screen_columns(mon, stream, x, y, ids, n)
            if ids is not None:
                cols["error"] = [None] * len(x)  # filled on the rows of undecodable frames
            if skipped and rows_for_skipped:
                out.write(skipped_rows(list(cols), skipped))
            skipped = []
            out.write(cols)
            n += len(x)
            flagged += int(cols["flag"].sum())
            if timeline is not None:
                timeline.add(cols, x)
            bar.update(len(x))
        if skipped and rows_for_skipped and n:
            out.write(skipped_rows(list(cols), skipped))
    bar.close()
    if timeline is not None:
        timeline.write(args.report, f"nnwatch screen: {source.name}", notes)
    print(f"wrote {args.out}: {n} inputs, {flagged} flagged ({flagged / max(n, 1):.1%}) by {mon.decision}"
          + (f"; {n_skipped} undecodable frame(s) skipped" + (", each a row with its error" if rows_for_skipped else "")
             if n_skipped else "")
          + (f"; timeline {args.report}" if timeline is not None else ""))
    if stream is not None:
        tests = (f"scores of {stream.column!r} and predicted classes, each alarming at capital {2 / args.delta:.3g}; "
                 f"delta {args.delta}")
        if stream.first_alarm is None:
            print(f"stream: no alarm over {stream.frames} frames ({tests}; final capital {stream.statistic:.3g} "
                  f"and {stream.class_statistic:.3g})")
        else:
            print(f"stream: ALARM at frame {stream.first_alarm} ({tests}); per-frame capital in "
                  + ("the stream fields of each /nnwatch/verdict message" if str(args.out).endswith(".mcap")
                     else "the stream.* columns"))
    return 0


def _screen_columns(mon: Any, stream: Any, x: Any, y: Any, ids: list | None, offset: int) -> dict[str, Any]:
    """Output columns of one screened batch (one entry per input): index, verdict, per-detector
    scores, flags and p-values, frame ids (``id.*``), labels, stream columns.
    """
    import numpy as np

    v = mon.score(x)
    n = len(v)
    cols: dict[str, Any] = {"index": np.arange(offset, offset + n), "pred": np.asarray(v.pred, np.int64),
                            "flag": np.asarray(v.flag, bool), "confidence": np.asarray(v.confidence, np.float64),
                            "nonfinite_input": np.asarray(v.nonfinite_input, bool)}
    cols.update({f"score.{k}": np.asarray(a, np.float64) for k, a in v.scores.items()})
    cols.update({f"flag.{k}": np.asarray(a, bool) for k, a in v.flags.items()})
    cols.update({f"p.{k}": np.asarray(a, np.float64) for k, a in v.p_values.items()})
    if ids is not None:
        for key in dict.fromkeys(k for frame_id in ids for k in frame_id):
            cols[f"id.{key}"] = [frame_id.get(key) for frame_id in ids]
    if y is not None:
        cols["label"] = np.asarray(y, np.int64)
    if v.answer is not None:  # the error verdict: may the model's answer be used
        cols["answer"] = np.asarray(v.answer, bool)
    if v.explanations is not None:  # screen --explain: one line per flagged input
        cols["why"] = [e["summary"] if e is not None else "" for e in v.explanations]
    if stream is not None:
        upd = stream.update(v)
        cols["stream.statistic"] = np.asarray(upd.statistic, np.float64)
        cols["stream.class_statistic"] = np.asarray(upd.class_statistic, np.float64)
        cols["stream.alarm"] = np.asarray(upd.alarm, bool)
    return cols


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``nnwatch evaluate``."""
    from . import objects

    if objects.is_detector(args.model):
        return objects.cmd_evaluate(args)
    if _language(args):
        from . import language

        return language.cmd_evaluate(args)
    from ..eval.evaluate import evaluate
    from ..eval.report import write_json, write_report

    mon = _monitor(args, every_default=True)  # compare every default detector, not only the decision's members
    shape = mon.manifest.input_shape
    clean = _source(args.id, args.limit, args.preprocess, in_memory=True, batch_size=args.batch_size,
                    model_input=shape, profile=mon.profile, runner=mon.runner)
    ood = {}
    for spec in args.ood or ():
        name, sep, rest = spec.partition("=")
        named = sep and rest and ":" not in name and "/" not in name
        ood[name if named else spec] = _source(rest if named else spec, args.limit, args.preprocess, in_memory=True,
                                               batch_size=args.batch_size, model_input=shape, profile=mon.profile,
                                               runner=mon.runner)
    ev = evaluate(mon, clean, ood, batch_size=args.batch_size, progress=not args.quiet, errors=args.errors)
    if mon.calibration is None or mon.calibration.fusion is None:
        ev.notes.append("the fused verdict (nnwatch's default decision) needs a calibration and is not compared "
                        "here: nnwatch calibrate MODEL PROFILE --data CLEAN_HELD_OUT, then evaluate again; AUROC and "
                        "the oracle columns need no threshold, so every detector above is compared as it is")
    if args.json:  # files first: a reader that stops early (| head) must not cost them
        write_json(args.json, ev.to_json())
    if args.report:
        write_report(args.report, ev, f"nnwatch evaluate: {args.model}", {"profile": args.profile, "clean": clean.name},
                     hist_detector=mon.decision)
    print(ev.markdown())
    for path in (args.json, args.report):
        if path:
            print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``nnwatch bench``."""
    from . import objects

    if objects.is_detector(args.model):
        return objects.cmd_bench(args)
    if _language(args):
        from . import language

        return language.cmd_bench(args)
    import tempfile

    if args.demo:
        with tempfile.TemporaryDirectory(prefix="nnwatch-bench-") as folder:
            from ..demo import prepare_demo_model

            print("training the demo's digits CNN (about 10 s) ...", file=sys.stderr, flush=True)
            prepared = prepare_demo_model(Path(folder), progress=True,
                                          say=lambda msg: print(msg, file=sys.stderr, flush=True))
            return _bench(args, prepared["model_path"], prepared["profile_path"])
    if not args.model or not args.profile:
        raise InputError("pass MODEL.onnx PROFILE.npz, or --demo")
    return _bench(args, args.model, args.profile)


def _bench(args: argparse.Namespace, model_path: Any, profile: Any) -> int:
    import numpy as np

    from ..eval.overhead import bench_overhead, detector_costs, machine, plain_model_bytes
    from ..eval.report import write_json
    from ..monitor.detectors import DEFAULT
    from ..monitor.monitor import Monitor
    from ..profile.store import load_profile

    if args.detectors is None:  # what the monitor runs with this profile
        detectors = None
    else:
        detectors = DEFAULT if args.detectors == "all" else tuple(d for d in args.detectors.split(",") if d)
    profile = load_profile(profile) if not hasattr(profile, "calibration") else profile
    detectors = _with_detector_options(args, detectors, profile)
    mon = Monitor(model_path, profile, threads=args.threads, providers=args.providers, detectors=detectors)
    fixed = mon.manifest.batch
    if fixed is not None and fixed != args.batch:
        raise InputError(f"this model takes a fixed batch of {fixed}; its plain baseline cannot run a batch of "
                         f"{args.batch}: pass --batch {fixed}")
    shape = tuple(d if d is not None else 1 for d in mon.manifest.input_shape)
    need = args.batch * int(np.prod(shape)) * 4
    if need > 2**31:
        raise InputError(f"--batch {args.batch} needs {need / 2**30:.0f} GiB of input alone; benchmark a batch that "
                         f"fits in memory (at most {2**31 // (int(np.prod(shape)) * 4):,} for this input)")
    x = np.random.default_rng(0).random((args.batch,) + shape, dtype=np.float32)
    mon.warmup((args.batch,))
    graph, why_not = _graph_engine(model_path, profile, args, detectors)
    result = bench_overhead(mon, plain_model_bytes(model_path), x, iters=args.iters, threads=args.threads, graph=graph)
    result["machine"] = machine()
    result["model"] = str(model_path)
    result["tapping_ms"] = result["tapped"]["p50_ms"] - result["plain (IOBinding)"]["p50_ms"]
    result["scoring_ms"] = result["monitored"]["p50_ms"] - result["tapped"]["p50_ms"]
    # always: which part of the scoring dominates (the full table with --per-detector)
    result["detector_costs"] = detector_costs(mon, x, iters=args.iters if args.per_detector else min(args.iters, 100))
    result["detectors"] = list(mon.columns)
    if args.json:  # the file first: a reader that stops early (| head) must not cost it
        write_json(args.json, result)
    m, p, b = result["monitored"], result["plain"], result["plain (IOBinding)"]
    print(f"batch {args.batch}: plain session.run p50 {p['p50_ms']:.3f} ms, plain IOBinding p50 {b['p50_ms']:.3f} ms | "
          f"tapped p50 {result['tapped']['p50_ms']:.3f} ms | monitored p50 {m['p50_ms']:.3f} ms p99 {m['p99_ms']:.3f} ms")
    print(f"monitored / plain session.run: {m['ratio_p50']:.2f}x p50, {m['ratio_p99']:.2f}x p99; "
          f"monitored / plain IOBinding: {m['ratio_p50_iobinding']:.2f}x p50, {m['ratio_p99_iobinding']:.2f}x p99")
    print(f"throughput plain {result['throughput_plain_per_s']:,.0f}/s, monitored {result['throughput_monitored_per_s']:,.0f}/s; "
          f"monitor memory {result['monitor_memory_mb']:.2f} MiB ({'compact' if mon.compact_tables else 'full'} "
          f"coverage tables {mon.tables.nbytes / 2**20:.2f} MiB); peak RSS {result['peak_rss_mb']:.0f} MiB "
          f"({result['machine']['cpu']}, {result['machine']['cores']} cores)")
    tapping, scoring = result["tapping_ms"], result["scoring_ms"]
    print(f"of the monitored overhead over plain IOBinding: tapping {tapping * 1e3:.1f} us "
          f"(tapped / plain IOBinding {result['tapped']['ratio_p50_iobinding']:.3f}x), scoring {scoring * 1e3:.1f} us")
    selection = mon.manifest.selection
    if selection is not None and args.batch == 1:
        budget = selection["budget_us"] / selection["plain_us"]
        print(f"taps chosen at instrument time for {budget:.3f}x of plain on {selection['provider']} "
              f"({selection['machine']}): a monitored call (compiled detectors) measured then "
              f"{selection['predicted_us'] / selection['plain_us']:.3f}x; this monitor now {m['ratio_p50_iobinding']:.3f}x")
    if graph is not None:
        g = result["monitored (graph engine)"]
        faster = "compiled" if m["p50_ms"] <= g["p50_ms"] else "graph"
        ratio = max(m["p50_ms"], g["p50_ms"]) / min(m["p50_ms"], g["p50_ms"])
        print(f"engines: compiled p50 {m['p50_ms']:.3f} ms ({m['ratio_p50_iobinding']:.2f}x), graph p50 "
              f"{g['p50_ms']:.3f} ms ({g['ratio_p50_iobinding']:.2f}x) of plain IOBinding: the {faster} engine is "
              f"{ratio:.2f}x faster for this model here (choose it with Monitor(..., engine='{faster}'))")
    else:
        print(f"engines: the graph engine was not timed: {why_not}")
    costs = result["detector_costs"]
    top = max(costs, key=lambda n: costs[n]["p50_us"])
    print(f"the monitor runs {', '.join(mon.columns)} (decision: {mon.decision}); the costliest part of its scoring: "
          f"{top}, {costs[top]['p50_us']:.1f} us of {sum(c['p50_us'] for c in costs.values()):.1f} us in all parts"
          + ("" if args.per_detector else " (--per-detector: each part)"))
    if args.per_detector:
        print("per detector, batch {}: {}".format(args.batch, "; ".join(
            f"{n} {c['p50_us']:.1f} us, {c['table_bytes'] / 2**20:.2f} MiB" for n, c in result["detector_costs"].items())))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """``nnwatch compile``."""
    from ..deploy import FILES, compile_monitor

    record = compile_monitor(args.model, args.profile, args.out, expose=args.expose, merged=not args.no_merged)
    out = record["outputs"]
    files = [f for f in FILES if not (args.no_merged and f == "monitored.onnx")]
    print(f"wrote {args.out}/: {', '.join(files)}")
    print(f"  verdict input {record['verdict_input']['name']}: float32 (batch, {record['verdict_input']['classes']} "
          f"logits + {record['verdict_input']['neurons']} taps + 1)")
    print(f"  outputs: {out['pred']}, {out['flag']}, {out['confidence']}, {out['count']}; {out['scores']}, "
          f"{out['p_values']}, {out['counts']}, {out['flags']} over {', '.join(out['columns'])}")
    print(f"  decision: {record['decision']} at fpr {record['calibration']['fpr']}; tables {record['tables']}; "
          f"computed in {record['precision']}")
    return 0


def _graph_engine(model_path: Any, profile: Any, args: argparse.Namespace, detectors: Any) -> tuple[Any, str | None]:
    """The same monitor on the graph engine, or why there is none (never a reason to fail the bench)."""
    from ..errors import NnwatchError
    from ..monitor.monitor import Monitor

    try:
        return Monitor(model_path, profile, threads=args.threads, providers=args.providers, detectors=detectors,
                       engine="graph"), None
    except NnwatchError as exc:
        return None, str(exc)


def cmd_demo(args: argparse.Namespace) -> int:
    """``nnwatch demo``."""
    from ..demo import run_demo

    run_demo(args.out)
    return 0


def cmd_heads(args: argparse.Namespace) -> int:
    """``nnwatch heads ...``."""
    from .heads import cmd_heads as run

    return run(args)


def cmd_info(args: argparse.Namespace) -> int:
    """``nnwatch info``: what a model, profile or head-detector file holds."""
    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"{path} does not exist (nnwatch info takes MODEL.onnx, PROFILE.npz or DETECTOR.json)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    from . import objects
    from ..objects.monitor_state import is_object_state

    if head[:2] == b"PK" and is_object_state(path):
        objects.info_state(path)
    elif head[:2] == b"PK":
        _info_profile(path)
    elif path.suffix == ".json" or head[:1] == b"{":
        _info_detector(path)
    else:
        _info_model(path)
    return 0


def _info_model(path: Path) -> None:
    import onnx

    from ..manifest import MANIFEST_KEY, PREPROCESS_KEY, TapManifest

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path} is not an ONNX model, an nnwatch profile (.npz) or a head detector (.json): "
                         f"{type(exc).__name__}") from None
    meta = {p.key: p.value for p in model.metadata_props}
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"{path}: ONNX model, IR {model.ir_version}, opsets {opsets}, {len(model.graph.node)} nodes")
    if _info_compiled(meta) == "verdict":
        return  # the verdict model reads the verdict input, not a model's input
    from . import objects
    from ..objects.detector_manifest import OBJECTS_KEY

    if OBJECTS_KEY in meta:
        objects.info_detector(path, meta[OBJECTS_KEY])
        return
    if MANIFEST_KEY not in meta:
        print(f"  not instrumented: run `nnwatch instrument {path} --out OUT.onnx` (an object detector: add "
              "--layout PRESET)")
        return
    man = TapManifest.from_json(meta[MANIFEST_KEY])
    print(f"  instrumented by nnwatch; original model sha256 {man.fingerprint}")
    print(f"  input {man.input_name} (batch, {', '.join('?' if d is None else str(d) for d in man.input_shape)}); "
          f"batch {'dynamic' if man.batch is None else f'fixed at {man.batch}'}; logits {man.logits}")
    print(f"  {len(man.taps)} taps, {sum(man.layer_sizes)} neurons; classifier input: {man.penultimate or '-'}")
    if PREPROCESS_KEY in meta:
        print(f"  recorded frames become its input as {meta[PREPROCESS_KEY]} (every command reads pixels so)")
    for t in man.taps:
        print(f"    {_tap_line(t)}")
    sel = man.selection
    if sel is not None:
        print(f"  taps chosen for a budget of {sel['budget_us']:.1f} us ({sel['budget_us'] / sel['plain_us']:.3f}x of a "
              f"{sel['plain_us']:.1f} us plain call) on {sel['provider']}, {sel['machine']}: {len(sel['chosen'])} of "
              f"{len(sel['costs_us'])} candidate layers; monitored call measured {sel['predicted_us']:.1f} us")


def _info_compiled(meta: dict) -> str | None:
    from ..graphs.assemble import read_record

    record = read_record(meta)
    if record is None:
        return None
    cal = record.get("calibration", {})
    print(f"  compiled by nnwatch {record.get('nnwatch_version', '?')}: the {record.get('kind', '?')} model; decision "
          f"{record.get('decision')} at fpr {cal.get('fpr')} ({cal.get('samples')} calibration samples), "
          f"{record.get('tables')} tables, {record.get('precision')}")
    print(f"    profile digest {record.get('profile_digest')}; columns {', '.join(record.get('columns', []))}")
    out = record.get("outputs")
    if out:
        print(f"    outputs {out['pred']}, {out['flag']}, {out['confidence']}, {out['count']}, {out['scores']}, "
              f"{out['p_values']}, {out['counts']}, {out['flags']}")
    print(f"    verdict input {record.get('verdict_input', {}).get('name')}")
    return str(record.get("kind"))


def _info_profile(path: Path) -> None:
    from ..calibration.groups import calibration_groups
    from ..profile.signature import compact_by_default, compile_compact_tables, full_tables_bytes
    from ..profile.store import load_profile

    p = load_profile(path)
    h = p.header
    counts = h["class_counts"]
    print(f"{path}: nnwatch profile, format version {h['format_version']}")
    print(f"  model sha256 {p.fingerprint}")
    print(f"  {len(h['layer_names'])} layers, {sum(p.layer_sizes)} neurons; {p.n_classes} classes; "
          f"k_sections {h['k_sections']}, k_top {h['k_top']}, threshold {h['threshold']}, reduction {h['reduction']}")
    print(f"  trusted samples {sum(counts)} from {h.get('dataset', '?')}; per class min {min(counts)}, max {max(counts)}")
    if h.get("preprocess"):
        print(f"  frames preprocessed as {json.dumps(h['preprocess'])} (pass the same with --preprocess)")
    print(f"  statistics digest {p.digest()}")
    full = full_tables_bytes(p)
    try:
        compact = f"{compile_compact_tables(p, float(h.get('rare_rate', 0.01)), warn=False).nbytes / 2**20:.2f} MiB"
    except InputError as exc:
        compact = f"not possible ({exc})"
    chosen = "compact" if compact_by_default(p) else "full"
    print(f"  monitor coverage tables: full {full / 2**20:.2f} MiB, compact {compact}; a Monitor uses the {chosen} "
          "ones unless told (compact_tables=)")
    cal = p.calibration
    if cal is None:
        print("  not calibrated: run `nnwatch calibrate`")
        return
    groups = calibration_groups(cal.classes, p.n_classes, cal.fpr, cal.min_class_samples)
    print(f"  calibrated: fpr {cal.fpr} on {len(cal.classes)} clean samples; detectors {', '.join(cal.detectors)}")
    print(f"    {len(groups.own)} of {p.n_classes} classes with a threshold of their own (>= {groups.n_min} samples)")
    if groups.pooled:
        print(f"    {groups.describe()}")
    settings = {k: v for k, v in cal.settings.items() if k != "detector_params"}
    print(f"    settings: {json.dumps(settings)}")
    if cal.fusion is not None:
        print(f"    fused verdict over {', '.join(cal.fusion['members'])}")
        if cal.fusion.get("separation"):
            for line in separation_lines(cal.fusion["separation"], list(cal.detectors)):
                print(f"      {line}")


def _info_detector(path: Path) -> None:
    from ..heads.detector_file import load_detector

    from ..heads.shipped import SHIPPED, is_shipped, shipped_record

    d = load_detector(path)
    print(f"{path}: nnwatch language detector file for model {d.model!r} ({d.n_layers} layers x {d.n_heads} heads)")
    if is_shipped(str(path)):
        rec = shipped_record(path.stem) if path.stem in SHIPPED else {}
        git = rec.get("git", {})
        print(f"  shipped with nnwatch: built by benchmarks/ship_detector.py at {str(git.get('revision', '?'))[:10]}"
              f"{' (dirty)' if git.get('dirty') else ''} on {rec.get('date', '?')} from "
              f"{', '.join(rec.get('data', {})) or '?'}")
    print(f"  model fingerprint {d.fingerprint}")
    for name, v in d.detectors.items():
        where = (", ".join(f"L{a}H{b}" for a, b in v.heads[:8]) + (" ..." if len(v.heads) > 8 else "")) if v.heads \
            else ("layers " + ",".join(map(str, v.layers()[:8])) + (" ..." if len(v.layers()) > 8 else "")
                  if v.layers() else "MLP activations" if v.needs_mlp
                  else "the prompt's text" if v.kind == "text_tfidf" else "prompt tokens")
        print(f"  {name}{' (default)' if name == d.default else ''}: {v.kind}, {v.cost} cost; reads {where}")
    c, cf = d.calibration, d.cross_fit
    if c is not None:
        print(f"  calibration: {len(c.scores)} benign prompts, fpr {c.fpr:g}")
    elif cf is not None:
        uncovered = sorted(set(d.detectors) - set(cf.folds))
        print(f"  calibration: cross-fitted ({cf.k} folds) on {cf.n} benign training prompts, fpr {cf.fpr:g}; "
              f"false alarms at most {cf.bound:.3f} guaranteed"
              + (f"; not cross-fitted: {', '.join(uncovered)} (nnwatch calibrate)" if uncovered else ""))
    else:
        print("  calibration: none (nnwatch calibrate DETECTOR.json --data BENIGN.jsonl)")
