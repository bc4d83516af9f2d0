"""Any detector on features a user already has: ``fit_features(features, y)``, ``score_features``.

For people whose pipeline already extracts features (pytorch-ood's ``fit_features`` /
``predict_features``), without an ONNX model: the features are profiled exactly as tapped
activations are (:class:`nnwatch.profile.builder.ProfileBuilder`, two passes over the arrays
given) and the detector is fitted from that profile, so a score here equals the score a
:class:`~nnwatch.monitor.monitor.Monitor` gives the same activations.

The last layer given is the feature (penultimate) layer that Mahalanobis, kNN and the other
feature detectors read; detectors that recompute logits (ReAct, ASH, VIM, ...) need the
classifier head ``logits = features @ W.T + b``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, NotFittedError
from ..kernels.layout import layer_offsets, pack_layers
from ..profile.builder import ProfileBuilder
from ..profile.schema import Profile
from ..profile.signature import compile_tables
from .detector import BatchView, Detector
from .registry import make_detector, parse_detector_spec


def _layers(features: Any) -> list[np.ndarray]:
    layers = [features] if isinstance(features, np.ndarray) else list(features)
    if not layers:
        raise InputError("features is empty; pass an (N, D) array or a list of (N, n_l) arrays, one per layer")
    out = []
    for i, a in enumerate(layers):
        a = np.asarray(a)
        if a.ndim != 2 or a.dtype.kind not in "fiu":
            raise InputError(f"features layer {i}: expected a numeric (N, D) array, got {a.dtype} {a.shape}")
        out.append(np.ascontiguousarray(a, np.float32))
    if len({a.shape[0] for a in out}) != 1:
        raise InputError(f"features layers hold different numbers of samples: {[a.shape[0] for a in out]}")
    return out


class FeatureDetector:
    """One detector fitted on, and scoring, feature arrays.

    Parameters
    ----------
    detector : str or Detector
        A registered name, with parameters if wanted (``"knn:k=10"``), or a Detector instance.
    head : tuple, optional
        ``(W (K, D), b (K,))``, the classifier's final linear layer on the last feature layer;
        needed by detectors that recompute logits.
    k_sections, k_top : int
        Coverage profile parameters (as ``nnwatch profile``).
    feature_sample : int
        Trusted feature vectors kept for kNN and boxes.
    rare_rate : float
        Rarity rate of the coverage tables.

    Attributes
    ----------
    profile_ : Profile
        The profile of the trusted features (after :meth:`fit_features`).
    detector_ : Detector
        The fitted detector (the instance given, or one built from the name).
    """

    def __init__(self, detector: str | Detector, head: tuple[np.ndarray, np.ndarray] | None = None,
                 k_sections: int = 10, k_top: int = 3, feature_sample: int = 2000, rare_rate: float = 0.01) -> None:
        self.detector = detector
        self.head = head
        self.k_sections, self.k_top, self.feature_sample = k_sections, k_top, feature_sample
        self.rare_rate = rare_rate

    def _detector(self) -> Detector:
        if isinstance(self.detector, Detector):
            return self.detector
        if isinstance(self.detector, str):
            name, params = parse_detector_spec(self.detector)
            return make_detector(name, **params)
        raise InputError(f"detector must be a name ('knn', 'react:percentile=95') or a Detector, got {self.detector!r}")

    def _head(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.head is None:
            return None
        w, b = (np.asarray(a, np.float32) for a in self.head)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise InputError(f"head must be (W (K, D), b (K,)), got shapes {w.shape} and {b.shape}")
        return w, b

    def fit_features(self, features: np.ndarray | Sequence[np.ndarray], y: Any,
                     n_classes: int | None = None) -> "FeatureDetector":
        """Profile trusted features and fit the detector on the profile.

        Parameters
        ----------
        features : numpy.ndarray or sequence of numpy.ndarray
            ``(N, D)``, or one ``(N, n_l)`` array per layer (the last is the feature layer).
        y : array_like
            int ``(N,)`` class of each trusted sample (e.g. the label of a correctly classified
            one); -1 leaves a sample out.
        n_classes : int, optional
            Default: the head's rows, else ``max(y) + 1``.

        Returns
        -------
        FeatureDetector
            self.

        Raises
        ------
        InputError
            Arrays of the wrong shape or kind, a head that does not fit the last layer, or a
            detector that cannot be built.
        NotFittedError
            The detector needs what the features cannot give (e.g. a head).
        """
        detector, head = self._detector(), self._head()
        layers = _layers(features)
        y = np.asarray(y)
        if y.shape != (layers[0].shape[0],) or y.dtype.kind not in "iu":
            raise InputError(f"y must be integer labels of shape ({layers[0].shape[0]},), got {y.dtype} {y.shape}")
        if n_classes is None:
            n_classes = head[0].shape[0] if head is not None else int(y.max()) + 1
        if head is not None and head[0].shape[1] != layers[-1].shape[1]:
            raise InputError(f"the head takes {head[0].shape[1]} features; the last layer has {layers[-1].shape[1]}")
        sizes = [a.shape[1] for a in layers]
        builder = ProfileBuilder(sizes, n_classes, k_sections=int(self.k_sections),
                                 k_top=min(int(self.k_top), min(sizes)), feature_layer=len(layers) - 1,
                                 feature_sample=int(self.feature_sample))
        builder.update_ranges(layers, y).finish_ranges().update_sections(layers, y)
        digest = hashlib.sha256(b"".join(a.tobytes() for a in layers)).hexdigest()
        self.profile_: Profile = builder.build(digest, [f"features[{i}]" for i in range(len(layers))],
                                               dataset="fit_features")
        self.offsets_ = layer_offsets(sizes)
        self.tables_ = compile_tables(self.profile_, float(self.rare_rate), warn=False)
        self.head_ = head
        self.detector_ = detector.with_head(head).fit(self.profile_)
        return self

    def score_features(self, features: np.ndarray | Sequence[np.ndarray],
                       logits: np.ndarray | None = None) -> np.ndarray:
        """Score feature arrays (higher = more anomalous).

        Parameters
        ----------
        features : numpy.ndarray or sequence of numpy.ndarray
            Shaped as in :meth:`fit_features`.
        logits : numpy.ndarray, optional
            ``(N, K)``; default: the head applied to the last layer.

        Returns
        -------
        numpy.ndarray
            float64 ``(N,)``; +inf where an input is non-finite.

        Raises
        ------
        NotFittedError
            :meth:`fit_features` was not called.
        InputError
            Layer sizes other than the fitted ones, or logits of the wrong shape (or none, without a
            head).
        """
        if not hasattr(self, "profile_"):
            raise NotFittedError("call fit_features(features, y) first")
        layers = _layers(features)
        sizes = [a.shape[1] for a in layers]
        if sizes != list(self.profile_.layer_sizes):
            raise InputError(f"features have layer sizes {sizes}; fitted on {list(self.profile_.layer_sizes)}")
        if logits is None:
            if self.head_ is None:
                raise InputError("pass the logits, or give FeatureDetector the classifier head (W, b)")
            logits = layers[-1] @ self.head_[0].T + self.head_[1]
        logits = np.ascontiguousarray(logits, np.float32)
        if logits.shape != (layers[0].shape[0], self.profile_.n_classes):
            raise InputError(f"logits must be ({layers[0].shape[0]}, {self.profile_.n_classes}), got {logits.shape}")
        view = BatchView(logits, pack_layers(layers), self.offsets_, tables=self.tables_)
        return np.asarray(self.detector_.score(view), np.float64)
