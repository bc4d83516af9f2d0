"""Language-monitor results as markdown tables and HTML pages with SVG plots."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from ..eval.metrics import roc_curve
from ..eval.provenance import describe
from ..eval.report import html_page
from ..eval.svg import heatmap, line_chart
from .fit import chosen_row


def separation_heatmap(det: Any) -> str:
    """Layers x heads heat map of (mean unsafe angle - mean safe angle) on calibration prompts.

    Parameters
    ----------
    det : LanguageDetector
        A searched detector file (anything with ``search``, ``n_layers``, ``n_heads``).

    Returns
    -------
    str
        SVG.
    """
    if "unsafe_mean" not in det.search or "safe_mean" not in det.search:
        return "<p>(no per-head search statistics in this detector file)</p>"
    gap = np.array(det.search["unsafe_mean"]) - np.array(det.search["safe_mean"])
    lim = float(np.abs(gap).max()) or 1.0
    return heatmap(gap, [f"L{i}" for i in range(det.n_layers)], [f"H{j}" for j in range(det.n_heads)],
                   "mean angle gap, unsafe - safe (degrees)", vmin=-lim, vmax=lim, diverging=True)


def search_report(det: Any) -> str:
    """HTML page for a head search: heat map, ranking, chosen heads.

    Parameters
    ----------
    det : LanguageDetector
        A searched detector file.

    Returns
    -------
    str
        HTML.
    """
    s = det.search
    rows = "".join(f"<tr><td>L{a}H{b}</td><td>{g:+.3f}</td></tr>" for a, b, g in s.get("ranking", [])[:15])
    chosen = "".join(f"<tr><td>{escape(k)}</td><td>{', '.join(f'L{a}H{b}' for a, b in v.heads)}</td></tr>"
                     for k, v in det.detectors.items() if v.heads)
    rule = (f"; heads with mean safe angle above the {s['percentile']:g}th percentile are excluded from the "
            "published ranking" if isinstance(s.get("percentile"), (int, float)) else "")
    body = [f"<p>Model {escape(det.model)}; {s.get('n_unsafe')} unsafe and {s.get('n_safe')} safe search "
            f"prompts{rule}.</p>", separation_heatmap(det),
            "<h2>Head detectors</h2><table><tr><th>detector</th><th>heads</th></tr>" + chosen + "</table>",
            "<h2>Published ranking (kept heads)</h2><table><tr><th>head</th><th>gap (deg)</th></tr>" + rows
            + "</table>"]
    return html_page("nnwatch heads search", body, heading=True)


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def detection_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of every set, view and detector at both operating points.

    Parameters
    ----------
    rows : list of dict
        ``rows`` of an evaluation.

    Returns
    -------
    list of str
        Lines.
    """
    lines = ["| set | detector | AUROC | detection @1% | false pos. @1% | detection @5% | false pos. @5% "
             "| safe/unsafe |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['detector']} | {_fmt(r['auroc'])} | {_fmt(r['detection_at_1'])} | "
                     f"{_fmt(r['false_positive_at_1'])} | {_fmt(r['detection_at_5'])} | "
                     f"{_fmt(r['false_positive_at_5'])} | {r['n_safe']}/{r['n_unsafe']} |")
    return lines


def summary_table(res: dict[str, Any], level: str = "5") -> list[str]:
    """One row per detector: cost, and per set AUROC / detection / false positives at ``level`` %.

    The ``contrast_pairs`` set's false-positive rate is the over-refusal column.

    Parameters
    ----------
    res : dict
        An evaluation.
    level : str
        ``"1"`` or ``"5"``.

    Returns
    -------
    list of str
        Lines.
    """
    views = [v for v in res["by_set"] if v != "contrast_pairs"]
    head = ["detector", "cost"] + [f"{v}: AUROC / det. / f.p. @{level}%" for v in views]
    if "contrast_pairs" in res["by_set"]:
        head += [f"over-refusal @{level}% (contrast safe)", f"contrast unsafe det. @{level}%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in res["costs"]:
        cells = [d + (" (default)" if d == res.get("default") else ""), res["costs"][d]]
        for v in views:
            r = res["by_set"][v][d]
            cells.append(f"{_fmt(r['auroc'])} / {_fmt(r[f'detection_at_{level}'])} / "
                         f"{_fmt(r[f'false_positive_at_{level}'])}")
        if "contrast_pairs" in res["by_set"]:
            r = res["by_set"]["contrast_pairs"][d]
            cells += [_fmt(r[f"false_positive_at_{level}"]), _fmt(r[f"detection_at_{level}"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cv_table(cv: dict[str, Any], default: str | None = None) -> list[str]:
    """Markdown table of the cross-validated choices (:mod:`nnwatch.heads.fit`).

    Parameters
    ----------
    cv : dict
        The detector file's ``cv``.
    default : str, optional
        The chosen default.

    Returns
    -------
    list of str
        Lines.
    """
    lines = ["| detector | chosen setting | CV: plain AUROC | CV: plain det. @5% | CV: wrapped det. @5% | "
             "CV: wrapped f.p. @5% | criterion |", "|---|---|---|---|---|---|---|"]
    for name, entry in cv.items():
        row = chosen_row(entry)
        setting = "-" if entry["chosen"] is None else f"{entry.get('setting_name', 'layer')} {entry['chosen']:g}"
        star = " (default)" if name == default else ""
        lines.append(f"| {name}{star} | {setting} | {_fmt(row.get('auroc_plain'))} | "
                     f"{_fmt(row.get('detection_plain'))} | "
                     f"{_fmt(row.get('detection_wrapped'))} | {_fmt(row.get('false_positive_wrapped'))} | "
                     f"{_fmt(row.get('criterion'))} |")
    return lines


def latency_table(lat: dict[str, Any]) -> list[str]:
    """Markdown table of the cost of each path as a multiple of a plain prefill.

    Parameters
    ----------
    lat : dict
        Output of :func:`nnwatch.heads.costs.monitoring_costs`.

    Returns
    -------
    list of str
        Lines.
    """
    onnx = any("ratio_onnx" in r for r in lat["rows"])
    lines = ["| path | p50 ms | x plain torch prefill |" + (" x plain onnxruntime prefill |" if onnx else ""),
             "|---|---|---|" + ("---|" if onnx else "")]
    for r in lat["rows"]:
        lines.append(f"| {r['path']} | {r['p50_ms']:.1f} | {r['ratio']:.2f}x |"
                     + (f" {r['ratio_onnx']:.2f}x |" if onnx else ""))
    return lines


def source_table(res: dict[str, Any]) -> list[str]:
    """Benign prompts flagged by the decision detector, per set and source (the realized false-alarm rate).

    Parameters
    ----------
    res : dict
        Output of ``nnwatch evaluate DETECTOR.json`` (``benign_by_source``).

    Returns
    -------
    list of str
        Markdown table lines.
    """
    out = [f"| set | source of the benign prompts | prompts | flagged at 5% ({res.get('decision', 'decision')}) | "
           "flagged at 1% |", "|---|---|---|---|---|"]
    out += [f"| {r['set']} | {r['source']} | {r['benign']} | {r['flagged_at_5']:.1%} | {r['flagged_at_1']:.1%} |"
            for r in res["benign_by_source"]]
    return out


def baseline_table(res: dict[str, Any]) -> list[str]:
    """The decision detector against the baselines that read no model state, set by set.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch evaluate DETECTOR.json`` (``baselines``).

    Returns
    -------
    list of str
        Markdown table lines (none when no baseline was fitted).
    """
    cmp = res.get("baselines") or {}
    if not cmp.get("rows"):
        return []
    names = [cmp["decision"], *cmp["baselines"]]
    head = ["set", *[f"{n}: AUROC / det. / f.p. @5%" for n in names], "beats every baseline: AUROC / det."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in cmp["rows"]:
        metrics = [r["decision"], *(r["baselines"].get(b) for b in cmp["baselines"])]
        cells = [r["set"]] + [f"{_fmt(m['auroc'])} / {_fmt(m['detection_at_5'])} / {_fmt(m['false_positive_at_5'])}"
                              if m else "-" for m in metrics]
        det = "n/a" if r["beats_detection"] is None else "yes" if r["beats_detection"] else "no"
        cells.append(f"{'yes' if r['beats_auroc'] else 'no'} / {det}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def evaluation_markdown(res: dict[str, Any]) -> str:
    """Markdown: where the run came from, the summary at 5% and 1%, every view, the CV choices.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch evaluate DETECTOR.json``.

    Returns
    -------
    str
        Markdown with ``<!-- begin NAME -->`` blocks (``summary5``, ``summary1``, ``detection``,
        ``sources``, ``baselines``, ``cv``).
    """
    lines = []
    if "machine" in res and "git" in res:
        lines += [describe(res), ""]
    cal = res["calibration"]
    if cal.get("kind") == "cross-fit":
        lines += [f"Flags: cross-conformal p-value (CV+, {cal['folds']} folds) over {cal['prompts']} benign training "
                  f"prompts at most 1% or 5% (guaranteed false-alarm rate at {cal['fpr']:g}: at most "
                  f"{cal['bound']:.3f}).", ""]
    else:
        lines += [f"Flags: conformal p-value against {cal['prompts']} benign calibration prompts at most 1% or 5%.", ""]
    lines += ["<!-- begin summary5 -->", *summary_table(res, "5"), "<!-- end summary5 -->", ""]
    lines += ["<!-- begin summary1 -->", *summary_table(res, "1"), "<!-- end summary1 -->", ""]
    lines += ["<!-- begin detection -->", *detection_table(res["rows"]), "<!-- end detection -->"]
    if res.get("benign_by_source"):
        lines += ["", "<!-- begin sources -->", *source_table(res), "<!-- end sources -->"]
    baselines = baseline_table(res)
    if baselines:
        lines += ["", "<!-- begin baselines -->", *baselines, "<!-- end baselines -->"]
    cv = res.get("detector", {}).get("cv")
    if cv:
        lines += ["", "<!-- begin cv -->", *cv_table(cv, res.get("default")), "<!-- end cv -->"]
    return "\n".join(lines) + "\n"


def evaluation_figures(res: dict[str, Any]) -> dict[str, str]:
    """The evaluation's plots as SVG: separation heat map, ROC per set, CV criterion per layer.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch evaluate DETECTOR.json``.

    Returns
    -------
    dict
        File stem -> SVG markup.
    """
    from types import SimpleNamespace

    d = res["detector"]
    det = SimpleNamespace(search=d.get("search", {}), n_layers=d["n_layers"], n_heads=d["n_heads"], cv=d.get("cv", {}))
    figs = {"heads_separation": separation_heatmap(det)}
    for name, labels in res["labels"].items():
        y = np.array(labels)
        if not ((y == 0).any() and (y == 1).any()):
            continue
        series = {}
        for det_name, scores in res["scores"][name].items():
            sc = np.array(scores)
            fpr, tpr, _ = roc_curve(sc[y == 0], sc[y == 1])
            series[det_name] = (fpr, tpr)
        stem = "heads_roc_" + name.replace(":", "_").replace("+", "_")
        figs[stem] = line_chart(series, f"ROC: {name}", "false-positive rate", "detection rate", diagonal=True,
                                limits=(0, 1, 0, 1))
    series = {}
    for name, entry in det.cv.items():
        if entry.get("setting_name", "layer") != "layer":
            continue
        rows = [r for r in entry["rows"] if isinstance(r.get("setting"), int)]
        if len(rows) > 1:
            series[name] = (np.array([r["setting"] for r in rows]), np.array([r["criterion"] for r in rows]))
    if series:
        figs["heads_cv_layers"] = line_chart(series, "CV criterion by layer (mean Youden J @5%, plain and wrapped)",
                                             "layer (0 = embeddings)", "criterion")
    return figs


def evaluation_report(res: dict[str, Any]) -> str:
    """HTML: summary tables, ROC curves per set, CV criterion per layer, separation heat map.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch evaluate DETECTOR.json``.

    Returns
    -------
    str
        HTML.
    """
    figs = evaluation_figures(res)
    heat = figs.pop("heads_separation")
    cvfig = figs.pop("heads_cv_layers", None)
    body = ["<h2>Tables</h2><pre>" + escape(evaluation_markdown(res)) + "</pre>",
            "<h2>ROC curves</h2><div class='grid'>", *figs.values(), "</div>"]
    if cvfig:
        body += ["<h2>Layer choice by cross-validation on training prompts</h2>", cvfig]
    body += ["<h2>Per-head separation on the head-search prompts</h2>", heat]
    return html_page("nnwatch evaluate (language detector)", body, heading=True)
