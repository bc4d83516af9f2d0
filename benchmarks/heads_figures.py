"""The language monitor's figures for docs/results.md, drawn from benchmarks/results/heads_evaluation.json
(written by `nnwatch evaluate` in benchmarks/language.sh): per-head separation, ROC curves of
every set, and the cross-validation criterion by layer.

Run: python benchmarks/heads_figures.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEEP = ("heads_separation", "heads_roc_test", "heads_roc_test_length-matched", "heads_roc_jailbreak",
        "heads_roc_contrast_pairs", "heads_cv_layers")


def main() -> None:
    from nnwatch.heads.language_report import evaluation_figures

    res = json.loads((ROOT / "benchmarks" / "results" / "heads_evaluation.json").read_text())
    figures = evaluation_figures(res)
    out = ROOT / "docs" / "figures"
    for stem in KEEP:
        (out / f"{stem}.svg").write_text(figures[stem])
        print(f"wrote docs/figures/{stem}.svg")


if __name__ == "__main__":
    main()
