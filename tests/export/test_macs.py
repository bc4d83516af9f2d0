"""Multiply-adds counted from the graph against a count from the PyTorch modules that made it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnwatch.export.from_torch import export_module
from nnwatch.export.macs import count_macs


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, stride=2, groups=4)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.fc1 = torch.nn.Linear(4 * 12 * 12, 32)
        self.fc2 = torch.nn.Linear(32, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = torch.relu(self.conv(x))
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.up(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def module_macs(net: torch.nn.Module, x: torch.Tensor) -> int:
    """The reference: per layer, the multiply-adds its definition performs on one sample."""
    total = 0

    def hook(module, inputs, output):  # type: ignore[no-untyped-def]
        nonlocal total
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += inputs[0].numel() * (module.out_channels // module.groups) * int(np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Conv2d):
            total += output.numel() * (module.in_channels // module.groups) * int(np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if m is not net]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return total


def test_the_count_from_the_graph_is_the_modules_count(tmp_path):
    import onnx

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.zeros(1, 3, 13, 13)
    manifest = export_module(net, x, tmp_path / "m.onnx", plain_out=tmp_path / "plain.onnx")
    want = module_macs(net, x)
    assert count_macs(onnx.load(tmp_path / "plain.onnx")) == (want, 0)
    assert manifest.macs == want  # recorded when instrumented: what fusion costs are weighed against


def test_a_product_without_shapes_is_reported_not_guessed():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)  # no shape at all
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.zeros(12, np.float32))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    assert count_macs(helper.make_model(graph)) == (0, 1)


@pytest.mark.parametrize("batch", [1, 7])
def test_the_count_is_per_sample_whatever_the_graphs_batch(tmp_path, batch):
    torch.manual_seed(0)
    net = Net().eval()
    manifest = export_module(net, torch.zeros(batch, 3, 13, 13), tmp_path / "m.onnx")
    assert manifest.macs == module_macs(net, torch.zeros(1, 3, 13, 13))


def test_a_fixed_batch_graph_is_counted_per_sample():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])  # a batch of 4, fixed
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.zeros(6, np.float32))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    assert count_macs(helper.make_model(graph)) == (3 * 2, 0)
