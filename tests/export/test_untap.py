"""The plain model cut from an instrumented one is the model before instrumenting: same nodes,
same initializers, same outputs and values; nothing a kept output needs is lost (subgraphs too)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnwatch.export.instrument import instrument
from nnwatch.export.untap import keep_outputs
from nnwatch.manifest import MANIFEST_KEY
from tests.conftest import conv_onnx, mlp_onnx


def outputs(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("build", ["mlp", "conv"])
@pytest.mark.parametrize("reduce_in_graph", [False, True])
def test_instrumented_then_cut_is_the_original(build, reduce_in_graph, rng):
    if build == "mlp":
        original = mlp_onnx(rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3))
        x = rng.normal(size=(4, 6)).astype(np.float32)
    else:
        original = conv_onnx(rng)
        x = rng.normal(size=(4, 1, 8, 8)).astype(np.float32)
    tapped, manifest = instrument(original, reduce_in_graph=reduce_in_graph)
    before = tapped.SerializeToString()
    plain = keep_outputs(tapped, manifest.original_outputs, drop_metadata=[MANIFEST_KEY])
    assert tapped.SerializeToString() == before  # the instrumented model is left as it was
    assert [n.SerializeToString() for n in plain.graph.node] == [n.SerializeToString() for n in original.graph.node]
    assert sorted(i.name for i in plain.graph.initializer) == sorted(i.name for i in original.graph.initializer)
    assert [o.name for o in plain.graph.output] == [o.name for o in original.graph.output]
    assert all(p.key != MANIFEST_KEY for p in plain.metadata_props)
    for got, want in zip(outputs(plain, x), outputs(original, x)):
        np.testing.assert_array_equal(got, want)


def test_values_read_inside_a_subgraph_are_kept():
    # y = If(flag, then: x * w, else: x): w and the node making `scaled_in` are read only inside
    # the branch, never as the If node's own inputs.
    then_graph = helper.make_graph([helper.make_node("Mul", ["scaled_in", "w"], ["t"])], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    else_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                                   [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])])
    nodes = [helper.make_node("Neg", ["x"], ["scaled_in"]),
             helper.make_node("Identity", ["x"], ["extra"]),
             helper.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("extra", TensorProto.FLOAT, [2])],
                              initializer=[numpy_helper.from_array(np.array(True), "flag"),
                                           numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    cut = keep_outputs(model, ["y"])
    assert [n.op_type for n in cut.graph.node] == ["Neg", "If"]
    assert sorted(i.name for i in cut.graph.initializer) == ["flag", "w"]
    np.testing.assert_array_equal(outputs(cut, np.array([1.0, 1.0], np.float32))[0], [-2.0, -3.0])


def test_unknown_outputs_are_named():
    model = mlp_onnx(np.ones((2, 2)), np.zeros(2), np.ones((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="not outputs of this model: \\['nope'\\]"):
        keep_outputs(model, ["logits", "nope"])
