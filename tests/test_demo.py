"""`nnwatch demo` runs offline and writes its table, JSON and HTML report."""

from __future__ import annotations

import json

from nnwatch.cli.main import main


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "AUROC per detector" in out and "pgd eps=0.1" in out
    summary = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert summary["test_accuracy"] > 0.9
    rows = {(r["set"], r["detector"]): r for r in summary["evaluation"]["rows"]}
    # Coverage must catch gross distribution shifts on this model.
    assert rows[("uniform noise", "coverage")]["auroc"] > 0.9
    assert rows[("inverted", "coverage")]["auroc"] > 0.9
    html = (tmp_path / "demo" / "report.html").read_text()
    assert html.count("<svg") > 10 and "polyline" in html
