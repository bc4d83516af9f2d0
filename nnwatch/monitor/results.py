"""What a monitored call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Verdicts:
    """Per-sample results of one monitored batch.

    The detectors' results are one score matrix (``B x D``, one column per detector) and the
    p-values and flags derived from it in one place (:mod:`nnwatch.kernels.decide`); the
    dictionaries below are views of those columns.

    Attributes
    ----------
    pred : numpy.ndarray
        int64 ``(B,)`` predicted class.
    logits : numpy.ndarray
        float32 ``(B, K)`` (a copy, safe to keep).
    columns : tuple of str
        Detector of each column.
    score_matrix : numpy.ndarray
        float64 ``(B, D)``; higher = more anomalous; +inf for non-finite; NaN in columns
        skipped under the degrade policy.
    p_matrix : numpy.ndarray
        float64 ``(B, D)`` conformal p-values (NaN where uncalibrated or skipped).
    flag_matrix : numpy.ndarray
        bool ``(B, D)``: ``p <= fpr`` of the calibration.
    active : numpy.ndarray
        bool ``(D,)``: columns computed in this call.
    calibrated : numpy.ndarray
        bool ``(D,)``: columns with a calibration.
    flag : numpy.ndarray
        bool ``(B,)``: the decision detector's flag, or True for non-finite inputs.
    confidence : numpy.ndarray
        float64 ``(B,)`` the decision detector's conformal p-value in (0, 1] (0 for
        non-finite inputs; NaN when not calibrated).
    nonfinite_input : numpy.ndarray
        bool ``(B,)``: the input sample held NaN or Inf.
    decision : str
        Detector that set ``flag``.
    timings : dict
        ``infer_ms``, ``monitor_ms``, ``total_ms`` of this call.
    over_budget : bool
        The call exceeded the latency budget.
    degraded : bool
        Activation-based detectors were skipped (degrade policy).
    """

    pred: np.ndarray
    logits: np.ndarray
    columns: tuple[str, ...]
    score_matrix: np.ndarray
    p_matrix: np.ndarray
    flag_matrix: np.ndarray
    active: np.ndarray
    calibrated: np.ndarray
    flag: np.ndarray
    confidence: np.ndarray
    nonfinite_input: np.ndarray
    decision: str
    timings: dict[str, float] = field(default_factory=dict)
    over_budget: bool = False
    degraded: bool = False

    def __len__(self) -> int:
        return int(self.pred.shape[0])

    @cached_property
    def scores(self) -> dict[str, np.ndarray]:
        """Detector name -> float64 ``(B,)`` scores of the detectors run in this call."""
        return {n: self.score_matrix[:, j] for j, n in enumerate(self.columns) if self.active[j]}

    @cached_property
    def flags(self) -> dict[str, np.ndarray]:
        """Detector name -> bool ``(B,)`` flags of the calibrated detectors run in this call."""
        return {n: self.flag_matrix[:, j] for j, n in enumerate(self.columns) if self.active[j] and self.calibrated[j]}

    @cached_property
    def p_values(self) -> dict[str, np.ndarray]:
        """Detector name -> float64 ``(B,)`` conformal p-values of the calibrated detectors run."""
        return {n: self.p_matrix[:, j] for j, n in enumerate(self.columns) if self.active[j] and self.calibrated[j]}

    def records(self, offset: int = 0) -> list[dict[str, Any]]:
        """One plain dict per sample (for JSON/CSV output).

        Parameters
        ----------
        offset : int
            Index of the first sample in the whole data set.

        Returns
        -------
        list of dict
            index, pred, flag, confidence, nonfinite_input, then ``score.<detector>`` and
            ``flag.<detector>`` columns.
        """
        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {
                "index": offset + i, "pred": int(self.pred[i]), "flag": bool(self.flag[i]),
                "confidence": float(self.confidence[i]), "nonfinite_input": bool(self.nonfinite_input[i]),
            }
            for name, values in self.scores.items():
                row[f"score.{name}"] = float(values[i])
            for name, values in self.flags.items():
                row[f"flag.{name}"] = bool(values[i])
            rows.append(row)
        return rows
