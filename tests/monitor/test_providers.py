"""The provider probe's embedded model is the one-node Relu model it says it is."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from nnwatch.monitor.providers import PROBE_MODEL, working_providers


def test_probe_model_is_a_relu_on_one_float():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    assert model.SerializeToString() == PROBE_MODEL
    sess = ort.InferenceSession(PROBE_MODEL, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.array([-2.0], np.float32)})[0].tolist() == [0.0]


def test_the_cpu_always_works():
    assert working_providers()[-1] == "CPUExecutionProvider"
