"""The CLI for object detectors: ``instrument --layout``, then ``profile``, ``calibrate`` and ``screen``
on the instrumented detector (recognized by its ``nnwatch.objects`` metadata).

The state file (``objects.npz``) plays the profile's part: ``profile`` writes it, ``calibrate``
updates it (or writes ``--out``), ``screen`` reads it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

# options of the classifier commands that have no meaning for a detector, with their unset values
UNSUPPORTED = {"explain": False, "detector": None,
               "error_risk": None, "detectors": None, "onnx": None, "truncate": False, "k_sections": 10, "k_top": 3,
               "threshold": "mean", "min_confidence": 0.0, "rare_rate": 0.01, "budget": None}


def is_detector(path: Any) -> bool:
    """Whether ``path`` is an ONNX detector instrumented by nnwatch (metadata ``nnwatch.objects``).

    Parameters
    ----------
    path : path-like
        Any file name.

    Returns
    -------
    bool
        True for an instrumented detector.
    """
    if not path or not str(path).lower().endswith(".onnx") or not Path(path).is_file():
        return False
    from ..export.model_metadata import NotAModelError, read_model_metadata
    from ..objects.detector_manifest import OBJECTS_KEY

    try:
        return OBJECTS_KEY in read_model_metadata(path)  # the metadata only: the graph is not parsed
    except (NotAModelError, OSError):  # not ONNX: the classifier path reports it
        return False


def layout_hint(path: Any) -> str | None:
    """For a model refused as a classifier: the detector presets its outputs fit, as advice, or None.

    Parameters
    ----------
    path : path-like
        The ONNX model.

    Returns
    -------
    str or None
        "an object detector? ..." naming the presets that fit (or how to write a spec), or None
        when the outputs do not look like a detector's (no rank-3 output).
    """
    import onnx

    from ..objects.layouts import fitting_presets

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX: the classifier path's message stands
        return None
    shapes = [tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in o.type.tensor_type.shape.dim) for o in model.graph.output]
    if not any(len(s) == 3 for s in shapes):
        return None
    fit = fitting_presets(shapes)
    if len(fit) == 1:
        return f"an object detector? add --layout {fit[0]} (the preset that fits these outputs)"
    if fit:  # the shapes cannot tell them apart (YOLOv5's boxes are pixels, YOLOX's grid offsets): the user must
        return (f"an object detector? add --layout with the preset of its family; presets that fit these outputs: "
                f"{', '.join(fit)} (they read the same shapes differently; the README's section on object detectors says how)")
    return "an object detector? add --layout SPEC.json naming its outputs (no preset fits them)"


def _refuse_unsupported(args: argparse.Namespace) -> None:
    for flag, unset in UNSUPPORTED.items():
        if getattr(args, flag, unset) != unset:
            raise InputError(f"--{flag.replace('_', '-')} is not available for object detectors ({args.model}); "
                             "drop it")


def _calibrated_monitor(args: argparse.Namespace, threads: int = 1) -> Any:
    """The object monitor in PROFILE (the state file), refused unless it is calibrated; on
    ``--providers`` where the command has it (bench), else the CPU.
    """
    from ..objects.monitor_state import load_object_monitor

    mon = load_object_monitor(args.model, args.profile, threads=threads, providers=getattr(args, "providers", "cpu"))
    if not hasattr(mon, "frames_"):
        raise InputError(f"{args.profile} is not calibrated; run nnwatch calibrate {args.model} {args.profile} "
                         "--data CLEAN first")
    return mon


def _frames(args: argparse.Namespace) -> Any:
    from ..sources import in_memory, open_source

    return in_memory(open_source(args.data, args.preprocess).limit(args.limit), args.batch_size).x


def _state_out(args: argparse.Namespace, given: str | None) -> str:
    out = getattr(args, "out", None) or given
    if out is None:
        raise InputError("give the state file to write: --out objects.npz")
    if os.path.abspath(out) == os.path.abspath(args.model):
        raise InputError(f"--out {out} is the detector model; write the monitor state to another file (objects.npz)")
    if given and getattr(args, "data", None) and os.path.abspath(out) == os.path.abspath(str(args.data).split(":", 1)[-1]):
        raise InputError(f"--out {out} is the --data file; write the state elsewhere")
    return out


def cmd_instrument(args: argparse.Namespace) -> int:
    """``nnwatch instrument MODEL --layout PRESET|SPEC.json --out FILE``."""
    from ..objects.instrument_detector import instrument_detector_file
    from ..objects.layouts import load_layout

    if getattr(args, "budget", None) is not None or getattr(args, "data", None) is not None:
        raise InputError("--budget/--data choose classifier taps; a detector's maps are chosen with --layers or "
                         "--max-taps")
    for flag, unset in (("reduction", "mean"), ("reduce_in", "graph"), ("preprocess", None)):
        if getattr(args, flag, unset) != unset:
            raise InputError(f"--{flag.replace('_', '-')} is for classifiers; a detector's maps are exposed whole "
                             "(each object's box is averaged on them); drop it")
    layout = load_layout(args.layout)  # refused before any work
    layers = args.layers if isinstance(args.layers, str) else list(args.layers)
    options: dict[str, Any] = {"layers": layers}
    if getattr(args, "max_taps", None) is not None:
        options["max_taps"] = args.max_taps
    manifest = instrument_detector_file(args.model, args.out, layout, **options)
    print(f"wrote {args.out}: detector layout {layout.name!r} ({layout.kind}), reads {list(manifest.outputs)}; "
          f"input {manifest.input_name} {manifest.input_size[0]}x{manifest.input_size[1]}")
    for tensor, ch in zip(manifest.tensors, manifest.channels):
        print(f"  map {tensor}: {ch} channels")
    if layout.runs_nms:
        print(f"  NMS by nnwatch: score >= {layout.score_threshold}, IoU {layout.iou}, at most {layout.max_det} boxes")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """``nnwatch profile DETECTOR.onnx --data TRUSTED --out objects.npz``."""
    from ..objects.object_monitor import ObjectMonitor
    from ..objects.monitor_state import save_object_monitor

    _refuse_unsupported(args)
    out = _state_out(args, None)
    mon = ObjectMonitor(args.model)
    x = _frames(args)
    mon.fit(x, batch_size=args.batch_size, progress=not args.quiet)
    save_object_monitor(mon, out)
    counts = mon.objects_.profile_.header["class_counts"]
    print(f"wrote {out}: {sum(counts)} objects in {len(x)} trusted frames; per class {counts}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``nnwatch calibrate DETECTOR.onnx objects.npz --data CLEAN [--fpr A] [--out OTHER.npz]``."""
    from ..objects.monitor_state import load_object_monitor, save_object_monitor

    _refuse_unsupported(args)
    if not args.profile:
        raise InputError("calibrate on a detector needs DETECTOR.onnx OBJECTS.npz (the state nnwatch profile wrote)")
    out = _state_out(args, args.profile)
    mon = load_object_monitor(args.model, args.profile)
    fuse = getattr(args, "fuse", None)
    if fuse is not None and not set(fuse) <= set(mon.members):  # before the frames are read
        raise InputError(f"--fuse {','.join(fuse)}: this detector's members are {', '.join(mon.members)}; "
                         f"{', '.join(n for n in fuse if n not in mon.members)} are not among them")
    x = _frames(args)
    mon.calibrate(x, alpha=args.fpr, batch_size=args.batch_size, min_class_samples=args.min_class_samples,
                  progress=not args.quiet,
                  fused_members=list(fuse) if fuse is not None else "all" if getattr(args, "no_separate", False)
                  else "auto")
    save_object_monitor(mon, out)
    print(f"wrote {out}: calibrated on {len(x)} clean frames ({len(x) // 2} for the objects, "
          f"{mon.frames_.reference.size} for the frame threshold) at fpr {args.fpr}; fused members "
          f"{', '.join(mon.fused_members_)}" + (" (given)" if fuse is not None else " (every member)"
                                                 if mon.member_choice_ is None else " (chosen: nnwatch info shows why)"))
    return 0


def _screen_ray(args: argparse.Namespace) -> int:
    """``screen --ray`` for a detector: the object table as Parquet in ``--out DIR``, frames scored by actors."""
    import numpy as np

    from ..distributed.readers import ray_dataset
    from ..distributed.screen_objects import screen_objects_ray
    from ..sources import takes_preprocess
    from .ray_setup import ray_init

    if getattr(args, "stream", False):
        raise InputError("--stream needs the frames in order in one process; drop --ray")
    if args.preprocess and not takes_preprocess(args.data):
        raise InputError(f"--preprocess applies to pixels (images:, video:, mcap:, rosbag:, idx:); {args.data} is fed "
                         "to the detector as stored: drop --preprocess")
    preprocess = None
    if args.preprocess:  # the monitor state is checked below, before any worker starts
        from ..recordings import load_preprocess

        preprocess = load_preprocess(args.preprocess)  # checked here, not in every worker
    mon = _calibrated_monitor(args)
    ray_init(args)
    dataset = ray_dataset(args.data, args.limit, preprocess)
    first = dataset.take(1)  # the frame size is checked here, not in a worker
    if not first:
        raise InputError(f"{args.data}: no frames to screen")
    shape, (h, w) = np.shape(first[0]["x"]), mon.manifest.input_size
    if len(shape) != 3 or tuple(shape[1:]) != (h, w):
        raise InputError(f"{args.data}: frames of shape {tuple(shape)}; the detector takes (C, {h}, {w}) frames "
                         "(set the size with --preprocess)")
    summary = screen_objects_ray(args.model, args.profile, dataset, args.out, batch_size=args.batch_size,
                                 concurrency=args.workers)
    print(f"wrote {args.out}/: {summary['frames']} frames, {summary['flagged']} flagged, {summary['objects']} objects, "
          f"{summary['frames_per_s']:,.0f} frames/s with {args.workers} workers")
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    """``nnwatch screen DETECTOR.onnx objects.npz --data SOURCE --out OBJECTS.csv|.json``.

    One row per object, and one (object columns empty) per frame without objects; every row
    carries its frame's ``frame_p``, ``frame_flag``, ``image_p`` and ``frame_objects`` (0: the
    frame was judged by its image-level term alone). Frames from a recording also carry its ids
    (``id.path``, ``id.frame``, ``id.stamp_ns``, ...) and ``error``, and are read batch by batch;
    an undecodable frame gets one row with its ids and ``error``, every other column empty.
    """
    import contextlib

    from .._progress import Progress
    from ..sources import open_source
    from .output import RecordWriter, skipped_rows

    _refuse_unsupported(args)
    if getattr(args, "report", None):
        raise InputError("--report draws a classifier's timeline; for a detector use nnwatch evaluate ... --report "
                         "(flagged frames with their boxes)")
    if not args.profile:
        raise InputError("screen on a detector needs DETECTOR.onnx OBJECTS.npz (the state nnwatch calibrate wrote)")
    if getattr(args, "ray", False):
        return _screen_ray(args)
    suffix = Path(args.out).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"--out {args.out}: a detector's verdicts are written as .csv or .json (one row per object, "
                         "and one per frame without objects), or as Parquet in a folder with --ray")
    mon = _calibrated_monitor(args, threads=args.threads or 1)
    stream = None
    if getattr(args, "stream", False):
        from ..objects.frame_stream import ObjectStream

        stream = ObjectStream(mon, delta=args.delta)
    source = open_source(args.data, args.preprocess).limit(args.limit)
    with_ids = getattr(source, "batches_with_ids", None)  # recordings name their frames (path, frame, stamps)
    batches = (with_ids(args.batch_size, with_skipped=True) if with_ids else
               ((x, y, None, []) for x, y in source.batches(args.batch_size)))
    empty = dict.fromkeys(["x1", "y1", "x2", "y2", "class", "score", "p", "flag", *mon.members])
    frames = flagged = n_skipped = 0
    skipped: list[dict[str, Any]] = []  # undecodable frames not yet written
    fields: list[str] = []
    bar = Progress(len(source), "screening", not args.quiet)
    with contextlib.closing(batches), RecordWriter(args.out, formats=(".csv", ".json")) as writer:
        for x, _, ids, passed in batches:  # streamed: memory stays flat over a long recording
            skipped.extend(passed)
            n_skipped += len(passed)
            if x is None:  # frames skipped after the last batch (the source then checks it read any)
                continue
            v = mon.score(x, batch_size=args.batch_size, members="all")  # every member's score in the rows
            update = None if stream is None else stream.update(v)
            by_frame: dict[int, list[dict[str, Any]]] = {}
            for r in v.object_rows():
                by_frame.setdefault(r["frame"], []).append(r)
            rows = []
            for f in range(len(v.frame_flag)):
                # frame_objects 0: the frame was judged by its image-level term alone
                frame_cols = {"frame_p": float(v.frame_p[f]), "frame_flag": bool(v.frame_flag[f]),
                              "image_p": float(v.image_p[f]), "frame_objects": len(by_frame.get(f, []))}
                if update is not None:
                    frame_cols.update({"stream.p": float(update.p_values[f]),
                                       "stream.statistic": float(update.statistic[f]),
                                       "stream.alarm": bool(update.alarm[f])})
                    if stream.class_test:
                        frame_cols.update({"stream.category": int(v.frame_category[f]),
                                           "stream.class_statistic": float(update.class_statistic[f]),
                                           "stream.class_alarm": bool(update.class_alarm[f])})
                named = {} if ids is None else {**{f"id.{k}": value for k, value in ids[f].items()}, "error": None}
                for r in by_frame.get(f, [empty]):
                    rows.append({**r, "frame": frames + f, **frame_cols, **named})
            fields = list(rows[0])
            if skipped:
                writer.write(skipped_rows(fields, skipped))
                skipped = []
            frames += len(x)
            flagged += int(v.frame_flag.sum())
            writer.write(rows)
            bar.update(len(x))
        if skipped and fields:
            writer.write(skipped_rows(fields, skipped))
    bar.close()
    print(f"wrote {args.out}: {frames} frames, {flagged} flagged"
          + (f"; {n_skipped} undecodable frame(s) skipped, each a row with its error" if n_skipped else ""))
    if stream is not None:
        if stream.class_test:
            test = (f"frame statistics and each frame's top class, each alarming at capital {stream.threshold:.3g}; "
                    f"delta {args.delta}")
            final = f"final capital {stream.statistic:.3g} and {stream.class_statistic:.3g}"
        else:
            test = (f"frame statistics, alarming at capital {stream.threshold:.3g}; delta {args.delta}; no class test: "
                    "this state predates it, calibrate again to add it")
            final = f"final capital {stream.statistic:.3g}"
        if stream.first_alarm is None:
            print(f"stream: no alarm over {stream.frames} frames ({test}; {final})")
        else:
            print(f"stream: ALARM at frame {stream.first_alarm} ({test}); per-frame capital in the stream.* columns")
    return 0


def _drawn(spec: str) -> Any:
    """The drawn objects an ``npz:`` source carries (arrays ``boxes`` (N, K, 4), NaN-padded, and
    ``anomalous`` (N, K)), or None.
    """
    import numpy as np

    from ..objects.evaluation import DrawnObjects

    if not spec.startswith("npz:"):
        return None
    path = spec[4:].split("[", 1)[0]
    try:
        with np.load(path, allow_pickle=False) as z:
            if "boxes" not in z or "anomalous" not in z:
                return None
            boxes, anomalous = z["boxes"], z["anomalous"]
    except (OSError, ValueError) as e:
        raise InputError(f"{spec}: cannot read its boxes ({e})") from None
    if boxes.ndim != 3 or boxes.shape[2] != 4 or anomalous.shape != boxes.shape[:2]:
        raise InputError(f"{spec}: boxes must be (N, K, 4) and anomalous (N, K), got {boxes.shape} and "
                         f"{anomalous.shape}")
    return DrawnObjects.from_padded(boxes, anomalous)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``nnwatch evaluate DETECTOR.onnx objects.npz --id CLEAN --ood [NAME=]SOURCE ...``."""
    from ..eval.report import html_page, write_json
    from ..objects.evaluation import evaluate_objects, markdown, report_body
    from .._io import atomic_write_bytes

    _refuse_unsupported(args)
    if not args.profile or not args.id or not args.ood:
        raise InputError("evaluate on a detector needs DETECTOR.onnx OBJECTS.npz --id CLEAN --ood [NAME=]SOURCE ...")
    if getattr(args, "errors", False):
        raise InputError("--errors is for classifiers (the model's own mistakes); drop it")
    if args.report:
        import importlib.util

        if importlib.util.find_spec("PIL") is None:
            raise InputError("--report draws the flagged frames with Pillow, which is not installed: pip install -c "
                             "constraints.txt -e '.[recordings]' (or pip install pillow), or drop --report")
    mon = _calibrated_monitor(args)
    specs = {}
    for spec in args.ood:
        name, sep, rest = spec.partition("=")
        named = bool(sep and rest and ":" not in name and "/" not in name)
        specs[name if named else spec] = rest if named else spec
    clean = _frames(argparse.Namespace(**{**vars(args), "data": args.id}))
    sets = {name: (_frames(argparse.Namespace(**{**vars(args), "data": spec})), _drawn(spec))
            for name, spec in specs.items()}
    result = evaluate_objects(mon, clean, sets, clean_drawn=_drawn(args.id), batch_size=args.batch_size)
    if args.json:
        write_json(args.json, {k: v for k, v in result.items() if k != "verdicts"})
    if args.report:
        page = html_page(f"nnwatch evaluate: {args.model}",
                         report_body(result, {name: x for name, (x, _) in sets.items()}), heading=True)
        atomic_write_bytes(args.report, page.encode("utf-8"))
    print(markdown(result))
    for path in (args.json, args.report):
        if path:
            print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``nnwatch bench DETECTOR.onnx objects.npz [--data FRAMES] [--batch B] [--iters N] [--json FILE]``."""
    import sys

    import numpy as np

    from ..eval.overhead import machine
    from ..eval.report import write_json
    from ..objects.cost import bench_detector
    from ..sources import in_memory, open_source

    for flag, unset in (("detectors", None), ("detector", None), ("per_detector", False), ("onnx", None),
                        ("demo", False)):
        if getattr(args, flag, unset) != unset:
            raise InputError(f"--{flag.replace('_', '-')} is not available when benchmarking an object detector "
                             f"({args.model}); drop it")
    if not args.profile:
        raise InputError("bench on a detector needs DETECTOR.onnx OBJECTS.npz (the state nnwatch calibrate wrote)")
    mon = _calibrated_monitor(args, threads=args.threads or 1)
    h, w = mon.manifest.input_size
    if mon.fixed_batch is not None and mon.fixed_batch != args.batch:
        raise InputError(f"this detector takes a fixed batch of {mon.fixed_batch}; its plain baseline cannot run a "
                         f"batch of {args.batch}: pass --batch {mon.fixed_batch}")
    if args.data:
        x = in_memory(open_source(args.data).limit(64 * args.batch)).x
        if x.ndim != 4 or x.shape[2:] != (h, w):
            raise InputError(f"--data {args.data} gives frames {x.shape[1:]}; this detector takes (C, {h}, {w})")
        if len(x) < args.batch:
            raise InputError(f"--data {args.data} has {len(x)} frames, fewer than --batch {args.batch}")
    else:
        print("no --data: timing random frames; the objects a detector finds on noise (counted below) need not "
              "resemble your scenes, and the cost grows with the objects per frame: pass --data FRAMES for the cost "
              "on real scenes", file=sys.stderr)
        c = mon.session.get_inputs()[0].shape[1]
        x = np.random.default_rng(0).random((args.batch * 8, c if isinstance(c, int) else 3, h, w), dtype=np.float32)
    batches = [x[i:i + args.batch] for i in range(0, len(x) - args.batch + 1, args.batch)]
    result = bench_detector(mon, batches, rounds=args.iters, threads=args.threads or 1)
    result["machine"] = machine()
    result["model"] = str(args.model)
    if args.json:  # the file first: a reader that stops early (| head) must not cost it
        write_json(args.json, result)
    t = result["timing"]
    print(f"batch {args.batch}, {result['objects_per_frame']:.1f} objects per frame: plain p50 "
          f"{t['plain']['p50_ms']:.3f} ms, plain + decoding and NMS {t['plain+decode']['p50_ms']:.3f} ms, monitored "
          f"{t['monitored']['p50_ms']:.3f} ms ({t['monitored']['ratio_p50']:.2f}x plain, "
          f"{t['monitored']['ratio_p50_decode']:.2f}x plain + decoding; p99 {t['monitored']['p99_ms']:.3f} ms)")
    if args.json:
        print(f"wrote {args.json}")
    return 0


def info_detector(path: Any, manifest_json: str) -> None:
    """``nnwatch info DETECTOR.onnx`` for an instrumented detector: its layout, outputs, maps and input."""
    from ..objects.detector_manifest import DetectorManifest

    man = DetectorManifest.from_json(manifest_json)
    lay = man.layout
    print(f"  instrumented object detector; original model sha256 {man.fingerprint}")
    print(f"  input {man.input_name} {man.input_size[0]}x{man.input_size[1]}; layout {lay.name!r} ({lay.kind}), "
          f"reads {list(man.outputs)}")
    for tensor, ch in zip(man.tensors, man.channels):
        print(f"  map {tensor}: {ch} channels")
    if lay.runs_nms:
        print(f"  NMS by nnwatch: score >= {lay.score_threshold}, IoU {lay.iou}, at most {lay.max_det} boxes")


def info_state(path: Any) -> None:
    """``nnwatch info OBJECTS.npz`` for an object monitor state."""
    from ..objects.member_choice import KINDS
    from ..objects.monitor_state import describe_state
    from .console import separation_lines

    d = describe_state(path)
    counts = d["class_counts"]
    print(f"{path}: nnwatch object monitor state for detector sha256 {d['fingerprint']} (layout "
          f"{d['layout'].get('name')!r}, maps {d['tensors']})")
    print(f"  {sum(counts)} objects profiled; per class {counts}; members {', '.join(d['members'])}")
    if d.get("calibrated"):
        groups = "classes pooled" if d.get("min_class_samples") is None else \
            f"own threshold from {d['min_class_samples']} objects"
        print(f"  calibrated at a frame false-alarm target of {d['alpha']} ({groups})")
        print(f"  fused members: {', '.join(d.get('fused_members', d['members']))}")
        choice = d.get("member_choice")
        if choice:
            for line in separation_lines(choice, d["members"], list(KINDS)):
                print(f"    {line}")
    else:
        print(f"  not calibrated: run nnwatch calibrate DETECTOR.onnx {path} --data CLEAN")
