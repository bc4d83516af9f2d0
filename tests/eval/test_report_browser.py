"""The HTML reports render in a real browser: non-blank, self-contained, charts drawn."""

from __future__ import annotations

import numpy as np

from nnwatch.eval.evaluate import evaluate
from nnwatch.eval.report import write_report
from nnwatch.monitor.monitor import Monitor
from nnwatch.sources import ArraySource
from tests.browser import external_references, screenshot


def check_page(html_path, png_path):
    html = html_path.read_text()
    assert external_references(html) == [], "the report must not fetch anything"
    pixels = screenshot(html_path, png_path)
    ink = (pixels.min(axis=2) < 200).mean()  # share of non-white pixels
    colours = len(np.unique(pixels.reshape(-1, 3)[::97], axis=0))
    assert ink > 0.002 and colours > 20, f"the page looks blank (ink {ink:.3f}, {colours} colours)"
    return pixels


def test_evaluation_report_renders(digits_monitor_files, tmp_path):
    f = digits_monitor_files
    mon = Monitor(f["model"], f["profile"], providers="cpu")
    x, y = f["splits"]["test"]
    rng = np.random.default_rng(0)
    sets = {"uniform noise with a long descriptive name": rng.random((100, 64), dtype=np.float32),
            "inverted": (1 - x[:100]).astype(np.float32)}
    ev = evaluate(mon, ArraySource(x, y, "digits test"), sets)
    write_report(tmp_path / "report.html", ev, "nnwatch evaluate", {"model": "digits MLP"})
    check_page(tmp_path / "report.html", tmp_path / "report.png")
