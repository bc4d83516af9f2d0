"""Add monitored activations to any ONNX classifier as extra graph outputs.

The original nodes, initializers and outputs are left as they are; nnwatch only appends
graph outputs (and, for feature maps reduced in the graph, one Reduce node per tap, plus a
Cast where a tap is not float32) and writes its manifest into the model metadata.

Sketch of a tapped conv layer (``reduce_in_graph=True``)::

    x -> Conv -> Relu ---------> ... -> logits (output 0, unchanged)
                  |
                  +-> ReduceMean(axes=2,3) -> "nnwatch/mean/<relu output>" (new output)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import onnx
from onnx import TensorProto, helper, shape_inference

from .._io import atomic_write_bytes
from .._validate import unknown_name
from ..errors import InputError, ModelError
from ..manifest import HEAD_KEY, JOINED_OUTPUT, MANIFEST_KEY, PREPROCESS_KEY, Tap, TapManifest, check_logit_columns, encode_head
from ..recordings.preprocess import load_preprocess
from .macs import count_macs
from .names import tap_output_name
from .quantized import INTEGER_TYPES, dequantized_source, quant_params, quantized_layer_tensors
from .select import ACTIVATION_OPS, auto_tensors, classifier_head, logits_tensor, penultimate_tensor, producers

# onnxruntime 1.31 reads IR versions up to 13; onnx 1.23 writes 14 by default.
MAX_IR_VERSION = 13
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


def load_onnx(source: str | os.PathLike | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Load a model and fingerprint it.

    Parameters
    ----------
    source : path, bytes or onnx.ModelProto
        The model.

    Returns
    -------
    tuple
        ``(model, sha256 hex of the serialized model)``; for a path, the hash of the file bytes.

    Raises
    ------
    ModelError
        The file is missing or is not a loadable ONNX model.
    """
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
    elif isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelError(f"ONNX file {path} does not exist")
        data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(f"cannot parse ONNX model ({type(exc).__name__}: {exc}); is it a valid .onnx file?") from None
    if not model.graph.node:
        raise ModelError("ONNX model has an empty graph; is it a valid .onnx file?")
    return model, hashlib.sha256(data).hexdigest()


def _default_opset(model: onnx.ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise ModelError("ONNX model does not import the default (ai.onnx) opset")


def _tensor_types(model: onnx.ModelProto) -> dict[str, tuple[int, tuple]]:
    """Name -> (elem_type, dims) with dims as int or str (symbolic) or None (unknown)."""
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelError(f"ONNX shape inference failed on this model: {exc}") from None
    table: dict[str, tuple[int, tuple]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            table[vi.name] = (tt.elem_type, ())
            continue
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
        )
        table[vi.name] = (tt.elem_type, dims)
    return table


def _topologically_sorted(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each follows its inputs' producers (some converters append casts at
    the end; onnxruntime accepts that, the ONNX checker does not). Stable where already sorted.
    """
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    seen = set(ready)
    if all(all(i in seen for i in n.input) and not seen.update(n.output) for n in graph.node):
        return  # the usual case: already sorted, one pass
    pending = list(range(len(graph.node)))
    order: list[int] = []
    while pending:
        done = [k for k in pending if all(i in ready for i in graph.node[k].input)]
        if not done:
            return  # a cycle or a dangling input: leave it for the checker to name
        for k in done:
            ready.update(graph.node[k].output)
        order += done
        finished = set(done)
        pending = [k for k in pending if k not in finished]
    if order != sorted(order):
        nodes = [onnx.NodeProto() for _ in order]
        for copy, k in zip(nodes, order):
            copy.CopyFrom(graph.node[k])
        del graph.node[:]
        graph.node.extend(nodes)


def _types_from_onnxruntime(model: onnx.ModelProto, names: list[str], table: dict) -> None:
    """Type tensors that ONNX shape inference left unknown (e.g. outputs of com.microsoft ops
    such as QGemm) by asking onnxruntime, which infers them while building a session.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    probe.ir_version = min(probe.ir_version, MAX_IR_VERSION)
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        outputs = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]).get_outputs()
    except Exception:
        return  # left unknown: the caller names the tensor in its message
    for out in outputs:
        elem = _ORT_ELEM.get(out.type, 0)
        dims = tuple(d if isinstance(d, int) else (d or None) for d in out.shape)
        if elem and dims:
            table[out.name] = (elem, dims)


_ORT_ELEM = {"tensor(float)": TensorProto.FLOAT, "tensor(float16)": TensorProto.FLOAT16,
             "tensor(double)": TensorProto.DOUBLE, "tensor(uint8)": TensorProto.UINT8, "tensor(int8)": TensorProto.INT8}


def _layer_aliases(model: onnx.ModelProto) -> dict[str, str]:
    """Torch module path -> tensor it outputs, from the dynamo exporter's node metadata."""
    aliases: dict[str, str] = {}
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = meta.get("pkg.torch.onnx.name_scopes")
        if not scopes or not node.output:
            continue
        try:
            parts = [s.strip().strip("'\"") for s in scopes.strip("[]").split(",")]
        except ValueError:
            continue
        # The last node inside a module scope produces that module's output.
        for module in parts[1:-1]:
            if module:
                aliases[module] = node.output[0]
    return aliases


def _reduce_node(op: str, src: str, dst: str, rank: int, opset: int, nodes: list, inits: list) -> None:
    axes = list(range(2, rank))
    if opset >= 18:
        axes_name = f"{dst}/axes"
        inits.append(helper.make_tensor(axes_name, TensorProto.INT64, [len(axes)], axes))
        nodes.append(helper.make_node(op, [src, axes_name], [dst], keepdims=0, name=f"{dst}/node"))
    else:
        nodes.append(helper.make_node(op, [src], [dst], axes=axes, keepdims=0, name=f"{dst}/node"))


@dataclass
class _Indexed:
    """A model indexed once: every pass below works by name on these maps."""

    model: onnx.ModelProto
    opset: int
    data_input: onnx.ValueInfoProto
    in_dims: tuple
    batch: int | None
    initializers: set[str]
    inits: dict[str, onnx.TensorProto]
    prod: dict[str, onnx.NodeProto]
    types: dict[str, tuple[int, tuple]]
    logits: str
    aliases: dict[str, str]  # torch module path -> tensor
    module_of: dict[str, str]  # tensor -> innermost torch module path


@dataclass
class _Additions:
    """What instrumenting appends to the graph."""

    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


def instrument(
    source: str | os.PathLike | bytes | onnx.ModelProto,
    layers: str | Sequence[str] = "auto",
    reduction: str = "mean",
    reduce_in_graph: bool = True,
    max_taps: int | None = None,
    fingerprint: str | None = None,
    include_penultimate: bool = True,
    selection: dict | None = None,
    join_taps: bool | None = None,
    preprocess: object = None,
) -> tuple[onnx.ModelProto, TapManifest]:
    """Expose intermediate activations of a classifier as extra graph outputs.

    Parameters
    ----------
    source : path, bytes or onnx.ModelProto
        The classifier. Output 0 must be logits ``(batch, classes)`` or a Softmax of them.
    layers : "auto" or sequence of str
        ``"auto"``: outputs of activation ops and the features feeding the final
        classifier op. Otherwise tensor names, or torch module paths for models exported by
        the dynamo exporter.
    reduction : {"mean", "max"}
        How a feature map becomes one value per channel.
    reduce_in_graph : bool
        Reduce maps with ReduceMean/ReduceMax nodes (small outputs, extra ops) instead of
        exposing full maps for the monitor to reduce (no extra ops, larger copies).
    max_taps : int or None
        For ``"auto"``: keep only the last ``max_taps`` activation taps.
    fingerprint : str or None
        sha256 to record as the original model's; default: hash of ``source``.
    include_penultimate : bool
        With explicit ``layers``, also tap the features that feed the classifier (needed by
        Mahalanobis, kNN and box detectors) when they are not listed.
    selection : dict or None
        How the layers were chosen under a budget (:mod:`nnwatch.eval.tap_budget`), kept
        in the manifest.
    join_taps : bool or None
        Join every tap into one float32 ``(batch, N)`` output (``nnwatch/taps``; quantized
        taps are dequantized in the graph, on a side branch): one output, so one copy per call,
        on a GPU one device-to-host transfer. None: join whenever maps are reduced in the
        graph (full maps are too large to join).
    preprocess : str, dict, Preprocess or None
        How recorded frames (images, video, robot recordings) become this model's input: a
        preset name, a JSON file or fields (:mod:`nnwatch.recordings.preprocess`). Recorded in
        the model's metadata; every later command reads recordings with it and refuses another.

    Returns
    -------
    tuple
        ``(instrumented onnx.ModelProto, TapManifest)``.

    Raises
    ------
    ModelError
        Unloadable model, unsupported structure, or already instrumented.
    InputError
        Unknown layer names (the message lists the available ones) or bad options.
    """
    if reduction not in ("mean", "max"):
        raise InputError(f"reduction must be 'mean' or 'max', got {reduction!r}")
    if join_taps and not reduce_in_graph:
        raise InputError("join_taps needs maps reduced in the graph (reduce_in_graph=True): full maps are too large "
                         "to join into one output")
    join = reduce_in_graph if join_taps is None else bool(join_taps)
    declared = None if preprocess is None else load_preprocess(preprocess)  # refused before any work
    model, digest = load_onnx(source)
    if any(p.key == MANIFEST_KEY for p in model.metadata_props):
        raise ModelError("this model is already instrumented by nnwatch; instrument the original model instead")
    try:
        macs, uncounted = count_macs(model)
    except ValueError:  # e.g. a model over protobuf's 2 GiB: no count, costs are then not weighed
        macs, uncounted = 0, 1
    g = _index(model)
    tensors, penultimate = _choose_tensors(g, layers, max_taps, include_penultimate)
    untyped = [t for t in tensors + [g.logits] if t in g.prod and (not g.types.get(t, (0, ()))[0] or not g.types[t][1])]
    if untyped:
        _types_from_onnxruntime(model, untyped, g.types)
    added = _Additions()
    taps = _tap_outputs(g, tensors, reduction, reduce_in_graph, added, join)
    logits_output = _expose_logits(g, added)
    original_outputs = tuple(o.name for o in model.graph.output)
    model.graph.node.extend(added.nodes)
    model.graph.initializer.extend(added.inits)
    model.graph.output.extend(added.outputs)
    penult_layer = next((t.layer for t in taps if t.source == penultimate), None)
    manifest = TapManifest(
        fingerprint=fingerprint or digest,
        input_name=g.data_input.name,
        input_shape=tuple(d if isinstance(d, int) and d > 0 else None for d in g.in_dims[1:]),
        batch=g.batch,
        logits=logits_output,
        taps=tuple(taps),
        original_outputs=original_outputs,
        penultimate=penult_layer,
        selection=selection,
        joined=JOINED_OUTPUT if join else None,
        macs=None if uncounted else macs,
    )
    manifest.validate()
    _record(g, manifest, penultimate)
    if declared is not None:
        entry = model.metadata_props.add()
        entry.key = PREPROCESS_KEY
        entry.value = json.dumps(declared.to_json(), sort_keys=True)
    finish_model(model)
    return model, manifest


def _index(model: onnx.ModelProto) -> _Indexed:
    """Pass 1: sort the graph, check its one data input, infer types, find the logits and module names."""
    graph = model.graph
    _topologically_sorted(graph)
    opset = _default_opset(model)
    initializers = {i.name for i in graph.initializer}
    data_inputs = [i for i in graph.input if i.name not in initializers]
    if len(data_inputs) != 1:
        raise ModelError(
            f"nnwatch monitors models with one data input; this one has {len(data_inputs)}: "
            f"{[i.name for i in data_inputs]}"
        )
    types = _tensor_types(model)
    prod = producers(graph)
    _, in_dims = types.get(data_inputs[0].name, (0, ()))
    if len(in_dims) < 1:
        raise ModelError(f"input {data_inputs[0].name!r} has no known rank")
    batch = in_dims[0] if isinstance(in_dims[0], int) and in_dims[0] > 0 else None
    aliases = _layer_aliases(model)
    module_of: dict[str, str] = {}
    for module, tensor in aliases.items():  # the innermost module names a tensor best
        if tensor not in module_of or module.count(".") > module_of[tensor].count("."):
            module_of[tensor] = module
    return _Indexed(model=model, opset=opset, data_input=data_inputs[0], in_dims=in_dims, batch=batch,
                    initializers=initializers, inits={i.name: i for i in graph.initializer}, prod=prod, types=types,
                    logits=logits_tensor(graph, prod), aliases=aliases, module_of=module_of)


def _choose_tensors(g: _Indexed, layers: str | Sequence[str], max_taps: int | None,
                    include_penultimate: bool) -> tuple[list[str], str | None]:
    """Pass 2: the tensors to tap (by rule or by name) and the classifier's input features."""
    graph = g.model.graph
    if isinstance(layers, str) and layers != "auto":
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    if layers == "auto":
        tensors = auto_tensors(graph, g.initializers, max_taps,
                               quantized_layer_tensors(graph, g.prod, g.inits, g.logits))
        tensors = _prefer_integer(tensors, graph, g.prod, g.inits)
    else:
        if not layers:
            raise InputError("layers is empty; pass 'auto' or a list of tensor names")
        known = set(g.prod) | {g.data_input.name}
        tensors = []
        for name in layers:
            if name in known:
                tensors.append(name)
            elif name in g.aliases:
                tensors.append(g.aliases[name])
            else:
                candidates = [n.output[0] for n in graph.node if n.op_type in ACTIVATION_OPS] + sorted(g.aliases)
                raise unknown_name("layer/tensor", name, candidates or known)
    if len(set(tensors)) != len(tensors):
        raise InputError(f"a layer is listed twice: {tensors}")
    penultimate = penultimate_tensor(g.logits, g.prod, g.initializers)
    if penultimate is not None:  # in a QDQ graph: the integers the classifier reads
        penultimate = dequantized_source(penultimate, g.prod, g.inits) or penultimate
    tensors = list(dict.fromkeys(dequantized_source(t, g.prod, g.inits) or t for t in tensors))
    if layers != "auto" and include_penultimate and penultimate is not None and penultimate not in tensors:
        tensors.append(penultimate)
    if not tensors:
        raise ModelError("no layer to monitor was found (no activation ops, no classifier input); pass layers=")
    return tensors, penultimate


def _tap_outputs(g: _Indexed, tensors: list[str], reduction: str, reduce_in_graph: bool,
                 added: _Additions, join: bool) -> list[Tap]:
    """Pass 3: one graph output per tapped tensor (reduced, cast or dequantized where needed), or all joined."""
    graph = g.model.graph
    used = set(g.prod) | {i.name for i in graph.input} | g.initializers | {o.name for o in graph.output}
    existing = {o.name for o in graph.output}
    taps: list[Tap] = []
    for tensor in tensors:
        elem, dims = g.types.get(tensor, (0, ()))
        qparams = quant_params(tensor, g.prod, g.inits) if elem in INTEGER_TYPES else None
        _check_tappable(tensor, elem, dims, qparams)
        per_sample = dims[1:]
        source = tensor
        cast = elem != TensorProto.FLOAT and qparams is None
        if cast:
            source = f"nnwatch/float/{tensor}"
            added.nodes.append(helper.make_node("Cast", [tensor], [source], to=TensorProto.FLOAT,
                                                name=f"{source}/node"))
        # Quantized maps reduced in the graph are dequantized there first (a side branch: the
        # int8 kernels stay fused); vectors and full maps leave as integers.
        out_type = TensorProto.FLOAT
        quant = {}
        if qparams is not None and not join and (len(dims) == 2 or not reduce_in_graph):
            out_type = elem  # the inferred type (a QuantizeLinear may declare it without a zero point)
            quant = {"dtype": INTEGER_TYPES[elem], "scale": qparams.scale, "zero_point": qparams.zero_point}
        elif qparams is not None:
            source = f"nnwatch/dequant/{tensor}"
            added.nodes.append(helper.make_node(
                "DequantizeLinear",
                [tensor, qparams.scale_name] + ([qparams.zero_point_name] if qparams.zero_point_name else []),
                [source], name=f"{source}/node"))
        layer = g.module_of.get(tensor, tensor)
        if qparams is not None and g.prod[tensor].op_type == "QuantizeLinear":  # QDQ: name it by the float layer
            layer = g.module_of.get(g.prod[tensor].input[0], g.prod[tensor].input[0])
        if len(dims) == 2 or not reduce_in_graph:
            out_name = source if qparams is not None and join else tap_output_name(tensor, "none", cast)
            tap = Tap(output=out_name, layer=layer, source=tensor, shape=tuple(per_sample),
                      reduction="none" if len(dims) == 2 else reduction, in_graph=len(dims) == 2, **quant)
            if out_name in existing:
                taps.append(tap)
                continue
        else:
            out_name = tap_output_name(tensor, reduction, False)
            op = "ReduceMean" if reduction == "mean" else "ReduceMax"
            _reduce_node(op, source, out_name, len(dims), g.opset, added.nodes, added.inits)
            tap = Tap(output=out_name, layer=layer, source=tensor, shape=(per_sample[0],), reduction=reduction)
        if out_name in used and out_name != tensor:
            raise ModelError(f"cannot add output {out_name!r}: the graph already has a tensor of that name")
        if not join:
            shape = [g.batch if g.batch else "batch"] + list(tap.shape)
            added.outputs.append(helper.make_tensor_value_info(out_name, out_type, shape))
        existing.add(out_name)
        taps.append(tap)
    if join:
        if JOINED_OUTPUT in used:
            raise ModelError(f"cannot add output {JOINED_OUTPUT!r}: the graph already has a tensor of that name")
        added.nodes.append(helper.make_node("Concat", [t.output for t in taps], [JOINED_OUTPUT], axis=1,
                                            name=f"{JOINED_OUTPUT}/node"))
        added.outputs.append(helper.make_tensor_value_info(
            JOINED_OUTPUT, TensorProto.FLOAT, [g.batch if g.batch else "batch", sum(t.neurons for t in taps)]))
    return taps


def _check_tappable(tensor: str, elem: int, dims: tuple, qparams: object) -> None:
    if elem not in _FLOAT_TYPES and qparams is None:
        raise ModelError(
            f"tensor {tensor!r} has element type {TensorProto.DataType.Name(elem) if elem else 'unknown'}; "
            "only float tensors and quantized activations (uint8/int8 with a constant per-tensor scale and "
            "zero point) can be monitored (shape inference could not type it if unknown)"
        )
    if len(dims) < 2:
        raise ModelError(f"tensor {tensor!r} has shape {dims}; a monitored tensor needs (batch, features, ...)")
    if not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise ModelError(
            f"tensor {tensor!r} has per-sample shape {dims[1:]} with unknown or dynamic sizes; "
            "nnwatch needs static channel/feature sizes"
        )


def _expose_logits(g: _Indexed, added: _Additions) -> str:
    """Pass 4: the logits as a float32 graph output (cast from FP16 where needed)."""
    ltype, ldims = g.types.get(g.logits, (0, ()))
    if len(ldims) != 2 or not isinstance(ldims[1], int):
        raise ModelError(f"output {g.logits!r} has shape {ldims}; nnwatch monitors classifiers with (batch, classes) "
                         "logits")
    check_logit_columns(int(ldims[1]), f"output {g.logits!r}")
    logits_output = g.logits
    if ltype in _FLOAT_TYPES and ltype != TensorProto.FLOAT:  # e.g. an FP16 model: read float32 logits
        logits_output = tap_output_name(g.logits, "none", True)
        added.nodes.append(helper.make_node("Cast", [g.logits], [logits_output], to=TensorProto.FLOAT,
                                            name=f"{logits_output}/node"))
        ltype = TensorProto.FLOAT
    if logits_output not in {o.name for o in g.model.graph.output} | {o.name for o in added.outputs}:
        added.outputs.append(helper.make_tensor_value_info(logits_output, ltype,
                                                           [g.batch if g.batch else "batch", ldims[1]]))
    return logits_output


def _record(g: _Indexed, manifest: TapManifest, penultimate: str | None) -> None:
    """Pass 5: the manifest, and the classifier head as data when the tapped features feed it."""
    entry = g.model.metadata_props.add()
    entry.key = MANIFEST_KEY
    entry.value = manifest.to_json()
    head = classifier_head(g.model.graph, g.logits, g.prod)
    if head is not None and (dequantized_source(head[2], g.prod, g.inits) or head[2]) == penultimate:
        entry = g.model.metadata_props.add()
        entry.key = HEAD_KEY
        entry.value = encode_head(head[0], head[1])


def finish_model(model: onnx.ModelProto) -> None:
    """Pass 6: an IR version onnxruntime reads, and the ONNX checker.

    Parameters
    ----------
    model : onnx.ModelProto
        The edited model (changed in place).

    Raises
    ------
    ModelError
        The model fails the ONNX checker.
    """
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"instrumented model fails the ONNX checker: {exc}") from None


def _prefer_integer(tensors: list[str], graph: onnx.GraphProto, prod: dict, inits: dict) -> list[str]:
    """In a QDQ graph, tap the QuantizeLinear output of a float activation instead of the float.

    Exposing the float tensor would keep onnxruntime from fusing the quantized kernels.
    """
    wanted = set(tensors)
    quantized_by: dict[str, str] = {}
    for node in graph.node:
        if (node.op_type == "QuantizeLinear" and node.input[0] in wanted
                and quant_params(node.output[0], prod, inits, strict=False) is not None):
            quantized_by.setdefault(node.input[0], node.output[0])
    return list(dict.fromkeys(quantized_by.get(t, t) for t in tensors))


def instrument_file(
    src: str | os.PathLike, dst: str | os.PathLike, **options: object
) -> TapManifest:
    """Instrument the model at ``src`` and write it atomically to ``dst``.

    Parameters
    ----------
    src : path
        Original ONNX file.
    dst : path
        Destination of the instrumented model.
    **options
        Passed to :func:`instrument`.

    Returns
    -------
    TapManifest
        The manifest written into ``dst``.
    """
    model, manifest = instrument(src, **options)  # type: ignore[arg-type]
    save_onnx(model, dst)
    return manifest


def save_onnx(model: onnx.ModelProto, dst: str | os.PathLike) -> None:
    """Serialize ``model`` atomically.

    Parameters
    ----------
    model : onnx.ModelProto
        Model to save (must be under protobuf's 2 GB limit).
    dst : path
        Destination file.

    Raises
    ------
    ModelError
        The model is over 2 GB.
    """
    if model.ByteSize() >= 2**31:
        raise ModelError("models over 2 GB (external data) are not supported yet")
    atomic_write_bytes(dst, model.SerializeToString())
