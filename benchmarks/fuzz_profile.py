"""Coverage-guided fuzzing (atheris) of the profile loader and the manifest parser.

Run: python benchmarks/fuzz_profile.py -runs=20000 CORPUS_DIR
Any exception other than nnwatch's own NnwatchError is a crash and stops the run.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from nnwatch.errors import NnwatchError
    from nnwatch.manifest import TapManifest
    from nnwatch.profile.store import load_profile

_TMP = os.path.join(tempfile.mkdtemp(prefix="nnwatch-fuzz-"), "case.npz")


def one_input(data: bytes) -> None:
    if data[:1] == b"{":  # JSON inputs exercise the manifest parser
        try:
            TapManifest.from_json(data.decode("utf-8", "replace"))
        except NnwatchError:
            pass
        return
    with open(_TMP, "wb") as fh:
        fh.write(data)
    try:
        load_profile(_TMP)
    except NnwatchError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
