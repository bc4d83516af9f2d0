"""Synthetic detection scenes: small glyphs (MNIST digits) placed on a canvas with clutter and noise.

The test bed of the object monitor, built at run time from any glyph arrays (MNIST from
``../shared/data``, scikit-learn's bundled 8x8 digits in tests). Each scene holds 1-4 glyphs
scaled to 18-30 pixels, placed with little overlap, their tight boxes as labels; faint strokes
and specks as clutter; Gaussian sensor noise.

Anomalies, each a scene set of its own:

- ``unknown``: one object of a kind never trained on (Fashion-MNIST items), label -1;
- ``style``: one digit in a style never trained on (thickened strokes, or inverted in its box);
- ``noise``: one patch of noise shaped like an object, label -1;
- ``fault``: the whole frame blurred or at low contrast (a sensor fault; objects keep labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

ANOMALIES = ("unknown", "style", "noise", "fault")


@dataclass
class Scenes:
    """Frames with their objects.

    Attributes
    ----------
    images : numpy.ndarray
        float32 ``(N, 1, S, S)`` in ``[0, 1]``.
    boxes : list of numpy.ndarray
        Per frame, float32 ``(k, 4)`` ``x1, y1, x2, y2`` in pixels.
    labels : list of numpy.ndarray
        Per frame, int64 ``(k,)``: the glyph's class, -1 for an unknown object.
    anomalous : list of numpy.ndarray
        Per frame, bool ``(k,)``: the object is the anomaly of its set.
    frame_anomalous : numpy.ndarray
        bool ``(N,)``: the frame holds an anomaly (an anomalous object or a fault).
    """

    images: np.ndarray
    boxes: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    anomalous: list[np.ndarray] = field(default_factory=list)
    frame_anomalous: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def resize(glyph: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D glyph (pixel centres aligned).

    Parameters
    ----------
    glyph : numpy.ndarray
        ``(h, w)`` values.
    height, width : int
        Output size.

    Returns
    -------
    numpy.ndarray
        float32 ``(height, width)``.
    """
    g = np.asarray(glyph, np.float64)
    ys = (np.arange(height) + 0.5) * g.shape[0] / height - 0.5
    xs = (np.arange(width) + 0.5) * g.shape[1] / width - 0.5
    rows = np.stack([np.interp(xs, np.arange(g.shape[1]), r) for r in g])
    return np.stack([np.interp(ys, np.arange(g.shape[0]), c) for c in rows.T], axis=1).astype(np.float32)


def _dilate(g: np.ndarray) -> np.ndarray:
    p = np.pad(g, 1)
    return np.max([p[dy:dy + g.shape[0], dx:dx + g.shape[1]] for dy in range(3) for dx in range(3)], axis=0)


def _blur(img: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    p = np.pad(img, radius, mode="edge")
    rows = np.mean([p[:, i:i + img.shape[1]] for i in range(k)], axis=0)
    return np.mean([rows[i:i + img.shape[0]] for i in range(k)], axis=0)


def _place(canvas: np.ndarray, glyph: np.ndarray, taken: list[np.ndarray], rng: np.random.Generator
           ) -> np.ndarray | None:
    size = canvas.shape[0]
    h, w = glyph.shape
    for _ in range(30):
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        ys, xs = np.nonzero(glyph > 0.2)
        if len(ys) == 0:
            return None
        box = np.array([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1], np.float32)
        if all(_overlap(box, t) < 0.1 for t in taken):
            np.maximum(canvas[y:y + h, x:x + w], glyph, out=canvas[y:y + h, x:x + w])
            return box
    return None


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def make_scenes(glyphs: np.ndarray, labels: np.ndarray, n: int, seed: int = 0, size: int = 96,
                per_frame: tuple[int, int] = (1, 4), scale: tuple[int, int] = (18, 30), anomaly: str | None = None,
                others: np.ndarray | None = None, clutter: int = 6, noise: float = 0.04) -> Scenes:
    """Scenes of glyphs, optionally with one anomaly per frame.

    Parameters
    ----------
    glyphs : numpy.ndarray
        ``(G, h, w)`` or ``(G, 1, h, w)`` glyphs in ``[0, 1]``, bright on dark.
    labels : numpy.ndarray
        ``(G,)`` their classes.
    n : int
        Frames.
    seed : int
        Random seed (the scenes are a function of the arguments).
    size : int
        Canvas side in pixels.
    per_frame : tuple of int
        Fewest and most known objects per frame.
    scale : tuple of int
        Smallest and largest glyph side in pixels.
    anomaly : {"unknown", "style", "noise", "fault"} or None
        The anomaly each frame gets.
    others : numpy.ndarray, optional
        ``(G', h, w)`` glyphs of unknown objects (``anomaly="unknown"``).
    clutter : int
        Most faint strokes per frame.
    noise : float
        Standard deviation of the Gaussian sensor noise.

    Returns
    -------
    Scenes
        The frames, boxes and labels.

    Raises
    ------
    InputError
        Bad sizes, an unknown anomaly, or ``unknown`` without ``others``.
    """
    g = np.asarray(glyphs, np.float32)
    g = g[:, 0] if g.ndim == 4 else g
    if g.ndim != 3 or len(g) != len(labels) or len(g) == 0:
        raise InputError(f"glyphs must be (G, h, w) with one label each, got {np.shape(glyphs)} and {len(labels)} labels")
    if anomaly is not None and anomaly not in ANOMALIES:
        raise InputError(f"anomaly must be one of {ANOMALIES} or None, got {anomaly!r}")
    if anomaly == "unknown" and others is None:
        raise InputError("anomaly 'unknown' needs the unknown objects' glyphs (others=)")
    if not (1 <= per_frame[0] <= per_frame[1]) or not (4 <= scale[0] <= scale[1] < size):
        raise InputError(f"per_frame must be 1 <= lo <= hi and scale 4 <= lo <= hi < size, got {per_frame}, {scale}")
    o = None if others is None else (np.asarray(others, np.float32)[:, 0] if np.ndim(others) == 4
                                     else np.asarray(others, np.float32))
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.float32)
    out = Scenes(images, frame_anomalous=np.zeros(n, bool))
    for f in range(n):
        canvas = images[f, 0]
        for _ in range(int(rng.integers(0, clutter + 1))):  # faint strokes
            y, x = rng.integers(0, size, 2)
            length, angle = rng.integers(4, 14), rng.uniform(0, np.pi)
            t = np.linspace(0, length, 2 * length)
            yy = np.clip((y + t * np.sin(angle)).astype(int), 0, size - 1)
            xx = np.clip((x + t * np.cos(angle)).astype(int), 0, size - 1)
            canvas[yy, xx] = np.maximum(canvas[yy, xx], rng.uniform(0.15, 0.35))
        boxes, labs, anom = [], [], []
        special = anomaly in ("unknown", "style", "noise")
        for j in range(int(rng.integers(per_frame[0], per_frame[1] + 1)) + (1 if special else 0)):
            odd = special and j == 0
            side = int(rng.integers(scale[0], scale[1] + 1))
            if odd and anomaly == "unknown":
                glyph, label = resize(o[rng.integers(len(o))], side, side), -1
            elif odd and anomaly == "noise":
                glyph = np.clip(rng.uniform(0, 1, (side, side)) * (rng.uniform(size=(side, side)) < 0.5), 0, 1)
                glyph = glyph.astype(np.float32) + 0.21 * (glyph > 0)
                glyph, label = np.clip(glyph, 0, 1), -1
            else:
                k = int(rng.integers(len(g)))
                glyph, label = resize(g[k], side, side), int(labels[k])
                if odd:  # style
                    glyph = _dilate(_dilate(glyph)) if rng.uniform() < 0.5 else 1.0 - glyph
            box = _place(canvas, glyph, boxes, rng)
            if box is not None:
                boxes.append(box)
                labs.append(label)
                anom.append(odd)
        if anomaly == "fault":
            canvas[:] = _blur(canvas, 2) if rng.uniform() < 0.5 else 0.45 + 0.2 * canvas
        canvas += rng.normal(0, noise, canvas.shape).astype(np.float32)
        np.clip(canvas, 0, 1, out=canvas)
        out.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        out.labels.append(np.asarray(labs, np.int64))
        out.anomalous.append(np.asarray(anom, bool))
        out.frame_anomalous[f] = anomaly == "fault" or any(anom)
    return out
