"""Which tensors "auto" taps: activation outputs, and the features that feed the classifier."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from onnx import GraphProto, NodeProto, helper, numpy_helper

# Ops whose output is an activation pattern worth monitoring.
ACTIVATION_OPS = frozenset(
    {"Relu", "Clip", "Sigmoid", "Gelu", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Selu",
     "Tanh", "Softplus", "Mish", "PRelu", "ThresholdedRelu", "Celu", "Swish"}
)
# Ops a classifier head may pass through between its last matmul and the logits.
# In quantized graphs the head also passes (De)QuantizeLinear, and may be a QGemm/QLinearMatMul.
_HEAD_PASSTHROUGH = frozenset({"Add", "Identity", "Reshape", "Squeeze", "Flatten", "Cast", "DequantizeLinear", "QLinearAdd",
                               "QuantizeLinear"})
_CLASSIFIER_OPS = frozenset({"Gemm", "MatMul", "QGemm", "QLinearMatMul"})


def producers(graph: GraphProto) -> dict[str, NodeProto]:
    """Map each tensor name to the node that produces it.

    Parameters
    ----------
    graph : onnx.GraphProto
        The graph to index.

    Returns
    -------
    dict
        tensor name -> producing node.
    """
    return {out: node for node in graph.node for out in node.output if out}


def logits_tensor(graph: GraphProto, prod: dict[str, NodeProto]) -> str:
    """The tensor holding pre-softmax logits: output 0, or the input of a final Softmax.

    Parameters
    ----------
    graph : onnx.GraphProto
        Model graph.
    prod : dict
        Output of :func:`producers`.

    Returns
    -------
    str
        Tensor name.
    """
    name = graph.output[0].name
    node = prod.get(name)
    if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
        return node.input[0]
    return name


def penultimate_tensor(logits: str, prod: dict[str, NodeProto], initializers: set[str]) -> str | None:
    """The feature vector entering the final classifier op, or None when there is none.

    Parameters
    ----------
    logits : str
        Logits tensor name.
    prod : dict
        Output of :func:`producers`.
    initializers : set of str
        Names of weight tensors (never features).

    Returns
    -------
    str or None
        Tensor name.
    """
    name = logits
    for _ in range(6):
        node = prod.get(name)
        if node is None:
            return None
        data_inputs = [i for i in node.input if i and i not in initializers]
        if node.op_type in _CLASSIFIER_OPS:
            return data_inputs[0] if data_inputs else None
        if node.op_type not in _HEAD_PASSTHROUGH or not data_inputs:
            return None
        name = data_inputs[0]
    return None


def auto_tensors(graph: GraphProto, initializers: set[str], max_taps: int | None,
                 also: Sequence[str] = ()) -> list[str]:
    """Tensors that ``layers="auto"`` taps, in graph order.

    Parameters
    ----------
    graph : onnx.GraphProto
        Model graph.
    initializers : set of str
        Weight tensor names.
    max_taps : int or None
        Keep only the last ``max_taps`` activation taps (closest to the output); the
        penultimate features are always kept.
    also : sequence of str
        More activation tensors to consider (the quantized layer outputs of an int8 graph).

    Returns
    -------
    list of str
        Tensor names.
    """
    prod = producers(graph)
    logits = logits_tensor(graph, prod)
    penult = penultimate_tensor(logits, prod, initializers)
    extra = set(also)
    chosen = [n.output[0] for n in graph.node if n.output and n.output[0] != logits
              and (n.op_type in ACTIVATION_OPS or n.output[0] in extra)]
    if max_taps is not None:
        chosen = chosen[-max_taps:] if max_taps > 0 else []
    if penult is not None and penult not in chosen:
        chosen.append(penult)
    return chosen


def classifier_head(graph: GraphProto, logits: str, prod: dict[str, NodeProto]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The final linear layer as data: ``logits = W @ features + b``, or None when it is not one.

    Recognized: ``Gemm`` (transA = 0, constant B and C, any alpha/beta/transB), or
    ``MatMul(features, W)`` with an optional constant ``Add`` bias, followed only by
    ``Identity``/``Cast`` (and, in QDQ graphs, ``QuantizeLinear``/``DequantizeLinear``) before
    the logits; in QDQ graphs constants may be ``DequantizeLinear`` of initializers. A
    QOperator head (``QGemm``, ``QLinearMatMul``) is not read: those models get no head.

    Parameters
    ----------
    graph : onnx.GraphProto
        Model graph.
    logits : str
        Logits tensor name.
    prod : dict
        Output of :func:`producers`.

    Returns
    -------
    tuple or None
        ``(W float32 (K, D), b float32 (K,), feature tensor name)``.
    """
    inits = {i.name: i for i in graph.initializer}

    def const(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name]).astype(np.float64)
        node = prod.get(name)  # a QDQ graph's weights: DequantizeLinear of constant integers
        if node is None or node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            return None
        q, scale = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input[:2])
        zp = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if len(node.input) > 2 and node.input[2] \
            else np.zeros_like(scale)
        if scale.size > 1:  # per-channel along `axis`
            axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return (q - zp) * scale

    node = prod.get(logits)
    while node is not None and node.op_type in ("Identity", "Cast", "DequantizeLinear", "QuantizeLinear"):
        node = prod.get(node.input[0])
    if node is None:
        return None
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = const(node.input[1])
        if attrs.get("transA", 0) or w is None or w.ndim != 2:
            return None
        w = (w if attrs.get("transB", 0) else w.T) * float(attrs.get("alpha", 1.0))
        b = np.zeros(w.shape[0])
        if len(node.input) > 2 and node.input[2]:
            c = const(node.input[2])
            if c is None or c.size not in (1, w.shape[0]):
                return None
            b = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * float(attrs.get("beta", 1.0))
        return w.astype(np.float32), np.asarray(b, np.float32), node.input[0]
    bias = None
    if node.op_type == "Add":
        left, right = node.input
        lc, rc = const(left), const(right)
        bias_value, other = (lc, right) if lc is not None else (rc, left) if rc is not None else (None, None)
        if bias_value is None:
            return None
        bias = bias_value.reshape(-1)
        node = prod.get(other)
        while node is not None and node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            node = prod.get(node.input[0])
    if node is None or node.op_type != "MatMul":
        return None
    w = const(node.input[1])
    if w is None or w.ndim != 2:
        return None
    k = w.shape[1]
    b = np.zeros(k) if bias is None else (np.full(k, bias[0]) if bias.size == 1 else bias)
    if b.shape != (k,):
        return None
    return w.T.astype(np.float32), b.astype(np.float32), node.input[0]
