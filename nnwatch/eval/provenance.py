"""Where a result came from: machine, date, git revision and the exact command.

Every results file the benchmarks and examples write carries this record, so that each
number in the docs can be traced to a run (docs/claims.json, tests/test_claims.py).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .overhead import machine


RESULT_PATHS = ("benchmarks/results", "docs", "README.md")  # results, the docs' templates and the docs rendered


def git_revision(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit of ``folder`` (default: this package's checkout) and whether it had edits.

    Parameters
    ----------
    folder : path, optional
        A folder inside the repository.

    Returns
    -------
    dict
        ``revision`` (40 hex digits, or "unknown" outside a git checkout) and ``dirty``: tracked
        files edited since that commit, results and rendered docs (:data:`RESULT_PATHS`) aside.
    """
    given = os.environ.get("NNWATCH_GIT_REVISION", "")
    if len(given) == 40:  # a copy sent elsewhere (a GPU machine) whose .git may be stale or absent
        return {"revision": given, "dirty": None}
    where = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=where, capture_output=True, text=True,
                             timeout=10).stdout.strip() or str(where)
        # Edits to tracked files count, except the results and the docs rendered from them: a
        # session that runs benchmark after benchmark rewrites those as it goes.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":!{p}" for p in RESULT_PATHS)], cwd=top, capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        rev = None
    if rev is None or rev.returncode != 0:
        return {"revision": "unknown", "dirty": None}
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _relative(arg: str) -> str:
    # Absolute paths would name this machine's folders; write them relative to the working
    # directory, which is what the command was run from.
    head, sep, path = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
    if os.path.isabs(path):
        path = os.path.relpath(path)
    return head + sep + path


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Machine, date (UTC), git revision and command line of this run.

    Parameters
    ----------
    argv : sequence of str, optional
        The command (default: ``python`` + ``sys.argv``, with paths as given).

    Returns
    -------
    dict
        ``machine``, ``date``, ``git``, ``command``.
    """
    args = list(sys.argv) if argv is None else list(argv)
    if argv is None and args and args[0].endswith(".py"):
        args = ["python"] + args
    args = [_relative(a) for a in args]
    return {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": git_revision(),
            "command": shlex.join(args)}


def describe(record: dict[str, Any]) -> str:
    """One line saying where a result came from (the first line of every results markdown file).

    Parameters
    ----------
    record : dict
        Output of :func:`provenance` (or a results file holding its keys).

    Returns
    -------
    str
        ``Machine: ...; run DATE at git REV by `COMMAND`.``
    """
    m, g = record["machine"], record["git"]
    edits = " (with local edits)" if g.get("dirty") else ""
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (f"Machine: {m['cpu']}, {m['cores']} cores{gpu}, Python {m['python']}, onnxruntime {m['onnxruntime']}, "
            f"numba {m['numba']}; run {record['date']} at git {str(g.get('revision', 'unknown'))[:10]}{edits} "
            f"by `{record['command']}`.")
