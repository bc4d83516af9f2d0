"""Use the head search recorded in benchmarks/results/smollm2_heads.json as the search file
`nnwatch heads fit` starts from, instead of re-running the search (11.5 min on this machine).

The recorded file is a version-1 detector file (the loader reads its two head detectors);
what it lacks is the list of prompts the search used, which `heads fit` keeps out of the
calibration hold-out. The search drew them with `balanced_subset` (50 per label, seed 0) from
the README's two training files, so they are drawn again here the same way.

Run: python benchmarks/reuse_search.py   (writes heads-search.json in the repository root)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPTS = ROOT.parent / "shared" / "data" / "prompts"


def main() -> None:
    from nnwatch.heads.detector_file import load_detector, save_detector
    from nnwatch.heads.prompts import load_prompts
    from nnwatch.heads.search import balanced_subset

    det = load_detector(ROOT / "benchmarks" / "results" / "smollm2_heads.json")
    searched = balanced_subset(load_prompts(PROMPTS / "harmful_train.jsonl", PROMPTS / "benign_train.jsonl"),
                               det.search["n_safe"])
    det.search["prompt_ids"] = list(searched.ids)
    save_detector(det, ROOT / "heads-search.json")
    print(f"wrote heads-search.json from smollm2_heads.json ({len(searched)} search prompts)")


if __name__ == "__main__":
    main()
