"""Quantized graphs: which integer tensors are layer outputs, and their scale and zero point.

onnxruntime's static quantizer writes two formats. QDQ keeps float ops between
``DequantizeLinear``/``QuantizeLinear`` pairs and drops a ReLU after a Conv/Gemm into the
quantization range (its zero point becomes the type's minimum); QOperator replaces ops by
``QLinearConv``, ``QGemm`` and friends, with the ReLU fused the same way. Either way the
activation ops that ``layers="auto"`` looks for are gone, and tapping a float tensor between
a DequantizeLinear and its consumer would stop onnxruntime from fusing the int8 kernels. So
nnwatch taps the *integer* tensor a layer writes and records its (constant) scale and zero
point: the graph stays as fast as it was, and the copy is a quarter of the float one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from onnx import GraphProto, NodeProto, TensorProto, numpy_helper

from ..errors import ModelError
from .select import ACTIVATION_OPS

# op -> (index of output scale input, index of output zero-point input)
OUTPUT_QPARAMS = {
    "QuantizeLinear": (1, 2), "QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QGemm": (7, 8),
    "QLinearAdd": (6, 7), "QLinearMul": (6, 7), "QLinearGlobalAveragePool": (3, 4),
    "QLinearAveragePool": (3, 4), "QLinearSigmoid": (3, 4), "QLinearLeakyRelu": (3, 4),
}
# Ops that move integers without changing them: the output shares the input's parameters.
INTEGER_PASSTHROUGH = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"})
# A quantized layer output is a ReLU output when its range starts at zero.
_RELU_FUSED_INTO = frozenset({"Conv", "Gemm", "MatMul", "Add", "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd"})
_QUANTIZED_ACTIVATIONS = frozenset({"QLinearSigmoid", "QLinearLeakyRelu"})
INTEGER_TYPES = {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}
MAX_PASSTHROUGH = 16  # integer pass-through ops followed back to the quantizing op
_TYPE_MIN = {TensorProto.UINT8: 0, TensorProto.INT8: -128}


class QuantParams(NamedTuple):
    """How a tensor's integers map to reals: ``real = (q - zero_point) * scale``."""

    scale: float
    zero_point: int
    elem_type: int  # TensorProto.UINT8 or INT8
    scale_name: str
    zero_point_name: str


def _scalar(inits: dict, name: str, tensor: str) -> np.ndarray:
    if name not in inits:
        raise ModelError(f"tensor {tensor!r}: its quantization parameter {name!r} is not a constant initializer; "
                         "nnwatch taps quantized tensors only with constant per-tensor scale and zero point")
    value = numpy_helper.to_array(inits[name])
    if value.size != 1:
        raise ModelError(f"tensor {tensor!r}: quantization parameter {name!r} has {value.size} values; "
                         "nnwatch taps activations quantized per tensor (one scale, one zero point)")
    return value.reshape(())


def quant_params(tensor: str, prod: dict[str, NodeProto], inits: dict, strict: bool = True) -> QuantParams | None:
    """Scale and zero point of an integer tensor, or None when it is not a quantized activation.

    Parameters
    ----------
    tensor : str
        Tensor name.
    prod : dict
        tensor -> producing node.
    inits : dict
        initializer name -> TensorProto.
    strict : bool
        Raise when the parameters cannot be used (a tensor the user named); otherwise
        (discovering layers) such a tensor is simply not a candidate.

    Returns
    -------
    QuantParams or None
        None when no quantizing op produces it (through integer pass-through ops).

    Raises
    ------
    ModelError
        With ``strict``: the scale or zero point is not a constant float32 / 8-bit scalar.
    """
    try:
        return _quant_params(tensor, prod, inits)
    except ModelError:
        if strict:
            raise
        return None


def _quant_params(tensor: str, prod: dict[str, NodeProto], inits: dict) -> QuantParams | None:
    name = tensor
    for _ in range(MAX_PASSTHROUGH):
        node = prod.get(name)
        if node is None:
            return None
        if node.op_type in INTEGER_PASSTHROUGH:
            name = node.input[0]
            continue
        where = OUTPUT_QPARAMS.get(node.op_type)
        if where is None or len(node.input) <= where[0] or not node.input[where[0]]:
            return None  # e.g. a QGemm without y_scale writes floats
        scale_value = _scalar(inits, node.input[where[0]], tensor)
        if scale_value.dtype != np.float32:
            raise ModelError(f"tensor {tensor!r}: its quantization scale is {scale_value.dtype}; nnwatch taps "
                             "quantized activations with float32 scales")
        scale = float(scale_value)
        zp_name = node.input[where[1]] if len(node.input) > where[1] else ""
        if zp_name:
            zp_arr = _scalar(inits, zp_name, tensor)
            elem = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}.get(zp_arr.dtype)
            zero_point = int(zp_arr)
        else:  # ONNX default: uint8 with zero point 0
            elem, zero_point = TensorProto.UINT8, 0
        if elem is None:
            return None  # 16-bit and 4-bit types: not tapped as integers
        if not (np.isfinite(scale) and scale > 0):
            raise ModelError(f"tensor {tensor!r}: quantization scale {scale} must be finite and positive")
        return QuantParams(scale, zero_point, elem, node.input[where[0]], zp_name)
    return None


def dequantized_source(tensor: str, prod: dict[str, NodeProto], inits: dict) -> str | None:
    """The integer tensor a ``DequantizeLinear`` output reads, when it can be tapped.

    Parameters
    ----------
    tensor : str
        A tensor name.
    prod : dict
        tensor -> producing node.
    inits : dict
        initializer name -> TensorProto.

    Returns
    -------
    str or None
        The integer input, or None (not a DequantizeLinear output, or parameters nnwatch
        cannot use).
    """
    node = prod.get(tensor)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    source = node.input[0]
    return source if quant_params(source, prod, inits, strict=False) is not None else None


def quantized_layer_tensors(graph: GraphProto, prod: dict[str, NodeProto], inits: dict, logits: str) -> list[str]:
    """Integer tensors that hold a quantized layer's activations, in graph order.

    A layer output is the integer output of a quantized op (or the QuantizeLinear of a float
    op's output, in QDQ graphs) that is either an activation op or a Conv/Gemm/MatMul/Add
    whose zero point is the type's minimum: a ReLU folded into the quantization range.

    Parameters
    ----------
    graph : onnx.GraphProto
        Model graph.
    prod : dict
        tensor -> producing node.
    inits : dict
        initializer name -> TensorProto.
    logits : str
        The logits tensor (never tapped).

    Returns
    -------
    list of str
        Tensor names.
    """
    logits_chain = {logits}
    node = prod.get(logits)
    while node is not None and node.op_type in ("DequantizeLinear", "QuantizeLinear", "Identity", "Cast"):
        logits_chain.add(node.input[0])
        node = prod.get(node.input[0])
    if node is not None:
        logits_chain.update(node.output)
    chosen = []
    for node in graph.node:
        if not node.output or node.output[0] in logits_chain:
            continue
        out = node.output[0]
        if node.op_type == "QuantizeLinear":
            src = prod.get(node.input[0])
            if src is None or src.output[0] in logits_chain:
                continue
            kind = src.op_type
        elif node.op_type in OUTPUT_QPARAMS:
            kind = node.op_type
        else:
            continue
        params = quant_params(out, prod, inits, strict=False)
        if params is None:
            continue
        if kind in ACTIVATION_OPS or kind in _QUANTIZED_ACTIVATIONS or (
                kind in _RELU_FUSED_INTO and params.zero_point == _TYPE_MIN[params.elem_type]):
            chosen.append(out)
    return chosen


