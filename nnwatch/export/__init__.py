"""Turn models into instrumented ONNX graphs (imports onnx, and torch for :mod:`from_torch`)."""

from .instrument import instrument, instrument_file, load_onnx

__all__ = ["instrument", "instrument_file", "load_onnx"]
