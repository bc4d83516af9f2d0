"""A small single-scale object detector for the synthetic scenes, and its seeded CPU training.

Anchor-free with YOLOv5's assignment (the cell holding the box centre and its two nearest
neighbours; offsets ``2 sigmoid(t) - 0.5`` so the neighbours can reach the centre) and YOLOv8's
output layout: the forward pass returns ``(B, 4 + C, N)``, per grid cell ``cx, cy, w, h`` in
input pixels and C sigmoid class scores, so the exported ONNX file reads with the ``yolov8``
layout preset and NMS is nnwatch's declared step. Backbone: five 3x3 convolutions with ReLU,
strides 2, 2, 2, 1, 1, the last dilated by 2 (stride 8: a 12x12 grid on 96x96 frames); head: a
3x3 convolution with ReLU, then a 1x1 convolution.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._progress import Progress
from .attacks import torch_module
from .scenes import Scenes

STRIDE = 8
BASE_SIDE = 16.0  # w = BASE_SIDE * exp(tw)


def tiny_detector(n_classes: int = 10, width: int = 32) -> Any:
    """The detector, untrained.

    Parameters
    ----------
    n_classes : int
        Object classes.
    width : int
        Channels of the first convolution (doubled once).

    Returns
    -------
    torch.nn.Module
        ``forward(x) -> (B, 4 + C, N)``; ``raw(x) -> (B, 4 + C, H, W)`` before decoding.
    """
    torch = torch_module()
    nn = torch.nn

    class TinyDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(
                nn.Conv2d(1, width, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, 1, 1), nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, 1, 2, dilation=2), nn.ReLU())
            self.head = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, 1, 1), nn.ReLU(),
                                      nn.Conv2d(2 * width, 4 + n_classes, 1))

        def raw(self, x: Any) -> Any:
            return self.head(self.backbone(x))

        def forward(self, x: Any) -> Any:
            r = self.raw(x)
            b, _, h, w = r.shape
            gy = torch.arange(h, dtype=r.dtype).view(1, h, 1).expand(1, h, w)
            gx = torch.arange(w, dtype=r.dtype).view(1, 1, w).expand(1, h, w)
            cx = (gx + 2 * torch.sigmoid(r[:, 0]) - 0.5) * STRIDE
            cy = (gy + 2 * torch.sigmoid(r[:, 1]) - 0.5) * STRIDE
            bw = BASE_SIDE * torch.exp(r[:, 2].clamp(-4, 4))
            bh = BASE_SIDE * torch.exp(r[:, 3].clamp(-4, 4))
            out = torch.cat([torch.stack([cx, cy, bw, bh], 1), torch.sigmoid(r[:, 4:])], 1)
            return out.reshape(b, 4 + n_classes, h * w)

    return TinyDetector()


def detection_targets(scenes: Scenes, n_classes: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets: the cell holding each box centre and its two nearest neighbours (YOLOv5).

    On a collision the larger object keeps the cell.

    Parameters
    ----------
    scenes : Scenes
        Frames and boxes; objects labelled -1 are ignored (background).
    n_classes : int
        Classes.
    grid : int
        Cells per side.

    Returns
    -------
    tuple
        ``(classes float32 (N, C, g, g) one-hot, boxes float32 (N, 4, g, g) as the centre's
        offset from the cell corner in cells (in ``(-0.5, 1.5)``) and log(w / base),
        log(h / base), positive bool (N, g, g))``.
    """
    n = len(scenes)
    cls = np.zeros((n, n_classes, grid, grid), np.float32)
    box = np.zeros((n, 4, grid, grid), np.float32)
    pos = np.zeros((n, grid, grid), bool)
    area = np.zeros((n, grid, grid), np.float32)
    for f, (boxes, labels) in enumerate(zip(scenes.boxes, scenes.labels)):
        for (x1, y1, x2, y2), c in zip(boxes, labels):
            if c < 0:
                continue
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            gx, gy = cx / STRIDE, cy / STRIDE
            i, j = min(int(gy), grid - 1), min(int(gx), grid - 1)
            di = -1 if gy - i < 0.5 else 1
            dj = -1 if gx - j < 0.5 else 1
            for ci, cj in ((i, j), (i + di, j), (i, j + dj)):
                if not (0 <= ci < grid and 0 <= cj < grid) or (pos[f, ci, cj] and area[f, ci, cj] >= w * h):
                    continue
                cls[f, :, ci, cj] = 0.0
                cls[f, c, ci, cj] = 1.0
                box[f, :, ci, cj] = [gx - cj, gy - ci, np.log(w / BASE_SIDE), np.log(h / BASE_SIDE)]
                pos[f, ci, cj], area[f, ci, cj] = True, w * h
    return cls, box, pos


def train_detector(model: Any, scenes: Scenes, n_classes: int = 10, epochs: int = 12, lr: float = 2e-3,
                   batch_size: int = 32, seed: int = 0, progress: bool = False) -> Any:
    """Train with Adam on the CPU, deterministically: class BCE on every cell, box L1 on object cells.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`tiny_detector` (trained in place).
    scenes : Scenes
        Training frames.
    n_classes : int
        Classes.
    epochs, lr, batch_size, seed : int, float, int, int
        Optimization settings.
    progress : bool
        A progress line per epoch on stderr.

    Returns
    -------
    torch.nn.Module
        The model in eval mode.
    """
    torch = torch_module()
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    grid = scenes.images.shape[2] // STRIDE
    cls, box, pos = (torch.from_numpy(a) for a in detection_targets(scenes, n_classes, grid))
    x = torch.from_numpy(np.ascontiguousarray(scenes.images))
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    model.train()
    bar = Progress(epochs, "training the detector (epochs)", progress)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for lo in range(0, len(x), batch_size):
            idx = order[lo:lo + batch_size]
            r = model.raw(x[idx])
            p = pos[idx]
            n_pos = max(int(p.sum()), 1)
            loss = bce(r[:, 4:], cls[idx], reduction="sum") / n_pos
            if int(p.sum()):
                pm = p.unsqueeze(1).expand(-1, 4, -1, -1)
                pred = torch.cat([2 * torch.sigmoid(r[:, :2]) - 0.5, r[:, 2:4]], 1)
                loss = loss + 5.0 * (pred[pm] - box[idx][pm]).abs().sum() / n_pos
            opt.zero_grad()
            loss.backward()
            opt.step()
        bar.update(1)
    bar.close()
    return model.eval()
