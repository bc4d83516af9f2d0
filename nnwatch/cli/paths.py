"""The files a command reads and writes, checked before any work: nothing a user gives is destroyed.

Three checks run on the parsed arguments, before a model loads:

- an output's folder exists, and a file output does not name a folder;
- an output's extension matches what the command writes there (a profile goes to ``.npz``,
  never over ``M.onnx``);
- no output is one of the command's inputs, by path or by file identity (a link, a hard
  link or ``./M.onnx`` against ``M.onnx``);

and one on the inputs: the positional files come in the documented order (a profile where the
model goes is named as such instead of surfacing onnxruntime's protobuf error).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Iterator

from .._io import is_zip_archive
from ..errors import InputError

OUTPUT_FILES = ("out", "json", "report", "plain_out")  # file outputs: the folder must exist
OUTPUT_FOLDERS = ("out_dir",)  # folder outputs: created, but their parent must exist
# Arguments whose value is one input file (or a folder, for a Hugging Face model).
INPUT_FILES = ("model", "profile", "file", "detector", "weights", "onnx")
# Arguments that hold data source specs (see nnwatch.sources), possibly repeated.
INPUT_SOURCES = ("data", "id", "ood", "set", "prompts")
_SCHEMES = ("npz", "npy", "idx", "digits", "npzdir", "parquet", "images", "video", "mcap", "rosbag")
_TOPIC_SCHEMES = ("mcap", "rosbag")  # FILE[:TOPIC]


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def resolve_shipped(args: argparse.Namespace) -> None:
    """Replace a shipped detector's name (``smollm2``) by its packaged file, before any check.

    The packaged file is never rewritten: ``calibrate`` on it needs ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (changed in place).

    Raises
    ------
    InputError
        ``calibrate`` on a shipped detector without ``--out``.
    """
    from ..heads.shipped import is_shipped, resolve

    dest = {"calibrate": "model", "screen": "model", "evaluate": "model", "bench": "model", "info": "file",
            "heads": "detector" if getattr(args, "heads_command", None) == "guard" else None}.get(args.command)
    value = getattr(args, dest, None) if dest else None  # heads search/fit/export: --model is a model, not a file
    if isinstance(value, str):
        setattr(args, dest, resolve(value))
    if args.command == "calibrate" and is_shipped(getattr(args, "model", None)) and not getattr(args, "out", None):
        raise InputError("the shipped detector is part of the installed package and is not rewritten: give --out "
                         "(e.g. --out my-detector.json), then use that file")


def _is_language(args: argparse.Namespace) -> bool:
    return str(getattr(args, "model", "") or "").endswith(".json")


def output_suffixes(args: argparse.Namespace, dest: str) -> tuple[str, ...] | None:
    """The file extensions a command accepts for one output argument.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.
    dest : str
        The output argument's name (``out``, ``json``, ``report``, ``plain_out``).

    Returns
    -------
    tuple of str or None
        Accepted suffixes (lower case), or None where the output is a folder.
    """
    command = args.command
    if dest == "plain_out":
        return (".onnx",)
    if dest == "report":
        return (".html", ".htm")
    if dest == "json":
        return (".json",)
    if command in ("export", "instrument"):
        return (".onnx",)
    if command == "profile":
        return (".npz",)
    if command == "calibrate":
        return (".json",) if _is_language(args) else (".npz",)
    if command == "screen":
        if getattr(args, "ray", False):
            return None
        return (".json", ".csv") if _is_language(args) else (".json", ".csv", ".mcap")
    if command == "compile":
        return None  # a folder
    if command == "heads":
        return {"search": (".json",), "fit": (".json",), "export": (".onnx",)}.get(
            getattr(args, "heads_command", None) or "")
    return None  # demo: a folder


def _source_paths(spec: str) -> Iterator[Path]:
    """Files a data source spec reads (folders and built-in sets yield nothing)."""
    _, sep, rest = spec.partition("=")
    if sep and rest and ":" not in spec.split("=", 1)[0] and "/" not in spec.split("=", 1)[0]:
        spec = rest  # NAME=SOURCE
    from ..recordings import parse_slice

    try:
        spec = parse_slice(spec)[0]
    except InputError:
        pass  # reported when the source is opened
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in _SCHEMES or scheme == "digits":
        if scheme == "digits":
            return
        if scheme == "idx":
            rest = rest.rpartition(":")[0] if rest.endswith((":train", ":test")) else rest
        if scheme in _TOPIC_SCHEMES and ":" in rest and not Path(rest).exists():
            rest = rest.rpartition(":")[0]
        spec = rest
    for part in spec.split(","):
        if part:
            yield Path(part)


def input_paths(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Every file a command reads, with the argument that names it.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    list of (str, Path)
        ``(argument, path)`` pairs; folders and missing files included (checked later).
    """
    found: list[tuple[str, Path]] = []
    for dest in INPUT_FILES:
        value = getattr(args, dest, None)
        if isinstance(value, str) and value:
            found.append((dest.upper() if dest in ("model", "profile", "file", "detector") else _flag(dest),
                          Path(value)))
    factory = getattr(args, "factory", None)
    if isinstance(factory, str) and ".py:" in factory:
        found.append(("FACTORY", Path(factory.rsplit(":", 1)[0])))
    for dest in INPUT_SOURCES:
        value = getattr(args, dest, None)
        for spec in (value if isinstance(value, list) else [value]):
            if isinstance(spec, str) and spec:
                found.extend((_flag(dest), p) for p in _source_paths(spec))
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _updated_in_place(args: argparse.Namespace, dest: str, name: str) -> bool:
    """``calibrate --out`` may name the file calibrate updates by default (its PROFILE or DETECTOR.json)."""
    return args.command == "calibrate" and dest == "out" and name == ("MODEL" if _is_language(args) else "PROFILE")


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, output paths that cannot or must not be written.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Raises
    ------
    InputError
        An output's folder does not exist; a file output names a folder; its extension is not
        what the command writes; or it is one of the command's inputs.
    """
    inputs = input_paths(args)
    for dest in OUTPUT_FILES + OUTPUT_FOLDERS:
        value = getattr(args, dest, None)
        if not value or not isinstance(value, str):
            continue
        path = Path(value)
        flag = _flag(dest)
        if not path.resolve().parent.is_dir():
            raise InputError(f"{flag} {value}: folder {path.parent} does not exist; create it or choose another path")
        suffixes = None if dest in OUTPUT_FOLDERS else output_suffixes(args, dest)
        folder_ok = dest in OUTPUT_FOLDERS or suffixes is None
        if path.is_dir() and not folder_ok:
            raise InputError(f"{flag} {value} is a folder; give a file name")
        writes_folder = dest in OUTPUT_FOLDERS or (suffixes is None and args.command in ("screen", "compile", "demo"))
        if writes_folder and path.exists() and not path.is_dir():
            raise InputError(f"{flag} {value} is a file; nnwatch {args.command} writes a folder there: give a new "
                             "or an existing folder")
        if suffixes is not None and path.suffix.lower() not in suffixes:
            raise InputError(f"{flag} {value}: nnwatch {args.command} writes {_what(args, dest)} there, so the name "
                             f"must end in {' or '.join(suffixes)}")
        for name, source in inputs:
            if _same_file(path, source) and not _updated_in_place(args, dest, name):
                raise InputError(f"{flag} {value} is the same file as the input {name} {source}; writing it would "
                                 "destroy the input: choose another output path")


def _what(args: argparse.Namespace, dest: str) -> str:
    if dest == "report":
        return "an HTML report"
    if dest == "json":
        return "JSON results"
    if dest == "plain_out":
        return "the untapped ONNX model"
    return {"export": "the instrumented ONNX model", "instrument": "the instrumented ONNX model",
            "profile": "a profile (.npz archive)",
            "calibrate": "the calibrated detector file" if _is_language(args) else "the calibrated profile",
            "screen": "per-input results", "heads": "the detector file or model"}.get(args.command, "a file")


def check_argument_order(args: argparse.Namespace) -> None:
    """Name swapped positional files (a profile or data archive where the model goes, or the reverse).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Raises
    ------
    InputError
        MODEL is an ``.npz`` archive, or PROFILE is not one.
    """
    model = getattr(args, "model", None)
    profile = getattr(args, "profile", None)
    if not isinstance(model, str) or not model or args.command in ("heads", "info") or _is_language(args):
        return
    order = f"nnwatch {args.command} MODEL.onnx" + (" PROFILE.npz" if args.command != "instrument" and
                                                     args.command != "profile" else "")
    model_path = Path(model)
    if model_path.is_file() and is_zip_archive(model_path):
        swapped = isinstance(profile, str) and Path(profile).is_file() and _looks_like_onnx(Path(profile))
        raise InputError(f"MODEL {model} is an .npz archive (a profile or data), not an ONNX model"
                         + ("; the arguments look swapped" if swapped else "") + f": the order is {order}")
    if isinstance(profile, str) and Path(profile).is_file() and _looks_like_onnx(Path(profile)):
        raise InputError(f"PROFILE {profile} looks like an ONNX model, not a profile (.npz archive); the arguments "
                         f"look swapped: the order is {order}")


def _looks_like_onnx(path: Path) -> bool:
    """An ONNX ModelProto starts with its ``ir_version`` field (protobuf tag 0x08) and a small varint."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x08 and 1 <= head[1] <= 20
