"""PyTorch module -> instrumented ONNX, through the dynamo exporter (needs onnxscript)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
import warnings
from typing import Any, Sequence

import onnx

from .._optional import require
from ..errors import InputError, ModelError
from ..manifest import TapManifest
from .instrument import MAX_IR_VERSION, instrument, save_onnx


def _torch() -> Any:
    require("onnxscript")  # the dynamo exporter needs it; say so before torch fails deep inside
    return require("torch")


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
    try:
        with torch.no_grad():
            module(example_input)
    except Exception as exc:  # say it plainly before the exporter buries it in its own report
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
        raise InputError(f"the module does not accept an input of shape {tuple(example_input.shape)}: "
                         f"{type(exc).__name__}: {first[0] if first else ''} (check --input-shape)") from None
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

    Modules are looked up in the current folder first, as ``python -m`` and uvicorn do.

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
        Malformed spec, missing file, module that does not import, factory missing, raising
        or not returning a ``torch.nn.Module``.
    """
    torch = _torch()
    if ":" not in spec:
        raise InputError(f"expected MODULE:FACTORY (e.g. mypkg.models:make_net or models.py:make_net), got {spec!r}")
    mod_name, _, attr = spec.rpartition(":")
    if mod_name.endswith(".py") and not os.path.isfile(mod_name):
        raise InputError(f"file {mod_name} does not exist (MODULE:FACTORY takes a .py path or an importable module)")
    try:
        if mod_name.endswith(".py"):
            loader_spec = importlib.util.spec_from_file_location("nnwatch_user_model", mod_name)
            mod = importlib.util.module_from_spec(loader_spec)  # type: ignore[arg-type]
            loader_spec.loader.exec_module(mod)  # type: ignore[union-attr]
        else:
            added = os.getcwd() not in sys.path
            if added:
                sys.path.insert(0, os.getcwd())
            try:
                mod = importlib.import_module(mod_name)
            finally:
                if added:
                    sys.path.remove(os.getcwd())
    except ModuleNotFoundError as exc:
        raise InputError(f"cannot import {mod_name!r}: {exc} (looked in the current folder and the installed "
                         "packages; or give a path like models.py:make_net)") from None
    except Exception as exc:  # the user's module itself failed: say where, not a traceback
        raise InputError(f"importing {mod_name!r} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise InputError(f"{mod_name!r} has no callable {attr!r}")
    try:
        module = factory()
    except Exception as exc:
        raise InputError(f"{attr}() from {mod_name!r} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{attr}() from {mod_name!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def load_weights(module: Any, path: str | os.PathLike) -> None:
    """Load a state dict saved with ``torch.save(model.state_dict(), path)`` into ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        The module built by the factory.
    path : path
        The ``.pt`` file (read with ``weights_only=True``: no code runs).

    Raises
    ------
    InputError
        Missing or unreadable file, not a state dict, or one that does not fit the module.
    """
    torch = _torch()
    if not os.path.isfile(path):
        raise InputError(f"--weights {path}: file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"--weights {path}: not a readable torch state dict ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(f"--weights {path}: expected a state dict (name -> tensor) as saved by "
                         f"torch.save(model.state_dict(), path), got a {type(state).__name__}")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        result = module.load_state_dict(state, strict=False) if "size mismatch" not in str(exc) else None
        detail = (f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]}), "
                  f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})") if result else \
            str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise InputError(f"--weights {path} does not fit this module: {detail}") from None


__all__ = ["export_module", "export_plain", "load_factory", "load_weights"]
