"""Tiny SVG charts (line charts, histograms, heat maps) for self-contained HTML reports."""

from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939"]
W, H = 560, 300  # the plot area leaves the right 150 px for the legend
L, R, T, B = 56, 150, 28, 42
MAX_POINTS = 400  # points per drawn line; metrics are computed on the full data elsewhere


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick positions (1, 2 or 5 times a power of ten) inside ``[lo, hi]``.

    Parameters
    ----------
    lo, hi : float
        Axis range.
    target : int
        About how many ticks.

    Returns
    -------
    list of float
        Tick values.
    """
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / (target + 1)
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = np.ceil(lo / step - 1e-9) * step
    ticks = [float(v) for v in np.arange(first, hi + step * 1e-6, step)]
    return [0.0 if abs(v) < step * 1e-9 else v for v in ticks]


def _label(v: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)) if step < 1 else 0)
    return f"{v:.{decimals}f}"


def _frame(title: str, xlabel: str, ylabel: str, x0: float, x1: float, y0: float, y1: float) -> list[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<text x="{(L + W - R) / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
             f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#444"/>']
    xt, yt = nice_ticks(x0, x1), nice_ticks(y0, y1)
    for fx in xt:
        px = float(_sx(np.array(fx), x0, x1))
        parts.append(f'<text x="{px:.1f}" y="{H - B + 14}" text-anchor="middle">{_label(fx, xt)}</text>')
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{H - B}" y2="{H - B + 3}" stroke="#444"/>')
    for fy in yt:
        py = float(_sy(np.array(fy), y0, y1))
        parts.append(f'<text x="{L - 4}" y="{py + 4:.1f}" text-anchor="end">{_label(fy, yt)}</text>')
        parts.append(f'<line x1="{L}" x2="{W - R}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>')
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">{escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{H / 2}" text-anchor="middle" transform="rotate(-90 12 {H / 2})">{escape(ylabel)}</text>')
    return parts


def _sx(x: np.ndarray, x0: float, x1: float) -> np.ndarray:
    return L + (W - L - R) * (x - x0) / max(x1 - x0, 1e-12)


def _sy(y: np.ndarray, y0: float, y1: float) -> np.ndarray:
    return H - B - (H - T - B) * (y - y0) / max(y1 - y0, 1e-12)


def _legend(names: Sequence[str]) -> list[str]:
    # Outside the plot area, to its right: it never covers the data.
    out = []
    x, y = W - R + 10, T + 8
    for i, n in enumerate(names):
        c = PALETTE[i % len(PALETTE)]
        label = n if len(n) <= 20 else n[:19] + "…"
        out.append(f'<rect x="{x}" y="{y + 14 * i - 4}" width="12" height="3" fill="{c}"/>'
                   f'<text x="{x + 16}" y="{y + 14 * i}"><title>{escape(n)}</title>{escape(label)}</text>')
    return out


def thin(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve, first and last kept, evenly spread along its length.

    Parameters
    ----------
    x, y : numpy.ndarray
        The curve.
    max_points : int
        Points to keep.

    Returns
    -------
    tuple of numpy.ndarray
        The thinned curve.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size <= max_points:
        return x, y
    seg = np.hypot(np.diff(x) / max(np.ptp(x), 1e-12), np.diff(y) / max(np.ptp(y), 1e-12))
    along = np.concatenate([[0.0], np.cumsum(seg)])
    keep = np.unique(np.searchsorted(along, np.linspace(0, along[-1], max_points)).clip(0, x.size - 1))
    keep = np.union1d(keep, [0, x.size - 1])
    return x[keep], y[keep]


def line_chart(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str, ylabel: str,
               diagonal: bool = False, limits: tuple[float, float, float, float] | None = None) -> str:
    """Lines, one per series.

    Parameters
    ----------
    series : dict
        name -> (x, y).
    title, xlabel, ylabel : str
        Labels.
    diagonal : bool
        Draw the chance diagonal (ROC curves).
    limits : tuple, optional
        ``(x0, x1, y0, y1)``; default: data range.

    Returns
    -------
    str
        SVG markup.
    """
    if limits is None:
        xs = np.concatenate([np.asarray(v[0], float) for v in series.values()])
        ys = np.concatenate([np.asarray(v[1], float) for v in series.values()])
        limits = (float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max()))
    x0, x1, y0, y1 = limits
    parts = _frame(title, xlabel, ylabel, x0, x1, y0, y1)
    if diagonal:
        parts.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{T}" stroke="#bbb" stroke-dasharray="4"/>')
    for i, (name, (x, y)) in enumerate(series.items()):
        x, y = thin(x, y)
        px, py = _sx(x, x0, x1), _sy(y, y0, y1)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.6"/>')
    parts += _legend(list(series))
    parts.append("</svg>")
    return "".join(parts)


def histogram(groups: dict[str, np.ndarray], title: str, xlabel: str, bins: int = 30) -> str:
    """Overlaid normalized histograms (step outlines); +inf values are counted at the right edge.

    Parameters
    ----------
    groups : dict
        name -> values.
    title, xlabel : str
        Labels.
    bins : int
        Number of bins.

    Returns
    -------
    str
        SVG markup.
    """
    finite = np.concatenate([v[np.isfinite(v)] for v in groups.values()]) if groups else np.zeros(1)
    if finite.size == 0:
        finite = np.zeros(1)
    lo, hi = float(np.min(finite)), float(np.max(finite))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    dens = {}
    for name, v in groups.items():
        v = np.where(np.isfinite(v), v, hi)
        counts, _ = np.histogram(np.clip(v, lo, hi), edges)
        dens[name] = counts / max(v.size, 1)
    ymax = max(float(d.max()) for d in dens.values()) * 1.05 or 1.0
    parts = _frame(title, xlabel, "share of samples", lo, hi, 0.0, ymax)
    for i, (name, d) in enumerate(dens.items()):
        # Step outline closed along the baseline, so the fill stays under the curve.
        xs = np.concatenate([[edges[0]], np.repeat(edges, 2)[1:-1], [edges[-1]]])
        ys = np.concatenate([[0.0], np.repeat(d, 2), [0.0]])
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(_sx(xs, lo, hi), _sy(ys, 0, ymax)))
        c = PALETTE[i % len(PALETTE)]
        parts.append(f'<polyline points="{pts}" fill="{c}" fill-opacity="0.15" stroke="{c}" stroke-width="1.4"/>')
    parts += _legend(list(dens))
    parts.append("</svg>")
    return "".join(parts)


def heatmap(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str,
            vmin: float = 0.5, vmax: float = 1.0, diverging: bool = False) -> str:
    """A labelled heat map with the value printed in each cell.

    Parameters
    ----------
    values : numpy.ndarray
        ``(len(rows), len(cols))``.
    rows, cols : sequence of str
        Labels.
    title : str
        Title.
    vmin, vmax : float
        Colour scale limits.
    diverging : bool
        Red below the middle of the scale, blue above (for signed values such as gaps).

    Returns
    -------
    str
        SVG markup.
    """
    cw, ch, top = 62, 22, 80
    left = 16 + int(6.2 * max((len(r) for r in rows), default=4))  # room for the longest row name
    width, height = left + cw * len(cols) + 60, top + ch * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>']
    for j, c in enumerate(cols):
        x = left + cw * j + cw / 2
        parts.append(f'<text x="{x}" y="{top - 6}" transform="rotate(-35 {x} {top - 6})">{escape(c)}</text>')
    for i, r in enumerate(rows):
        parts.append(f'<text x="{left - 6}" y="{top + ch * i + 15}" text-anchor="end">{escape(r)}</text>')
        for j in range(len(cols)):
            v = float(values[i, j])
            t = 0.0 if not np.isfinite(v) else min(max((v - vmin) / (vmax - vmin), 0.0), 1.0)
            if diverging:
                u = 2 * t - 1  # -1 .. 1
                red, green, blue = ((255, int(255 - 170 * -u), int(255 - 170 * -u)) if u < 0
                                    else (int(255 - 200 * u), int(255 - 90 * u), int(255 - 40 * u)))
            else:
                red, green, blue = int(255 - 200 * t), int(255 - 90 * t), int(255 - 40 * t)
            parts.append(f'<rect x="{left + cw * j}" y="{top + ch * i}" width="{cw - 1}" height="{ch - 1}" '
                         f'fill="rgb({red},{green},{blue})"/>')
            label = "-" if not np.isfinite(v) else f"{v:.3f}"
            parts.append(f'<text x="{left + cw * j + cw / 2}" y="{top + ch * i + 15}" text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def time_series(t: np.ndarray, y: np.ndarray, title: str, xlabel: str, ylabel: str,
                marks: np.ndarray | None = None, mark_name: str = "flagged",
                hline: tuple[float, str] | None = None, vline: tuple[float, str] | None = None,
                log_y: bool = False) -> str:
    """One quantity over time, with marked samples, a threshold line and an event line.

    A long series is drawn as the per-pixel-column maximum of ``y`` (a spike is never thinned
    away) and marks as one dot per column that holds any.

    Parameters
    ----------
    t, y : numpy.ndarray
        Times (increasing) and values; non-finite values are drawn at the top of the range.
    title, xlabel, ylabel : str
        Labels.
    marks : numpy.ndarray of bool, optional
        Samples to mark with a red dot (e.g. flagged frames).
    mark_name : str
        Legend entry of the marks.
    hline : tuple, optional
        ``(value, label)``: a dashed horizontal line (a threshold).
    vline : tuple, optional
        ``(time, label)``: a vertical line (an alarm).
    log_y : bool
        Logarithmic value axis (values must be positive; others are clipped).

    Returns
    -------
    str
        SVG markup.
    """
    t, y = np.asarray(t, float), np.asarray(y, float)
    if log_y:
        y = np.log10(np.clip(y, 1e-300, None))
    finite = y[np.isfinite(y)]
    y0, y1 = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hline is not None:
        h = np.log10(max(hline[0], 1e-300)) if log_y else hline[0]
        y0, y1 = min(y0, h), max(y1, h)
    if y1 <= y0:
        y1 = y0 + 1.0
    y = np.where(np.isfinite(y), y, y1)
    x0, x1 = (float(t.min()), float(t.max())) if t.size else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1.0
    parts = _frame(title, xlabel, ylabel + (" (log10)" if log_y else ""), x0, x1, y0, y1)
    columns = W - L - R
    if t.size > 2 * columns:  # the maximum within each pixel column
        col = np.minimum(((t - x0) / (x1 - x0) * columns).astype(np.int64), columns - 1)
        top = np.full(columns, -np.inf)
        np.maximum.at(top, col, y)
        keep = np.isfinite(top)
        px = np.arange(columns)[keep] + L + 0.5
        py = _sy(top[keep], y0, y1)
    else:
        px, py = _sx(t, x0, x1), _sy(y, y0, y1)
    pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.2"/>')
    names = [ylabel]
    if hline is not None:
        h = np.log10(max(hline[0], 1e-300)) if log_y else hline[0]
        hy = float(_sy(np.array(h), y0, y1))
        parts.append(f'<line x1="{L}" x2="{W - R}" y1="{hy:.1f}" y2="{hy:.1f}" stroke="#777" stroke-dasharray="5 3"/>')
        parts.append(f'<text x="{W - R - 4}" y="{hy - 4:.1f}" text-anchor="end" fill="#555">{escape(hline[1])}</text>')
    if marks is not None and np.any(marks):
        mt, my = t[np.asarray(marks, bool)], y[np.asarray(marks, bool)]
        mx = _sx(mt, x0, x1)
        _, first = np.unique(np.round(mx).astype(np.int64), return_index=True)  # one dot per pixel column
        for a, b in zip(mx[first], _sy(my[first], y0, y1)):
            parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" fill="{PALETTE[1]}"/>')
        names.append(mark_name)
    if vline is not None:
        vx = float(_sx(np.array(vline[0]), x0, x1))
        parts.append(f'<line x1="{vx:.1f}" x2="{vx:.1f}" y1="{T}" y2="{H - B}" stroke="{PALETTE[3]}" stroke-width="2"/>')
        parts.append(f'<text x="{vx + 4:.1f}" y="{T + 12}" fill="{PALETTE[3]}">{escape(vline[1])}</text>')
    parts += _legend(names)
    parts.append("</svg>")
    return "".join(parts)
