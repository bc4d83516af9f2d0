"""The runtime path imports without torch, onnx or ray."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_nothing_heavy():
    code = ("import sys, nnwatch, nnwatch.monitor, nnwatch.kernels, nnwatch.profile, nnwatch.sources; "
            "from nnwatch import Monitor, load_profile; "
            "print(sorted(m for m in ('torch', 'onnx', 'ray', 'sklearn', 'onnxscript') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_help_imports_nothing_heavy():
    code = ("import sys; from nnwatch.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'onnx', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_head_detector_runtime_imports_without_torch():
    """Scoring with an exported prefill and a detector file needs only numpy and onnxruntime."""
    code = ("import sys; from nnwatch.heads.onnx_backend import OnnxHeadScorer; "
            "from nnwatch.heads.detector_file import load_detector; "
            "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
