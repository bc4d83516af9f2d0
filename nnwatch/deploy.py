"""``nnwatch compile``: a calibrated monitor as ONNX files any ONNX runtime can execute.

Writes, into one folder:

- ``tapped.onnx``: the instrumented model plus one output, ``nnwatch/verdict_input``
  (float32 ``(batch, C + N + 1)``: logits, joined taps, input NaN/Inf count). For runtimes that
  compile the perception model separately (TensorRT engines, NPU compilers): its added ops are
  Concat, Flatten, Cast, Sub, IsNaN, ReduceSum and Unsqueeze.
- ``verdict.onnx``: ``nnwatch/verdict_input`` -> ``pred``, ``flag``, ``confidence``, ``count``
  and the ``scores``/``p_values``/``counts``/``flags`` matrices (opset 17, float32, standard
  ops). It runs on a CPU next to any runtime, from any onnxruntime binding.
- ``monitored.onnx`` (unless ``merged=False``): both in one graph.
- ``verdict.json``: inputs, outputs, columns, the calibration it encodes, and how to call it.

Each model's metadata carries the same record (``nnwatch.compiled``): nnwatch version, the
profile's digest, the calibration's settings, columns, decision and output names; ``nnwatch
info`` prints it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from ._io import atomic_write_bytes
from .errors import InputError
from .graphs.assemble import VERDICT_INPUT, merged_model, tapped_model, verdict_model
from .graphs.verdict_graph import COMPILABLE
from .monitor.monitor import Monitor

FILES = ("tapped.onnx", "verdict.onnx", "monitored.onnx", "verdict.json")


def compile_monitor(model: str | os.PathLike | bytes, profile: Any, out_dir: str | os.PathLike,
                    detectors: Sequence[str] | None = None, expose: Sequence[str] | None = None,
                    merged: bool = True) -> dict:
    """Compile a calibrated monitor into ONNX files (see the module docstring).

    Parameters
    ----------
    model : path or bytes
        The instrumented model (joined taps: ``nnwatch instrument``'s default).
    profile : Profile or path
        Its calibrated profile.
    out_dir : path
        Folder to write into (created; its parent must exist).
    detectors : sequence of str, optional
        The monitor's detectors (default: what ``Monitor(model, profile)`` runs: the compiled
        columns and the fused verdict's members). Every one must be compilable
        (:data:`nnwatch.graphs.verdict_graph.COMPILABLE`).
    expose : sequence of str, optional
        Columns of the output matrices (default: all).
    merged : bool
        Also write the merged model.

    Returns
    -------
    dict
        The record written into the models' metadata and ``verdict.json``.

    Raises
    ------
    InputError
        An uncalibrated profile, a detector that exists only in Python (named, with the
        compilable ones), a model the graph cannot express, or an output folder where a file
        written would replace an input.
    ModelError
        A model or profile that cannot be read, or a compiled model that fails the ONNX checker.
    """
    out = Path(out_dir)
    if not out.parent.resolve().is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    inputs = [Path(p) for p in (model, profile) if isinstance(p, (str, os.PathLike))]
    for name in FILES:  # never replace (or remove) what was given
        target = out / name
        same = [p for p in inputs if target.exists() and p.exists() and os.path.samefile(target, p)]
        if same:
            raise InputError(f"--out {out}: writing {name} there would replace the input {same[0]}; choose another "
                             "folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon = Monitor(model, profile, providers="cpu", detectors=detectors)
    for w in caught:  # what changes the compiled verdict (a detector skipped, no fusion) goes in the record too
        warnings.warn(w.message, w.category, stacklevel=2)
    cal = mon.calibration
    if cal is None or not mon.calibrated:
        raise InputError("the profile is not calibrated: the compiled verdict is a conformal flag; run nnwatch "
                         "calibrate first")
    python = [c for c, d in mon.detectors.items() if d.compiled_source is None]
    if python:
        hint = " (a fusion member: calibrate again with --fuse chosen among the compilable detectors)" \
            if cal.fusion is not None and set(python) & set(cal.fusion["members"]) else ""
        raise InputError(f"detectors {python} exist only in Python and cannot be compiled into ONNX{hint}; "
                         f"compilable detectors: {', '.join(COMPILABLE)}")
    columns, decision = mon.columns, mon.columns.index(mon.decision)
    spec = mon.verdict_tables.spec
    record = {
        "nnwatch_version": __version__,
        "profile_digest": mon.profile.digest(),
        "model_fingerprint": mon.manifest.fingerprint,
        "calibration": {"fpr": cal.fpr, "detectors": list(cal.detectors), "samples": int(cal.scores.shape[0]),
                        "min_class_samples": cal.min_class_samples,
                        "fusion_members": None if cal.fusion is None else list(cal.fusion["members"])},
        "columns": list(columns),
        "decision": mon.decision,
        "tables": "compact" if mon.compact_tables else "full",
        "verdict_input": {"name": VERDICT_INPUT, "classes": int(spec.n_classes), "neurons": int(spec.n_neurons),
                          "layers": mon.manifest.layer_names, "layout": "logits (C) | taps (N) | input NaN/Inf count"},
        "precision": "float32",
        "warnings": [str(w.message) for w in caught],
    }
    raw = mon.runner.model_bytes()
    models = {"tapped.onnx": tapped_model(raw, record),
              "verdict.onnx": verdict_model(spec, columns, decision, record, tuple(expose) if expose else None)}
    if merged:
        models["monitored.onnx"] = merged_model(raw, spec, columns, decision, record,
                                                tuple(expose) if expose else None)
    record = dict(record, outputs=json.loads(dict((p.key, p.value) for p in models["verdict.onnx"].metadata_props)
                                             ["nnwatch.compiled"])["outputs"])
    out.mkdir(exist_ok=True)
    for name, proto in models.items():
        atomic_write_bytes(out / name, proto.SerializeToString())
    stale = out / "monitored.onnx"
    if not merged and stale.exists():
        stale.unlink()  # an older merged model would no longer match the verdict model beside it
    atomic_write_bytes(out / "verdict.json", (json.dumps(record, indent=1) + "\n").encode())
    return record
