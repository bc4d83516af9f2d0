"""The language monitor does not depend on the object monitor's modules.

benchmarks/render_docs.py leaves changes to these modules out of what makes the language
monitor's results stale; this test keeps that statement true.
"""

from __future__ import annotations

import subprocess
import sys

OBJECT_MODULES = ("nnwatch.kernels.roi", "nnwatch.kernels.roi_reference", "nnwatch.calibration.frame_level",
                  "nnwatch.objects")

PROGRAM = """
import importlib, pkgutil, sys
import nnwatch.heads
names = ["nnwatch.cli.language", "nnwatch.cli.heads"] + [
    m.name for m in pkgutil.walk_packages(nnwatch.heads.__path__, "nnwatch.heads.")]
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as e:  # an optional dependency (torch, transformers) missing here
        if (e.name or "").startswith("nnwatch"):
            raise
loaded = sorted(m for m in sys.modules if m.startswith(%r))
print(",".join(loaded))
"""


def test_language_modules_do_not_import_the_object_monitor():
    out = subprocess.run([sys.executable, "-c", PROGRAM % (OBJECT_MODULES,)], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"the language monitor imports {out}"
