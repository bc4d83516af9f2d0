"""Streaming, two-pass profile construction; never holds a dataset's activations.

Pass 1 sees every batch once and collects ranges and moments; pass 2 sees every batch again
and counts k-section hits against the pass-1 ranges. In a distributed build, merge the pass-1
:class:`RangeStats` of all parts first, then give the merged ranges to every part's pass 2
(:meth:`ProfileBuilder.with_edges`) so that the pass-2 counts merge exactly.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, NotFittedError, ProfileError
from ..kernels.accumulate import accumulate_ranges, accumulate_sections
from ..kernels.layout import layer_offsets, pack_layers
from .schema import FORMAT_VERSION, Profile, RangeStats, SectionStats


def sample_keys(feats: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """uint64 key per vector: a hash of its bytes and class, so sampling is order-free.

    Parameters
    ----------
    feats : numpy.ndarray
        float32 ``(n, D)``.
    classes : numpy.ndarray
        int64 ``(n,)``.

    Returns
    -------
    numpy.ndarray
        uint64 ``(n,)``.
    """
    out = np.empty(len(feats), np.uint64)
    for i, (row, c) in enumerate(zip(feats, classes)):
        digest = hashlib.blake2b(row.tobytes() + int(c).to_bytes(8, "little"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


class ProfileBuilder:
    """Accumulates a :class:`Profile` batch by batch.

    Parameters
    ----------
    layer_sizes : sequence of int
        Neurons per monitored layer.
    n_classes : int
        Number of classes of the model.
    k_sections : int
        k of k-multisection coverage.
    k_top : int
        k of top-k coverage.
    threshold : "mean" or float
        Neuron-coverage activation threshold: each neuron's global mean, or one value.
    feature_layer : int or None
        Index of the layer whose values feed the class-conditional Gaussian (Mahalanobis).
    feature_sample : int
        How many feature vectors of that layer to keep (bottom-k by a hash of vector and
        class: a uniform sample that merges exactly) for kNN and box detectors; 0 = none.
    """

    def __init__(self, layer_sizes: Sequence[int], n_classes: int, k_sections: int = 10, k_top: int = 3,
                 threshold: str | float = "mean", feature_layer: int | None = None,
                 feature_sample: int = 2000) -> None:
        if not layer_sizes or any(int(s) <= 0 for s in layer_sizes):
            raise InputError(f"layer_sizes must be positive, got {list(layer_sizes)}")
        if int(n_classes) < 1:
            raise InputError(f"n_classes must be >= 1, got {n_classes}")
        if int(k_sections) < 1 or int(k_top) < 1:
            raise InputError(f"k_sections and k_top must be >= 1, got {k_sections}, {k_top}")
        small = [i for i, size in enumerate(layer_sizes) if int(size) < int(k_top)]
        if small:
            raise InputError(f"k_top={k_top} is larger than layer {small[0]} ({layer_sizes[small[0]]} neurons); "
                             f"choose k_top <= {min(int(n) for n in layer_sizes)}")
        if threshold != "mean" and not np.isfinite(float(threshold)):
            raise InputError(f"threshold must be 'mean' or a finite number, got {threshold!r}")
        if feature_layer is not None and not 0 <= feature_layer < len(layer_sizes):
            raise InputError(f"feature_layer {feature_layer} out of range for {len(layer_sizes)} layers")
        self.layer_sizes = [int(s) for s in layer_sizes]
        self.n_classes = int(n_classes)
        self.k_sections = int(k_sections)
        self.k_top = int(k_top)
        self.threshold = threshold
        self.feature_layer = feature_layer
        if int(feature_sample) < 0:
            raise InputError(f"feature_sample must be >= 0, got {feature_sample}")
        self.feature_sample = int(feature_sample) if feature_layer is not None else 0
        self.offsets_ = layer_offsets(self.layer_sizes)
        n_feat = self.layer_sizes[feature_layer] if feature_layer is not None else 0
        self.ranges_ = RangeStats.empty(self.n_classes, int(self.offsets_[-1]), n_feat)
        self.sections_: SectionStats | None = None
        self.skipped_nonfinite_ = 0

    def _prepare(self, layers: Sequence[np.ndarray] | np.ndarray, labels: Any) -> tuple[np.ndarray, int, np.ndarray]:
        if isinstance(layers, np.ndarray):
            raise InputError("pass a list of (batch, n_neurons) arrays, one per layer")
        if len(layers) != len(self.layer_sizes):
            raise InputError(f"expected {len(self.layer_sizes)} layers, got {len(layers)}")
        for i, (a, n) in enumerate(zip(layers, self.layer_sizes)):
            if a.ndim != 2 or a.shape[1] != n:
                raise InputError(f"layer {i}: expected shape (batch, {n}), got {a.shape}")
        buf = pack_layers(layers)
        batch = layers[0].shape[0]
        lab = np.asarray(labels)
        if lab.shape != (batch,) or lab.dtype.kind not in "iu":
            raise InputError(f"labels must be an integer array of shape ({batch},), got {lab.dtype} {lab.shape}")
        lab = lab.astype(np.int64)
        if lab.size and (lab.min() < -1 or lab.max() >= self.n_classes):
            raise InputError(f"labels must be in [-1, {self.n_classes}) (-1 = not trusted)")
        finite = np.ones(batch, dtype=bool)
        for a in layers:
            finite &= np.isfinite(a).all(axis=1)
        if not finite.all():
            lab = np.where(finite, lab, -1)
        return buf, batch, lab

    def update_ranges(self, layers: Sequence[np.ndarray], labels: Any) -> "ProfileBuilder":
        """Pass 1: add one batch.

        Parameters
        ----------
        layers : sequence of numpy.ndarray
            ``(B, n_l)`` per layer.
        labels : array_like
            ``(B,)`` trusted class per sample, -1 to skip. Samples with NaN/Inf activations
            are skipped and counted in ``skipped_nonfinite_``.

        Returns
        -------
        ProfileBuilder
            self.
        """
        if self.sections_ is not None:
            raise ProfileError("pass 1 is finished; build a new ProfileBuilder to add range data")
        buf, batch, lab = self._prepare(layers, labels)
        self.skipped_nonfinite_ += int(np.sum((np.asarray(labels) >= 0) & (lab < 0)))
        r = self.ranges_
        accumulate_ranges(buf, batch, self.offsets_, lab, r.count, r.min, r.max, r.mean, r.m2, r.topk_count,
                          self.k_top)
        if self.feature_layer is not None:
            feats = np.asarray(layers[self.feature_layer], dtype=np.float64)
            keep = lab >= 0
            x, cls = feats[keep], lab[keep]
            np.add.at(r.feat_sum, cls, x)
            r.feat_sum[-1] += x.sum(axis=0)
            r.feat_outer += x.T @ x
            if self.feature_sample and len(x):
                x32 = np.ascontiguousarray(layers[self.feature_layer][keep], np.float32)
                r.add_sample(x32, sample_keys(x32, cls), cls, self.feature_sample)
        return self

    def finish_ranges(self) -> "ProfileBuilder":
        """End pass 1 and use this builder's own ranges as pass-2 edges.

        Returns
        -------
        ProfileBuilder
            self.
        """
        return self.with_edges(self.ranges_)

    def with_edges(self, ranges: RangeStats) -> "ProfileBuilder":
        """Start pass 2 against the ranges (and mean thresholds) of ``ranges``.

        Parameters
        ----------
        ranges : RangeStats
            Pass-1 statistics of the whole dataset (merged over all parts).

        Returns
        -------
        ProfileBuilder
            self; for a part of a distributed build, also replace ``ranges_`` by the part's
            own pass-1 statistics before merging.

        Raises
        ------
        ProfileError
            No trusted sample in ``ranges``.
        """
        if ranges.count[-1] == 0:
            raise ProfileError("no trusted sample: the dataset is empty or no sample was classified correctly "
                               "with enough confidence")
        empty = ranges.count == 0
        lo = np.where(empty[:, None], 0.0, ranges.min).astype(np.float32)
        hi = np.where(empty[:, None], 0.0, ranges.max).astype(np.float32)
        if self.threshold == "mean":
            thr = ranges.mean[-1].astype(np.float32)
        else:
            thr = np.full(lo.shape[1], float(self.threshold), np.float32)
        self.sections_ = SectionStats.empty(lo, hi, thr, self.k_sections)
        return self

    def update_sections(self, layers: Sequence[np.ndarray], labels: Any) -> "ProfileBuilder":
        """Pass 2: add one batch (the same data as pass 1, in any order or split).

        Parameters
        ----------
        layers : sequence of numpy.ndarray
            ``(B, n_l)`` per layer.
        labels : array_like
            ``(B,)`` trusted class per sample, -1 to skip.

        Returns
        -------
        ProfileBuilder
            self.
        """
        if self.sections_ is None:
            raise NotFittedError("call finish_ranges() or with_edges() before pass 2")
        buf, batch, lab = self._prepare(layers, labels)
        s = self.sections_
        accumulate_sections(buf, batch, self.offsets_, lab, s.edges_lo, s.edges_hi, s.inv_width, s.threshold,
                            s.section_hits, s.active_count, s.outside_count)
        return self

    def build(self, fingerprint: str, layer_names: Sequence[str], reduction: str = "mean",
              dataset: str = "", min_confidence: float = 0.0) -> Profile:
        """Assemble the profile.

        Parameters
        ----------
        fingerprint : str
            sha256 of the original model.
        layer_names : sequence of str
            One per layer.
        reduction : str
            How conv maps were reduced to channels.
        dataset : str
            Description of the trusted data.
        min_confidence : float
            Softmax confidence a sample needed to be trusted.

        Returns
        -------
        Profile
            The profile.
        """
        if self.sections_ is None:
            raise NotFittedError("pass 2 has not started; call finish_ranges() and update_sections()")
        if len(layer_names) != len(self.layer_sizes):
            raise InputError(f"{len(layer_names)} layer names for {len(self.layer_sizes)} layers")
        header = {
            "format": "nnwatch.profile",
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "layer_names": list(layer_names),
            "layer_sizes": self.layer_sizes,
            "n_classes": self.n_classes,
            "k_sections": self.k_sections,
            "k_top": self.k_top,
            "threshold": self.threshold,
            "reduction": reduction,
            "feature_layer": self.feature_layer,
            "feature_sample": self.feature_sample,
            "min_confidence": float(min_confidence),
            "dataset": dataset,
            "class_counts": self.ranges_.count[:-1].tolist(),
            "skipped_nonfinite": self.skipped_nonfinite_,
        }
        return Profile(header=header, ranges=self.ranges_, sections=self.sections_)
