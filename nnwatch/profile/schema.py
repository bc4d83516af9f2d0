"""The profile: a per-class signature of neuron behaviour on trusted data.

Row ``c`` of each per-class array holds class ``c``; row ``C`` (the last) holds all trusted
samples together ("global"). Two groups of statistics, each mergeable:

- :class:`RangeStats` (pass 1): counts, min/max, mean/M2 (Chan et al. merge), top-k counts,
  and the sums behind the class-conditional Gaussian of the penultimate features.
- :class:`SectionStats` (pass 2): k-section hits, active counts and outside counts, counted
  against fixed edges (the pass-1 ranges of the whole dataset). Two partials merge only if
  they used the same edges, which is what a distributed build arranges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..errors import InputError, ProfileError
from .overlap import sketch_from_json, sketch_to_json, sketch_update

FORMAT_VERSION = 2  # 2: conformal calibration with its settings (version 1 files load without calibration)


@dataclass
class RangeStats:
    """Pass-1 statistics. Shapes: ``R = C + 1`` rows, ``N`` neurons, ``D`` features.

    Attributes
    ----------
    count : numpy.ndarray
        int64 ``(R,)``.
    min, max : numpy.ndarray
        float32 ``(R, N)``.
    mean, m2 : numpy.ndarray
        float64 ``(R, N)``; variance = ``m2 / count``.
    topk_count : numpy.ndarray
        int64 ``(R, N)``: samples in which the neuron was among its layer's top-k.
    feat_sum : numpy.ndarray
        float64 ``(R, D)``: sum of penultimate features (``D = 0`` when not tracked).
    feat_outer : numpy.ndarray
        float64 ``(D, D)``: sum of ``x x^T`` over all trusted samples.
    sample_feats : numpy.ndarray
        float32 ``(m, D)``: a bounded sample of trusted penultimate features (for kNN and
        box detectors), chosen by bottom-m hash keys so that it merges exactly.
    sample_keys : numpy.ndarray
        uint64 ``(m,)``: the keys, ascending.
    sample_class : numpy.ndarray
        int64 ``(m,)``: class of each sampled vector.
    """

    count: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    topk_count: np.ndarray
    feat_sum: np.ndarray
    feat_outer: np.ndarray
    sample_feats: np.ndarray
    sample_keys: np.ndarray
    sample_class: np.ndarray

    @classmethod
    def empty(cls, n_classes: int, n_neurons: int, n_features: int) -> "RangeStats":
        """Zero statistics.

        Parameters
        ----------
        n_classes : int
            ``C``.
        n_neurons : int
            ``N``.
        n_features : int
            ``D`` (0 to skip the feature Gaussian).

        Returns
        -------
        RangeStats
            Empty statistics.
        """
        rows = n_classes + 1
        return cls(
            count=np.zeros(rows, np.int64),
            min=np.full((rows, n_neurons), np.inf, np.float32),
            max=np.full((rows, n_neurons), -np.inf, np.float32),
            mean=np.zeros((rows, n_neurons), np.float64),
            m2=np.zeros((rows, n_neurons), np.float64),
            topk_count=np.zeros((rows, n_neurons), np.int64),
            feat_sum=np.zeros((rows, n_features), np.float64),
            feat_outer=np.zeros((n_features, n_features), np.float64),
            sample_feats=np.zeros((0, n_features), np.float32),
            sample_keys=np.zeros(0, np.uint64),
            sample_class=np.zeros(0, np.int64),
        )

    def add_sample(self, feats: np.ndarray, keys: np.ndarray, classes: np.ndarray, capacity: int) -> None:
        """Keep the ``capacity`` vectors with the smallest keys among the current and new ones.

        Parameters
        ----------
        feats : numpy.ndarray
            float32 ``(n, D)`` candidate vectors.
        keys : numpy.ndarray
            uint64 ``(n,)`` their keys (a hash of the vector and class).
        classes : numpy.ndarray
            int64 ``(n,)`` their classes.
        capacity : int
            Maximum sample size.
        """
        allk = np.concatenate([self.sample_keys, keys])
        order = np.argsort(allk, kind="stable")[:capacity]
        self.sample_keys = allk[order]
        self.sample_feats = np.concatenate([self.sample_feats, feats])[order]
        self.sample_class = np.concatenate([self.sample_class, classes])[order]

    def merge(self, other: "RangeStats") -> "RangeStats":
        """Statistics of the union of both datasets.

        Parameters
        ----------
        other : RangeStats
            Statistics of another, disjoint dataset with the same layout.

        Returns
        -------
        RangeStats
            Merged statistics (min/max/counts exact; moments by Chan's formula).
        """
        _same_shapes(self, other, "range statistics", skip=("sample_feats", "sample_keys", "sample_class"))
        n_a = self.count[:, None].astype(np.float64)
        n_b = other.count[:, None].astype(np.float64)
        n = n_a + n_b
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        mean = np.where(n > 0, self.mean + delta * (n_b / safe), 0.0)
        m2 = self.m2 + other.m2 + delta * delta * (n_a * n_b / safe)
        return RangeStats(
            count=self.count + other.count,
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
            mean=mean,
            m2=m2,
            topk_count=self.topk_count + other.topk_count,
            feat_sum=self.feat_sum + other.feat_sum,
            feat_outer=self.feat_outer + other.feat_outer,
            sample_feats=self.sample_feats,
            sample_keys=self.sample_keys,
            sample_class=self.sample_class,
        )


@dataclass
class SectionStats:
    """Pass-2 statistics against fixed edges.

    Attributes
    ----------
    edges_lo, edges_hi : numpy.ndarray
        float32 ``(R, N)``: the ranges the sections divide.
    threshold : numpy.ndarray
        float32 ``(N,)``: activation threshold of neuron coverage.
    section_hits : numpy.ndarray
        int64 ``(R, N, k)``.
    active_count : numpy.ndarray
        int64 ``(R, N)``: samples with value > threshold.
    outside_count : numpy.ndarray
        int64 ``(R, N)``: samples outside ``[edges_lo, edges_hi]``.
    """

    edges_lo: np.ndarray
    edges_hi: np.ndarray
    threshold: np.ndarray
    section_hits: np.ndarray
    active_count: np.ndarray
    outside_count: np.ndarray

    @classmethod
    def empty(cls, edges_lo: np.ndarray, edges_hi: np.ndarray, threshold: np.ndarray, k: int) -> "SectionStats":
        """Zero counts against the given edges.

        Parameters
        ----------
        edges_lo, edges_hi : numpy.ndarray
            ``(R, N)`` ranges.
        threshold : numpy.ndarray
            ``(N,)`` activation thresholds.
        k : int
            Number of sections.

        Returns
        -------
        SectionStats
            Empty counts.
        """
        rows, n = edges_lo.shape
        return cls(
            edges_lo=np.ascontiguousarray(edges_lo, np.float32),
            edges_hi=np.ascontiguousarray(edges_hi, np.float32),
            threshold=np.ascontiguousarray(threshold, np.float32),
            section_hits=np.zeros((rows, n, k), np.int64),
            active_count=np.zeros((rows, n), np.int64),
            outside_count=np.zeros((rows, n), np.int64),
        )

    @property
    def inv_width(self) -> np.ndarray:
        """float64 ``k / (hi - lo)``, 0 where the range is a single point or empty."""
        k = self.section_hits.shape[2]
        width = self.edges_hi.astype(np.float64) - self.edges_lo.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(width > 0, k / np.where(width > 0, width, 1.0), 0.0)

    @property
    def samples(self) -> np.ndarray:
        """int64 ``(R,)`` samples counted per row."""
        return self.section_hits[:, 0, :].sum(axis=1) + self.outside_count[:, 0]

    def add(self, other: "SectionStats") -> "SectionStats":
        """Add another dataset's counts in place (no temporary copies); same rules as :meth:`merge`.

        Parameters
        ----------
        other : SectionStats
            Counts of another dataset, against the same edges and thresholds.

        Returns
        -------
        SectionStats
            self.

        Raises
        ------
        ProfileError
            Different shapes, edges or thresholds.
        """
        self._check_same_edges(other)
        np.add(self.section_hits, other.section_hits, out=self.section_hits)
        np.add(self.active_count, other.active_count, out=self.active_count)
        np.add(self.outside_count, other.outside_count, out=self.outside_count)
        return self

    def _check_same_edges(self, other: "SectionStats") -> None:
        _same_shapes(self, other, "section statistics")
        for name in ("edges_lo", "edges_hi", "threshold"):
            if not np.array_equal(getattr(self, name), getattr(other, name)):
                raise ProfileError(
                    f"cannot merge section counts built against different {name}; build pass 2 of every "
                    "part against the merged pass-1 ranges (ProfileBuilder.with_edges)"
                )

    def merge(self, other: "SectionStats") -> "SectionStats":
        """Counts over both datasets; both must have used the same edges and thresholds.

        Parameters
        ----------
        other : SectionStats
            Counts of another dataset.

        Returns
        -------
        SectionStats
            Summed counts.

        Raises
        ------
        ProfileError
            Different edges or thresholds.
        """
        self._check_same_edges(other)
        return replace(
            self,
            section_hits=self.section_hits + other.section_hits,
            active_count=self.active_count + other.active_count,
            outside_count=self.outside_count + other.outside_count,
        )


@dataclass
class Calibration:
    """Clean held-out scores, and what they depend on (thresholds are derived from them).

    Attributes
    ----------
    detectors : list of str
        Detector names, the columns of ``scores``.
    scores : numpy.ndarray
        float64 ``(M, n_detectors)`` clean calibration scores.
    classes : numpy.ndarray
        int64 ``(M,)`` predicted class of each calibration sample.
    fpr : float
        Target false-alarm rate ``alpha`` of the conformal flags.
    min_class_samples : int
        Classes with fewer calibration samples share a pooled threshold.
    settings : dict
        What the scores depend on: the monitor's settings (``rare_rate``,
        ``min_signature_samples``, detector parameters) and the profile's statistics
        digest. A monitor configured otherwise refuses the calibration.
    fusion : dict or None
        The fused verdict over some of these detectors (:mod:`nnwatch.calibration.fused_verdict`):
        members, combination rule, split seed, tail quantile.
    errors : dict or None
        The error verdict (:mod:`nnwatch.calibration.error_verdict`): detector, answer threshold,
        target risk and confidence, and what its certification saw.
    """

    detectors: list[str]
    scores: np.ndarray
    classes: np.ndarray
    fpr: float
    min_class_samples: int
    settings: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None


@dataclass
class Profile:
    """A complete profile: header, statistics and (optionally) calibration.

    Attributes
    ----------
    header : dict
        JSON-able description: fingerprint, layers, parameters, dataset, counts.
    ranges : RangeStats
        Pass-1 statistics.
    sections : SectionStats
        Pass-2 statistics.
    calibration : Calibration or None
        Thresholds, once calibrated.
    """

    header: dict[str, Any]
    ranges: RangeStats
    sections: SectionStats
    calibration: Calibration | None = field(default=None)

    @property
    def n_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.header["n_classes"])

    @property
    def layer_sizes(self) -> list[int]:
        """Neurons per layer."""
        return [int(s) for s in self.header["layer_sizes"]]

    @property
    def fingerprint(self) -> str:
        """sha256 of the model the profile was built for."""
        return str(self.header["fingerprint"])

    def digest(self) -> str:
        """Digest of everything monitor scores depend on: structural header fields and statistics.

        Computed once per profile object (statistics are not modified after building).

        Returns
        -------
        str
            Hex blake2b digest.
        """
        cached = self.__dict__.get("_digest")
        if cached is None:
            h = hashlib.blake2b(digest_size=32)
            keys = ("fingerprint", "layer_names", "layer_sizes", "n_classes", "k_sections", "k_top", "threshold",
                    "reduction", "feature_layer", "feature_sample")
            h.update(json.dumps({k: self.header.get(k) for k in keys}, sort_keys=True).encode())
            for group in (self.ranges, self.sections):
                for f in fields(group):
                    arr = np.ascontiguousarray(getattr(group, f.name))
                    h.update(f"{f.name}|{arr.dtype.str}|{arr.shape}|".encode())
                    h.update(arr.tobytes())
            cached = self.__dict__["_digest"] = h.hexdigest()
        return cached

    def merge(self, other: "Profile") -> "Profile":
        """Profile of the union of both datasets.

        Parameters
        ----------
        other : Profile
            Profile of a disjoint dataset, same model and parameters, pass 2 built against
            the same edges.

        Returns
        -------
        Profile
            Merged profile, without calibration (recalibrate after merging).

        Raises
        ------
        ProfileError
            Different model, layout or parameters.
        """
        for key in ("fingerprint", "layer_names", "layer_sizes", "n_classes", "k_sections", "k_top",
                    "reduction", "threshold", "feature_layer", "min_confidence", "feature_sample"):
            if self.header.get(key) != other.header.get(key):
                raise ProfileError(
                    f"cannot merge profiles with different {key}: {self.header.get(key)!r} vs {other.header.get(key)!r}"
                )
        header = dict(self.header)
        header["dataset"] = f"{self.header.get('dataset', '')} + {other.header.get('dataset', '')}"
        ranges = self.ranges.merge(other.ranges)
        ranges.add_sample(other.ranges.sample_feats, other.ranges.sample_keys, other.ranges.sample_class,
                          int(self.header.get("feature_sample", 0)))
        header["class_counts"] = ranges.count[:-1].tolist()
        header["input_stats"] = merge_input_stats(self.header.get("input_stats"), other.header.get("input_stats"))
        header.pop("input_channel_stats", None)
        channels = merge_channel_stats(self.header.get("input_channel_stats"), other.header.get("input_channel_stats"))
        if channels:
            header["input_channel_stats"] = channels
        a, b = self.header.get("input_sketch"), other.header.get("input_sketch")
        header.pop("input_sketch", None)
        if a is not None and b is not None:  # the bottom-k of the union: exact
            (ha, size_a), (hb, size_b) = sketch_from_json(a), sketch_from_json(b)
            size = min(size_a, size_b)
            header["input_sketch"] = sketch_to_json(sketch_update(ha[:size], hb[:size], size), size)
        return Profile(header=header, ranges=ranges, sections=self.sections.merge(other.sections))


def input_stats(x: np.ndarray) -> dict[str, float]:
    """Summary of raw model inputs (count, min, max, sum, sum of squares), NaN/Inf ignored.

    Parameters
    ----------
    x : numpy.ndarray
        A batch of inputs.

    Returns
    -------
    dict
        JSON-able statistics; merge with :func:`merge_input_stats`.
    """
    v = np.asarray(x, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"count": 0, "min": float("inf"), "max": float("-inf"), "sum": 0.0, "sumsq": 0.0}
    return {"count": int(v.size), "min": float(v.min()), "max": float(v.max()), "sum": float(v.sum()),
            "sumsq": float((v * v).sum())}


def merge_input_stats(a: dict[str, float] | None, b: dict[str, float] | None) -> dict[str, float] | None:
    """Statistics of both input sets (None when either side has none).

    Parameters
    ----------
    a, b : dict or None
        Outputs of :func:`input_stats`.

    Returns
    -------
    dict or None
        Merged statistics.
    """
    if a is None or b is None:
        return None
    return {"count": a["count"] + b["count"], "min": min(a["min"], b["min"]), "max": max(a["max"], b["max"]),
            "sum": a["sum"] + b["sum"], "sumsq": a["sumsq"] + b["sumsq"]}


def channel_stats(x: np.ndarray) -> dict[str, Any] | None:
    """Per-channel count, sum and sum of squares of image inputs, NaN/Inf ignored.

    The channel axis is the first per-sample axis when it has at most 4 entries (NCHW), else
    the last one when it has (NHWC).

    Parameters
    ----------
    x : numpy.ndarray
        A batch ``(N, C, H, W)`` or ``(N, H, W, C)``.

    Returns
    -------
    dict or None
        ``{"axis", "count", "sum", "sumsq"}`` (lists, one entry per channel); None when the
        inputs are not images with a channel axis. Merge with :func:`merge_channel_stats`.
    """
    if x.ndim != 4:
        return None
    axis = 1 if x.shape[1] <= 4 else (3 if x.shape[3] <= 4 else None)
    if axis is None:
        return None
    v = np.moveaxis(np.asarray(x, np.float64), axis, 1).reshape(x.shape[0], x.shape[axis], -1)
    ok = np.isfinite(v)
    v = np.where(ok, v, 0.0)
    return {"axis": axis, "count": ok.sum(axis=(0, 2)).tolist(), "sum": v.sum(axis=(0, 2)).tolist(),
            "sumsq": (v * v).sum(axis=(0, 2)).tolist()}


def merge_channel_stats(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per-channel statistics of both input sets.

    Parameters
    ----------
    a, b : dict or None
        Outputs of :func:`channel_stats`; ``{}`` is "nothing seen yet", None "not images".

    Returns
    -------
    dict or None
        The merged statistics; None when either side has none or their layouts differ.
    """
    if a == {}:
        return b
    if b == {}:
        return a
    if a is None or b is None or a["axis"] != b["axis"] or len(a["count"]) != len(b["count"]):
        return None
    return {"axis": a["axis"], **{k: [u + w for u, w in zip(a[k], b[k])] for k in ("count", "sum", "sumsq")}}


def channel_moments(stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation from :func:`channel_stats` sums.

    Parameters
    ----------
    stats : dict
        Per-channel count, sum and sum of squares.

    Returns
    -------
    tuple of numpy.ndarray
        Mean and standard deviation, one per channel (NaN where a channel saw nothing).
    """
    n = np.asarray(stats["count"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(stats["sum"], float) / n
        var = np.asarray(stats["sumsq"], float) / n - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))


def _same_shapes(a: Any, b: Any, what: str, skip: tuple[str, ...] = ()) -> None:
    for f in fields(a):
        if f.name in skip:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x.shape != y.shape:
            raise ProfileError(f"cannot merge {what}: {f.name} has shape {x.shape} vs {y.shape}")


def check_rate(rate: float) -> float:
    """Validate a rarity rate.

    Parameters
    ----------
    rate : float
        Hit rate under which a state counts as rare.

    Returns
    -------
    float
        The rate.

    Raises
    ------
    InputError
        Outside [0, 1).
    """
    if not 0.0 <= float(rate) < 1.0:
        raise InputError(f"rare_rate must be in [0, 1), got {rate}")
    return float(rate)
