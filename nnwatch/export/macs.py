"""Multiply-adds of one sample through a model, counted from its graph: a cost no stopwatch moves.

Counted: Conv, ConvTranspose, ConvInteger and QLinearConv (output elements x input channels
per group x kernel area; transposed: input elements x output channels per group x kernel
area), Gemm, MatMul, MatMulInteger and QLinearMatMul (output elements x the shared
dimension), per sample: a graph with a fixed batch is counted at that batch and divided by it. Everything else (activations, pooling, normalization, element-wise arithmetic) is
left out: next to the products it is small, and it is what the count is compared with. Shapes
come from ONNX shape inference with the batch axis set to 1; a product whose shapes cannot be
inferred is not counted, and the result says how many were missed.
"""

from __future__ import annotations

import math

import onnx
from onnx import shape_inference

CONV = ("Conv", "ConvInteger", "QLinearConv")
MATMUL = ("MatMul", "MatMulInteger", "QLinearMatMul")


def _shapes(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...] | None], int]:
    """Every tensor's shape at batch 1, or at the graph's own fixed batch, and that batch.

    A dimension that stays unknown makes the shape None.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {i.name for i in model.graph.initializer}
    batch = 1
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
        elif len(dims) and dims[0].dim_value > 1:  # a fixed batch: counted as it is, divided below
            batch = max(batch, int(dims[0].dim_value))
    try:
        model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001  (inference is best effort: what it cannot type is not counted)
        pass
    shapes: dict[str, tuple[int, ...] | None] = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        known = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        shapes[value.name] = None if any(d is None for d in known) or not value.type.tensor_type.HasField(
            "shape") else tuple(int(d) for d in known)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes, batch


def count_macs(model: onnx.ModelProto) -> tuple[int, int]:
    """Multiply-adds of one sample, and how many products could not be counted.

    Parameters
    ----------
    model : onnx.ModelProto
        The model (its main graph; subgraphs are not entered).

    Returns
    -------
    tuple
        ``(multiply-adds, products whose shapes were unknown)``.
    """
    shapes, batch = _shapes(model)
    total = missed = 0
    for node in model.graph.node:
        if node.op_type not in CONV + MATMUL + ("Gemm", "ConvTranspose"):
            continue
        quantized_linear = node.op_type.startswith("QLinear")
        a_name = node.input[0]
        b_name = node.input[3] if quantized_linear else node.input[1]  # QLinear*: x, x_scale, x_zp, w, ...
        out, a, b = shapes.get(node.output[0]), shapes.get(a_name), shapes.get(b_name)
        if out is None or a is None or b is None:
            missed += 1
            continue
        if node.op_type in CONV:
            group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
            total += math.prod(out) * (a[1] // max(group, 1)) * math.prod(b[2:])
        elif node.op_type == "ConvTranspose":  # weight (C_in, C_out / group, k...): each input feeds C_out / group
            total += math.prod(a) * b[1] * math.prod(b[2:])
        elif node.op_type == "Gemm":
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            total += math.prod(out) * (a[0] if trans_a else a[-1])
        else:  # MatMul family: the shared dimension is A's last
            total += math.prod(out) * a[-1]
    return int(total) // batch, int(missed)
