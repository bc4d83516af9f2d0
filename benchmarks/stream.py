"""Stream monitoring: false alarms over long clean streams, detection delay under gradual drift.

Model: the LeNet of benchmarks/detection.py on MNIST (../shared/data), profiled on the training
images, calibrated (fused default) on 2,000 random test images; the other 8,000 are the clean
pool. (A cut in test-set order is not exchangeable: MNIST's test images are ordered by writer
group, and the stream test flags the later, harder half against a calibration on the first.)

- Clean streams: per stream, a calibration set and a stream of --length frames are drawn
  with replacement from the pool's scores (so calibration and stream are exchangeable, which is
  what the bound assumes); the realized share of streams with *any* alarm is compared with
  delta (0.05 and 0.01), with its exact 95% interval. The same streams give the false-alarm
  rate of the two baselines below.
- Ramps: 1,000 clean frames, then 2,000 frames whose severity rises linearly from 0 (blur,
  Gaussian noise, low contrast, rotation, Fashion-MNIST mixed in at a growing rate, PGD
  frames at a growing rate, clean 1s replacing a growing share of frames). Delay = frames
  after the ramp starts until the first alarm of the StreamMonitor (score and class tests,
  delta 0.01 shared).
- Baselines, each in two settings: per-frame flags (alarm when k of the last 20 frames are
  flagged at the 5% target; k = 5, the rule of thumb, and k chosen so that a union bound
  over every window of a --length stream keeps the whole-stream false alarms at 0.01) and a
  windowed Kolmogorov-Smirnov test of the last 200 online p-values against uniform, every 50
  frames (at level 0.01 per check, and with the level divided by the number of checks, using
  the DKW-Massart bound, for a whole-stream 0.01).

Run: python benchmarks/stream.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import interleaved, write

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIGURES = ROOT / "docs" / "figures"
FLAG_K, FLAG_W = 5, 20
KS_WINDOW, KS_EVERY, KS_LEVEL = 200, 50, 0.01
CLEAN_BEFORE, RAMP = 1000, 2000
BASELINES = ("flags", "flags bounded", "ks", "ks bounded")
LABELS = {"martingale": "martingale (delta 0.01)", "flags": "flags, 5 of 20", "flags bounded": "flags, bounded",
          "ks": "KS window, 0.01 per check", "ks bounded": "KS window, bounded"}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ks_uniform(p: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of p-values from U(0, 1)."""
    s = np.sort(p)
    n = len(s)
    i = np.arange(1, n + 1)
    return float(max((i / n - s).max(), (s - (i - 1) / n).max()))


def ks_critical(rng: np.random.Generator) -> float:
    """Critical KS distance at KS_LEVEL for KS_WINDOW uniform p-values (simulated)."""
    sims = [ks_uniform(rng.random(KS_WINDOW)) for _ in range(20000)]
    return float(np.quantile(sims, 1 - KS_LEVEL))


def flag_alarm(flags: np.ndarray, k: int) -> int | None:
    """First frame at which k of the last FLAG_W frames are flagged (None: never)."""
    counts = np.convolve(flags.astype(int), np.ones(FLAG_W, int))[: len(flags)]
    hit = np.flatnonzero(counts >= k)
    return int(hit[0]) if hit.size else None


def ks_alarm(pvals: np.ndarray, crit: float) -> int | None:
    """First frame at which the last KS_WINDOW p-values are further than crit from uniform."""
    for end in range(KS_WINDOW, len(pvals) + 1, KS_EVERY):
        if ks_uniform(pvals[end - KS_WINDOW : end]) > crit:
            return end - 1
    return None


def baseline_alarms(flags: np.ndarray, pvals: np.ndarray, rules: dict) -> dict[str, int | None]:
    """First alarm frame of every baseline rule."""
    return {"flags": flag_alarm(flags, rules["flag_k"]), "flags bounded": flag_alarm(flags, rules["flag_k_bounded"]),
            "ks": ks_alarm(pvals, rules["ks_crit"]), "ks bounded": ks_alarm(pvals, rules["ks_crit_bounded"])}


def baseline_rules(length: int, delta: float, rng: np.random.Generator) -> dict:
    """Thresholds of the baselines: rule-of-thumb ones and ones bounded over a stream of ``length``."""
    from nnwatch.eval.metrics import binomial_cdf

    windows = max(length - FLAG_W + 1, 1)
    k = FLAG_W
    while k > 1 and 1.0 - binomial_cdf(k - 2, FLAG_W, 0.05) <= delta / windows:  # P(>= k - 1 flags)
        k -= 1
    checks = max(length // KS_EVERY, 1)
    return {"flag_k": FLAG_K, "flag_k_bounded": k, "ks_crit": ks_critical(rng),
            "ks_crit_bounded": float(np.sqrt(np.log(2.0 * checks / delta) / (2 * KS_WINDOW)))}


def main() -> None:
    import torch

    from nnwatch.calibration.calibrate import calibrate, collect_scores
    from nnwatch.eval import corruptions as cor
    from nnwatch.eval.attacks import pgd
    from nnwatch.eval.metrics import binomial_interval
    from nnwatch.eval.models import lenet, train_classifier
    from nnwatch.eval.svg import line_chart
    from nnwatch.export.from_torch import export_module
    from nnwatch.kernels.martingale import StreamTest
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.monitor.stream import StreamMonitor
    from nnwatch.sources import ArraySource, load_idx

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--length", type=int, default=100_000, help="frames per clean stream")
    ap.add_argument("--streams", type=int, default=200, help="clean streams per delta")
    args = ap.parse_args()
    if args.quick:
        args.length, args.streams = 10_000, 40
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="nnwatch-stream-"))
    train, test = load_idx(DATA / "mnist", "train"), load_idx(DATA / "mnist", "test")
    fashion = load_idx(DATA / "fashion_mnist", "test").x
    # MNIST's test split is ordered (its second half was written by other people and is harder):
    # calibration and clean pool are a random cut, so that they are exchangeable.
    order = rng.permutation(len(test.x))
    cal_idx, pool_idx = order[:2000], order[2000:]
    say("training LeNet, profiling, calibrating")
    net = train_classifier(lenet(), train.x, train.y, epochs=10, seed=0, lr=2e-3)
    export_module(net, torch.from_numpy(train.x[:1]), folder / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(folder / "m.onnx", train)
        mon = Monitor(folder / "m.onnx", profile, providers="cpu")
        calibrate(mon, ArraySource(test.x[cal_idx], test.y[cal_idx], "mnist test, 2,000 random"), fpr=0.05)
        mon = Monitor(folder / "m.onnx", mon.profile, providers="cpu")  # the runtime default after calibration
    column = mon.decision
    reference, group_of = mon.calibration_reference(column)
    ref_sizes = [len(r) for r in reference]
    pool, pool_y = test.x[pool_idx], test.y[pool_idx]
    scores, flags, pred = collect_scores(mon, pool)
    pool_scores, pool_groups = scores[column], group_of[pred]
    by_group = [np.flatnonzero(pool_groups == g) for g in range(len(reference))]
    rules = baseline_rules(args.length, 0.01, rng)

    say(f"clean streams: {args.streams} x {args.length:,} frames per delta, drawn from {len(pool):,} clean images")
    clean = {}
    for delta in (0.05, 0.01):
        any_alarm, t_kernel = 0, 0.0
        baseline_fa = dict.fromkeys(BASELINES, 0)
        for s in range(args.streams):
            ref = [pool_scores[rng.choice(idx, n)] for idx, n in zip(by_group, ref_sizes)]
            frames = rng.integers(0, len(pool), args.length)
            test_ = StreamTest(ref, delta=delta, seed=s)
            t0 = time.perf_counter()
            p, _, alarm = test_.update(pool_scores[frames], pool_groups[frames])
            t_kernel += time.perf_counter() - t0
            any_alarm += bool(alarm.any())
            if delta == 0.01:  # the bounded baselines are set for 0.01
                for key, a in baseline_alarms(flags[column][frames], p, rules).items():
                    baseline_fa[key] += a is not None
        lo, hi = binomial_interval(any_alarm, args.streams)
        clean[str(delta)] = {"delta": delta, "streams": args.streams, "frames": args.length,
                             "any_alarm": any_alarm / args.streams, "low": lo, "high": hi,
                             "within": bool(lo <= delta), "us_per_frame_batch": t_kernel / (args.streams * args.length) * 1e6}
        if delta == 0.01:
            clean["baselines"] = {key: n / args.streams for key, n in baseline_fa.items()}
        say(f"  delta {delta}: any alarm in {any_alarm}/{args.streams} streams ({any_alarm / args.streams:.3f})")

    # Cost of one frame at batch 1: a stream attached to the monitor advances inside its compiled
    # call (measured as the difference to the same monitor without, interleaved); a detached one
    # is fed verdicts by StreamMonitor.update.
    streamed = Monitor(mon.runner, mon.profile)  # same session, a stream attached
    attached = StreamMonitor(streamed, delta=0.01)
    detached = StreamMonitor(mon, delta=0.01, attach=False)
    x1 = pool[:1]
    v = mon(x1)
    timing = interleaved({"monitored": lambda: mon(x1), "monitored, stream attached": lambda: streamed(x1),
                          "StreamMonitor.update (detached)": lambda: detached.update(v)}, 3000, warmup=50)
    call_us = timing["monitored"]["p50_ms"] * 1e3
    attached_us = timing["monitored, stream attached"]["p50_ms"] * 1e3 - call_us
    per_frame_us = timing["StreamMonitor.update (detached)"]["p50_ms"] * 1e3
    attached.detach()

    say("ramps")
    severity = np.concatenate([np.zeros(CLEAN_BEFORE), np.linspace(0, 1, RAMP)])
    ramps = {
        "blur": lambda x, s: (1 - s) * x + s * cor.blur(x, 1),
        "Gaussian noise": lambda x, s: np.clip(x + s * 0.5 * np.random.default_rng(1).standard_normal(x.shape), 0, 1),
        "low contrast": lambda x, s: (1 - s * 0.8) * x + s * 0.8 * 0.5,
        "rotation": lambda x, s: cor.rotate(x, 60 * s),
    }
    reps = 5 if args.quick else 20
    results, traces = {}, {}
    adv_pool = None
    ones = np.flatnonzero(pool_y == 1)
    for name in list(ramps) + ["Fashion-MNIST mix-in", "PGD frames", "class shift (more 1s)"]:
        delays: dict[str, list] = {key: [] for key in ("martingale",) + BASELINES}
        for r in range(reps):
            rr = np.random.default_rng(100 + r)
            idx = rr.integers(0, len(pool), len(severity))
            x = pool[idx].astype(np.float32).copy()
            if name in ramps:
                for i in range(CLEAN_BEFORE, len(x)):
                    x[i] = ramps[name](x[i : i + 1], severity[i])[0]
            else:
                swap = np.flatnonzero(rr.random(len(x)) < 0.5 * severity)
                if name == "Fashion-MNIST mix-in":
                    x[swap] = fashion[rr.integers(0, len(fashion), swap.size)]
                elif name.startswith("class shift"):  # clean digits, but far more 1s than in calibration
                    x[swap] = pool[ones[rr.integers(0, len(ones), swap.size)]]
                else:
                    if adv_pool is None:
                        src = pool[:1500]
                        adv, ok = pgd(net, src, pool_y[:1500], eps=0.1, steps=10)
                        adv_pool = adv[ok]
                    x[swap] = adv_pool[rr.integers(0, len(adv_pool), swap.size)]
            sm = StreamMonitor(mon, delta=0.01, seed=r)
            stat, alarm, p, fl = [], [], [], []
            for lo in range(0, len(x), 50):
                v = mon(x[lo : lo + 50])
                u = sm.update(v)
                stat.append(u.statistic)
                alarm.append(u.alarm)
                p.append(u.p_values)
                fl.append(v.flag)
            sm.detach()
            stat, alarm, p, fl = (np.concatenate(a) for a in (stat, alarm, p, fl))
            firsts = {"martingale": int(np.argmax(alarm)) if alarm.any() else None, **baseline_alarms(fl, p, rules)}
            for key, a in firsts.items():
                delays[key].append(None if a is None else a - CLEAN_BEFORE)
            if r == 0:
                traces[name] = (np.arange(len(stat)), np.log10(np.maximum(stat, 1e-12)))
        summary = {}
        for key, d in delays.items():
            found = [v for v in d if v is not None]
            summary[key] = {"median_delay": float(np.median(found)) if found else None,
                            "detected": len(found), "before_ramp": sum(v < 0 for v in found), "runs": reps}
        results[name] = summary
        say(f"  {name}: median delays " + ", ".join(f"{k} {v['median_delay']}" for k, v in summary.items()))

    FIGURES.mkdir(parents=True, exist_ok=True)
    bound = np.log10(1 / 0.01)
    series = {k: v for k, v in traces.items()}
    series["alarm bound (1/delta)"] = (np.array([0, len(severity) - 1]), np.array([bound, bound]))
    (FIGURES / "stream_ramps.svg").write_text(line_chart(
        series, "Simple jumper on ramps (ramp starts at frame 1000)", "frame", "log10 capital"))
    md = ["<!-- begin clean -->",
          "| delta | streams | frames each | streams with any alarm | exact 95% interval | µs per frame (kernel, one batch) |",
          "|---|---|---|---|---|---|"]
    for k in ("0.05", "0.01"):
        c = clean[k]
        md.append(f"| {c['delta']} | {c['streams']} | {c['frames']:,} | {c['any_alarm']:.3f} | [{c['low']:.3f}, "
                  f"{c['high']:.3f}] | {c['us_per_frame_batch']:.2f} |")
    cols = ("martingale",) + BASELINES
    md += ["<!-- end clean -->", "", "<!-- begin ramps -->",
           "| drift | " + " | ".join(LABELS[c] for c in cols) + " |", "|---|" + "---|" * len(cols),
           "| false alarms on clean streams (any alarm) | " + " | ".join(
               f"{clean['0.01']['any_alarm']:.2f}" if c == "martingale" else f"{clean['baselines'][c]:.2f}"
               for c in cols) + " |"]
    fmt = lambda s: f"{s['median_delay']:.0f} ({s['detected']}/{s['runs']})" if s["median_delay"] is not None else f"- (0/{s['runs']})"  # noqa: E731
    for name, s in results.items():
        md.append(f"| {name}: median delay (detected) | " + " | ".join(fmt(s[c]) for c in cols) + " |")
    md += ["<!-- end ramps -->", "",
           f"Baseline thresholds: flags {rules['flag_k']} of {FLAG_W} (rule of thumb) and {rules['flag_k_bounded']} of "
           f"{FLAG_W} (union bound over a {args.length:,}-frame stream); KS distance {rules['ks_crit']:.3f} (level "
           f"{KS_LEVEL} per check) and {rules['ks_crit_bounded']:.3f} (DKW-Massart, level 0.01 over all checks). "
           f"Clean streams: {args.streams} streams of {args.length:,} frames; the martingale's column is delta 0.01.",
           f"At batch 1 (p50, interleaved): a stream attached to the monitor adds {attached_us:.1f} µs to its "
           f"{call_us:.0f} µs call; a detached StreamMonitor.update takes {per_frame_us:.1f} µs per frame."]
    write("stream", {"column": column, "clean": clean, "ramps": results, "stream_us_per_frame": per_frame_us,
                     "stream_attached_added_us": attached_us,
                     "monitored_call_us": call_us, "quick": args.quick,
                     "baseline_rules": rules},
          "\n".join(md), note="Stream alarms: realized false alarms and detection delays.")


if __name__ == "__main__":
    main()
