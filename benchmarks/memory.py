"""Monitor memory for many classes: full vs compact coverage tables.

A classifier built with onnx.helper (random weights): 32 inputs -> 1,488 ReLU -> 512 ReLU ->
1,000 logits, both hidden layers tapped (2,000 neurons, the size of ResNet-18's block outputs).
Profiled on 5,000 random inputs; the Monitor runs the compiled detectors (coverage family,
MSP, max-logit, energy). Reported: table bytes and the whole Monitor's own memory at batch 1
for full and compact tables, whether compact scores equal their definition (the full tables
of the outward-rounded profile, ``rounded_tables``) on 1,000 inputs (they must, bit for bit),
how often they equal the unrounded profile's, and the batch-1 time of the compiled scoring
stage (coverage family and logit statistics in one pass) with each, interleaved.
Run: python benchmarks/memory.py
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import interleaved, write

CLASSES, HIDDEN, FEATURES = 1000, 1488, 512


def main() -> None:
    from nnwatch.eval.zoo import wide_classifier
    from nnwatch.export.instrument import instrument
    from nnwatch.monitor.detectors import COMPILED
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.monitor.runner import Runner
    from nnwatch.profile.signature import rounded_tables

    rng = np.random.default_rng(0)
    path = Path(tempfile.mkdtemp(prefix="nnwatch-memory-")) / "wide.onnx"
    path.write_bytes(instrument(wide_classifier(rng, CLASSES, HIDDEN, FEATURES))[0].SerializeToString())
    x = rng.normal(size=(6000, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(Runner(path, providers="cpu", threads=1), x[:5000], batch_size=500)
        mons = {kind: Monitor(path, profile, detectors=COMPILED, min_signature_samples=1, providers="cpu", threads=1,
                              compact_tables=kind == "compact") for kind in ("full", "compact")}
        rounded = Monitor(path, profile, detectors=COMPILED, min_signature_samples=1, providers="cpu", threads=1,
                          compact_tables=False)
        rounded.tables = rounded_tables(profile, rounded.rare_rate, 1, warn=False)  # the definition
    out = {}
    test = x[5000:]
    scores = {k: np.concatenate([m.score(test[i : i + 100]).score_matrix for i in range(0, 1000, 100)])
              for k, m in {**mons, "rounded": rounded}.items()}
    for kind, mon in mons.items():
        mon.warmup((1,))
        out[kind] = {"tables_mib": mon.tables.nbytes / 2**20, "monitor_mib": mon.memory_bytes() / 2**20,
                     "bytes_per_class_neuron": mon.tables.nbytes / (CLASSES * (HIDDEN + FEATURES))}
    out["compact_equals_rounded_full"] = bool(np.array_equal(scores["compact"], scores["rounded"]))
    cov = list(mons["full"].columns).index("coverage")
    out["compact_equals_unrounded_share"] = float(np.mean(scores["compact"][:, cov] == scores["full"][:, cov]))
    names = list(mons["full"].columns)[: cov + 1]
    out["max_abs_diff_unrounded"] = {n: float(np.abs(scores["compact"][:, j] - scores["full"][:, j]).max())
                                     for j, n in enumerate(names)}
    out["median_nb_excess"] = float(np.median(scores["full"][:, names.index("nb_excess")]))
    calls = {kind: mon.scoring_calls(test[:1])["compiled scores"] for kind, mon in mons.items()}
    timing = interleaved(calls, 3000, warmup=50)
    for kind in mons:
        out[kind]["kernel_us"] = timing[kind]["p50_ms"] * 1e3
    md = ["<!-- begin memory -->",
          "| coverage tables | bytes per class and neuron | tables MiB | Monitor MiB (compiled detectors, batch 1) | "
          "compiled scores µs (batch 1) |", "|---|---|---|---|---|"]
    for kind in mons:
        r = out[kind]
        md.append(f"| {kind} | {r['bytes_per_class_neuron']:.1f} | {r['tables_mib']:.1f} | {r['monitor_mib']:.1f} | "
                  f"{r['kernel_us']:.1f} |")
    md += ["<!-- end memory -->", "",
           f"Compact scores equal the rounded full tables (their definition) on all 1,000 inputs: "
           f"{out['compact_equals_rounded_full']}; equal to the unrounded profile's coverage score on "
           f"{out['compact_equals_unrounded_share']:.1%} of them. Largest difference to the unrounded profile per score: "
           + ", ".join(f"{n} {v:.2g}" for n, v in out["max_abs_diff_unrounded"].items())
           + f" (median nb_excess {out['median_nb_excess']:.2g})."]
    write("memory", {"classes": CLASSES, "neurons": HIDDEN + FEATURES, **out}, "\n".join(md))


if __name__ == "__main__":
    main()
