"""The object monitor on the synthetic detection test bed: per-object and per-frame AUROC, false
alarms against their conformal range, and the cost at batch 1.

Test bed (built here, nnwatch.eval.scenes): MNIST digits on 96x96 canvases with clutter and
noise; the detector (nnwatch.eval.detector_model, YOLOv8 layout) is trained on 4,000 scenes of
MNIST training digits, 1 torch thread; profiled on 1,500 more; calibrated on 1,000 clean scenes
of MNIST test digits, and tested on 1,000 clean and 600 anomalous scenes per set, from the same
test-digit pool (calibration and test scenes exchangeable). Anomalies: unknown objects
(Fashion-MNIST items), digits in an unseen style (thickened or inverted), noise patches, and
frame faults (blur, low contrast).

Per object: detections matched to a drawn object at IoU >= 0.5; AUROC of anomalous against
known matched objects, for the fused verdict (-log p; its members chosen by the monitor from
synthetic anomalies of the calibration frames, never from these sets), every member, and the
class-logit baselines energy (VOS's score) and MSP. Per frame: AUROC of the frame p-value against the
frame's largest energy and MSP. Cost: plain ONNX detector call, the same plus nnwatch's decoding
and NMS, and the monitored call, interleaved, batch 1, on scenes of 15-20 objects.

Run: python benchmarks/objects.py [--quick]   (about 15 min; needs ../shared/data, torch)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def conformal_range(n: int, alpha: float, m: int, rng: np.random.Generator, draws: int = 20000) -> list[float]:
    """95% range of the realized rate over ``m`` test units after conformal calibration on ``n``.

    Given the calibration, the flag probability is Beta(l, n + 1 - l) with l = floor(alpha (n + 1));
    the realized rate adds binomial noise over the m test units.
    """
    allowed = int(np.floor(alpha * (n + 1)))
    p = rng.beta(allowed, n + 1 - allowed, draws)
    rates = rng.binomial(m, p) / m
    return [float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))]


def detector_quality(objects, scenes) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Recall and precision at IoU 0.5 with the right class, on clean scenes."""
    from nnwatch.kernels.roi_reference import box_iou

    hits, drawn = 0, 0
    for f in range(len(scenes)):
        mine = np.flatnonzero(objects.frame == f)
        for b, c in zip(scenes.boxes[f], scenes.labels[f]):
            drawn += 1
            hits += any(box_iou(objects.boxes[k], b) >= 0.5 and objects.cls[k] == c for k in mine)
    return {"recall": hits / max(drawn, 1), "precision": hits / max(len(objects), 1),
            "objects_per_frame": len(objects) / len(scenes)}


def flagged_figure(frames: dict, verdicts: dict, per_set: int = 2) -> str:  # type: ignore[type-arg]
    """One SVG: the most clearly flagged frames of each set, boxes drawn (red: flagged objects)."""
    from nnwatch.objects.evaluation import flagged_frames

    cell, label = 96 * 3 + 8, 16
    rows = []
    for r, (name, x) in enumerate(frames.items()):
        y = r * (cell + label)
        rows.append(f"<text x='4' y='{y + 12}' font-family='sans-serif' font-size='13'>{name}: most clearly flagged "
                    "frames</text>")
        for c, (f, svg) in enumerate(flagged_frames(x, verdicts[name], most=per_set)):
            rows.append(f"<g transform='translate({c * cell},{y + label})'>{svg}</g>")
    width, height = per_set * cell, len(frames) * (cell + label)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'><rect width='100%' height='100%' fill='white'/>{''.join(rows)}</svg>\n")


def main() -> int:
    from _common import write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sets and training (writes objects_quick)")
    ap.add_argument("--epochs", type=int, default=None, help="detector training epochs (default 30, quick 8)")
    ap.add_argument("--reuse", metavar="FILE.onnx", help="development: load the plain detector from FILE if it exists, "
                    "else train and write it there (the results record which)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from nnwatch.eval.detector_model import tiny_detector, train_detector
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.export.from_torch import export_plain
    from nnwatch.objects.cost import bench_detector
    from nnwatch.objects.evaluation import DrawnObjects, evaluate_objects
    from nnwatch.objects.instrument_detector import instrument_detector
    from nnwatch.objects.object_monitor import ObjectMonitor
    from nnwatch.sources import load_idx

    q = args.quick
    epochs = args.epochs or (8 if q else 30)
    n_train, n_fit, n_cal, n_clean, n_anom = (2500, 300, 400, 300, 200) if q else (4000, 1500, 1000, 1000, 600)
    alpha = 0.05
    rng = np.random.default_rng(0)
    train = load_idx(DATA / "mnist", "train")
    test = load_idx(DATA / "mnist", "test")
    fashion = load_idx(DATA / "fashion_mnist", "test")
    t0 = time.perf_counter()
    scenes = make_scenes(train.x, train.y, n_train, seed=0)
    if args.reuse and Path(args.reuse).is_file():
        import onnx

        plain, train_s = onnx.load(args.reuse), float("nan")
    else:
        model = train_detector(tiny_detector(10), scenes, epochs=epochs, seed=0, progress=True)
        train_s = time.perf_counter() - t0
        plain = export_plain(model, torch.from_numpy(scenes.images[:2]))
        if args.reuse:
            Path(args.reuse).write_bytes(plain.SerializeToString())
    instrumented, manifest = instrument_detector(plain, "yolov8")
    monitor = ObjectMonitor(instrumented.SerializeToString(), threads=1)
    monitor.fit(make_scenes(train.x, train.y, n_fit, seed=1).images, progress=True)
    # calibration and test scenes from one pool of test digits (exchangeable)
    monitor.calibrate(make_scenes(test.x, test.y, n_cal, seed=2).images, alpha=alpha, progress=True)
    n_frame_cal = monitor.frames_.reference.size
    tables = monitor.fused_tables_
    n_object_cal = int(tables.ends[0] - tables.starts[0])  # objects behind the (pooled) object p-values

    clean = make_scenes(test.x, test.y, n_clean, seed=3)
    sets = {}
    for anomaly in ("unknown", "style", "noise", "fault"):
        sc = make_scenes(test.x, test.y, n_anom, seed=4, anomaly=anomaly, others=fashion.x)
        sets[anomaly] = (sc.images, DrawnObjects(sc.boxes, sc.anomalous))
    result = evaluate_objects(monitor, clean.images, sets, clean_drawn=DrawnObjects(clean.boxes, clean.anomalous))
    figure = flagged_figure({name: x for name, (x, _) in sets.items()}, result["verdicts"])
    (Path("/tmp") / "objects_flagged_quick.svg" if q else ROOT / "docs" / "figures" / "objects_flagged.svg").write_text(figure)
    v_clean = result["verdicts"]["clean"]
    quality = detector_quality(v_clean.objects, clean)
    far = {"frame_flagged": result["clean"]["frames_flagged"],
           "frame_range": dict(zip(("low", "high"), conformal_range(n_frame_cal, alpha, n_clean, rng))),
           "object_p_at_alpha": result["clean"]["objects_p_at_alpha"],
           "object_flagged": float(v_clean.object_flag.mean()),
           # objects of one frame are not independent: this range (binomial over objects) is narrower than the truth
           "object_range": dict(zip(("low", "high"), conformal_range(n_object_cal, alpha, len(v_clean.objects), rng))),
           "object_calibration": n_object_cal,
           "objects": int(len(v_clean.objects)), "frames": n_clean, "calibration_frames": n_frame_cal}
    print({"detector": quality, "false_alarms": far}, flush=True)
    rows = [{"set": name, **r} for name, r in result["sets"].items()]

    # cost at batch 1 on crowded scenes (15-20 objects)
    crowded = make_scenes(test.x, test.y, 64, seed=5, per_frame=(15, 20), scale=(12, 16))
    cost = bench_detector(monitor, [crowded.images[i:i + 1] for i in range(len(crowded))], rounds=60 if q else 400)
    timing = cost["timing"]
    cost["monitored_over_plain"] = timing["monitored"]["ratio_p50"]
    cost["monitored_over_plain_decode"] = timing["monitored"]["ratio_p50_decode"]
    typical = bench_detector(monitor, [clean.images[i:i + 1] for i in range(64)], rounds=60 if q else 400)
    cost["typical"] = {"objects_per_frame": typical["objects_per_frame"], "timing": typical["timing"],
                       "monitored_over_plain": typical["timing"]["monitored"]["ratio_p50"]}

    lines = [f"Detector: recall {quality['recall']:.3f}, precision {quality['precision']:.3f} at IoU 0.5 "
             f"({quality['objects_per_frame']:.2f} objects per clean frame), trained {epochs} epochs in {train_s:.0f} s; "
             f"taps {list(manifest.tensors)}.", "",
             f"Fused members, chosen at calibration from synthetic anomalies of the clean frames' objects: "
             f"{', '.join(monitor.fused_members_)} (of {', '.join(monitor.members)}).", "",
             "<!-- begin table -->", "| set | anomalous objects found / flagged / drawn | object AUROC fused | energy | MSP | best member | frame AUROC fused "
             "| frame energy | frame MSP | frames flagged |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        oa = r.get("object_auroc", {})
        members = {k: v for k, v in oa.items() if k != "fused" and not k.endswith("(baseline)")}
        best = max(members, key=members.get) if members else None

        def fmt(d: dict, k: str) -> str:
            return f"{d[k]:.3f}" if k in d else "-"

        fa = r["frame_auroc"]
        a = r.get("anomalous_objects")
        found = f"{a['found']} / {a['flagged']} / {a['drawn']}" if a else "-"
        lines.append(f"| {r['set']} | {found} | "
                     f"{fmt(oa, 'fused')} | {fmt(oa, 'energy (baseline)')} | {fmt(oa, 'msp (baseline)')} | "
                     f"{best + ' ' + format(members[best], '.3f') if best else '-'} | {fmt(fa, 'fused')} | "
                     f"{fmt(fa, 'energy')} | {fmt(fa, 'msp')} | {r['frames_flagged']:.3f} |")
    lines += ["<!-- end table -->", "", f"Clean frames flagged: {far['frame_flagged']:.3f} at a {alpha} target (conformal 95% range "
              f"{far['frame_range']['low']:.3f}-{far['frame_range']['high']:.3f}, {n_frame_cal} calibration frames); clean objects "
              f"with p <= {alpha}: {far['object_p_at_alpha']:.3f} (range {far['object_range']['low']:.3f}-"
              f"{far['object_range']['high']:.3f} for {n_object_cal} calibration objects, objects taken as independent); objects flagged (frame threshold): "
              f"{far['object_flagged']:.3f}.", "",
              f"Cost at batch 1, {cost['objects_per_frame']:.1f} objects per frame: monitored / plain call "
              f"{cost['monitored_over_plain']:.2f}x, monitored / (plain call + decoding and NMS) "
              f"{cost['monitored_over_plain_decode']:.2f}x (p50 {timing['plain']['p50_ms']:.3f} / "
              f"{timing['plain+decode']['p50_ms']:.3f} / {timing['monitored']['p50_ms']:.3f} ms); on the clean test scenes "
              f"({typical['objects_per_frame']:.1f} objects per frame) {cost['typical']['monitored_over_plain']:.2f}x."]
    write("objects", {"epochs": epochs, "reused_detector": bool(args.reuse and np.isnan(train_s)),
                      "train_seconds": train_s, "detector": quality, "taps": list(manifest.tensors), "members": monitor.members,
                      "fused_members": monitor.fused_members_,
                      "member_choice": None if monitor.member_choice_ is None else monitor.member_choice_.to_dict(),
                      "alpha": alpha, "false_alarms": far, "sets": rows, "cost": cost}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
