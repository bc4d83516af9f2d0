"""Which object members join the fused verdict, chosen from clean frames and anomalies made from them.

A member that cannot tell an odd object from a clean one adds clean-looking evidence to the
fused sum and dilutes the members that can (the diagnosis of docs/coverage.md, "Fusion"). Which
members those are depends on the detector and its taps, so it is measured per monitor, from what
a user has at calibration: clean frames. Each object the detector finds in them is altered in
place, in three ways that keep the frame's pixel values and format (any channel count, any value
range) and make the object unlike any trained class:

- ``shuffle``: the pixels inside the box permuted (the same permutation in every channel): the
  object's intensities without its shape;
- ``blend``: the box's content averaged with another detected object's content, resampled to the
  box (nearest pixel): two objects in one;
- ``swap``: the box's quadrants exchanged diagonally: the object's parts in the wrong places.

The altered frames go through the detector again; a detection at IoU >= 0.5 with an altered box
is a synthetic anomalous object. The members that join are those whose separation (mean AUROC
minus 0.5) is at least half the best member's: the rule of
:mod:`nnwatch.calibration.separation`, the same for classifiers. The benchmark's anomaly sets
(unknown objects, unseen styles, noise patches) never enter the choice; they only validate it
(benchmarks/objects.py).

What the choice sees: the first half of the calibration frames, the half whose objects calibrate
the members and the fused statistic. The frame threshold is calibrated on the second half, which
the choice never reads, so the frame false-alarm guarantee
(:mod:`nnwatch.calibration.frame_level`) holds as before. An object's own p-value, which only
ranks it inside the frame statistic, is compared with objects the choice has seen, so its
marginal validity is no longer exact (the benchmark reports it).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..kernels.roi_reference import box_iou
from .detections import Detections

KINDS = ("shuffle", "blend", "swap")
MATCH_IOU = 0.5
MIN_SIDE = 4  # boxes narrower than this (pixels, after clipping) are left as they are


def _pixel_boxes(det: Detections, height: int, width: int) -> np.ndarray:
    """Each object's box as clipped integer pixel bounds ``(x0, y0, x1, y1)``."""
    b = np.rint(det.boxes).astype(np.int64) if len(det) else np.zeros((0, 4), np.int64)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b


def _resample(patch: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(C, h', w')`` resized to ``(C, h, w)`` by the nearest pixel."""
    ys = np.arange(h) * patch.shape[1] // h
    xs = np.arange(w) * patch.shape[2] // w
    return patch[:, ys[:, None], xs[None, :]]


def altered_frames(x: np.ndarray, det: Detections, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the frames with every detected object altered in place.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, C, H, W)`` frames.
    det : Detections
        Their objects (``det.frame`` indexes ``x``).
    kind : {"shuffle", "blend", "swap"}
        The alteration (see the module's notes).
    seed : int
        Seed of the permutations and blend partners.

    Returns
    -------
    tuple of numpy.ndarray
        ``(altered frames, index of every altered object in det)``.

    Raises
    ------
    InputError
        An unknown kind.
    """
    if kind not in KINDS:
        raise InputError(f"unknown alteration {kind!r}; one of {list(KINDS)}")
    y = np.array(x, copy=True)
    boxes = _pixel_boxes(det, x.shape[2], x.shape[3])
    big = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= MIN_SIDE) & (boxes[:, 3] - boxes[:, 1] >= MIN_SIDE))
    rng = np.random.default_rng(seed)
    for k in big:
        f = int(det.frame[k])
        x0, y0, x1, y1 = (int(v) for v in boxes[k])
        region = y[f, :, y0:y1, x0:x1]
        if kind == "shuffle":
            flat = region.reshape(region.shape[0], -1)
            region[...] = flat[:, rng.permutation(flat.shape[1])].reshape(region.shape)
        elif kind == "blend":
            j = int(big[rng.integers(len(big))])
            a0, b0, a1, b1 = (int(v) for v in boxes[j])
            other = x[int(det.frame[j]), :, b0:b1, a0:a1]
            region[...] = 0.5 * region + 0.5 * _resample(other, y1 - y0, x1 - x0)
        else:  # swap: top-left <-> bottom-right, top-right <-> bottom-left
            h2, w2 = (y1 - y0) // 2, (x1 - x0) // 2
            old = region.copy()
            region[:, :h2, :w2], region[:, h2:2 * h2, w2:2 * w2] = old[:, h2:2 * h2, w2:2 * w2], old[:, :h2, :w2]
            region[:, :h2, w2:2 * w2], region[:, h2:2 * h2, :w2] = old[:, h2:2 * h2, :w2], old[:, :h2, w2:2 * w2]
    return y, big


def matches_altered(found: Detections, altered: Detections, which: np.ndarray, iou: float = MATCH_IOU) -> np.ndarray:
    """Which of ``found`` (detections in altered frames) overlap an altered object at IoU >= ``iou``.

    Parameters
    ----------
    found : Detections
        Detections in the altered frames.
    altered : Detections
        The objects of the original frames.
    which : numpy.ndarray
        Indices into ``altered`` of the objects that were altered.
    iou : float
        Match threshold.

    Returns
    -------
    numpy.ndarray
        bool ``(len(found),)``.
    """
    out = np.zeros(len(found), bool)
    if not len(found) or not len(which):
        return out
    frames = altered.frame[which]
    for f in np.unique(found.frame):
        mine = np.flatnonzero(found.frame == f)
        theirs = which[frames == f]
        for i in mine:  # calibration-time only: the IoU's one definition, box by box
            out[i] = any(box_iou(found.boxes[i], altered.boxes[k]) >= iou for k in theirs)
    return out
