"""Coverage detectors: one column each of the fused kernel's output, plus their combination.

Definitions (``docs/coverage.md``; Rossolini, Biondi, Buttazzo, "Increasing the Confidence
of Deep Neural Networks by Coverage Analysis", IEEE TSE 2022, arXiv:2101.12100):
``nc``, ``kmnc``, ``tknc``, ``nbc`` are shares in [0, 1] of neurons (or top-k slots) in a
state the predicted class's trusted inputs (almost) never showed; ``nb_excess`` is the mean
distance outside the class range in range units; ``coverage`` = mean(nc, kmnc, tknc, nbc).
Samples with NaN/Inf activations score +inf on all of them (``BatchView.coverage_checked``
applies that once per batch).
"""

from __future__ import annotations

import numpy as np

from ...kernels.coverage import SCORE_NAMES
from ...kernels.rules import coverage_mean_rows
from ...kernels.verdict import SOURCE_COMBINED
from ...profile.schema import Profile
from ..detector import BatchView, Detector


class _Column(Detector):
    cost = "full"
    compiled_source = 0

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        return view.coverage_checked[:, self.compiled_source]


class NeuronCoverage(_Column):
    """Share of neurons whose on/off state is rare for the predicted class."""

    name = "nc"
    compiled_source = SCORE_NAMES.index("nc")


class KMultisectionCoverage(_Column):
    """Share of neurons whose value falls in a k-section rare for the predicted class."""

    name = "kmnc"
    compiled_source = SCORE_NAMES.index("kmnc")


class TopKCoverage(_Column):
    """Share of per-layer top-k neurons that are rarely top-k for the predicted class."""

    name = "tknc"
    compiled_source = SCORE_NAMES.index("tknc")


class BoundaryCoverage(_Column):
    """Share of neurons outside the predicted class's [min, max]."""

    name = "nbc"
    compiled_source = SCORE_NAMES.index("nbc")


class BoundaryExcess(_Column):
    """Mean distance outside the predicted class's range, in units of the range width."""

    name = "nb_excess"
    compiled_source = SCORE_NAMES.index("nb_excess")


class CombinedCoverage(Detector):
    """Mean of nc, kmnc, tknc and nbc."""

    name = "coverage"
    cost = "full"
    compiled_source = SOURCE_COMBINED

    def _fit(self, profile: Profile) -> None:
        pass

    def score(self, view: BatchView) -> np.ndarray:
        self.check_fitted(view)
        return coverage_mean_rows(view.coverage_checked, int(view.offsets[-1]), view.top_places)
