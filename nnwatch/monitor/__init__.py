"""The runtime path: onnxruntime runner, detectors, calibration, budgets, Monitor (no torch/onnx)."""

from .budget import Budget
from .monitor import Monitor
from .results import Verdicts

__all__ = ["Budget", "Monitor", "Verdicts"]
