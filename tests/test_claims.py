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
    (results / "r.json").write_text(json.dumps({"machine": {}, "date": "d", "git": {}, "command": "c", "x": {"y": 1.5}}))
    (results / "bare.json").write_text(json.dumps({"y": 2}))
    (templates / "t.md.in").write_text("measured {{ r.json:x.y | .2f }}, typed 3.7, literal {= 5% }, `code 9`\n"
                                       "missing {{ r.json:nope }} and {{ bare.json:y }}\n")
    monkeypatch.setattr(render, "TEMPLATES", templates)
    monkeypatch.setattr(render, "RESULTS", results)
    monkeypatch.setattr(render, "ROOT", tmp_path)
    outputs, claims, problems = render.build()
    text = "\n".join(problems)
    assert "hand-typed number '3.7'" in text and "'5'" not in text and "'9'" not in text
    assert "r.json has no 'nope'" in text
    (templates / "t.md.in").write_text("measured {{ r.json:x.y | .2f }} and {{ bare.json:y }}\n")
    outputs, claims, problems = render.build()
    assert "bare.json: no machine, date, git, command recorded" in "\n".join(problems)
    assert list(outputs.values()) == ["measured 1.50 and 2\n"]


def test_results_must_come_from_a_clean_tree_and_stay_fresh(tmp_path, monkeypatch):
    """A dirty run, a list position, and a benchmark whose measured code changed are all refused."""
    import subprocess

    render = _renderer()
    templates, results = tmp_path / "docs" / "templates", tmp_path / "benchmarks" / "results"
    templates.mkdir(parents=True)
    results.mkdir(parents=True)
    (tmp_path / "measured.py").write_text("A = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    rev = git("rev-parse", "HEAD")
    record = {"machine": {}, "date": "d", "command": "c", "rows": [{"name": "a", "x": 1.5}, {"name": "b", "x": 2.5}]}
    (results / "fresh.json").write_text(json.dumps(dict(record, git={"revision": rev, "dirty": False})))
    (results / "edited.json").write_text(json.dumps(dict(record, git={"revision": rev, "dirty": True})))
    monkeypatch.setattr(render, "TEMPLATES", templates)
    monkeypatch.setattr(render, "RESULTS", results)
    monkeypatch.setattr(render, "ROOT", tmp_path)
    monkeypatch.setattr(render, "MEASURES", {"fresh": ["measured.py"], "edited": ["measured.py"]})
    (templates / "t.md.in").write_text("b is {{ fresh.json:rows[name=b].x | .1f }}\n")
    outputs, _, problems = render.build()
    assert not problems and list(outputs.values()) == ["b is 2.5\n"]
    (templates / "t.md.in").write_text("b is {{ fresh.json:rows[1].x | .1f }} and {{ edited.json:rows[name=a].x }}\n")
    text = "\n".join(render.build()[2])
    assert "[1] addresses a claim by list position" in text
    (templates / "t.md.in").write_text("{{ edited.json:rows[name=a].x }}\n")
    assert "edited.json: recorded local edits" in "\n".join(render.build()[2])
    (templates / "t.md.in").write_text("{{ fresh.json:rows[name=a].x }}\n")
    (tmp_path / "measured.py").write_text("A = 2\n")  # the measured code changed since the run
    assert "fresh.json: measured at" in "\n".join(render.build()[2])


def test_a_waived_change_keeps_a_result_fresh_only_while_the_file_is_exactly_what_it_wrote(tmp_path, monkeypatch):
    """UNMEASURED_CHANGES: the named change to the named file, for the named results, and nothing else."""
    import subprocess

    render = _renderer()
    templates, results = tmp_path / "docs" / "templates", tmp_path / "benchmarks" / "results"
    templates.mkdir(parents=True)
    results.mkdir(parents=True)
    measured = tmp_path / "measured.py"
    measured.write_text("A = 1\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    def commit(message: str) -> str:
        git("add", "-A")
        git("commit", "-qm", message)
        return git("rev-parse", "HEAD")

    git("init", "-q")
    run_at = commit("measured")
    record = {"machine": {}, "date": "d", "command": "c", "git": {"revision": run_at, "dirty": False}, "x": 1.5}
    for stem in ("waived", "other"):
        (results / f"{stem}.json").write_text(json.dumps(record))
    (templates / "t.md.in").write_text("{{ waived.json:x }} and {{ other.json:x }}\n")
    measured.write_text("A = 1  # a comment that cannot move a number\n")
    change = commit("the waived change")
    monkeypatch.setattr(render, "TEMPLATES", templates)
    monkeypatch.setattr(render, "RESULTS", results)
    monkeypatch.setattr(render, "ROOT", tmp_path)
    monkeypatch.setattr(render, "MEASURES", {"waived": ["measured.py"], "other": ["measured.py"]})
    monkeypatch.setattr(render, "UNMEASURED_CHANGES", [(("waived",), "measured.py", change, "a comment")])
    problems = render.build()[2]
    assert problems == [f"other.json: measured at {run_at[:10]}, but what it measures changed since (measured.py); "
                        "run its benchmark again"], problems  # the waiver names one result only
    measured.write_text("A = 2\n")  # uncommitted: the file is no longer what the waived change wrote
    assert any(p.startswith("waived.json: measured at") for p in render.build()[2])
    commit("a later change")  # committed: the same
    assert any(p.startswith("waived.json: measured at") for p in render.build()[2])
    git("revert", "--no-edit", "HEAD")  # back to exactly what the waived change wrote
    assert not any(p.startswith("waived.json") for p in render.build()[2])
    # a result measured before some other edit to the file is not covered by the waiver
    measured.write_text("A = 3\n")
    other_run = commit("another edit")
    measured.write_text("A = 1  # a comment that cannot move a number\n")
    commit("the waived content again")
    (results / "waived.json").write_text(json.dumps(dict(record, git={"revision": other_run, "dirty": False})))
    assert any(p.startswith("waived.json: measured at") for p in render.build()[2])
    # a chain "first..last": from the file before `first` to the file `last` wrote, and only that
    (results / "waived.json").write_text(json.dumps(record))  # measured at run_at: "A = 1"
    measured.write_text("A = 1  # a second comment\n")
    last = commit("a second waived change")
    monkeypatch.setattr(render, "UNMEASURED_CHANGES", [(("waived",), "measured.py", f"{change}..{last}", "comments")])
    assert not any(p.startswith("waived.json") for p in render.build()[2])
    monkeypatch.setattr(render, "UNMEASURED_CHANGES", [(("waived",), "measured.py", change, "a comment")])
    assert any(p.startswith("waived.json: measured at") for p in render.build()[2])  # the first link alone: stale
