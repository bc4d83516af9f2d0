"""``fused``: the fused verdict's column (:mod:`nnwatch.calibration.fused_verdict`).

Its score is the fused statistic of the calibration's member detectors, computed in the
compiled decision pass from their columns; before calibration it is NaN. Nothing to fit.
"""

from __future__ import annotations

import numpy as np

from ...kernels.verdict import SOURCE_FUSED
from ...profile.schema import Profile
from ..detector import BatchView, Detector


class FusedVerdict(Detector):
    """Fisher combination of the member detectors' conformal evidence (computed by the monitor)."""

    name = "fused"
    cost = "full"
    compiled_source = SOURCE_FUSED

    def _fit(self, profile: Profile) -> None:
        pass

    def score(self, view: BatchView) -> np.ndarray:
        # Needs the calibration; only a Monitor computes it (see nnwatch.kernels.verdict).
        return np.full(view.batch, np.nan)
