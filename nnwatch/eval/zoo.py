"""Models for the benchmarks: a small ResNet for Fashion-MNIST and two standard edge networks.

MobileNetV3-Small (Howard et al., ICCV 2019) and ResNet-18 (He et al., CVPR 2016) come from
torchvision when it is installed (optional extra ``vision``); otherwise from the faithful
re-implementations below (same layers, shapes and operator mix; random weights either way,
which is all latency measurements need). Each builder also returns the module paths of its
block outputs, the natural taps for monitoring.
"""

from __future__ import annotations

from typing import Any

from .attacks import torch_module


def _nn() -> Any:
    return torch_module().nn


def fmnist_resnet(n_classes: int = 10) -> Any:
    """A small ResNet-style CNN for 28x28 grey images (three stages, 16/32/64 channels).

    Parameters
    ----------
    n_classes : int
        Classes.

    Returns
    -------
    torch.nn.Module
        The network.
    """
    nn = _nn()

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x: Any) -> Any:
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + self.skip(x))

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes),
    )


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _mobilenet_v3_small_local(n_classes: int) -> Any:
    nn = _nn()

    class SqueezeExcite(nn.Module):
        def __init__(self, ch: int) -> None:
            super().__init__()
            squeeze = _make_divisible(ch // 4)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(ch, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, ch, 1)
            self.relu = nn.ReLU()
            self.hsig = nn.Hardsigmoid()

        def forward(self, x: Any) -> Any:
            return x * self.hsig(self.fc2(self.relu(self.fc1(self.avgpool(x)))))

    def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: Any = None) -> Any:
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, stride: int) -> None:
            super().__init__()
            act = nn.Hardswish if hs else nn.ReLU
            layers = []
            if exp != cin:
                layers.append(conv_bn(cin, exp, 1, 1, act=act))
            layers.append(conv_bn(exp, exp, k, stride, groups=exp, act=act))
            if se:
                layers.append(SqueezeExcite(exp))
            layers.append(conv_bn(exp, cout, 1, 1))
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            y = self.block(x)
            return x + y if self.residual else y

    # (in, kernel, expanded, out, SE, hardswish, stride): torchvision's "mobilenet_v3_small" table.
    cfg = [(16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
           (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
           (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
           (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1)]
    features = [conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
    features += [InvertedResidual(*c) for c in cfg]
    features.append(conv_bn(96, 576, 1, 1, act=nn.Hardswish))

    class MobileNetV3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*features)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
                                            nn.Linear(1024, n_classes))

        def forward(self, x: Any) -> Any:
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    return MobileNetV3()


def _resnet18_local(n_classes: int) -> Any:
    nn = _nn()

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else None)

        def forward(self, x: Any) -> Any:
            idt = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            chans = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
            for i, (cin, cout, stride) in enumerate(chans, start=1):
                setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, n_classes)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet18()


def edge_model(name: str, n_classes: int = 1000) -> tuple[Any, list[str], str]:
    """An edge architecture with random weights, its block-output module paths, and the source.

    Parameters
    ----------
    name : {"mobilenet_v3_small", "resnet18"}
        Architecture.
    n_classes : int
        Classes.

    Returns
    -------
    tuple
        ``(module in eval mode, block output paths, "torchvision" or "nnwatch re-implementation")``.
    """
    torch_module().manual_seed(0)
    try:
        import torchvision.models as tvm

        module = getattr(tvm, name)(weights=None, num_classes=n_classes)
        source = "torchvision"
    except Exception:  # torchvision missing or broken beside this torch: use our copy
        module = {"mobilenet_v3_small": _mobilenet_v3_small_local, "resnet18": _resnet18_local}[name](n_classes)
        source = "nnwatch re-implementation"
    if name == "mobilenet_v3_small":
        blocks = [f"features.{i}" for i in range(13)]
    else:
        blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    return module.eval(), blocks, source


def wide_classifier(rng: Any, classes: int = 1000, hidden: int = 1488, features: int = 512) -> Any:
    """A many-class ONNX classifier with random weights, built with onnx.helper (no torch).

    ``x (32) -> hidden ReLU -> features ReLU -> classes logits``; with the defaults its two
    hidden layers hold 2,000 neurons, the size of ResNet-18's block outputs: the model the
    memory benchmark and the 1,000-class monitor tests use.

    Parameters
    ----------
    rng : numpy.random.Generator
        Weight generator.
    classes, hidden, features : int
        Layer widths.

    Returns
    -------
    onnx.ModelProto
        The model (IR 8, opset 17).
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W2", "B2"], ["h2"]), helper.make_node("Relu", ["h2"], ["a2"]),
             helper.make_node("Gemm", ["a2", "W3", "B3"], ["logits"])]
    shapes = {"W1": (32, hidden), "B1": (hidden,), "W2": (hidden, features), "B2": (features,),
              "W3": (features, classes), "B3": (classes,)}
    inits = [numpy_helper.from_array((rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32), n)
             for n, s in shapes.items()]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
