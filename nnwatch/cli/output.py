"""Per-input results written as JSON or CSV (shared by the screening commands)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .._io import atomic_write_bytes
from ..errors import InputError


def write_records(path: str, rows: list[dict[str, Any]]) -> None:
    """Write per-input rows as JSON or CSV (by the file's extension), atomically.

    Parameters
    ----------
    path : str
        ``.json`` or ``.csv`` file.
    rows : list of dict
        One dict per input, same keys.

    Raises
    ------
    InputError
        Another extension.
    """
    if path.endswith(".json"):
        data = json.dumps(rows, indent=1, default=float).encode()
    elif path.endswith(".csv"):
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["index"]  # rows may differ (labels)
        writer = csv.DictWriter(buf, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        data = buf.getvalue().encode()
    else:
        raise InputError(f"--out must end in .json or .csv, got {path!r}")
    atomic_write_bytes(path, data)
