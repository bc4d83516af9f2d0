"""What a monitored call returns: :class:`Verdicts`, arrays the caller owns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StreamUpdate:
    """Per-frame stream results of one batch (:class:`nnwatch.monitor.stream.StreamMonitor`).

    Attributes
    ----------
    p_values : numpy.ndarray
        float64 ``(B,)`` online smoothed conformal p-values of the followed column's scores.
    statistic : numpy.ndarray
        float64 ``(B,)`` capital of the score test after each frame.
    class_statistic : numpy.ndarray
        float64 ``(B,)`` capital of the predicted-class test after each frame.
    alarm : numpy.ndarray
        bool ``(B,)``: either test is at or above its threshold after this frame.
    class_alarm : numpy.ndarray
        bool ``(B,)``: the predicted-class test is.
    first_alarm : int or None
        Stream index of the first frame at which either test alarmed since the last reset.
    """

    p_values: np.ndarray
    statistic: np.ndarray
    class_statistic: np.ndarray
    alarm: np.ndarray
    class_alarm: np.ndarray
    first_alarm: int | None


_ARRAYS = ("score_matrix", "p_matrix", "flag_matrix", "flag", "confidence", "nonfinite_input")


class Verdicts:
    """Per-sample results of one monitored batch.

    The detectors' results are one score matrix (``B x D``, one column per detector) and the
    p-values and flags derived from it in one place (:mod:`nnwatch.kernels.verdict`); the
    dictionaries are views of those columns. Every array belongs to the caller: a monitor
    returns copies of its buffers (one copy of one block per call), never its own state, and
    ``active``/``calibrated`` are read-only.

    Attributes
    ----------
    pred : numpy.ndarray
        int64 ``(B,)`` predicted class.
    logits : numpy.ndarray
        float32 ``(B, K)``.
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
        bool ``(D,)``, read-only: columns computed in this call.
    calibrated : numpy.ndarray
        bool ``(D,)``, read-only: columns with a calibration.
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
    stream : StreamUpdate or None
        The attached stream's per-frame results (None without a stream).
    explanations : list or None
        With ``Monitor(explain=True)``: per input, None when not flagged, else why it was
        (:meth:`nnwatch.monitor.explain.Explainer.explain_rows`). None when explanations are off.
    answer : numpy.ndarray or None
        With an error verdict in the calibration (:mod:`nnwatch.calibration.error_verdict`):
        bool ``(B,)``, True where the model's answer may be used (the error detector's score is
        at most its certified threshold, and the input is finite). None without one.
    """

    __slots__ = ("columns", "active", "calibrated", "decision", "over_budget", "degraded", "explanations", "answer",
                 "_arrays", "_block", "_parts", "_shape", "_times", "_stream", "_dicts")

    def __init__(self, pred: np.ndarray, logits: np.ndarray, columns: tuple[str, ...], score_matrix: np.ndarray,
                 p_matrix: np.ndarray, flag_matrix: np.ndarray, active: np.ndarray, calibrated: np.ndarray,
                 flag: np.ndarray, confidence: np.ndarray, nonfinite_input: np.ndarray, decision: str,
                 timings: dict[str, float] | None = None, over_budget: bool = False, degraded: bool = False,
                 stream: StreamUpdate | None = None) -> None:
        self.columns = tuple(columns)
        self.active, self.calibrated = _read_only(active), _read_only(calibrated)
        self.decision, self.over_budget, self.degraded = decision, bool(over_budget), bool(degraded)
        self._arrays = dict(zip(_ARRAYS + ("pred", "logits"), (score_matrix, p_matrix, flag_matrix, flag, confidence,
                                                                nonfinite_input, pred, logits)))
        self._block = self._parts = None
        self._shape = (int(pred.shape[0]), len(self.columns), int(logits.shape[1]) if logits.ndim == 2 else 0)
        t = timings or {}
        self._times = (float(t.get("infer_ms", 0.0)), float(t.get("monitor_ms", 0.0)))
        self._stream = stream
        self._dicts: dict[str, dict[str, np.ndarray]] = {}
        self.explanations: list[dict[str, Any] | None] | None = None
        self.answer: np.ndarray | None = None

    @classmethod
    def from_workspace(cls, ws: Any, columns: tuple[str, ...], active: np.ndarray, calibrated: np.ndarray,
                       decision: str, infer_ms: float, monitor_ms: float, over_budget: bool, degraded: bool,
                       stream_first: int | None | bool = False) -> "Verdicts":
        """Copy a call's verdict out of a :class:`~nnwatch.kernels.verdict.VerdictWorkspace`.

        Parameters
        ----------
        ws : VerdictWorkspace
            The buffers the compiled pass wrote (its verdict block is copied, once).
        columns : tuple of str
            Detector of each column.
        active, calibrated : numpy.ndarray
            Read-only bool ``(D,)`` masks (shared, never written).
        decision : str
            The deciding column.
        infer_ms, monitor_ms : float
            Timings.
        over_budget, degraded : bool
            Budget state of the call.
        stream_first : int, None or False
            False: no stream; otherwise the stream's first alarm (None: none yet).

        Returns
        -------
        Verdicts
            Arrays are views of (or converted from) one copied block.
        """
        v = cls.__new__(cls)
        v.columns, v.active, v.calibrated, v.decision = columns, active, calibrated, decision
        v.over_budget, v.degraded = over_budget, degraded
        v._arrays = None
        v._block = ws.verdict.copy()
        v._parts = ws.parts
        v._shape = (ws.batch, ws.n_columns, ws.n_classes)
        v._times = (infer_ms, monitor_ms)
        v._stream = stream_first
        v._dicts = {}
        v.explanations = None
        v.answer = None
        return v

    def _get(self, name: str) -> np.ndarray:
        arrays = self._arrays
        if arrays is None:
            arrays = self._arrays = {}
        elif name in arrays:
            return arrays[name]
        B, D, C = self._shape
        f = self._block
        scores, p, conf, flags, flag, bad, pred, logits = self._parts[:8]
        if name == "score_matrix":
            out = f[scores : scores + B * D].reshape(B, D)
        elif name == "p_matrix":
            out = f[p : p + B * D].reshape(B, D)
        elif name == "confidence":
            out = f[conf : conf + B]
        elif name == "flag_matrix":
            out = f[flags : flags + B * D].reshape(B, D) != 0.0
        elif name == "flag":
            out = f[flag : flag + B] != 0.0
        elif name == "nonfinite_input":
            out = f[bad : bad + B] != 0.0
        elif name == "pred":
            out = f[pred : pred + B].astype(np.int64)
        else:  # logits
            out = f[logits : logits + B * C].reshape(B, C).astype(np.float32)
        arrays[name] = out
        return out

    pred = property(lambda self: self._get("pred"), doc="int64 ``(B,)`` predicted classes.")
    logits = property(lambda self: self._get("logits"), doc="float32 ``(B, K)`` logits.")
    score_matrix = property(lambda self: self._get("score_matrix"), doc="float64 ``(B, D)`` scores.")
    p_matrix = property(lambda self: self._get("p_matrix"), doc="float64 ``(B, D)`` conformal p-values.")
    flag_matrix = property(lambda self: self._get("flag_matrix"), doc="bool ``(B, D)`` flags.")
    flag = property(lambda self: self._get("flag"), doc="bool ``(B,)`` verdict flags.")
    confidence = property(lambda self: self._get("confidence"), doc="float64 ``(B,)`` decision p-values.")
    nonfinite_input = property(lambda self: self._get("nonfinite_input"), doc="bool ``(B,)`` NaN/Inf inputs.")

    @property
    def timings(self) -> dict[str, float]:
        """``infer_ms``, ``monitor_ms``, ``total_ms`` of this call."""
        infer, monitor = self._times
        return {"infer_ms": infer, "monitor_ms": monitor, "total_ms": infer + monitor}

    @property
    def stream(self) -> StreamUpdate | None:
        """The attached stream's per-frame results of this batch (None without a stream)."""
        s = self._stream
        if s is False or s is None and self._block is None:
            return None
        if isinstance(s, StreamUpdate):
            return s
        B = self._shape[0]
        f = self._block
        sp, sstat, _, cstat, salarm, calarm = self._parts[8:]
        return StreamUpdate(p_values=f[sp : sp + B], statistic=f[sstat : sstat + B],
                            class_statistic=f[cstat : cstat + B], alarm=f[salarm : salarm + B] != 0.0,
                            class_alarm=f[calarm : calarm + B] != 0.0, first_alarm=s)

    def __len__(self) -> int:
        return self._shape[0]

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (f"Verdicts({len(self)} inputs, {int(np.count_nonzero(self.flag))} flagged by {self.decision!r}, "
                f"columns {list(self.columns)})")

    def _columns(self, key: str, matrix: str, calibrated_only: bool) -> dict[str, np.ndarray]:
        out = self._dicts.get(key)
        if out is None:
            m = self._get(matrix)
            out = self._dicts[key] = {n: m[:, j] for j, n in enumerate(self.columns)
                                      if self.active[j] and (self.calibrated[j] or not calibrated_only)}
        return out

    @property
    def scores(self) -> dict[str, np.ndarray]:
        """Detector name -> float64 ``(B,)`` scores of the detectors run in this call."""
        return self._columns("scores", "score_matrix", False)

    @property
    def flags(self) -> dict[str, np.ndarray]:
        """Detector name -> bool ``(B,)`` flags of the calibrated detectors run in this call."""
        return self._columns("flags", "flag_matrix", True)

    @property
    def p_values(self) -> dict[str, np.ndarray]:
        """Detector name -> float64 ``(B,)`` conformal p-values of the calibrated detectors run."""
        return self._columns("p_values", "p_matrix", True)

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
            ``flag.<detector>`` columns; ``why`` (one line) for a flagged input when explained;
            ``answer`` with an error verdict.
        """
        rows = []
        flag, conf, bad = self.flag, self.confidence, self.nonfinite_input
        scores, flags = self.scores, self.flags
        for i in range(len(self)):
            row: dict[str, Any] = {
                "index": offset + i, "pred": int(self.pred[i]), "flag": bool(flag[i]),
                "confidence": float(conf[i]), "nonfinite_input": bool(bad[i]),
            }
            for name, values in scores.items():
                row[f"score.{name}"] = float(values[i])
            for name, values in flags.items():
                row[f"flag.{name}"] = bool(values[i])
            if self.explanations is not None and self.explanations[i] is not None:
                row["why"] = self.explanations[i]["summary"]
            if self.answer is not None:
                row["answer"] = bool(self.answer[i])
            rows.append(row)
        return rows


def _read_only(arr: np.ndarray) -> np.ndarray:
    """A read-only array: the array itself if it already is, else a read-only copy."""
    arr = np.asarray(arr)
    if not arr.flags.writeable:
        return arr
    out = arr.copy()
    out.flags.writeable = False
    return out
