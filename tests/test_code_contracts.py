"""The package's shape, kept by machines: import layers, lint, no import cycles, unique module names.

- import-linter checks the layer contract and that the runtime path imports no torch, onnx or
  ray (``[tool.importlinter]`` in pyproject.toml);
- ruff checks pyflakes, pycodestyle and the numpy-convention docstring rules the
  code follows (``[tool.ruff]``);
- the module graph has no cycle, at module level or inside functions;
- no two modules share a file name across packages (``nnwatch/x/fusion.py`` beside
  ``nnwatch/y/fusion.py`` says nothing about which holds what).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; it comes with the test extra: pip install -c constraints.txt -e '.[test]'")
    return found


def test_import_layers_are_kept():
    run = subprocess.run([_tool("lint-imports"), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-1000:]
    assert "0 broken" in run.stdout


def test_ruff_passes():
    run = subprocess.run([_tool("ruff"), "check", "."], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-1000:]


def test_no_import_cycles():
    import grimp

    graph = grimp.build_graph("nnwatch")
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges[module]:
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in modules:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_module_names_are_unique_across_packages():
    names = Counter(p.name for p in (ROOT / "nnwatch").rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not [n for n, c in names.items() if c > 1], [n for n, c in names.items() if c > 1]
