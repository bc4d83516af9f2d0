"""Instrument an ONNX object detector: its feature maps become extra outputs, its layout is recorded.

The original nodes and outputs are kept; nnwatch appends one Identity per tapped map (output
``nnwatch/map/<tensor>``) and writes a manifest (metadata key ``nnwatch.objects``): the layout,
which outputs it reads, the tapped maps with their channels, and the input. Maps are exposed
whole: each object's box is averaged on them after the call (:mod:`.object_features`).

``layers="auto"`` taps the last ``max_taps`` activation outputs with a spatial extent that a
convolution reads (ReLU and the other activation ops, and SiLU written as ``x * Sigmoid(x)``, as
in YOLOv8): the deepest feature maps, not the head's own activations. On a multi-scale head
(YOLOv8, YOLOX: one branch per stride) those are both in the coarsest branch, so small objects
are averaged over one or two cells. ``layers="per-scale"`` instead taps the last such map at each
of the last ``max_taps`` map sizes (default 3): the last layer of each scale's branch, since a
head computes its scales one after the other; every object is then averaged at every scale.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import onnx
from onnx import TensorProto, helper, shape_inference

from .._validate import unknown_name
from ..errors import InputError, ModelError
from ..export.instrument import finish_model, load_onnx, save_onnx
from ..export.select import ACTIVATION_OPS
from .layouts import OutputLayout, fitting_presets, load_layout
from .detector_manifest import OBJECTS_KEY, DetectorManifest

MAP_PREFIX = "nnwatch/map/"


def _dims(vi: onnx.ValueInfoProto) -> tuple[Any, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in vi.type.tensor_type.shape.dim)


def _map_candidates(model: onnx.ModelProto, types: dict[str, onnx.ValueInfoProto]) -> list[str]:
    """Activation outputs of rank 4 that a convolution reads, in graph order (SiLU as x * Sigmoid(x) included).

    Feature maps feed further convolutions; the head's own activations (class sigmoids) do not.
    """
    sigmoid_of = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    conv_inputs = {i for n in model.graph.node if n.op_type in ("Conv", "ConvInteger", "QLinearConv")
                   for i in n.input[:1]}
    out = []
    for node in model.graph.node:
        silu = node.op_type == "Mul" and any(sigmoid_of.get(a) == b for a, b in
                                             ((node.input[0], node.input[1]), (node.input[1], node.input[0])))
        if (node.op_type in ACTIVATION_OPS or silu) and node.output[0] in conv_inputs:
            t = node.output[0]
            vi = types.get(t)
            if vi is not None and len(_dims(vi)) == 4 and vi.type.tensor_type.elem_type in (
                    TensorProto.FLOAT, TensorProto.FLOAT16):
                out.append(t)
    return out


def per_scale(candidates: Sequence[str], sizes: dict[str, tuple[Any, Any]], n_scales: int) -> list[str]:
    """The last candidate map of each map size, for the ``n_scales`` sizes whose last map comes last.

    Parameters
    ----------
    candidates : sequence of str
        Feature maps in graph order.
    sizes : dict
        Map name to its ``(H, W)``.
    n_scales : int
        How many sizes to keep.

    Returns
    -------
    list of str
        One map per size, in graph order.
    """
    last: dict[tuple[Any, Any], str] = {}
    for t in candidates:
        last.pop(sizes[t], None)  # re-inserted, so the dict keeps sizes in order of their last map
        last[sizes[t]] = t
    return list(last.values())[-n_scales:]


def instrument_detector(source: str | os.PathLike | bytes | onnx.ModelProto, layout: str | dict | OutputLayout,
                        layers: str | Sequence[str] = "auto", max_taps: int | None = None) -> tuple[onnx.ModelProto,
                                                                                                   DetectorManifest]:
    """Expose a detector's feature maps and record how its outputs read.

    Parameters
    ----------
    source : path, bytes or onnx.ModelProto
        The detector: one image input ``(B, C, H, W)`` with a fixed ``H, W``.
    layout : str, dict or OutputLayout
        Preset name, spec file or fields (:func:`nnwatch.objects.layouts.load_layout`).
    layers : "auto", "per-scale" or sequence of str
        Tensors to tap (rank-4 feature maps), ``"auto"`` (the last activation maps a convolution
        reads) or ``"per-scale"`` (the last such map of each map size).
    max_taps : int, optional
        For ``"auto"``: how many of the last activation maps (default 2); for ``"per-scale"``: how
        many map sizes (default 3).

    Returns
    -------
    tuple
        ``(instrumented model, DetectorManifest)``.

    Raises
    ------
    InputError
        A layout that does not fit the outputs (the message shows the shapes found and the
        presets that fit), unknown layers, layers that are not maps.
    ModelError
        Unloadable or already instrumented model, or an input without a fixed size.
    """
    lay = load_layout(layout)
    model, digest = load_onnx(source)
    if any(p.key == OBJECTS_KEY for p in model.metadata_props):
        raise ModelError("this detector is already instrumented by nnwatch; instrument the original model instead")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
        raise ModelError(f"a detector needs one image input (B, C, H, W); this model has "
                         f"{[(i.name, _dims(i)) for i in inputs]}")
    h, w = _dims(inputs[0])[2:]
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise ModelError(f"the detector's input {inputs[0].name} has no fixed height and width ({h}, {w}); export it "
                         "at the size it runs at")
    inferred = shape_inference.infer_shapes(model)
    types = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    out_names = [o.name for o in model.graph.output]
    reads = list(lay.outputs) or out_names[: lay.n_outputs]
    missing = [o for o in reads if o not in out_names]
    if missing:
        raise unknown_name("detector output", missing[0], out_names)
    shapes = [_dims(types[o]) for o in out_names]
    problem = lay.shape_problem([_dims(types[o]) for o in reads])
    if problem is not None:
        found = ", ".join(f"{o} {s}" for o, s in zip(out_names, shapes))
        fit = fitting_presets(shapes)
        raise InputError(f"layout {lay.name!r} does not fit this detector: it {problem}. Outputs found: {found}. "
                         f"Presets that fit: {', '.join(fit) if fit else 'none; write a layout spec (JSON) naming outputs'}")
    candidates = _map_candidates(model, types)
    if isinstance(layers, str) and layers not in ("auto", "per-scale"):
        raise InputError(f"layers must be 'auto', 'per-scale' or a list of tensor names, got {layers!r}")
    if layers in ("auto", "per-scale"):
        if max_taps is None:
            max_taps = 2 if layers == "auto" else 3
        if isinstance(max_taps, bool) or not isinstance(max_taps, int) or max_taps < 1:
            raise InputError(f"max_taps must be an integer >= 1, got {max_taps!r}")
        if layers == "auto":
            chosen = candidates[-max_taps:]
        else:
            chosen = per_scale(candidates, {t: _dims(types[t])[2:] for t in candidates}, max_taps)
        if not chosen:
            raise ModelError("found no activation feature maps (B, C, H, W) to tap; name them with layers=")
    else:
        chosen = list(dict.fromkeys(layers))
        for t in chosen:
            if t not in types:
                error = unknown_name("tensor", t, candidates)
                raise InputError(f"{error}; or layers 'auto' (the default) or 'per-scale'") from None
            if len(_dims(types[t])) != 4:
                raise InputError(f"tensor {t} has shape {_dims(types[t])}; per-object features need (B, C, H, W) maps")
    added, channels = [], []
    for t in chosen:
        name = MAP_PREFIX + t
        model.graph.node.append(helper.make_node("Identity", [t], [name], name=f"nnwatch_map_{len(added)}"))
        dims = _dims(types[t])
        elem = types[t].type.tensor_type.elem_type
        model.graph.output.append(helper.make_tensor_value_info(name, elem, list(dims)))
        added.append(name)
        channels.append(int(dims[1]) if isinstance(dims[1], int) else 0)
    manifest = DetectorManifest(layout=lay, outputs=tuple(reads), maps=tuple(added), tensors=tuple(chosen),
                                channels=tuple(channels), input_name=inputs[0].name, input_size=(h, w),
                                fingerprint=digest)
    entry = model.metadata_props.add()
    entry.key, entry.value = OBJECTS_KEY, manifest.to_json()
    finish_model(model)
    return model, manifest


def instrument_detector_file(src: str | os.PathLike, dst: str | os.PathLike, layout: str | dict | OutputLayout,
                             **options: Any) -> DetectorManifest:
    """Instrument the detector at ``src`` and write it atomically to ``dst``.

    Parameters
    ----------
    src, dst : path
        Original and instrumented files (``dst`` may not be ``src``).
    layout : str, dict or OutputLayout
        The output layout.
    **options
        Passed to :func:`instrument_detector`.

    Returns
    -------
    DetectorManifest
        The manifest written.
    """
    if os.path.abspath(src) == os.path.abspath(dst):
        raise InputError(f"--out {dst} is the input model; write the instrumented detector to another file")
    model, manifest = instrument_detector(src, layout, **options)
    save_onnx(model, dst)
    return manifest
