"""PyTorch module -> instrumented ONNX, through the dynamo exporter (needs onnxscript)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import warnings
from typing import Any, Sequence

import onnx

from ..errors import InputError, MissingDependencyError, ModelError
from ..manifest import TapManifest
from .instrument import MAX_IR_VERSION, instrument, save_onnx


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("exporting from PyTorch needs torch: pip install 'nnwatch[torch]'") from None
    return torch


def export_plain(module: Any, example_input: Any, opset: int = 18) -> onnx.ModelProto:
    """Export ``module`` to ONNX with a dynamic batch axis, untapped.

    Parameters
    ----------
    module : torch.nn.Module
        The classifier; it is put in eval mode.
    example_input : torch.Tensor
        One example batch (its batch size does not matter).
    opset : int
        ONNX opset to target.

    Returns
    -------
    onnx.ModelProto
        The exported model, with an IR version onnxruntime reads.

    Raises
    ------
    ModelError
        The exporter failed.
    """
    torch = _torch()
    module = module.eval()
    batch = torch.export.Dim("batch", min=1)
    # torch.export specializes a batch of 1; export with 2 so the batch axis stays symbolic.
    example = example_input
    if example.shape[0] == 1:
        example = example.expand(2, *example.shape[1:]).contiguous()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset,
                dynamic_shapes=({0: batch},), verbose=False, report=False,
            )
        except Exception as exc:
            raise ModelError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None
    model = program.model_proto
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return model


def export_module(
    module: Any,
    example_input: Any,
    out: str | os.PathLike,
    layers: str | Sequence[str] = "auto",
    plain_out: str | os.PathLike | None = None,
    **options: Any,
) -> TapManifest:
    """Export ``module`` and write the instrumented ONNX model to ``out``.

    Parameters
    ----------
    module : torch.nn.Module
        The classifier.
    example_input : torch.Tensor
        An example batch.
    out : path
        Destination of the instrumented model.
    layers : "auto" or sequence of str
        Module paths (e.g. ``"features.1"``) or ONNX tensor names; see
        :func:`nnwatch.export.instrument`.
    plain_out : path, optional
        Also write the untapped model here (useful as a latency baseline).
    **options
        Passed to :func:`nnwatch.export.instrument`.

    Returns
    -------
    TapManifest
        What was tapped.
    """
    plain = export_plain(module, example_input)
    data = plain.SerializeToString()
    if plain_out is not None:
        save_onnx(plain, plain_out)
    model, manifest = instrument(data, layers=layers, **options)
    save_onnx(model, out)
    return manifest


def load_factory(spec: str) -> Any:
    """Build a module from ``"package.module:factory"`` (a callable returning an nn.Module).

    Parameters
    ----------
    spec : str
        ``MODULE:FACTORY``; MODULE may also be a path to a .py file.

    Returns
    -------
    torch.nn.Module
        The built module.

    Raises
    ------
    InputError
        Malformed spec, module not importable or factory missing.
    """
    if ":" not in spec:
        raise InputError(f"expected MODULE:FACTORY (e.g. mypkg.models:make_net), got {spec!r}")
    mod_name, _, attr = spec.rpartition(":")
    try:
        if mod_name.endswith(".py") and os.path.isfile(mod_name):
            loader_spec = importlib.util.spec_from_file_location("nnwatch_user_model", mod_name)
            mod = importlib.util.module_from_spec(loader_spec)  # type: ignore[arg-type]
            loader_spec.loader.exec_module(mod)  # type: ignore[union-attr]
        else:
            mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import {mod_name!r}: {exc}") from None
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise InputError(f"{mod_name!r} has no callable {attr!r}")
    return factory()


__all__ = ["export_module", "export_plain", "load_factory"]
