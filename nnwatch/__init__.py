"""nnwatch: runtime coverage monitoring for neural-network inference.

``import nnwatch`` is light: the public names below load their modules on first use, and
nothing reachable from ``nnwatch``, ``nnwatch.monitor`` or ``nnwatch.kernels`` imports torch,
onnx or ray.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Monitor": "nnwatch.monitor.monitor",
    "Budget": "nnwatch.monitor.budget",
    "Verdicts": "nnwatch.monitor.results",
    "build_profile": "nnwatch.monitor.profiling",
    "calibrate": "nnwatch.calibration.calibrate",
    "load_profile": "nnwatch.profile.store",
    "save_profile": "nnwatch.profile.store",
    "open_source": "nnwatch.sources",
    "ArraySource": "nnwatch.sources",
    "Preprocess": "nnwatch.recordings.preprocess",
    "MonitorEstimator": "nnwatch.estimator",
    "Detector": "nnwatch.monitor.detector",
    "make_detector": "nnwatch.monitor.registry",
    "register": "nnwatch.monitor.registry",
    "FeatureDetector": "nnwatch.monitor.on_features",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnwatch' has no attribute {name!r}")
