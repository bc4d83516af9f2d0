"""The detector interface, the per-batch view detectors read, and the one registry.

A detector turns one batch into one score per sample; higher means more anomalous. It is
fitted from the profile (never from raw data), so every detector reads the same statistics
and the same single onnxruntime run.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import InputError, NotFittedError
from ..kernels.coverage import CoverageTables, coverage_scores
from ..kernels.rules import checked_coverage_rows, logit_stats_rows, top_places
from ..profile.schema import Profile


class BatchView:
    """What detectors see for one batch; coverage is computed once, on first use.

    Parameters
    ----------
    logits : numpy.ndarray
        float32 ``(B, K)``.
    buf : numpy.ndarray
        Layer-blocked activations.
    offsets : numpy.ndarray
        Layer offsets.
    pred : numpy.ndarray, optional
        int64 ``(B,)`` predicted classes (default: argmax of the logits).
    coverage : numpy.ndarray, optional
        float64 ``(B, 6)`` coverage scores already computed for this batch.
    tables : CoverageTables or CompactTables, optional
        Compiled signature, to compute coverage scores on demand.
    parallel : bool or None
        Kernel choice for that; None = by batch size.
    """

    def __init__(self, logits: np.ndarray, buf: np.ndarray, offsets: np.ndarray, pred: np.ndarray | None = None,
                 coverage: np.ndarray | None = None, tables: CoverageTables | None = None,
                 parallel: bool | None = None) -> None:
        self.logits = logits
        self.buf = buf
        self.offsets = offsets
        self.batch = logits.shape[0]
        self.pred = np.argmax(logits, axis=1) if pred is None else pred
        self._tables = tables
        self._parallel = parallel
        self._coverage = coverage
        self._logit_stats: tuple[np.ndarray, np.ndarray] | None = None
        self._checked: np.ndarray | None = None

    @property
    def coverage_checked(self) -> np.ndarray:
        """A fresh copy of :attr:`coverage` with +inf scores where activations were NaN/Inf."""
        if self._checked is None:
            self._checked = checked_coverage_rows(self.coverage)
        return self._checked

    @property
    def logit_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 ``(max logit, logsumexp of logits)`` per sample, computed once."""
        if self._logit_stats is None:
            self._logit_stats = logit_stats_rows(self.logits)
        return self._logit_stats

    @property
    def top_places(self) -> int:
        """``T``, the top-k places of a sample over all layers (needs the tables)."""
        if self._tables is None:
            raise NotFittedError("the top-k places need the coverage tables: give BatchView its tables")
        return top_places(self.offsets, self._tables.k_top)

    @property
    def coverage(self) -> np.ndarray:
        """float64 ``(B, 6)`` fused coverage scores (see :data:`SCORE_NAMES`)."""
        if self._coverage is None:
            if self._tables is None:
                raise NotFittedError("coverage tables are not compiled")
            self._coverage = coverage_scores(self.buf, self.batch, np.ascontiguousarray(self.pred, np.int64),
                                             self._tables, parallel=self._parallel)
        return self._coverage

    def layer(self, index: int) -> np.ndarray:
        """View of one layer's ``(B, n_l)`` block.

        Parameters
        ----------
        index : int
            Layer index.

        Returns
        -------
        numpy.ndarray
            View into the buffer.
        """
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.buf.reshape(self.batch, int(self.offsets[-1]))[:, lo:hi]


class Detector:
    """Base class: ``fit(profile)`` then ``score(view)``.

    Subclasses set ``name`` and ``cost`` ("cheap": logits only; "full": activations) and
    implement :meth:`_fit` and :meth:`score`. A column the monitor fills in compiled code (a
    coverage kernel column, their mean, the fused verdict) sets ``compiled_source``; the
    monitor then never calls its :meth:`score` to score. A compiled column whose cost grows with
    the model (Mahalanobis: features x classes) sets ``timed_alone``: its :meth:`score` runs the
    same compiled loop, so calibration times it alone and holds it to the fusion's cost budget
    like a detector written in Python.
    """

    name: ClassVar[str] = ""
    cost: ClassVar[str] = "cheap"
    compiled_source: ClassVar[int | None] = None
    timed_alone: ClassVar[bool] = False
    needs_head: ClassVar[bool] = False  # recomputes logits: needs the classifier head (with_head)
    fitted_: bool = False
    shape_: tuple | None = None
    _offsets_seen: np.ndarray | None = None
    head_: tuple[np.ndarray, np.ndarray] | None = None

    def with_head(self, head: tuple[np.ndarray, np.ndarray] | None) -> "Detector":
        """Give the detector the model's final linear layer (``logits = W @ features + b``).

        Parameters
        ----------
        head : tuple or None
            ``(W (K, D), b (K,))``, e.g. ``Runner.head``; None when the model has none.

        Returns
        -------
        Detector
            self.
        """
        self.head_ = head
        return self

    def params(self) -> dict:
        """Parameters the scores depend on (recorded with a calibration).

        Returns
        -------
        dict
            JSON-able parameters; empty by default.
        """
        return {}

    def ops(self) -> int:
        """Multiply-adds (or numbers read) per sample this detector adds to a monitored call.

        The count a fused verdict's membership weighs against the model's own multiply-adds,
        instead of a stopwatch. A compiled column of the shared pass costs 0 (the pass runs
        anyway). Otherwise, by default, the logits and every number of the fitted arrays
        (attributes ending in ``_``, also inside lists) are read once per sample: the kNN bank, a
        head's weights, a basis, per-layer statistics; detectors whose scoring reads less
        override it (Mahalanobis: its whitening and whitened means). So every detector outside
        the shared pass counts more than 0.
        A detector written in Python also pays a per-call interpreter cost the count leaves out.

        Returns
        -------
        int
            Per-sample count (after :meth:`fit`).
        """
        self.check_fitted()
        if self.compiled_source is not None and not self.timed_alone:
            return 0
        held = 0
        for k, v in vars(self).items():
            if not k.endswith("_") or k in ("shape_", "head_"):  # the head: copied into what a detector reads
                continue
            for a in (v if isinstance(v, (list, tuple)) else (v,)):
                held += a.size if isinstance(a, np.ndarray) else 0
        return int(held + (self.shape_[0] if self.shape_ is not None else 0))  # and the logits it reads

    def fit(self, profile: Profile) -> "Detector":
        """Derive this detector's state from a profile.

        Parameters
        ----------
        profile : Profile
            The profile.

        Returns
        -------
        Detector
            self.
        """
        if self.needs_head and self.head_ is None:
            raise NotFittedError(f"detector {self.name!r} recomputes logits and needs the classifier head, which this "
                                 "model does not expose as a final Gemm or MatMul+Add on the tapped features")
        self._fit(profile)
        # what a batch must look like (None: a logit detector fitted without a profile checks nothing)
        self.shape_ = None if profile is None else (int(profile.n_classes), tuple(int(n) for n in profile.layer_sizes))
        self.fitted_ = True
        return self

    def _fit(self, profile: Profile) -> None:
        """Learn from the profile (default: nothing to learn)."""

    def feature_layer(self, profile: Profile, sample: bool = False) -> int:
        """Index of the profile's feature (penultimate) layer, for detectors that read it.

        Parameters
        ----------
        profile : Profile
            The profile.
        sample : bool
            Also require the profile's sample of trusted features.

        Returns
        -------
        int
            Layer index.

        Raises
        ------
        NotFittedError
            No feature layer (or no sample), naming this detector.
        """
        layer = profile.header.get("feature_layer")
        r = profile.ranges
        if layer is None or r.feat_sum.shape[1] == 0 or (sample and r.sample_feats.shape[0] == 0):
            what = "a feature sample" if sample else "a feature layer"
            raise NotFittedError(f"{self.name} needs a profile with {what} (penultimate layer tapped)")
        return int(layer)

    def check_fitted(self, view: BatchView | None = None) -> None:
        """Raise unless fitted, and unless ``view`` has the layers and classes it was fitted on.

        Parameters
        ----------
        view : BatchView, optional
            The batch about to be scored.

        Raises
        ------
        NotFittedError
            Not fitted.
        InputError
            The view's layer sizes or class count differ from the profile's.
        """
        if not self.fitted_:
            raise NotFittedError(f"detector {self.name!r} is not fitted; call fit(profile)")
        if view is None or self.shape_ is None or (view.offsets is self._offsets_seen
                                                   and view.logits.shape[1:] == (self.shape_[0],)):
            return  # a monitor passes the same offsets array every call: checked once
        sizes = np.diff(view.offsets)
        if view.logits.ndim != 2 or view.logits.shape[1] != self.shape_[0] or len(sizes) != len(self.shape_[1]) \
                or any(int(a) != b for a, b in zip(sizes, self.shape_[1])):
            raise InputError(f"detector {self.name!r} was fitted on {self.shape_[0]} classes and layers of "
                             f"{list(self.shape_[1])} neurons; this batch has logits {tuple(view.logits.shape)} and "
                             f"layers of {sizes.tolist()}")
        self._offsets_seen = view.offsets

    def score(self, view: BatchView) -> np.ndarray:
        """Per-sample anomaly scores (higher = more anomalous).

        Parameters
        ----------
        view : BatchView
            The batch.

        Returns
        -------
        numpy.ndarray
            float64 ``(B,)``.
        """
        raise NotImplementedError
