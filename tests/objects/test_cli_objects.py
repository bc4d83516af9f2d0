"""The detector CLI end to end (instrument --layout, profile, calibrate, screen) and its mistakes."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import numpy as np
import pytest

from nnwatch.cli.main import main
from tests.cli.test_mistakes import run

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from nnwatch.eval.detector_model import tiny_detector, train_detector
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.export.from_torch import export_plain
    from nnwatch.sources import load_digits

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("objects_cli")
    digits = load_digits("train")
    kw = {"size": 64, "scale": (16, 24), "per_frame": (1, 3)}
    scenes = make_scenes(digits.x, digits.y, 240, seed=0, **kw)
    model = train_detector(tiny_detector(10, width=8), scenes, epochs=3, seed=0)
    (d / "plain.onnx").write_bytes(export_plain(model, torch.from_numpy(scenes.images[:2])).SerializeToString())
    for name, seed, n in (("trusted", 1, 200), ("clean", 2, 300), ("live", 3, 40)):
        np.savez(d / f"{name}.npz", x=make_scenes(digits.x, digits.y, n, seed=seed, **kw).images)
    return d


def test_instrument_profile_calibrate_screen(files, capsys):
    d = files
    code, text = run(capsys, "instrument", d / "plain.onnx", "--layout", "yolov8", "--out", d / "det.onnx")
    assert code == 0 and "NMS by nnwatch" in text, text
    code, text = run(capsys, "profile", d / "det.onnx", "--data", f"npz:{d / 'trusted.npz'}", "--out", d / "obj.npz",
                     "--quiet")
    assert code == 0 and "objects in 200 trusted frames" in text, text
    code, text = run(capsys, "calibrate", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'clean.npz'}",
                     "--fpr", "0.1", "--quiet")
    assert code == 0 and "calibrated on 300 clean frames" in text and "(chosen: nnwatch info shows why)" in text, text
    code, text = run(capsys, "info", d / "obj.npz")
    assert code == 0 and "fused members: " in text and "chosen by mean synthetic AUROC - 0.5 >= 0.5 x the best member" in text, text
    assert all(re.search(rf"{m} +AUROC shuffle", text) for m in ("mahalanobis", "knn", "nbc", "kmnc", "energy", "msp"))
    code, text = run(capsys, "screen", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'live.npz'}", "--out",
                     d / "objects.csv", "--quiet")
    assert code == 0, text
    rows = list(csv.DictReader(open(d / "objects.csv")))
    assert {int(r["frame"]) for r in rows} == set(range(40))  # every frame, with or without objects
    assert {"frame_flag", "frame_p", "p", "flag", "class", "x1", "mahalanobis", "frame_objects"} <= set(rows[0])
    for r in rows:  # a frame without objects says so
        assert (r["class"] == "") == (r["frame_objects"] == "0")
    counted = {}  # frame -> [its frame_objects, the object rows it has]
    for r in rows:
        counted.setdefault(r["frame"], [int(r["frame_objects"]), 0])[1] += r["class"] != ""
    assert all(said == found for said, found in counted.values())


def prepare(capsys, d, calibrated=False):
    """Instrument and profile the detector (det.onnx, obj.npz); calibrate into cal.npz if asked."""
    run(capsys, "instrument", d / "plain.onnx", "--layout", "yolov8", "--out", d / "det.onnx")
    run(capsys, "profile", d / "det.onnx", "--data", f"npz:{d / 'trusted.npz'}", "--out", d / "obj.npz", "--quiet")
    if calibrated:
        run(capsys, "calibrate", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'clean.npz'}", "--fpr", "0.1",
            "--out", d / "cal.npz", "--quiet")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("args, message", [
    (["instrument", "{d}/plain.onnx", "--layout", "nms", "--out", "{d}/x.onnx"],
     r"needs one \(B, K, 6\) output.*Outputs found: .*Presets that fit: yolov8"),
    (["instrument", "{d}/plain.onnx", "--layout", "yolo5", "--out", "{d}/x.onnx"], "layout 'yolo5' not found"),
    (["instrument", "{d}/plain.onnx", "--out", "{d}/x.onnx"],  # no --layout: told which preset fits
     r"\(batch, classes\) logits; an object detector\? add --layout yolov8 \(the preset that fits these outputs\)"),
    (["instrument", "{d}/plain.onnx", "--layout", "yolov8", "--layers", "per-scal", "--out", "{d}/x.onnx"],
     r"tensor 'per-scal' not found; available: .*; or layers 'auto' \(the default\) or 'per-scale'"),
    (["profile", "{d}/det.onnx", "--data", "npz:{d}/rgb.npz", "--out", "{d}/o.npz"],
     r"frames must be numbers \(B, 1, 64, 64\), got float32 \(4, 3, 64, 64\)"),
    (["instrument", "{d}/plain.onnx", "--layout", "yolov8", "--out", "{d}/plain.onnx"], "would destroy the input"),
    (["instrument", "{d}/plain.onnx", "--layout", "yolov8", "--reduction", "max", "--out", "{d}/x.onnx"],
     "--reduction is for classifiers"),
    (["profile", "{d}/det.onnx", "--data", "npz:{d}/trusted.npz", "--out", "{d}/det.onnx"], "must end in .npz"),
    (["screen", "{d}/det.onnx", "{d}/obj.npz", "--data", "npz:{d}/live.npz", "--out", "{d}/o.csv", "--explain"],
     "--explain is not available for object detectors"),
    (["calibrate", "{d}/det.onnx", "{d}/obj.npz", "--data", "npz:{d}/clean.npz", "--fuse", "knn,gen", "--out",
      "{d}/c.npz"], r"--fuse knn,gen: this detector's members are mahalanobis, knn, nbc, kmnc, energy, msp; gen"),
    (["screen", "{d}/det.onnx", "{d}/obj.npz", "--data", "npz:{d}/live.npz", "--out", "{d}/o.mcap"],
     "written as .csv or .json"),
    (["screen", "{d}/det.onnx", "--data", "npz:{d}/live.npz", "--out", "{d}/o.csv"], "needs DETECTOR.onnx OBJECTS.npz"),
])
def test_mistakes_exit_2_and_leave_files_alone(files, capsys, args, message):
    d = files
    if not (d / "rgb.npz").exists():  # frames of three channels for a one-channel detector
        np.savez(d / "rgb.npz", x=np.zeros((4, 3, 64, 64), np.float32))
    if not (d / "det.onnx").exists():
        main(["instrument", str(d / "plain.onnx"), "--layout", "yolov8", "--out", str(d / "det.onnx")])
        main(["profile", str(d / "det.onnx"), "--data", f"npz:{d / 'trusted.npz'}", "--out", str(d / "obj.npz"),
              "--quiet"])
        capsys.readouterr()
    before = {p.name: digest(p) for p in d.iterdir()}
    code, text = run(capsys, *[a.format(d=d) for a in args])
    assert code == 2, text
    assert re.search(message, text, re.S), text
    assert {p.name: digest(p) for p in d.iterdir()} == before  # nothing written, nothing destroyed


def test_evaluate_reports_frames_and_objects(files, capsys):
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.objects.evaluation import DrawnObjects
    from nnwatch.sources import load_digits

    d = files
    prepare(capsys, d, calibrated=True)
    digits = load_digits("train")
    s = make_scenes(digits.x, digits.y, 30, seed=7, size=64, scale=(16, 24), per_frame=(1, 3), anomaly="noise")
    boxes, anomalous = DrawnObjects(s.boxes, s.anomalous).padded()
    np.savez(d / "noise.npz", x=s.images, boxes=boxes, anomalous=anomalous)
    code, text = run(capsys, "evaluate", d / "det.onnx", d / "cal.npz", "--id", f"npz:{d / 'live.npz'}", "--ood",
                     f"noise=npz:{d / 'noise.npz'}", "--report", d / "r.html", "--json", d / "r.json", "--quiet")
    assert code == 0, text
    assert "| noise |" in text and "fused" in text
    result = json.loads((d / "r.json").read_text())
    assert result["sets"]["noise"]["anomalous_objects"]["drawn"] > 0 and "fused" in result["sets"]["noise"]["frame_auroc"]
    html = (d / "r.html").read_text()
    assert result["sets"]["noise"]["frames_flagged"] == 0 or "<svg" in html  # flagged frames drawn with boxes


def test_bench_times_plain_decoding_and_monitored(files, capsys):
    import onnxruntime as ort

    from nnwatch.objects.cost import plain_detector_bytes

    d = files
    prepare(capsys, d, calibrated=True)
    # the recovered plain detector is the original: same outputs, same values, no nnwatch metadata
    recovered = ort.InferenceSession(plain_detector_bytes((d / "det.onnx").read_bytes()))
    original = ort.InferenceSession(str(d / "plain.onnx"))
    assert [o.name for o in recovered.get_outputs()] == [o.name for o in original.get_outputs()]
    assert not recovered.get_modelmeta().custom_metadata_map.get("nnwatch.objects")
    x = np.load(d / "live.npz")["x"][:4]
    name = original.get_inputs()[0].name
    np.testing.assert_allclose(recovered.run(None, {name: x})[0], original.run(None, {name: x})[0], rtol=1e-6)
    code, text = run(capsys, "bench", d / "det.onnx", d / "cal.npz", "--data", f"npz:{d / 'live.npz'}", "--iters", "5",
                     "--json", d / "bench.json")
    assert code == 0, text
    assert re.search(r"monitored \S+ ms \(\S+x plain", text), text
    result = json.loads((d / "bench.json").read_text())
    assert set(result["timing"]) == {"plain", "plain+decode", "monitored"} and result["objects_per_frame"] > 0
    code, text = run(capsys, "bench", d / "det.onnx", d / "obj.npz", "--iters", "5")
    assert code == 2 and "not calibrated" in text, text
    code, text = run(capsys, "bench", d / "det.onnx", d / "cal.npz", "--per-detector")
    assert code == 2 and "--per-detector is not available" in text, text


def test_info_describes_an_instrumented_detector_and_its_state(files, capsys):
    d = files
    prepare(capsys, d)
    code, text = run(capsys, "info", d / "det.onnx")
    assert code == 0 and "instrumented object detector" in text and "layout 'yolov8'" in text, text
    code, text = run(capsys, "info", d / "obj.npz")
    assert code == 0 and "object monitor state" in text and "not calibrated" in text, text
    code, text = run(capsys, "info", d / "plain.onnx")
    assert code == 0 and "--layout PRESET" in text, text


def test_evaluate_report_without_pillow_is_refused_before_any_work(files, capsys, monkeypatch):
    import importlib.util

    d = files
    prepare(capsys, d)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "PIL" else real(name, *a))
    code, text = run(capsys, "evaluate", d / "det.onnx", d / "obj.npz", "--id", f"npz:{d / 'live.npz'}", "--ood",
                     f"npz:{d / 'live.npz'}", "--report", d / "r2.html", "--quiet")
    assert code == 2 and "Pillow" in text and "drop --report" in text, text
    assert not (d / "r2.html").exists()


def test_screen_reads_a_recording_in_batches_with_frame_ids(files, capsys):
    """A folder of PNG frames (images: with --preprocess) gives the same verdicts as the same
    pixels from an array, plus each frame's id.path."""
    from tests.recordings.conftest import encode, needs

    needs("PIL")
    d = files
    prepare(capsys, d, calibrated=True)
    pixels = np.round(np.load(d / "live.npz")["x"][:12, 0] * 255).astype(np.uint8)
    (d / "frames").mkdir(exist_ok=True)
    for i, img in enumerate(pixels):
        (d / "frames" / f"{i:02d}.png").write_bytes(encode(img, "PNG"))
    (d / "gray.json").write_text(json.dumps({"channels": "gray"}))
    from nnwatch.sources import in_memory, open_source

    decoded = in_memory(open_source(f"images:{d / 'frames'}", {"channels": "gray"})).x  # as one array
    np.testing.assert_allclose(decoded[:, 0], pixels / 255, atol=1e-6)
    np.savez(d / "quantized.npz", x=decoded)
    code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"images:{d / 'frames'}",
                     "--preprocess", d / "gray.json", "--out", d / "rec.csv", "--batch-size", "5", "--quiet")
    assert code == 0, text
    code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"npz:{d / 'quantized.npz'}",
                     "--out", d / "arr.csv", "--batch-size", "5", "--quiet")
    assert code == 0, text
    rec, arr = list(csv.DictReader(open(d / "rec.csv"))), list(csv.DictReader(open(d / "arr.csv")))
    assert [r["id.path"] for r in rec] == [f"{int(r['frame']):02d}.png" for r in rec]
    assert all(r["error"] == "" for r in rec)
    assert [{k: v for k, v in r.items() if k not in ("id.path", "error")} for r in rec] == arr


def test_screen_writes_a_row_for_each_undecodable_frame(files, capsys):
    """Corrupt files first, in the middle and last of a folder: each gets a row with its id and
    error and nothing else; the decodable frames get the rows they get without them."""
    from tests.recordings.conftest import encode, needs

    needs("PIL")
    d = files
    prepare(capsys, d, calibrated=True)
    pixels = np.round(np.load(d / "live.npz")["x"][:6, 0] * 255).astype(np.uint8)
    good, mixed = d / "good", d / "mixed"
    for folder in (good, mixed):
        folder.mkdir(exist_ok=True)
        for i, img in enumerate(pixels):
            (folder / f"{i + 1:02d}.png").write_bytes(encode(img, "PNG"))
    bad = ["00.png", "03b.png", "99.png"]
    for name in bad:
        (mixed / name).write_bytes(b"not a png")
    (d / "gray.json").write_text(json.dumps({"channels": "gray"}))
    for folder in (good, mixed):
        code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"images:{folder}",
                         "--preprocess", d / "gray.json", "--out", d / f"{folder.name}.json", "--batch-size", "4",
                         "--quiet")
        assert code == 0, text
    assert "3 undecodable frame(s) skipped, each a row with its error" in text, text
    rows = json.loads((d / "mixed.json").read_text())
    errors = [r for r in rows if r["error"]]
    assert sorted(r["id.path"] for r in errors) == bad
    assert all(v is None for r in errors for k, v in r.items() if k not in ("id.path", "error") and
               not k.startswith("id."))
    assert [r for r in rows if not r["error"]] == json.loads((d / "good.json").read_text())


def test_screen_stream_adds_the_alarm_columns(files, capsys):
    d = files
    prepare(capsys, d, calibrated=True)
    code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"npz:{d / 'live.npz'}", "--out",
                     d / "stream.csv", "--stream", "--delta", "0.05", "--quiet")
    assert code == 0 and re.search(r"stream: (no alarm over 40 frames|ALARM at frame \d+) \(frame statistics and "
                                   r"each frame's top class, each alarming at capital 40;", text), text
    rows = list(csv.DictReader(open(d / "stream.csv")))
    per_frame = {r["frame"]: (r["stream.p"], r["stream.statistic"], r["stream.alarm"], r["stream.class_statistic"],
                              r["stream.class_alarm"], r["stream.category"]) for r in rows}
    assert len(per_frame) == 40  # one stream step per frame, repeated on each of its object rows
    assert all(0 < float(p) <= 1 and float(c) >= 0 and float(cc) >= 0 for p, c, _, cc, _, _ in per_frame.values())
    # the category is the class of the frame's highest-scoring object, or 10 (no objects) for this 10-class detector
    for f, (*_, category) in per_frame.items():
        objects = [r for r in rows if r["frame"] == f and r["class"] != ""]
        top = max(objects, key=lambda r: float(r["score"]))["class"] if objects else "10"
        assert category == top, (f, category, top)


def test_screen_on_ray_writes_the_rows_screen_writes(files, capsys, tmp_path):
    """screen --ray: the same object and frame rows as one process, as Parquet; mistakes refused before any worker."""
    ray = pytest.importorskip("ray", reason="screen --ray needs nnwatch[dist] (in the test extra)")
    pq = pytest.importorskip("pyarrow.parquet")
    d = files
    prepare(capsys, d, calibrated=True)
    code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"npz:{d / 'live.npz'}", "--out",
                     d / "local.json", "--quiet")
    assert code == 0, text
    local = json.loads((d / "local.json").read_text())
    code, text = run(capsys, "screen", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'live.npz'}", "--ray",
                     "--out", tmp_path / "nope")
    assert code == 2 and "not calibrated" in text and not (tmp_path / "nope").exists(), text
    code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"npz:{d / 'live.npz'}", "--ray",
                     "--stream", "--out", tmp_path / "nope")
    assert code == 2 and "drop --ray" in text, text
    try:
        code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"npz:{d / 'live.npz'}", "--ray",
                         "--workers", "1", "--batch-size", "7", "--out", tmp_path / "ray", "--quiet")
        assert code == 0 and "40 frames" in text, text
        np.savez(tmp_path / "small.npz", x=np.zeros((3, 1, 32, 32), np.float32))
        code, text = run(capsys, "screen", d / "det.onnx", d / "cal.npz", "--data", f"npz:{tmp_path / 'small.npz'}",
                         "--ray", "--out", tmp_path / "small", "--quiet")
        assert code == 2 and "frames of shape (1, 32, 32)" in text and not (tmp_path / "small").exists(), text
    finally:
        ray.shutdown()
    table = pq.read_table(tmp_path / "ray").to_pylist()
    table.sort(key=lambda r: int(r["id"]))  # workers may finish out of order; within a frame, rows keep theirs
    assert len(table) == len(local)
    for mine, theirs in zip(table, local):
        assert int(mine["id"]) == theirs["frame"]
        for key, value in theirs.items():
            if key == "frame":
                continue
            got = mine[key]
            if value is None:  # a frame without objects: NaN or -1 in Parquet's typed columns
                assert got == -1 if key == "class" else (got is False if key == "flag" else np.isnan(got)), (key, got)
            else:
                assert got == pytest.approx(value, rel=1e-6, abs=1e-9), (key, got, value)


def test_given_fused_members_are_used_and_shown(files, capsys):
    d = files
    prepare(capsys, d)
    code, text = run(capsys, "calibrate", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'clean.npz'}",
                     "--fpr", "0.1", "--fuse", "msp,knn", "--out", d / "given.npz", "--quiet")
    assert code == 0 and "fused members msp, knn (given)" in text, text
    code, text = run(capsys, "info", d / "given.npz")
    assert "fused members: msp, knn" in text and "chosen by" not in text, text


def test_no_separate_fuses_every_member_and_conflicts_with_fuse(files, capsys):
    d = files
    prepare(capsys, d)
    code, text = run(capsys, "calibrate", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'clean.npz'}",
                     "--fpr", "0.1", "--no-separate", "--out", d / "every.npz", "--quiet")
    assert code == 0 and "fused members mahalanobis, knn, nbc, kmnc, energy, msp (every member)" in text, text
    code, text = run(capsys, "calibrate", d / "det.onnx", d / "obj.npz", "--data", f"npz:{d / 'clean.npz'}",
                     "--no-separate", "--fuse", "knn", "--out", d / "both.npz")
    assert code == 2 and "--no-separate and --fuse both choose the fused members" in text and not (d / "both.npz").exists()


def test_outputs_that_several_presets_fit_name_them_all_and_recommend_none(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    # YOLOv5's and YOLOX's heads have one shape, (B, N, 5 + C), and read it differently
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3549, 85])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3549, 85])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "head", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "head.onnx")
    code, text = run(capsys, "instrument", tmp_path / "head.onnx", "--out", tmp_path / "x.onnx")
    assert code == 2, text
    assert re.search(r"add --layout with the preset of its family; presets that fit these outputs: yolov5, yolox", text), text
    assert not (tmp_path / "x.onnx").exists()
