"""What a monitored call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Verdicts:
    """Per-sample results of one monitored batch.

    Attributes
    ----------
    pred : numpy.ndarray
        int64 ``(B,)`` predicted class.
    logits : numpy.ndarray
        float32 ``(B, K)`` (a copy, safe to keep).
    scores : dict
        detector name -> float64 ``(B,)``; higher = more anomalous.
    flags : dict
        detector name -> bool ``(B,)`` for calibrated detectors.
    flag : numpy.ndarray
        bool ``(B,)``: the decision detector's flag, or True for non-finite inputs.
    confidence : numpy.ndarray
        float64 ``(B,)`` calibrated confidence in (0, 1] (conformal p-value of the decision
        score; 0 for non-finite inputs; NaN when not calibrated).
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
    scores: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    flag: np.ndarray
    confidence: np.ndarray
    nonfinite_input: np.ndarray
    decision: str
    timings: dict[str, float] = field(default_factory=dict)
    over_budget: bool = False
    degraded: bool = False

    def __len__(self) -> int:
        return int(self.pred.shape[0])

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
