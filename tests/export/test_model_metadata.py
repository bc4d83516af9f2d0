"""Model metadata read without parsing the graph, against onnx.load."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnwatch.export.model_metadata import NotAModelError, read_model_metadata


def _model(metadata: dict[str, str], weights: int = 1000) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(weights, dtype=np.float32).reshape(-1, 1), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weights])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w])
    model = helper.make_model(graph, doc_string="a doc", producer_name="test", model_version=7)
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


@pytest.mark.parametrize("metadata", [{}, {"nnwatch.objects": '{"layout": "yolov8"}'},
                                      {"a": "", "": "b", "ünï": "çødé ✓", "big": "x" * 100_000}])
def test_equals_what_onnx_load_reads(tmp_path, metadata):
    path = tmp_path / "m.onnx"
    onnx.save(_model(metadata, weights=50_000), path)
    expected = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert read_model_metadata(path) == expected == metadata


def test_metadata_after_the_graph_and_a_repeated_key(tmp_path):
    """Field order is free in protobuf: entries written before and after the graph are all read,
    and a repeated key ends as in a dict built from onnx.load's list (the last wins)."""
    model = _model({"k": "first"})
    entry = model.metadata_props.add()
    entry.key, entry.value = "k", "second"
    head = onnx.ModelProto()
    head.metadata_props.add(key="early", value="1")
    data = head.SerializeToString() + model.SerializeToString()  # concatenated messages merge
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    expected = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert read_model_metadata(path) == expected == {"early": "1", "k": "second"}


@pytest.mark.parametrize("data", [b"not an onnx model at all", b"\x3a\xff\xff\xff\x7f", b"\x08", b"\x0f"])
def test_what_is_not_a_model_is_refused(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(NotAModelError):
        read_model_metadata(path)


def test_a_truncated_model_is_refused(tmp_path):
    data = _model({"nnwatch.objects": "{}"}).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotAModelError):
        read_model_metadata(path)
