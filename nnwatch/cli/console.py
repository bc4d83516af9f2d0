"""What the CLI prints, and how it behaves when the reader goes away.

- ``nnwatch ... | head`` closes stdout early. The command still finishes its work and writes
  its files; further output is dropped and the exit status is that of the work (0), as
  ``grep``/``git`` users expect, instead of a ``BrokenPipeError`` traceback.
- Python warnings raised while a command runs print as one line, ``nnwatch: warning: ...``,
  without a source path and line number.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any, Iterator, TextIO


def warn(text: str) -> None:
    """Print one warning line to stderr.

    Parameters
    ----------
    text : str
        The warning, without a prefix.
    """
    print(f"nnwatch: warning: {text}", file=sys.stderr)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    warn(str(message))


class ReaderTolerantStream:
    """A text stream that swallows ``BrokenPipeError`` once its reader has gone.

    Parameters
    ----------
    stream : TextIO
        The stream to wrap (``sys.stdout`` or ``sys.stderr``).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        """Write, or drop the text when the reader has gone.

        Parameters
        ----------
        text : str
            Text to write.

        Returns
        -------
        int
            Characters accepted.
        """
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        """Flush, or drop pending output when the reader has gone."""
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self.reader_gone = True
        # Point the descriptor at /dev/null, so the interpreter's last flush at exit cannot fail.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def cli_console() -> Iterator[None]:
    """Wrap stdout/stderr for closed pipes and print warnings as single lines, for one command.

    Returns
    -------
    Iterator[None]
        Context manager; the streams and warning display are restored on exit.
    """
    out, err = ReaderTolerantStream(sys.stdout), ReaderTolerantStream(sys.stderr)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = saved


def separation_lines(record: dict, candidates: list[str], kinds: list[str] | None = None) -> list[str]:
    """The table behind a fused verdict's members chosen by separation (``nnwatch info``).

    Parameters
    ----------
    record : dict
        :meth:`nnwatch.calibration.separation.Separation.to_dict`.
    candidates : list of str
        The order to list the candidates in (those absent from the record are skipped).
    kinds : list of str, optional
        The order of the kinds of anomaly (default: the record's).

    Returns
    -------
    list of str
        Indented lines.
    """
    found = record["synthetic"]
    kinds = [k for k in (kinds or list(found)) if k in found]
    counts = ", ".join(f"{k} {found[k]}" for k in kinds)
    lines = [f"chosen by {record['rule']}: {record['clean']} clean against synthetic ({counts})"]
    for m in [c for c in candidates if c in record["auroc"]]:
        row = record["auroc"][m]
        mean = sum(row.values()) / max(len(row), 1)
        lines.append(f"  {m:18s} AUROC " + " ".join(f"{k} {row[k]:.3f}" for k in kinds if k in row)
                     + f"  separation {mean - 0.5:+.3f}" + ("  fused" if m in record["members"] else ""))
    return lines
