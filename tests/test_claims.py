"""Every number in README.md and docs/ comes from a results file that a script wrote.

The docs are rendered from docs/templates/ by benchmarks/render_docs.py: each measured number
is a reference into benchmarks/results/ (listed in docs/claims.json), tables are blocks the
benchmarks wrote, and any other digit must be marked as a non-measurement literal. This test
renders again and compares, so the docs cannot drift from the results.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "benchmarks" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_are_rendered_from_results_and_up_to_date():
    render = _renderer()
    outputs, claims, problems = render.build()
    assert not problems, "\n".join(problems)
    assert {p.relative_to(ROOT).as_posix() for p in outputs} >= {"README.md", "docs/results.md", "docs/reliability.md",
                                                                   "docs/coverage.md"}
    for path, text in outputs.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} differs from its template: run " \
                                         "python benchmarks/render_docs.py"
    assert json.loads((ROOT / "docs" / "claims.json").read_text()) == json.loads(json.dumps(claims))
    assert len(claims) > 50


def test_the_checks_can_fail(tmp_path, monkeypatch):
    render = _renderer()
    templates = tmp_path / "templates"
    templates.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    (results / "r.json").write_text(json.dumps({"machine": {}, "date": "d", "git": {}, "command": "c", "x": [1.5]}))
    (results / "bare.json").write_text(json.dumps({"y": 2}))
    (templates / "t.md.in").write_text("measured {{ r.json:x[0] | .2f }}, typed 3.7, literal {= 5% }, `code 9`\n"
                                       "missing {{ r.json:nope }} and {{ bare.json:y }}\n")
    monkeypatch.setattr(render, "TEMPLATES", templates)
    monkeypatch.setattr(render, "RESULTS", results)
    monkeypatch.setattr(render, "ROOT", tmp_path)
    outputs, claims, problems = render.build()
    text = "\n".join(problems)
    assert "hand-typed number '3.7'" in text and "'5'" not in text and "'9'" not in text
    assert "r.json has no 'nope'" in text
    (templates / "t.md.in").write_text("measured {{ r.json:x[0] | .2f }} and {{ bare.json:y }}\n")
    outputs, claims, problems = render.build()
    assert "bare.json: no machine, date, git, command recorded" in "\n".join(problems)
    assert list(outputs.values()) == ["measured 1.50 and 2\n"]
