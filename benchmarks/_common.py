"""Helpers shared by the benchmark scripts: the timing harness, provenance, JSON + markdown output."""

from __future__ import annotations

import json
import time
from pathlib import Path

from nnwatch.eval.provenance import describe, provenance
from nnwatch.timing import add_ratios, interleaved  # noqa: F401  (re-exported for the scripts)

RESULTS = Path(__file__).resolve().parent / "results"
START = time.monotonic()  # the benchmark's wall time is recorded with its results


def write(name: str, data: dict, markdown: str,
          note: str = "Ratios are measured in the same run (interleaved).") -> None:
    """Write results/<name>.json and results/<name>.md with machine, date, git revision and command.

    A ``--quick`` run writes ``<name>_quick.*`` instead (git ignores them): the docs cite the
    full runs, and a quick try must not overwrite what they cite.
    """
    import sys

    if "--quick" in sys.argv[1:] and not name.endswith("_quick"):
        name = f"{name}_quick"
    RESULTS.mkdir(exist_ok=True)
    data = {**provenance(), "wall_seconds": time.monotonic() - START, **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    header = f"{describe(data)} {note}\n\n"
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    print(header + markdown)
