"""Per-object features: each tapped feature map averaged over each object's box.

A map of size ``(H, W)`` on an input of ``(h, w)`` pixels has stride ``(h / H, w / W)``; the
box is averaged at that stride by :func:`nnwatch.kernels.roi.roi_average` (RoIAlign with one
bin; definition in :func:`nnwatch.kernels.roi_reference.roi_average`). The whole-image average of
the same maps gives the frame's own features, used for frames without objects and for faults
that affect the whole image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from ..kernels.roi import roi_average
from .detections import Detections


def map_strides(maps: Sequence[np.ndarray], image_size: tuple[int, int]) -> list[tuple[float, float]]:
    """Input pixels per cell of each map.

    Parameters
    ----------
    maps : sequence of numpy.ndarray
        ``(B, C, H, W)`` feature maps.
    image_size : tuple of int
        ``(height, width)`` of the model input.

    Returns
    -------
    list of tuple
        ``(sy, sx)`` per map.

    Raises
    ------
    InputError
        A map that is not ``(B, C, H, W)``.
    """
    out = []
    for i, m in enumerate(maps):
        if np.ndim(m) != 4:
            raise InputError(f"tapped tensor {i} has shape {np.shape(m)}; per-object features need (B, C, H, W) "
                             "feature maps (tap convolutional layers, not pooled vectors)")
        out.append((image_size[0] / m.shape[2], image_size[1] / m.shape[3]))
    return out


def object_features(maps: Sequence[np.ndarray], detections: Detections, image_size: tuple[int, int],
                    max_samples: int = 8) -> list[np.ndarray]:
    """Each map averaged over each object's box.

    Parameters
    ----------
    maps : sequence of numpy.ndarray
        ``(B, C_l, H_l, W_l)`` maps of the batch the detections came from.
    detections : Detections
        Objects (cleaned boxes in input pixels).
    image_size : tuple of int
        ``(height, width)`` of the model input.
    max_samples : int
        Most RoIAlign sample points per axis.

    Returns
    -------
    list of numpy.ndarray
        float32 ``(M, C_l)`` per map.
    """
    strides = map_strides(maps, image_size)
    out = []
    for m, stride in zip(maps, strides):
        m = np.ascontiguousarray(m, np.float32)
        if m.shape[0] != detections.n_frames:
            raise InputError(f"maps hold {m.shape[0]} frames, the detections {detections.n_frames}")
        out.append(roi_average(m, detections.boxes, detections.frame, stride, max_samples))
    return out


def frame_features(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each map averaged over the whole frame, float32 ``(B, C_l)`` per map.

    Parameters
    ----------
    maps : sequence of numpy.ndarray
        ``(B, C_l, H_l, W_l)`` maps.

    Returns
    -------
    list of numpy.ndarray
        Per-channel means.
    """
    return [np.asarray(m, np.float32).reshape(m.shape[0], m.shape[1], -1).mean(axis=2, dtype=np.float64)
            .astype(np.float32) for m in maps]
