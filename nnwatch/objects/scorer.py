"""Detectors on per-object features: one profile per predicted class, several members, one view.

The objects of trusted frames are profiled exactly as tapped activations of a classifier are
(:class:`nnwatch.profile.builder.ProfileBuilder`, the pooled maps as layers, the predicted class
as the class), and every member detector is fitted on that one profile, so a member's score of
an object equals the score a classifier monitor gives the same activation vector.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..errors import InputError, NotFittedError
from ..kernels.layout import layer_offsets, pack_layers
from ..monitor.detector import BatchView, Detector
from ..monitor.registry import make_detector, parse_detector_spec
from ..profile.builder import ProfileBuilder
from ..profile.schema import Profile
from ..profile.signature import compile_tables

LOGIT_MEMBERS = ("energy", "msp", "max_logit")


class MemberScorer:
    """Several detectors fitted on one profile of feature layers.

    Parameters
    ----------
    members : sequence of str
        Detector specs (``"knn:k=10"``); the last layer is the feature layer.
    k_sections, k_top, feature_sample, rare_rate : int, int, int, float
        Profile parameters (as ``nnwatch profile``).
    """

    def __init__(self, members: Sequence[str], k_sections: int = 10, k_top: int = 3, feature_sample: int = 2000,
                 rare_rate: float = 0.01) -> None:
        if not members:
            raise InputError("give at least one member detector")
        self.members = list(members)
        self.specs = [parse_detector_spec(m) for m in self.members]
        self.k_sections, self.k_top, self.feature_sample, self.rare_rate = k_sections, k_top, feature_sample, rare_rate

    def fit(self, layers: Sequence[np.ndarray], y: np.ndarray, n_classes: int) -> "MemberScorer":
        """Profile the trusted vectors and fit every member.

        Parameters
        ----------
        layers : sequence of numpy.ndarray
            float32 ``(N, n_l)`` per layer.
        y : numpy.ndarray
            int ``(N,)`` class of each vector (-1: left out).
        n_classes : int
            Classes.

        Returns
        -------
        MemberScorer
            self.
        """
        layers = [np.ascontiguousarray(a, np.float32) for a in layers]
        sizes = [a.shape[1] for a in layers]
        builder = ProfileBuilder(sizes, n_classes, k_sections=self.k_sections, k_top=min(self.k_top, min(sizes)),
                                 feature_layer=len(layers) - 1, feature_sample=self.feature_sample)
        y = np.asarray(y, np.int64)
        builder.update_ranges(layers, y).finish_ranges().update_sections(layers, y)
        digest = hashlib.sha256(b"".join(a.tobytes() for a in layers)).hexdigest()
        return self.from_profile(builder.build(digest, [f"map[{i}]" for i in range(len(layers))], dataset="objects"))

    def from_profile(self, profile: Profile) -> "MemberScorer":
        """Fit every member on a profile already built (or loaded).

        Parameters
        ----------
        profile : Profile
            The objects' profile.

        Returns
        -------
        MemberScorer
            self.
        """
        self.profile_ = profile
        self.offsets_ = layer_offsets(list(profile.layer_sizes))
        self.tables_ = compile_tables(profile, float(self.rare_rate), warn=False)
        self.detectors_: list[Detector] = [make_detector(name, **params).fit(profile) for name, params in self.specs]
        return self

    def score(self, layers: Sequence[np.ndarray], logits: np.ndarray, pred: np.ndarray,
              only: Sequence[int] | None = None) -> np.ndarray:
        """Every member's score of every vector (higher = more anomalous).

        Parameters
        ----------
        layers : sequence of numpy.ndarray
            float32 ``(M, n_l)`` per layer, sizes as fitted.
        logits : numpy.ndarray
            float32 ``(M, C)`` class logits (zeros where the model gives none: then only
            feature members are meaningful).
        pred : numpy.ndarray
            int64 ``(M,)`` predicted classes.
        only : sequence of int, optional
            Columns (member indices) to compute; the others are NaN, and their detectors do not
            run. Default: every member.

        Returns
        -------
        numpy.ndarray
            float64 ``(M, members)``.

        Raises
        ------
        InputError
            A column in ``only`` that is not a member's index.
        """
        if not hasattr(self, "profile_"):
            raise NotFittedError("fit the member scorer on trusted objects first")
        columns = range(len(self.members)) if only is None else sorted(set(int(k) for k in only))
        if any(not 0 <= k < len(self.members) for k in columns):
            raise InputError(f"member columns must lie in [0, {len(self.members)}), got {list(only or [])}")
        m = int(pred.shape[0])
        out = np.full((m, len(self.members)), np.nan)
        if m == 0:
            return out
        layers = [np.ascontiguousarray(a, np.float32) for a in layers]
        view = BatchView(np.ascontiguousarray(logits, np.float32), pack_layers(layers), self.offsets_,
                         pred=np.ascontiguousarray(pred, np.int64), tables=self.tables_)
        for k in columns:
            out[:, k] = self.detectors_[k].score(view)
        return out
