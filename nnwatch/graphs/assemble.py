"""The models ``nnwatch compile`` writes: tapped, verdict, and merged.

- **tapped**: the instrumented model plus one output, the verdict input ``nnwatch/verdict_input``
  float32 ``(batch, C + N + 1)`` = logits, joined taps, and the count of NaN/Inf values of each
  input sample. One extra output, so one copy per call on any device; its ops are Concat,
  IsNaN, Abs, Equal, Or, Not, Cast, Flatten and ReduceSum, which perception compilers take.
- **verdict**: a small model from the verdict input to the verdict (opset 17), for a CPU
  next to any runtime that runs the tapped model.
- **merged**: both in one graph (model input -> model outputs and the verdict).

Each carries its record in the ONNX metadata (``nnwatch.compiled``): nnwatch version, the
profile's digest, the calibration's settings, the columns, the decision and the output names;
:func:`read_record` reads it back.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .._optional import require
from ..errors import InputError, ModelError
from ..manifest import MANIFEST_KEY, TapManifest
from ..kernels.verdict import VerdictSpec
from .verdict_graph import OPSET, Ops, build_verdict

RECORD_KEY = "nnwatch.compiled"
VERDICT_INPUT = "nnwatch/verdict_input"
MAX_IR_VERSION = 13  # what onnxruntime 1.31 reads
MIN_TAPPED_OPSET = 9  # IsNaN


def _onnx() -> tuple[Any, Any]:
    import onnx  # a base dependency; only onnx_ir comes with an extra

    return require("onnx_ir", extra="compile"), onnx


def _set_record(proto: Any, record: dict) -> None:
    for p in list(proto.metadata_props):
        if p.key == RECORD_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key = RECORD_KEY
    entry.value = json.dumps(record, sort_keys=True)


def read_record(metadata: dict) -> dict | None:
    """The ``nnwatch.compiled`` record of a model's metadata, or None.

    Parameters
    ----------
    metadata : dict
        The model's metadata (``onnxruntime``'s ``custom_metadata_map`` or ``onnx``'s props).

    Returns
    -------
    dict or None
        The record.

    Raises
    ------
    ModelError
        The record is not JSON.
    """
    text = metadata.get(RECORD_KEY)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        raise ModelError("the model's nnwatch.compiled record is not valid JSON; compile the model again") from None
    if not isinstance(record, dict):
        raise ModelError("the model's nnwatch.compiled record is malformed; compile the model again")
    return record


def verdict_model(spec: VerdictSpec, columns: tuple[str, ...], decision: int, record: dict,
                  expose: tuple[str, ...] | None = None) -> Any:
    """The verdict model: ``nnwatch/verdict_input`` -> the verdict, opset 17.

    Parameters
    ----------
    spec : VerdictSpec
        The monitor's tables.
    columns : tuple of str
        Column names.
    decision : int
        Deciding column.
    record : dict
        Metadata record (outputs are added to it).
    expose : tuple of str, optional
        Columns whose results become outputs (default: all).

    Returns
    -------
    onnx.ModelProto
        The model, checked.
    """
    ir, onnx = _onnx()
    width = int(spec.n_classes) + int(spec.n_neurons) + 1
    x = ir.val(VERDICT_INPUT, dtype=ir.DataType.FLOAT, shape=ir.Shape(["batch", width]))
    ops = Ops()
    outputs, names = build_verdict(ops, spec, columns, decision, x, expose)
    graph = ir.Graph(inputs=[x], outputs=outputs, nodes=ops.tape.nodes, initializers=ops.tape.initializers,
                     opset_imports={"": OPSET}, name="nnwatch_verdict")
    proto = ir.to_proto(ir.Model(graph, ir_version=8, producer_name="nnwatch"))
    _set_record(proto, dict(record, kind="verdict", outputs=_names(names)))
    onnx.checker.check_model(proto)
    return proto


def _names(names: Any) -> dict:
    return {"pred": names.pred, "flag": names.flag, "confidence": names.confidence, "count": names.count,
            "scores": names.scores, "p_values": names.p_values, "counts": names.counts, "flags": names.flags,
            "columns": list(names.columns)}


def _default_opset(model: Any) -> int:
    version = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if version is None:
        raise ModelError("the model does not import the default ONNX opset")
    return int(version)


def _verdict_input(ops: Ops, model: Any, manifest: TapManifest) -> Any:
    """``Concat(logits, joined taps, NaN/Inf count of the input)`` on the instrumented graph."""
    ir = ops.ir
    graph = model.graph
    values = {v.name: v for v in graph.inputs}
    for node in graph:
        for out in node.outputs:
            values[out.name] = out
    for init in graph.initializers.values():
        values[init.name] = init
    if manifest.joined is None:
        raise InputError("this instrumented model has one output per tap; compile needs its taps joined into one "
                         "output: instrument the original model again (nnwatch instrument, the default joins them)")
    logits, taps = values[manifest.logits], values[manifest.joined]
    x = values[manifest.input_name]
    flat = ops("Flatten", x, axis=1)
    if x.dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16):
        flat = ops.f(flat)
        count = ops.unsq(ops.sum_rows(ops.nonfinite(flat), ir.DataType.FLOAT))
    else:  # integer images hold no NaN/Inf: a zero column of the batch's length
        count = ops("Mul", ops.cols(ops.f(flat), 0, 1), ops.const(0.0, np.float32))
    out = ops("Concat", logits, taps, count, axis=1)
    out.name = VERDICT_INPUT
    out.dtype = ir.DataType.FLOAT
    out.shape = ir.Shape([manifest.batch or "batch", sum(manifest.layer_sizes) + logits.shape[1] + 1]) \
        if logits.shape is not None else None
    return out


def _load(instrumented: bytes) -> tuple[Any, TapManifest]:
    ir, onnx = _onnx()
    proto = onnx.load_from_string(instrumented)
    meta = {p.key: p.value for p in proto.metadata_props}
    if MANIFEST_KEY not in meta:
        raise InputError("the model is not instrumented by nnwatch; run nnwatch instrument first")
    return ir.from_proto(proto), TapManifest.from_json(meta[MANIFEST_KEY])


def _finish(model: Any, tapes: list[Ops], outputs: list, record: dict) -> Any:
    ir, onnx = _onnx()
    for ops in tapes:
        for node in ops.tape.nodes:
            model.graph.append(node)
        for init in ops.tape.initializers:
            model.graph.register_initializer(init)
    for out in outputs:
        model.graph.outputs.append(out)
    proto = ir.to_proto(model)
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    _set_record(proto, record)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the compiled model fails the ONNX checker: {exc}") from None
    return proto


def tapped_model(instrumented: bytes, record: dict) -> Any:
    """The instrumented model with the verdict input as one more output.

    Parameters
    ----------
    instrumented : bytes
        An nnwatch-instrumented model with joined taps.
    record : dict
        Metadata record.

    Returns
    -------
    onnx.ModelProto
        The model.

    Raises
    ------
    InputError
        The model's default opset is below 9.
    """
    model, manifest = _load(instrumented)
    opset = _default_opset(model)
    if opset < MIN_TAPPED_OPSET:
        raise InputError(f"the model imports ONNX opset {opset}; the tapped model counts NaN/Inf inputs with IsNaN, "
                         f"which needs opset {MIN_TAPPED_OPSET} or later: convert it first "
                         "(onnx.version_converter.convert_version(model, 13)), then instrument it again")
    ops = Ops(prefix="nnwatch/verdict_input/", opset=opset)
    x = _verdict_input(ops, model, manifest)
    return _finish(model, [ops], [x], dict(record, kind="tapped"))


def merged_model(instrumented: bytes, spec: VerdictSpec, columns: tuple[str, ...], decision: int, record: dict,
                 expose: tuple[str, ...] | None = None) -> Any:
    """The instrumented model and the verdict in one graph.

    Parameters
    ----------
    instrumented : bytes
        An nnwatch-instrumented model with joined taps (default opset 13 or later).
    spec : VerdictSpec
        The monitor's tables.
    columns : tuple of str
        Column names.
    decision : int
        Deciding column.
    record : dict
        Metadata record.
    expose : tuple of str, optional
        Columns whose results become outputs.

    Returns
    -------
    onnx.ModelProto
        The model.

    Raises
    ------
    InputError
        The model's default opset is below 13 (use the tapped and verdict models instead).
    """
    model, manifest = _load(instrumented)
    opset = _default_opset(model)
    if opset < 13:
        raise InputError(f"the model imports ONNX opset {opset}; a merged model needs opset 13 or later. Use the "
                         "tapped and verdict models (written beside it), or convert the model with "
                         "onnx.version_converter first")
    ops = Ops(prefix="nnwatch/verdict_input/", opset=opset)
    x = _verdict_input(ops, model, manifest)
    vops = Ops(opset=opset)
    outputs, names = build_verdict(vops, spec, columns, decision, x, expose, name_prefix="nnwatch/")
    return _finish(model, [ops, vops], outputs, dict(record, kind="merged", outputs=_names(names)))
