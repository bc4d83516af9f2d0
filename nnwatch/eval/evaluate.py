"""Score clean and anomalous data sets with a monitor and tabulate detection quality."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..calibration.calibrate import collect_scores
from ..errors import InputError
from ..sources import ArraySource, as_source, in_memory
from .metrics import summarize
from .selective import risk_coverage, selective_summary
from .svg import thin


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
    errors : dict
        With ``errors=True``: detector -> how well it discards the model's own mistakes on the
        clean set (:func:`nnwatch.eval.selective.selective_summary`: AURC, E-AURC with
        bootstrap intervals, coverage and selective risk at the calibrated flag), plus its
        risk-coverage curve (``curve``: coverage, risk; thinned for plots) and ``n_errors``.
    """

    id_name: str
    id_scores: dict[str, np.ndarray]
    id_flags: dict[str, np.ndarray]
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        if not sets:
            return "\n".join(([self.errors_markdown()] if self.errors else [])
                             + [f"note: {n}" for n in self.notes])
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
        if self.errors:
            lines += ["", self.errors_markdown()]
        lines += [""] + [f"note: {n}" for n in self.notes] if self.notes else []
        return "\n".join(lines)

    def errors_markdown(self) -> str:
        """The misclassification table (AURC, E-AURC, the calibrated flag's coverage and risk).

        Returns
        -------
        str
            Markdown; empty without ``errors``.
        """
        if not self.errors:
            return ""
        first = next(iter(self.errors.values()))
        lines = [f"The model's own errors on the clean set ({first['n_errors']} of {first['n']} misclassified; "
                 "inputs rejected in score order; lower AURC is better; 95% bootstrap intervals)", "",
                 "| detector | AURC | E-AURC | coverage at flag | selective risk at flag | errors flagged |",
                 "|---|---|---|---|---|---|"]
        best = min(v["aurc"] for v in self.errors.values())
        for d, v in sorted(self.errors.items(), key=lambda kv: kv[1]["aurc"]):
            a, (lo, hi) = v["aurc"], v["aurc_ci"]
            cell = f"**{a:.4f}**" if a == best else f"{a:.4f}"
            f = v.get("at_flag")
            flag = (f"{f['coverage']:.3f} | {_fmt(f['selective_risk'])} | {_fmt(f['errors_caught'])}" if f
                    else "- | - | -")
            lines.append(f"| {d} | {cell} [{lo:.4f}, {hi:.4f}] | {v['e_aurc']:.4f} [{v['e_aurc_ci'][0]:.4f}, "
                         f"{v['e_aurc_ci'][1]:.4f}] | {flag} |")
        lines.append(f"\nwithout a monitor: coverage 1, risk {first['risk']:.4f}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary (no per-sample scores).

        Returns
        -------
        dict
            id set, sizes and rows.
        """
        errors = {d: {k: v for k, v in e.items() if k != "curve"} for d, e in self.errors.items()}
        return {"id": self.id_name, "n_id": int(next(iter(self.id_scores.values())).size),
                "sets": {k: v["n"] for k, v in self.sets.items()}, "rows": self.rows, "notes": self.notes,
                **({"errors": errors} if errors else {})}


def _fmt(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3f}"


def evaluate(monitor, clean: ArraySource, anomalous: Mapping[str, np.ndarray | ArraySource],  # type: ignore[no-untyped-def]
             batch_size: int = 256, progress: bool = False, errors: bool = False,
             bootstrap: int = 1000) -> Evaluation:
    """Every detector's metrics on each anomalous set against the clean set.

    Parameters
    ----------
    monitor : Monitor
        A (preferably calibrated) monitor.
    clean : ArraySource, RecordingSource or anything :func:`nnwatch.sources.as_source` takes
        Clean test data (not the calibration data); read into memory.
    anomalous : mapping
        name -> inputs (an array, or a source as for ``clean``) that should be flagged; may be
        empty with ``errors``.
    batch_size : int
        Samples per call.
    progress : bool
        Show progress bars.
    errors : bool
        Also measure how each detector discards the model's own mistakes on ``clean``
        (needs its labels): :attr:`Evaluation.errors`.
    bootstrap : int
        Resamples of the intervals of ``errors``.

    Returns
    -------
    Evaluation
        Scores and metrics.
    """
    declared = getattr(getattr(monitor, "runner", None), "preprocess", None)  # pixels read as the model declares
    clean = in_memory(as_source(clean, preprocess=declared), batch_size)  # a recording or batches: decoded once
    if errors and clean.y is None:
        raise InputError(f"{clean.name} has no labels; the model's errors need them (e.g. idx:, npz: with y, or "
                         "images: with class folders)")
    id_scores, id_flags, id_pred = collect_scores(monitor, clean.x, batch_size, progress, "clean")
    # a column with no score at all (the fused verdict of an uncalibrated monitor) is left out, and said so
    blank = [d for d, s in id_scores.items() if np.isnan(s).all()]
    id_scores = {d: s for d, s in id_scores.items() if d not in blank}
    result = Evaluation(clean.name, id_scores, id_flags, notes=[
        f"{d}: no scores without a calibration (nnwatch calibrate), left out" for d in blank])
    if errors:
        wrong = id_pred != clean.y
        for det, sc in id_scores.items():
            entry = selective_summary(sc, wrong, id_flags.get(det), rounds=bootstrap)
            coverage, risk = risk_coverage(sc, wrong)
            entry["curve"] = thin(coverage, risk)
            entry["n_errors"], entry["n"] = int(wrong.sum()), int(len(wrong))
            entry["risk"] = float(wrong.mean())
            result.errors[det] = entry
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
