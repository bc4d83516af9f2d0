"""Feature-space detectors that need a sample of training features (kept in the profile).

- ``knn``: deep nearest neighbours (Sun, Ming, Zhu, Li, "Out-of-Distribution Detection with
  Deep Nearest Neighbors", ICML 2022). Features ``z = x / ||x||`` of the penultimate layer;
  score = Euclidean distance from ``z`` to its k-th nearest normalized training feature.
  The profile keeps a uniform sample of ``m`` of the ``n`` trusted features, so k is scaled
  like the paper's sampling experiments: ``k = max(1, round(50 * m / n))``, unless given
  (``knn:k=10``).
- ``boxes``: box abstraction monitor (Henzinger, Lukina, Schilling, "Outside the Box:
  Abstraction-Based Monitoring of Neural Networks", ECAI 2020). Each class's sampled features
  are clustered with k-means into up to ``K = 3`` clusters; each cluster gives a box
  ``[min, max]`` per dimension. Score = distance to the nearest box of the predicted class,
  ``min_box max_d excess_d / width_d`` (L-infinity, in units of each box's width; 0 inside a
  box). The paper's binary monitor flags score > 0.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError, NotFittedError
from ...profile.schema import Profile
from ..detector import BatchView, Detector
from ...kernels.rules import finite_or_inf_rows as finite_or_inf


def _sample(profile: Profile) -> tuple[int, np.ndarray, np.ndarray]:
    layer = profile.header.get("feature_layer")
    r = profile.ranges
    if layer is None or r.sample_feats.shape[0] == 0:
        raise NotFittedError("this detector needs a profile with a feature sample (penultimate layer tapped, "
                             "feature_sample > 0)")
    return int(layer), r.sample_feats.astype(np.float64), r.sample_class


def _normalize(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norm > 0, norm, 1.0)


class DeepKNN(Detector):
    """Distance to the k-th nearest normalized training feature."""

    name = "knn"
    cost = "full"

    def __init__(self, k: int | None = None) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise InputError(f"knn k must be a whole number >= 1 (or None: scaled to the profile's sample), got {k!r}")
        self.k = None if k is None else int(k)

    def params(self) -> dict:
        return {} if self.k is None else {"k": self.k}  # the default records nothing, as before k was a parameter

    def _fit(self, profile: Profile) -> None:
        self.layer_, feats, _ = _sample(profile)
        self.bank_ = np.ascontiguousarray(_normalize(feats))
        m, n = len(feats), max(int(profile.ranges.count[-1]), 1)
        if self.k is not None and self.k > m:
            raise NotFittedError(f"knn k={self.k} exceeds the profile's feature sample ({m} features)")
        self.k_ = self.k if self.k is not None else int(min(m, max(1, round(50 * m / n))))

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        z = _normalize(view.layer(self.layer_).astype(np.float64))
        similarity = z @ self.bank_.T
        # the k-th nearest is the k-th most similar (unit vectors: |a-b|^2 = 2 - 2 a.b, decreasing in a.b),
        # so only the selected similarity is turned into a distance
        at = similarity.shape[1] - self.k_
        kth = np.partition(similarity, at, axis=1)[:, at]
        with np.errstate(invalid="ignore"):
            return finite_or_inf(np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0)))


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 25) -> np.ndarray:
    """Cluster labels of Lloyd's k-means with k-means++ seeding (deterministic).

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, D)`` points.
    k : int
        Clusters (at most ``n``).
    seed : int
        Seed of the initialization.
    iters : int
        Lloyd iterations.

    Returns
    -------
    numpy.ndarray
        int64 ``(n,)`` cluster of each point.
    """
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        if d.sum() <= 0:
            break
        centres.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.array(centres)
    labels = np.zeros(len(x), np.int64)
    for _ in range(iters):
        labels = ((x[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    return labels


class OutsideTheBox(Detector):
    """Distance to the nearest k-means box of the predicted class (0 inside a box)."""

    name = "boxes"
    cost = "full"
    clusters = 3

    def _fit(self, profile: Profile) -> None:
        self.layer_, feats, classes = _sample(profile)
        boxes_lo, boxes_hi, owner = [], [], []
        for c in range(profile.n_classes):
            pts = feats[classes == c]
            if len(pts) == 0:
                continue
            labels = kmeans(pts, self.clusters, seed=c)
            for j in np.unique(labels):
                members = pts[labels == j]
                boxes_lo.append(members.min(0))
                boxes_hi.append(members.max(0))
                owner.append(c)
        if not owner:
            raise NotFittedError("no class has sampled features")
        self.lo_ = np.array(boxes_lo)
        self.hi_ = np.array(boxes_hi)
        width = self.hi_ - self.lo_
        # A dimension a box does not extend in is measured in the class-agnostic spread.
        spread = feats.max(0) - feats.min(0)
        self.inv_width_ = 1.0 / np.where(width > 0, width, np.where(spread > 0, spread, 1.0))
        self.owner_ = np.array(owner)
        present = set(owner)
        # Classes without sampled features are measured against every box.
        self.boxes_of_ = [np.flatnonzero(self.owner_ == c) if c in present else np.arange(len(owner))
                          for c in range(profile.n_classes)]

    def distances(self, x: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """L-infinity distance of each point to each given box, in box-width units.

        Parameters
        ----------
        x : numpy.ndarray
            ``(B, D)`` points.
        boxes : numpy.ndarray
            Box indices.

        Returns
        -------
        numpy.ndarray
            ``(B, len(boxes))``.
        """
        lo, hi, inv = self.lo_[boxes], self.hi_[boxes], self.inv_width_[boxes]
        excess = np.maximum(np.maximum(lo[None] - x[:, None], x[:, None] - hi[None]), 0.0) * inv[None]
        return excess.max(axis=2)

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        x = view.layer(self.layer_).astype(np.float64)
        out = np.empty(view.batch)
        with np.errstate(invalid="ignore"):
            for c in np.unique(view.pred):
                rows = view.pred == c
                out[rows] = self.distances(x[rows], self.boxes_of_[int(c)]).min(axis=1)
        return finite_or_inf(out)
