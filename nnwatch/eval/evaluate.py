"""Score clean and anomalous data sets with a monitor and tabulate detection quality."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..calibration.calibrate import collect_scores
from ..sources import ArraySource, as_source, in_memory
from .metrics import summarize


@dataclass
class Evaluation:
    """Scores and metrics of every detector on one clean and several anomalous sets.

    Attributes
    ----------
    id_name : str
        Clean set.
    id_scores : dict
        detector -> clean scores.
    id_flags : dict
        detector -> clean flags (calibrated detectors only).
    sets : dict
        anomalous set name -> {"scores": {...}, "flags": {...}, "n": int}, and optionally
        "neg_scores" when the set's negatives are not the clean set (plots use them).
    rows : list of dict
        One row per (set, detector): auroc, aupr, fpr_at_95tpr, tpr_at_5fpr (oracle
        threshold on this test data), tpr_cal / fpr_cal (at the thresholds calibrated on
        clean validation data).
    notes : list of str
        What was left out and why (e.g. a column that needs a calibration the monitor lacks).
    """

    id_name: str
    id_scores: dict[str, np.ndarray]
    id_flags: dict[str, np.ndarray]
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, metric: str = "auroc") -> tuple[list[str], list[str], np.ndarray]:
        """Matrix of one metric.

        Parameters
        ----------
        metric : str
            Row key.

        Returns
        -------
        tuple
            ``(set names, detector names, values (sets, detectors))``.
        """
        sets = list(self.sets)
        dets = list(self.id_scores)
        values = np.full((len(sets), len(dets)), np.nan)
        for r in self.rows:
            value = r[metric]
            values[sets.index(r["set"]), dets.index(r["detector"])] = np.nan if value is None else value
        return sets, dets, values

    def markdown(self) -> str:
        """The evaluation as markdown tables (AUROC matrix, then full rows).

        Returns
        -------
        str
            Markdown.
        """
        sets, dets, auc = self.table("auroc")
        lines = ["AUROC (anomalous = positive; higher is better)", "",
                 "| set | n | " + " | ".join(dets) + " |", "|---|---|" + "---|" * len(dets)]
        for i, s in enumerate(sets):
            best = np.nanmax(auc[i])
            cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in auc[i]]
            lines.append(f"| {s} | {self.sets[s]['n']} | " + " | ".join(cells) + " |")
        lines += ["", "| set | detector | AUROC | AUPR | FPR@95%TPR | TPR@5%FPR (oracle) | TPR@cal | FPR@cal (clean) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['set']} | {r['detector']} | {r['auroc']:.3f} | {r['aupr']:.3f} | "
                         f"{r['fpr_at_95tpr']:.3f} | {r['tpr_at_5fpr']:.3f} | {_fmt(r['tpr_cal'])} | {_fmt(r['fpr_cal'])} |")
        lines += [""] + [f"note: {n}" for n in self.notes] if self.notes else []
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary (no per-sample scores).

        Returns
        -------
        dict
            id set, sizes and rows.
        """
        return {"id": self.id_name, "n_id": int(next(iter(self.id_scores.values())).size),
                "sets": {k: v["n"] for k, v in self.sets.items()}, "rows": self.rows, "notes": self.notes}


def _fmt(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"


def evaluate(monitor, clean: ArraySource, anomalous: Mapping[str, np.ndarray | ArraySource],  # type: ignore[no-untyped-def]
             batch_size: int = 256, progress: bool = False) -> Evaluation:
    """Every detector's metrics on each anomalous set against the clean set.

    Parameters
    ----------
    monitor : Monitor
        A (preferably calibrated) monitor.
    clean : ArraySource, RecordingSource or anything :func:`nnwatch.sources.as_source` takes
        Clean test data (not the calibration data); read into memory.
    anomalous : mapping
        name -> inputs (an array, or a source as for ``clean``) that should be flagged.
    batch_size : int
        Samples per call.
    progress : bool
        Show progress bars.

    Returns
    -------
    Evaluation
        Scores and metrics.
    """
    declared = getattr(getattr(monitor, "runner", None), "preprocess", None)  # pixels read as the model declares
    clean = in_memory(as_source(clean, preprocess=declared), batch_size)  # a recording or batches: decoded once
    id_scores, id_flags, _ = collect_scores(monitor, clean.x, batch_size, progress, "clean")
    # a column with no score at all (the fused verdict of an uncalibrated monitor) is left out, and said so
    blank = [d for d, s in id_scores.items() if np.isnan(s).all()]
    id_scores = {d: s for d, s in id_scores.items() if d not in blank}
    result = Evaluation(clean.name, id_scores, id_flags, notes=[
        f"{d}: no scores without a calibration (nnwatch calibrate), left out" for d in blank])
    for name, data in anomalous.items():
        x = data if isinstance(data, np.ndarray) else in_memory(as_source(data, preprocess=declared), batch_size).x
        if len(x) == 0:
            continue
        scores, flags, _ = collect_scores(monitor, x, batch_size, progress, name)
        scores = {d: s for d, s in scores.items() if d not in blank}
        result.sets[name] = {"scores": scores, "flags": flags, "n": int(len(x))}
        for det, s in scores.items():
            if det in blank:
                continue
            row: dict[str, Any] = {"set": name, "detector": det, **summarize(id_scores[det], s)}
            row["tpr_cal"] = float(flags[det].mean()) if det in flags else None
            row["fpr_cal"] = float(id_flags[det].mean()) if det in id_flags else None
            result.rows.append(row)
    return result
