"""Charts that read well: round ticks, legends beside the data, bounded line sizes, full names."""

from __future__ import annotations

import re

import numpy as np

from nnwatch.eval.svg import MAX_POINTS, L, R, W, heatmap, line_chart, nice_ticks, thin


def test_ticks_are_round_and_inside_the_range():
    for lo, hi in [(0, 1), (0.02, 0.93), (0, 255), (3.4, 3.43), (-1, 1), (0, 0.0034)]:
        ticks = nice_ticks(lo, hi)
        assert 3 <= len(ticks) <= 8 and all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
        steps = np.diff(ticks)
        assert np.allclose(steps, steps[0])
        mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
        assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6


def test_lines_are_thinned_and_legends_sit_outside_the_plot():
    x = np.linspace(0, 1, 20000)
    tx, ty = thin(x, x ** 2)
    assert len(tx) <= MAX_POINTS + 2 and tx[0] == 0 and tx[-1] == 1
    svg = line_chart({"a curve with a long name": (x, x ** 2)}, "t", "x", "y", limits=(0, 1, 0, 1))
    assert svg.count(",") < 3 * MAX_POINTS
    legend_x = [float(v) for v in re.findall(r'<rect x="([\d.]+)" y="[\d.-]+" width="12"', svg)]
    assert legend_x and all(v >= W - R for v in legend_x)  # right of the plot area, which ends at W - R
    assert L < W - R


def test_heatmap_keeps_long_row_names_on_the_page():
    name = "a set name that is quite long indeed"
    svg = heatmap(np.ones((1, 2)), [name], ["a", "b"], "t")
    x = float(re.search(rf'<text x="([\d.]+)" y="[\d.]+" text-anchor="end">{name}', svg).group(1))
    assert x > 6 * len(name) * 0.9  # right-aligned at x: the name needs about 6 px a character
