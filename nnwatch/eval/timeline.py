"""A screened recording on a timeline: a self-contained HTML page (inline SVG and PNG thumbnails).

:class:`Timeline` collects, while a recording is screened, what the page shows: per frame its
time, the decision's conformal p-value, the flag and (with ``--stream``) the stream alarm's
capital; and the few most anomalous frames (lowest p-value) as small thumbnails with their ids.
Memory stays bounded: a few numbers per frame and ``keep`` thumbnails.
"""

from __future__ import annotations

import base64
import heapq
import io
import os
from array import array
from html import escape
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from .._optional import require
from .report import html_page
from .svg import time_series

THUMB_PX = 96  # the shorter side of a thumbnail


class Timeline:
    """What the timeline page shows, collected batch by batch.

    Parameters
    ----------
    fpr : float or None
        The calibrated false-alarm rate (the p-value threshold line), None when uncalibrated.
    alarm_capital : float or None
        The stream alarm's threshold on its capital (``2 / delta``), None without a stream.
    keep : int
        Most anomalous frames kept as thumbnails.
    decision : str or None
        The deciding detector: frames with the same p-value are ranked by its score.
    """

    def __init__(self, fpr: float | None, alarm_capital: float | None = None, keep: int = 12,
                 decision: str | None = None) -> None:
        self.fpr, self.alarm_capital, self.keep = fpr, alarm_capital, keep
        self._score_key = None if decision is None else f"score.{decision}"
        self.time, self.p, self.capital = array("d"), array("d"), array("d")
        self.flag, self.alarm = array("b"), array("b")
        self.timed = True
        # The kept frames as a heap whose top is the least anomalous of them: key (-p, score, -index).
        self._worst: list[tuple[float, float, int, str, bytes | None]] = []

    def __len__(self) -> int:
        return len(self.p)

    def add(self, rows: "dict[str, Any] | list[dict[str, Any]]", x: np.ndarray) -> None:
        """Record one screened batch.

        Parameters
        ----------
        rows : dict of columns, or list of dict
            The batch's screen output (``confidence``, ``flag``, ``stream.*``, ``id.*``, the
            decision's ``score.*``), as columns or one dict per input.
        x : numpy.ndarray
            The batch as the model read it (for thumbnails).
        """
        cols = rows if isinstance(rows, dict) else {k: [r.get(k) for r in rows] for k in dict.fromkeys(
            k for r in rows for k in r)}
        n0, n = len(self.p), len(x)
        if n == 0:
            return
        t = _seconds(cols, n)
        if t is None:
            self.timed = False
            t = np.arange(n0, n0 + n, dtype=float)
        p = _floats(cols.get("confidence"), n)
        self.time.extend(t.tolist())
        self.p.extend(p.tolist())
        self.flag.extend(np.asarray(cols.get("flag", np.zeros(n, bool)), bool).astype(np.int8).tolist())
        self.capital.extend(_floats(cols.get("stream.statistic"), n).tolist())
        self.alarm.extend(np.asarray(cols.get("stream.alarm", np.zeros(n, bool)), bool).astype(np.int8).tolist())
        score = _floats(cols.get(self._score_key) if self._score_key else None, n)
        score = np.where(np.isnan(score), -np.inf, score)
        ok = np.flatnonzero(~np.isnan(p))
        # The batch's own most anomalous first (lower p, then higher score, then earlier), at most keep of them.
        ok = ok[np.lexsort((ok, -score[ok], p[ok]))][: self.keep]
        for i in ok.tolist():
            key = (-float(p[i]), float(score[i]), -(n0 + i))
            if len(self._worst) >= self.keep and not key > self._worst[0][:3]:
                break  # this and every later candidate of the batch rank below what is kept
            item = key + (_describe({k: (v[i] if not hasattr(v, "dtype") else v[i].item()) for k, v in cols.items()}),
                          thumbnail_png(x[i]))
            if len(self._worst) < self.keep:
                heapq.heappush(self._worst, item)
            else:
                heapq.heapreplace(self._worst, item)

    def render(self, title: str, notes: dict[str, Any] | None = None) -> str:
        """The page.

        Parameters
        ----------
        title : str
            Page title.
        notes : dict, optional
            Facts shown as a table (model, profile, source, decision ...).

        Returns
        -------
        str
            HTML.
        """
        t = np.frombuffer(self.time, float) if len(self) else np.zeros(0)
        if self.timed and len(self):
            t = t - t[0]
        xlabel = "seconds since the first frame" if self.timed else "frame"
        p = np.frombuffer(self.p, float) if len(self) else np.zeros(0)
        flags = np.frombuffer(self.flag, np.int8).astype(bool) if len(self) else np.zeros(0, bool)
        flagged = int(flags.sum())
        body = [f"<h1>{escape(title)}</h1>"]
        facts = {"frames": len(self), "flagged": f"{flagged} ({flagged / max(len(self), 1):.1%})"} | (notes or {})
        body.append("<table>" + "".join(f"<tr><th>{escape(str(k))}</th><td style='text-align:left'>"
                                        f"{escape(str(v))}</td></tr>" for k, v in facts.items()) + "</table>")
        if len(self) and np.isfinite(p).any():
            surprise = -np.log10(np.clip(p, 1e-12, 1.0))
            hline = None if self.fpr is None else (-np.log10(self.fpr), f"flag at p <= {self.fpr:g}")
            body.append(time_series(t, surprise, "how unlike the training data each frame is", xlabel,
                                    "-log10 p-value", marks=flags, hline=hline))
        else:
            body.append("<p>The profile is not calibrated: no p-values to draw (run nnwatch calibrate).</p>")
        capital = np.frombuffer(self.capital, float) if len(self) else np.zeros(0)
        if self.alarm_capital is not None and np.isfinite(capital).any():
            alarms = np.flatnonzero(np.frombuffer(self.alarm, np.int8))
            vline = None if alarms.size == 0 else (float(t[alarms[0]]), f"alarm at frame {int(alarms[0])}")
            body.append(time_series(t, np.maximum(capital, 1e-12), "stream alarm: capital of the drift test",
                                    xlabel, "capital", hline=(self.alarm_capital, "alarm"), vline=vline,
                                    log_y=True))
        worst = sorted(self._worst, key=lambda item: item[:3], reverse=True)  # most anomalous first
        if worst:
            cells = []
            for neg_p, _, _, text, png in worst:
                img = (f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}' height='{THUMB_PX}' "
                       "style='image-rendering:pixelated'>" if png else "")
                cells.append(f"<figure style='margin:0;font-size:11px;max-width:180px'>{img}<figcaption>"
                             f"p {-neg_p:.3g}<br>{escape(text)}</figcaption></figure>")
            body.append(f"<h2>The {len(worst)} most anomalous frames</h2><div class='grid'>{''.join(cells)}</div>")
        return html_page(title, body)

    def write(self, path: str | os.PathLike, title: str, notes: dict[str, Any] | None = None) -> None:
        """Write the page atomically.

        Parameters
        ----------
        path : str or PathLike
            ``.html`` file.
        title : str
            Page title.
        notes : dict, optional
            Facts shown as a table.
        """
        atomic_write_bytes(path, self.render(title, notes).encode())


def _seconds(cols: dict[str, Any], n: int) -> np.ndarray | None:
    """Each frame's time in seconds from its id columns (header stamp, log time or video time)."""
    for key, scale in (("id.stamp_ns", 1e-9), ("id.log_time_ns", 1e-9), ("id.time_s", 1.0)):
        values = cols.get(key)
        if values is not None and all(v is not None for v in values):
            return np.asarray(values, float) * scale
    return None


def _floats(values: Any, n: int) -> np.ndarray:
    """A column as float64 (NaN where absent)."""
    if values is None:
        return np.full(n, np.nan)
    return np.asarray([np.nan if v is None else v for v in values] if isinstance(values, list) else values, float)


def _describe(row: dict[str, Any]) -> str:
    ids = [f"{k[3:]} {v}" for k, v in row.items() if k.startswith("id.") and v is not None]
    head = f"#{row.get('index', '?')} class {row.get('pred', '?')}"
    if "label" in row:
        head += f" (label {row['label']})"
    why = [f"why: {row['why']}"] if row.get("why") else []  # screen --explain
    return ", ".join([head] + ids + why)


def thumbnail_png(sample: np.ndarray) -> bytes | None:
    """A PNG of one model input, when it looks like an image (CHW or HWC with 1 or 3 channels, or HW)."""
    a = np.asarray(sample, float)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    elif a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] in (1, 3) and a.shape[1] > 3:
        a = np.moveaxis(a, 0, -1)  # (C, H, W) with a tiny W is unlikely; prefer CHW
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or min(a.shape[:2]) < 2:
        return None
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pixels = np.clip((np.nan_to_num(a, nan=lo) - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).astype(np.uint8)
    image_mod = require("PIL.Image", extra="recordings")
    img = image_mod.fromarray(pixels)
    scale = max(1, THUMB_PX // min(pixels.shape[:2]))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), image_mod.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
