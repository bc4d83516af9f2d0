"""Per-input results written as JSON, CSV or MCAP (shared by the screening commands).

Rows are written as they come, batch by batch, into a temporary file next to the destination,
which replaces the destination only when the run completes: memory stays flat over a long
recording, and an interrupted or failed run leaves the old file (or none), never half a file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO, Any

from .._io import atomic_path
from ..errors import InputError

FORMATS = (".json", ".csv", ".mcap")
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')  # what the csv module's QUOTE_MINIMAL quotes (its dialect "excel")


class RecordWriter:
    """A context manager that writes per-input rows to ``path``, by its extension.

    Parameters
    ----------
    path : str
        ``.json`` (an array of objects), ``.csv`` (columns from the first batch's rows) or
        ``.mcap`` (verdict and Foxglove annotation channels, see
        :mod:`nnwatch.recordings.verdict_mcap`; rows need frame times).
    metadata : dict of str, optional
        Written into an MCAP file's metadata record (ignored by the other formats).
    formats : tuple of str
        The extensions this caller accepts.

    Raises
    ------
    InputError
        An extension outside ``formats``.
    """

    def __init__(self, path: str, metadata: dict[str, str] | None = None, formats: tuple[str, ...] = FORMATS) -> None:
        self.suffix = Path(path).suffix.lower()
        if self.suffix not in formats:
            raise InputError(f"--out must end in {', '.join(formats[:-1])} or {formats[-1]}, got {path!r}")
        self.path, self.metadata, self.rows = path, metadata, 0
        self._atomic: Any = None
        self._fh: IO[bytes] | None = None
        self._fields: list[str] | None = None
        self._mcap: Any = None
        self._text: IO[str] | None = None

    def __enter__(self) -> "RecordWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._fh = open(tmp, "wb")
            if self.suffix == ".mcap":
                from ..recordings.verdict_mcap import VerdictMcapWriter

                self._mcap = VerdictMcapWriter(self._fh, self.metadata)
            else:
                import io

                self._text = io.TextIOWrapper(self._fh, encoding="utf-8", newline="")
                if self.suffix == ".json":
                    self._text.write("[")
        except BaseException as err:
            self._abandon(err)
            raise
        return self

    def write(self, rows: "list[dict[str, Any]] | dict[str, Any]") -> None:
        """Append the rows of one batch.

        Parameters
        ----------
        rows : list of dict, or dict of columns
            One dict per input, or columns (name -> numpy array or list, one entry per input);
            every batch has the first batch's keys (the CSV columns).
        """
        if isinstance(rows, dict):
            if self.suffix == ".csv":
                self._write_csv(list(rows), [_csv_column(v) for v in rows.values()])
                return
            rows = columns_to_rows(rows)
        if not rows:
            return
        if self._mcap is not None:
            self._mcap.write(rows)
        elif self.suffix == ".json":
            assert self._text is not None
            for row in rows:
                self._text.write(("\n" if self.rows == 0 else ",\n") + json.dumps(row, default=float))
                self.rows += 1
            return
        else:
            fields = list(dict.fromkeys(k for row in rows for k in row))  # rows may differ (labels)
            self._write_csv(fields, [[_csv_field(_csv_value(row.get(k))) for row in rows] for k in fields])
            return
        self.rows += len(rows)

    def _write_csv(self, fields: list[str], columns: list[list[str]]) -> None:
        """Append rows given as columns of CSV field text (already quoted where needed)."""
        assert self._text is not None
        if self._fields is None:
            self._fields = fields
            self._text.write(",".join(map(_csv_field, fields)) + "\r\n")
        elif fields != self._fields:
            raise InputError(f"rows of one output must share their columns: {fields} after {self._fields}")
        if len(fields) == 1:  # a row of one empty field is written "" (as csv does), not as a blank line
            columns = [[v or '""' for v in columns[0]]]
        self._text.write("".join(",".join(row) + "\r\n" for row in zip(*columns)))
        self.rows += len(columns[0]) if columns else 0

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._abandon(exc if isinstance(exc, BaseException) else exc_type())
            return
        try:
            if self._mcap is not None:
                self._mcap.finish()
            elif self.suffix == ".json":
                self._text.write("\n]\n" if self.rows else "]\n")
            elif self.suffix == ".csv" and self._fields is None:
                self._text.write("index\r\n")  # no rows: a header alone
            if self._text is not None:
                self._text.flush()
                self._text.detach()
            self._fh.close()
        except BaseException as err:
            self._abandon(err)
            raise
        self._atomic.__exit__(None, None, None)  # fsync, rename over the destination

    def _abandon(self, err: BaseException) -> None:
        """Close and delete the temporary file; the destination is untouched."""
        import contextlib

        if self._fh is not None:
            with contextlib.suppress(Exception):
                self._fh.close()
        if self._atomic is not None:
            with contextlib.suppress(BaseException):  # the context re-raises err after deleting the file
                self._atomic.__exit__(type(err), err, err.__traceback__)


def columns_to_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Columns (name -> array or list, one entry per input) as one dict of Python values per input.

    Parameters
    ----------
    columns : dict
        Equal-length columns.

    Returns
    -------
    list of dict
        Rows.
    """
    names = list(columns)
    values = [v.tolist() if hasattr(v, "tolist") else list(v) for v in columns.values()]
    return [dict(zip(names, row)) for row in zip(*values)]


def _csv_value(value: Any) -> str:
    """One value as ``csv`` writes it (None as empty)."""
    return "" if value is None else str(value)


def _csv_field(text: str) -> str:
    """One field's text as the ``csv`` module writes it by default (quoted when it must be)."""
    return '"' + text.replace('"', '""') + '"' if _NEEDS_QUOTES.search(text) else text


def _csv_column(column: Any) -> list[str]:
    """A column as CSV fields, as the ``csv`` module writes Python values (floats in full precision).

    Numeric and boolean arrays, the bulk of a screening's columns, are formatted by ``repr``
    (what ``csv`` writes for a float) in one pass and need no quoting; other columns go value
    by value.
    """
    if getattr(column, "dtype", None) is not None and column.dtype.kind in "biuf":
        return list(map(repr, column.tolist()))
    values = column.tolist() if hasattr(column, "tolist") else column
    return [_csv_field("" if v is None else (repr(v) if isinstance(v, float) else str(v))) for v in values]


def write_records(path: str, rows: list[dict[str, Any]], formats: tuple[str, ...] = (".json", ".csv")) -> None:
    """Write per-input rows as JSON or CSV (by the file's extension), atomically.

    Parameters
    ----------
    path : str
        ``.json`` or ``.csv`` file.
    rows : list of dict
        One dict per input.
    formats : tuple of str
        Accepted extensions.

    Raises
    ------
    InputError
        Another extension.
    """
    with RecordWriter(path, formats=formats) as out:
        out.write(rows)


def skipped_rows(fields: list[str], skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output rows for undecodable frames: their ids (``id.*``) and ``error``, every other field empty.

    Parameters
    ----------
    fields : list of str
        The fields of the verdict rows written beside them.
    skipped : list of dict
        Each skipped frame's ids and its ``error``.

    Returns
    -------
    list of dict
        One row per skipped frame, with exactly ``fields``.
    """
    return [{k: (frame["error"] if k == "error" else frame.get(k[3:]) if k.startswith("id.") else None)
             for k in fields} for frame in skipped]
