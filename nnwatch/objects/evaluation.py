"""How well the object monitor separates anomalous objects and frames, against class-logit baselines.

Per frame: AUROC of clean frames against each anomalous set's frames, for the fused frame
p-value (``-log p``) and for the frame's largest object score of each baseline. Per object,
where a set gives the drawn boxes and which of them are anomalous: detections are matched to a
drawn box at IoU >= 0.5; AUROC of anomalous matched objects against known ones (those of the
clean frames and the known objects of the set), for the fused object p-value, every member,
and the baselines. Baselines (higher = more anomalous): ``-logsumexp`` of the class logits (the
energy VOS trains for; here without its training) and ``-max softmax`` (MSP).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape
from typing import Sequence

import numpy as np

from ..eval.metrics import auroc
from ..eval.timeline import thumbnail_png
from ..kernels.roi_reference import box_iou
from .detections import Detections, class_logits
from .object_monitor import ObjectMonitor, ObjectVerdicts

MATCH_IOU = 0.5


def negative_energy(logits: np.ndarray) -> np.ndarray:
    """``-logsumexp(logits)`` per row (higher = more anomalous).

    Parameters
    ----------
    logits : numpy.ndarray
        ``(M, C)``.

    Returns
    -------
    numpy.ndarray
        float64 ``(M,)``.
    """
    z = np.asarray(logits, np.float64)
    if z.shape[0] == 0:
        return np.zeros(0)
    top = z.max(axis=1)
    return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def negative_msp(logits: np.ndarray) -> np.ndarray:
    """``-max softmax(logits)`` per row (higher = more anomalous).

    Parameters
    ----------
    logits : numpy.ndarray
        ``(M, C)``.

    Returns
    -------
    numpy.ndarray
        float64 ``(M,)``.
    """
    z = np.asarray(logits, np.float64)
    if z.shape[0] == 0:
        return np.zeros(0)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return -(e / e.sum(axis=1, keepdims=True)).max(axis=1)


BASELINES = {"energy": negative_energy, "msp": negative_msp}


@dataclass
class DrawnObjects:
    """The objects drawn in each frame of a set (ground truth for per-object evaluation).

    Attributes
    ----------
    boxes : list of numpy.ndarray
        Per frame, ``(k, 4)`` boxes ``x1, y1, x2, y2``.
    anomalous : list of numpy.ndarray
        Per frame, bool ``(k,)``.
    """

    boxes: list[np.ndarray]
    anomalous: list[np.ndarray]

    @classmethod
    def from_padded(cls, boxes: np.ndarray, anomalous: np.ndarray) -> "DrawnObjects":
        """From ``(N, K, 4)`` boxes padded with NaN rows and ``(N, K)`` flags (an ``.npz``'s arrays).

        Parameters
        ----------
        boxes : numpy.ndarray
            Padded boxes.
        anomalous : numpy.ndarray
            Padded flags.

        Returns
        -------
        DrawnObjects
            One entry per frame.
        """
        b, a = np.asarray(boxes, np.float64), np.asarray(anomalous, bool)
        keep = [np.isfinite(row).all(axis=1) for row in b]
        return cls([row[k] for row, k in zip(b, keep)], [row[k] for row, k in zip(a, keep)])

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (N, K, 4) NaN-padded, anomalous (N, K))`` for saving."""
        k = max((len(b) for b in self.boxes), default=0)
        boxes = np.full((len(self.boxes), k, 4), np.nan, np.float32)
        anom = np.zeros((len(self.boxes), k), bool)
        for i, (b, a) in enumerate(zip(self.boxes, self.anomalous)):
            boxes[i, : len(b)], anom[i, : len(a)] = b, a
        return boxes, anom


def matched_drawn(objects: Detections, drawn: DrawnObjects, iou: float = MATCH_IOU) -> np.ndarray:
    """Each detection's drawn object (its index within its frame), or -1 when none overlaps it by ``iou``.

    Parameters
    ----------
    objects : Detections
        Detections of the set's frames.
    drawn : DrawnObjects
        The drawn objects of the same frames.
    iou : float
        Least overlap to match (the drawn object of largest overlap is taken).

    Returns
    -------
    numpy.ndarray
        int ``(M,)``.
    """
    out = np.full(len(objects), -1)
    for i in range(len(objects)):
        f = int(objects.frame[i])
        ious = [box_iou(objects.boxes[i], b) for b in drawn.boxes[f]]
        if ious and max(ious) >= iou:
            out[i] = int(np.argmax(ious))
    return out


def match_objects(objects: Detections, drawn: DrawnObjects, iou: float = MATCH_IOU) -> np.ndarray:
    """Each detection's drawn object: 1 anomalous, 0 known, -1 none at ``iou`` or more.

    Parameters
    ----------
    objects : Detections
        Detections of the set's frames.
    drawn : DrawnObjects
        The drawn objects of the same frames.
    iou : float
        Least overlap to match.

    Returns
    -------
    numpy.ndarray
        int ``(M,)``.
    """
    index = matched_drawn(objects, drawn, iou)
    return np.array([int(drawn.anomalous[int(f)][k]) if k >= 0 else -1 for f, k in zip(objects.frame, index)],
                    dtype=np.int64)


def anomalous_outcomes(objects: Detections, drawn: DrawnObjects, flags: np.ndarray,
                       iou: float = MATCH_IOU) -> dict[str, int]:
    """What became of the drawn anomalous objects: how many some detection found, and how many
    some flagged detection found (several detections may match one drawn object).

    Parameters
    ----------
    objects : Detections
        Detections of the set's frames.
    drawn : DrawnObjects
        The drawn objects.
    flags : numpy.ndarray
        bool ``(M,)`` each detection's flag.
    iou : float
        Least overlap to match.

    Returns
    -------
    dict
        ``drawn``, ``found``, ``flagged`` (counts of drawn anomalous objects) and ``matched_detections``.
    """
    index = matched_drawn(objects, drawn, iou)
    found, flagged, matched = set(), set(), 0
    for i, (f, k) in enumerate(zip(objects.frame, index)):
        if k >= 0 and drawn.anomalous[int(f)][k]:
            matched += 1
            found.add((int(f), int(k)))
            if flags[i]:
                flagged.add((int(f), int(k)))
    return {"drawn": int(sum(int(np.sum(a)) for a in drawn.anomalous)), "found": len(found), "flagged": len(flagged),
            "matched_detections": matched}


def _frame_max(objects: Detections, n_frames: int, values: np.ndarray) -> np.ndarray:
    out = np.full(n_frames, -np.inf)
    np.maximum.at(out, objects.frame, values)
    return out


def _baseline_scores(v: ObjectVerdicts, kind: str) -> dict[str, np.ndarray]:
    if v.objects.class_scores is None:
        return {}
    logits = class_logits(v.objects.class_scores, kind)
    return {name: fn(logits) for name, fn in BASELINES.items()}


def evaluate_objects(monitor: ObjectMonitor, clean: np.ndarray, sets: dict[str, tuple[np.ndarray, DrawnObjects | None]],
                     clean_drawn: DrawnObjects | None = None, batch_size: int = 64) -> dict:
    """Frame and object AUROC of the monitor and the baselines on anomalous sets.

    Parameters
    ----------
    monitor : ObjectMonitor
        Calibrated.
    clean : numpy.ndarray
        Clean frames.
    sets : dict
        name -> (frames, drawn objects or None).
    clean_drawn : DrawnObjects, optional
        The clean frames' drawn objects (known objects for the per-object AUROC).
    batch_size : int
        Frames per call.

    Returns
    -------
    dict
        ``clean`` (frames, flagged share, objects) and ``sets`` (name -> metrics).
    """
    kind = monitor.layout.class_scores
    vc = monitor.score(clean, batch_size, members="all")
    base_c = _baseline_scores(vc, kind)
    known_c = (match_objects(vc.objects, clean_drawn) == 0) if clean_drawn is not None else np.zeros(len(vc.objects), bool)
    out: dict = {"clean": {"frames": int(len(clean)), "frames_flagged": float(vc.frame_flag.mean()),
                           "objects": int(len(vc.objects)),
                           "objects_p_at_alpha": float((vc.object_p <= monitor.alpha_).mean()) if len(vc.objects) else None},
                 "sets": {}, "verdicts": {"clean": vc}}
    for name, (x, drawn) in sets.items():
        v = monitor.score(x, batch_size, members="all")
        base = _baseline_scores(v, kind)
        row: dict = {"frames": int(len(x)), "frames_flagged": float(v.frame_flag.mean()),
                     "frame_auroc": {"fused": auroc(-np.log(vc.frame_p), -np.log(v.frame_p))}}
        for b in base:
            row["frame_auroc"][b] = auroc(_frame_max(vc.objects, len(clean), base_c[b]),
                                          _frame_max(v.objects, len(x), base[b]))
        if drawn is not None:
            lab = match_objects(v.objects, drawn)
            row["anomalous_objects"] = anomalous_outcomes(v.objects, drawn, v.object_flag)
            if (lab == 1).any():
                def split(col_c: np.ndarray, col: np.ndarray) -> float:
                    return auroc(np.concatenate([col_c[known_c], col[lab == 0]]), col[lab == 1])

                row["object_auroc"] = {"fused": split(-np.log(vc.object_p), -np.log(v.object_p))}
                for k, m in enumerate(v.member_names):
                    row["object_auroc"][m] = split(vc.members[:, k], v.members[:, k])
                for b in base:
                    row["object_auroc"][f"{b} (baseline)"] = split(base_c[b], base[b])
        out["sets"][name] = row
        out["verdicts"][name] = v
    return out


def markdown(result: dict) -> str:
    """The evaluation as markdown tables.

    Parameters
    ----------
    result : dict
        From :func:`evaluate_objects`.

    Returns
    -------
    str
        Text.
    """
    c = result["clean"]
    lines = [f"Clean: {c['frames']} frames, {c['frames_flagged']:.1%} flagged, {c['objects']} objects.", "",
             "| set | frames flagged | frame AUROC | object AUROC | anomalous objects found / flagged / drawn |",
             "|---|---|---|---|---|"]
    for name, r in result["sets"].items():
        fa = ", ".join(f"{k} {v:.3f}" for k, v in r["frame_auroc"].items())
        oa = ", ".join(f"{k} {v:.3f}" for k, v in r.get("object_auroc", {}).items()) or "-"
        a = r.get("anomalous_objects")
        det = f"{a['found']} / {a['flagged']} / {a['drawn']}" if a else "-"
        lines.append(f"| {name} | {r['frames_flagged']:.1%} | {fa} | {oa} | {det} |")
    return "\n".join(lines)


def frame_figure(image: np.ndarray, v: ObjectVerdicts, frame: int, scale: int = 3) -> str:
    """One frame as inline SVG: the image, every object's box (flagged ones red), class and p-value.

    Parameters
    ----------
    image : numpy.ndarray
        The frame ``(C, H, W)``.
    v : ObjectVerdicts
        Verdicts of the batch holding it.
    frame : int
        Its index in the batch.
    scale : int
        Display pixels per image pixel.

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    h, w = image.shape[-2:]
    png = thumbnail_png(image)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w * scale}' height='{h * scale}' "
             f"viewBox='0 0 {w} {h}'>"]
    if png:
        parts.append(f"<image href='data:image/png;base64,{base64.b64encode(png).decode()}' width='{w}' "
                     f"height='{h}' style='image-rendering:pixelated'/>")
    for i in np.flatnonzero(v.objects.frame == frame):
        x1, y1, x2, y2 = (float(t) for t in v.objects.boxes[i])
        colour = "#d62728" if v.object_flag[i] else "#2ca02c"
        parts.append(f"<rect x='{x1:.1f}' y='{y1:.1f}' width='{x2 - x1:.1f}' height='{y2 - y1:.1f}' fill='none' "
                     f"stroke='{colour}' stroke-width='{1.5 if v.object_flag[i] else 0.8}'/>")
        parts.append(f"<text x='{x1:.1f}' y='{max(y1 - 1, 4):.1f}' font-size='5' fill='{colour}'>"
                     f"{escape(str(int(v.objects.cls[i])))} p={v.object_p[i]:.2g}</text>")
    parts.append("</svg>")
    return "".join(parts)


def flagged_frames(x: np.ndarray, v: ObjectVerdicts, most: int = 6) -> list[tuple[int, str]]:
    """The ``most`` flagged frames with the smallest p-values, as ``(index, svg)``.

    Parameters
    ----------
    x : numpy.ndarray
        The frames scored.
    v : ObjectVerdicts
        Their verdicts.
    most : int
        How many.

    Returns
    -------
    list of tuple
        Frame index and figure.
    """
    flagged = np.flatnonzero(v.frame_flag)
    order = flagged[np.argsort(v.frame_p[flagged], kind="stable")][:most]
    return [(int(f), frame_figure(x[f], v, int(f))) for f in order]


def report_body(result: dict, frames: dict[str, np.ndarray], sections: Sequence[str] | None = None) -> list[str]:
    """HTML body parts: the tables, then a few flagged frames of each set with their boxes.

    Parameters
    ----------
    result : dict
        From :func:`evaluate_objects`.
    frames : dict
        Set name -> its frames (the same the result was computed on).
    sections : sequence of str, optional
        Which sets to draw (default all).

    Returns
    -------
    list of str
        HTML fragments.
    """
    body = [f"<pre>{escape(markdown(result))}</pre>"]
    for name in sections or list(result["sets"]):
        figs = flagged_frames(frames[name], result["verdicts"][name])
        if figs:
            cells = "".join(f"<figure style='margin:4px'>{svg}<figcaption>frame {f}</figcaption></figure>"
                            for f, svg in figs)
            body.append(f"<h2>{escape(name)}: flagged frames (red: flagged objects)</h2>"
                        f"<div class='grid'>{cells}</div>")
    return body
