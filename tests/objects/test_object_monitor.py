"""The object monitor end to end on a tiny detector trained at test time (scikit-learn digits as glyphs)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from nnwatch.errors import InputError, ModelError
from nnwatch.kernels import roi_reference as ref
from nnwatch.objects.instrument_detector import instrument_detector
from nnwatch.objects.detector_manifest import read_manifest
from nnwatch.objects.object_monitor import ObjectMonitor
from nnwatch.objects.scorer import MemberScorer

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
pytest.importorskip("sklearn")


def older_state(monitor, tmp_path, part: str, change):
    """The monitor's state file as an older nnwatch wrote it: ``part`` of the zip passed through ``change``."""
    import zipfile

    from nnwatch.objects.monitor_state import save_object_monitor

    path, old = tmp_path / "objects.npz", tmp_path / "old.npz"
    save_object_monitor(monitor, path)
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(old, "w") as out:
        for name in z.namelist():
            out.writestr(name, change(z.read(name)) if name == part else z.read(name))
    return old


@pytest.fixture(scope="module")
def detector():
    from nnwatch.eval.detector_model import tiny_detector, train_detector
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.export.from_torch import export_plain
    from nnwatch.sources import load_digits

    torch.set_num_threads(1)
    d = load_digits("train")
    scenes = make_scenes(d.x, d.y, 240, seed=0, size=64, scale=(16, 24), per_frame=(1, 3))
    model = train_detector(tiny_detector(10, width=8), scenes, epochs=3, seed=0)
    plain = export_plain(model, torch.from_numpy(scenes.images[:2]))
    return {"model": model, "plain": plain, "digits": d, "scenes": scenes}


@pytest.fixture(scope="module")
def instrumented(detector):
    model, manifest = instrument_detector(detector["plain"], "yolov8")
    return model, manifest


def test_instrumenting_keeps_the_outputs_and_adds_the_last_feature_maps(detector, instrumented):
    model, manifest = instrumented
    assert manifest.input_size == (64, 64) and manifest.layout.name == "yolov8"
    assert len(manifest.maps) == 2 and all(c == 16 for c in manifest.channels)
    assert read_manifest(model) == manifest
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = detector["scenes"].images[:3]
    head, *maps = sess.run([*manifest.outputs, *manifest.maps], {manifest.input_name: x})
    with torch.no_grad():
        np.testing.assert_allclose(head, detector["model"](torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    assert all(m.ndim == 4 and m.shape[2:] == (8, 8) for m in maps)  # stride 8 on 64 x 64


def test_per_scale_taps_the_last_map_of_each_size(detector):
    from onnx import shape_inference

    model, manifest = instrument_detector(detector["plain"], "yolov8", layers="per-scale")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    maps = sess.run(list(manifest.maps), {manifest.input_name: detector["scenes"].images[:1]})
    sizes = [m.shape[2:] for m in maps]
    # the definition, written out: for each map size the last activation map a conv reads; the
    # sizes ordered by where that map is; the last three
    inferred = shape_inference.infer_shapes(detector["plain"])
    shape = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}
    conv_in = {n.input[0] for n in inferred.graph.node if n.op_type == "Conv"}
    acts = [n.output[0] for n in inferred.graph.node if n.op_type == "Relu" and n.output[0] in conv_in]
    last = {shape[t][2:]: i for i, t in enumerate(acts)}
    want = [acts[i] for i in sorted(last.values())][-3:]
    assert list(manifest.tensors) == want and len(set(sizes)) == len(sizes) == min(3, len(last))
    assert manifest.tensors[-1] == instrument_detector(detector["plain"], "yolov8")[1].tensors[-1]
    assert len(instrument_detector(detector["plain"], "yolov8", layers="per-scale", max_taps=1)[1].maps) == 1
    with pytest.raises(InputError, match="layers must be 'auto', 'per-scale' or a list"):
        instrument_detector(detector["plain"], "yolov8", layers="per_scale")


def test_a_layout_that_does_not_fit_names_the_shapes_and_the_presets_that_do(detector):
    with pytest.raises(InputError, match=r"needs one \(B, K, 6\) output.*Outputs found: .*\(.*14, 64\).*"
                                         r"Presets that fit: yolov8"):
        instrument_detector(detector["plain"], "nms")


def test_refusals(detector, instrumented):
    with pytest.raises(ModelError, match="already instrumented"):
        instrument_detector(instrumented[0], "yolov8")
    with pytest.raises(InputError, match="tensor 'nope' not found; available: .*relu"):
        instrument_detector(detector["plain"], "yolov8", layers=["nope"])


@pytest.fixture(scope="module")
def monitor(detector, instrumented):
    from nnwatch.eval.scenes import make_scenes

    d = detector["digits"]
    mon = ObjectMonitor(instrumented[0].SerializeToString(), threads=1)
    mon.fit(make_scenes(d.x, d.y, 200, seed=1, size=64, scale=(16, 24), per_frame=(1, 3)).images)
    mon.calibrate(make_scenes(d.x, d.y, 300, seed=2, size=64, scale=(16, 24), per_frame=(1, 3)).images, alpha=0.1)
    return mon


def test_object_features_are_the_roi_average_of_the_maps(monitor, detector):
    from nnwatch.objects.object_features import object_features

    det, maps = monitor.infer(detector["scenes"].images[:8])
    assert len(det) > 0
    for got, m in zip(object_features(maps, det, (64, 64)), maps):
        np.testing.assert_allclose(got, ref.roi_average(m, det.boxes, det.frame, (8.0, 8.0)), rtol=1e-4, atol=1e-5)


def test_a_frame_is_flagged_exactly_when_an_object_or_its_image_term_is(monitor, detector):
    from nnwatch.eval.scenes import make_scenes

    d = detector["digits"]
    x = make_scenes(d.x, d.y, 60, seed=3, size=64, scale=(16, 24), anomaly="noise").images
    x[:5] = 0.0  # empty frames: no objects, judged by the image-level term alone
    v = monitor.score(x)
    any_object = np.zeros(len(x), bool)
    np.logical_or.at(any_object, v.objects.frame, v.object_flag)
    np.testing.assert_array_equal(v.frame_flag, any_object | monitor.frames_.flags(v.image_p))
    np.testing.assert_array_equal(v.image_only, v.objects.per_frame() == 0)
    assert len(v.object_rows()) == len(v.objects)


def test_the_live_call_runs_only_the_fused_members_and_gives_the_same_verdicts(monitor, detector):
    from nnwatch.eval.scenes import make_scenes

    d = detector["digits"]
    x = make_scenes(d.x, d.y, 40, seed=7, size=64, scale=(16, 24), anomaly="unknown", others=d.x[:20] * 0.5).images
    fused_only = ["mahalanobis", "msp"]
    saved = dict(monitor.__dict__)  # the module's monitor is shared: recalibrated here, restored after
    try:
        c = monitor._collect(monitor._check(x[:20]), 64, "", False)
        objects, _ = monitor._scores(c)
        half = len(c["cls"]) // 2
        cls = np.clip(c["cls"], 0, monitor.n_classes_ - 1)
        monitor.set_object_calibration(objects[:half], cls[:half], monitor.image_reference_, 0.1, 0, None,
                                       fused_members=fused_only)
        calls = {m: 0 for m in monitor.members}
        for name, det in zip(monitor.members, monitor.objects_.detectors_):
            def counted(view, _f=det.score, _n=name):
                calls[_n] += 1
                return _f(view)
            det.score = counted
        try:
            live, every = monitor.score(x), monitor.score(x, members="all")
        finally:
            for det in monitor.objects_.detectors_:
                del det.score
        assert live.member_names == fused_only and every.member_names == monitor.members
        assert {m: n for m, n in calls.items() if n} == {m: 2 if m in fused_only else 1 for m in monitor.members}
        np.testing.assert_array_equal(live.object_p, every.object_p)
        np.testing.assert_array_equal(live.frame_p, every.frame_p)
        np.testing.assert_array_equal(live.members, every.members[:, [monitor.members.index(m) for m in fused_only]])
        with pytest.raises(InputError, match="members must be 'fused' or 'all'"):
            monitor.score(x, members="some")
    finally:
        monitor.__dict__.clear()
        monitor.__dict__.update(saved)


def test_member_scores_equal_the_feature_detector_path(monitor, detector):
    from nnwatch.monitor.on_features import FeatureDetector

    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(300, 6)).astype(np.float32), rng.normal(size=(300, 4)).astype(np.float32)]
    y = rng.integers(0, 3, 300)
    scorer = MemberScorer(["mahalanobis", "nbc"]).fit(layers, y, 3)
    test = [a[:40] + 0.5 for a in layers]
    logits = np.zeros((40, 3), np.float32)
    pred = y[:40].astype(np.int64)
    logits[np.arange(40), pred] = 1.0
    got = scorer.score(test, logits, pred)
    for k, name in enumerate(["mahalanobis", "nbc"]):
        fd = FeatureDetector(name).fit_features(layers, y, 3)
        np.testing.assert_allclose(got[:, k], fd.score_features(test, logits=logits), rtol=1e-6)


def test_bad_frames_are_refused(monitor):
    with pytest.raises(InputError, match=r"frames must be numbers \(B, 1, 64, 64\), got float32 \(2, 1, 32, 32\)"):
        monitor.score(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(InputError, match=r"frames must be numbers \(B, 1, 64, 64\), got float32 \(2, 3, 64, 64\)"):
        monitor.fit(np.zeros((2, 3, 64, 64), np.float32))  # refused before onnxruntime sees them
    with pytest.raises(InputError, match=r"frames must be numbers .* got <U1"):
        monitor.score(np.full((2, 1, 64, 64), "a"))


def test_integer_frames_are_cast_as_the_classifier_monitor_casts_them(monitor, detector):
    x = (detector["scenes"].images[:6] * 255).round()
    a, b = monitor.score(x.astype(np.uint8)), monitor.score(x.astype(np.float32))
    np.testing.assert_array_equal(a.frame_p, b.frame_p)
    np.testing.assert_array_equal(a.objects.boxes, b.objects.boxes)


def test_a_plain_model_is_refused(detector):
    with pytest.raises(InputError, match="not an instrumented detector"):
        ObjectMonitor(detector["plain"].SerializeToString())


def test_a_saved_monitor_gives_the_same_verdicts(monitor, detector, instrumented, tmp_path):
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.objects.monitor_state import load_object_monitor, save_object_monitor

    path = tmp_path / "objects.npz"
    save_object_monitor(monitor, path)
    loaded = load_object_monitor(instrumented[0].SerializeToString(), path)
    d = detector["digits"]
    x = make_scenes(d.x, d.y, 30, seed=5, size=64, scale=(16, 24), anomaly="unknown", others=d.x[:20] * 0.5).images
    a, b = monitor.score(x), loaded.score(x)
    np.testing.assert_array_equal(a.object_p, b.object_p)
    np.testing.assert_array_equal(a.frame_p, b.frame_p)
    np.testing.assert_array_equal(a.members, b.members)
    np.testing.assert_array_equal(a.frame_category, b.frame_category)
    np.testing.assert_array_equal(monitor.frame_categories_, loaded.frame_categories_)
    assert len(monitor.frame_categories_) == monitor.frames_.reference.size  # the frames behind the frame calibration
    assert loaded.fused_members_ == monitor.fused_members_ and loaded.member_choice_ == monitor.member_choice_


def test_the_fused_members_are_chosen_from_synthetic_objects_unless_given(monitor, detector, instrumented):
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.calibration.separation import SHARE_OF_BEST

    choice = monitor.member_choice_
    assert choice is not None and monitor.fused_members_ == choice.members
    assert all(n > 0 for n in choice.synthetic.values()) and choice.clean > 0
    gain = {m: np.mean(list(row.values())) - 0.5 for m, row in choice.auroc.items()}
    best = max(gain.values())
    assert choice.members == ([m for m in monitor.members if gain[m] >= SHARE_OF_BEST * best] if best > 0
                              else [max(gain, key=gain.get)])
    # the fused statistic reads exactly the chosen members' columns
    assert [monitor.members[i] for i in monitor.fusion_.members] == choice.members
    d = detector["digits"]
    x = make_scenes(d.x, d.y, 120, seed=2, size=64, scale=(16, 24), per_frame=(1, 3)).images
    every = ObjectMonitor(instrumented[0].SerializeToString(), threads=1)
    every.objects_, every.image_, every.n_classes_ = monitor.objects_, monitor.image_, monitor.n_classes_
    every.calibrate(x, alpha=0.1, fused_members="all")
    assert every.member_choice_ is None and every.fused_members_ == every.members
    every.calibrate(x, alpha=0.1, fused_members=["knn", "msp", "knn"])
    assert every.fused_members_ == ["knn", "msp"]
    for bad in ("best", ["knn", "gradnorm"], []):
        with pytest.raises(InputError, match="fused"):
            every.calibrate(x, alpha=0.1, fused_members=bad)


def test_a_state_written_before_the_choice_fuses_every_member(monitor, instrumented, tmp_path):
    import json

    from nnwatch.objects.monitor_state import load_object_monitor

    def without_choice(data: bytes) -> bytes:
        header = json.loads(data)
        del header["fused_members"], header["member_choice"]
        return json.dumps(header).encode()

    old = older_state(monitor, tmp_path, "header.json", without_choice)
    loaded = load_object_monitor(instrumented[0].SerializeToString(), old)
    assert loaded.fused_members_ == loaded.members and loaded.member_choice_ is None


def test_a_state_written_before_the_class_test_streams_with_the_score_test_alone(monitor, instrumented, tmp_path):
    """Older states carry no frame categories: they load, and their stream says it has no class test."""
    import io

    from nnwatch.objects.frame_stream import ObjectStream
    from nnwatch.objects.monitor_state import load_object_monitor

    def without_categories(data: bytes) -> bytes:
        with np.load(io.BytesIO(data)) as c:
            arrays = {k: c[k] for k in c.files if k != "frame_categories"}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    old = older_state(monitor, tmp_path, "calibration.npz", without_categories)
    loaded = load_object_monitor(instrumented[0].SerializeToString(), old)
    assert not hasattr(loaded, "frame_categories_")
    assert not ObjectStream(loaded, delta=0.1).class_test and ObjectStream(monitor, delta=0.1).class_test


def test_top_classes_is_the_class_of_each_frames_highest_scoring_object():
    from nnwatch.objects.detections import Detections

    rng = np.random.default_rng(0)
    for _ in range(50):
        n_frames, m, n_classes = int(rng.integers(1, 6)), int(rng.integers(0, 12)), 4
        frame = np.sort(rng.integers(0, n_frames, m)).astype(np.int64)
        score = rng.choice([0.3, 0.5, 0.9], m).astype(np.float32)  # ties on purpose
        cls = rng.integers(0, n_classes + 2, m).astype(np.int64)  # some beyond the monitor's classes
        det = Detections(frame=frame, boxes=np.zeros((m, 4), np.float32), score=score, cls=cls, class_scores=None,
                         n_frames=n_frames)
        expected = []
        for f in range(n_frames):
            rows = [i for i in range(m) if frame[i] == f]
            if not rows:
                expected.append(n_classes)
                continue
            best = rows[0]
            for i in rows:
                if score[i] > score[best]:
                    best = i
            expected.append(min(int(cls[best]), n_classes - 1))
        assert det.top_classes(n_classes).tolist() == expected


def test_a_damaged_or_foreign_state_is_refused(monitor, detector, instrumented, tmp_path):
    from nnwatch.errors import ModelMismatchError, ProfileError
    from nnwatch.objects.monitor_state import load_object_monitor, save_object_monitor

    path = tmp_path / "objects.npz"
    save_object_monitor(monitor, path)
    data = bytearray(path.read_bytes())
    (tmp_path / "cut.npz").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ProfileError, match="not an nnwatch object monitor file"):
        load_object_monitor(instrumented[0].SerializeToString(), tmp_path / "cut.npz")
    other, _ = instrument_detector(detector["plain"], {"preset": "yolov8", "score_threshold": 0.5})
    with pytest.raises(ModelMismatchError, match="another detector or layout"):
        load_object_monitor(other.SerializeToString(), path)


def test_a_model_exported_with_a_fixed_batch_runs_in_chunks(monitor, detector, instrumented, tmp_path):
    """Public detectors are often exported for batch 1: any batch is run in chunks of that size."""
    import onnx

    from nnwatch.objects.monitor_state import load_object_monitor, save_object_monitor

    fixed = onnx.ModelProto()
    fixed.CopyFrom(instrumented[0])
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # an odd batch needs a padded last chunk
    save_object_monitor(monitor, tmp_path / "objects.npz")
    chunked = load_object_monitor(fixed.SerializeToString(), tmp_path / "objects.npz")
    assert chunked.fixed_batch == 2 and monitor.fixed_batch is None
    x = detector["scenes"].images[:5]
    a, b = monitor.score(x), chunked.score(x)
    np.testing.assert_array_equal(a.objects.frame, b.objects.frame)
    np.testing.assert_allclose(a.objects.boxes, b.objects.boxes, atol=1e-4)
    np.testing.assert_allclose(a.frame_p, b.frame_p)


def test_providers_are_resolved_like_the_classifier_monitors(monitor, detector, instrumented, tmp_path):
    """A provider this machine lacks is refused with the ones that work; where CUDA works, the
    detector runs there and gives the CPU's objects and member scores (to float rounding)."""
    from nnwatch.errors import InputError
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.monitor.providers import working_providers
    from nnwatch.objects.monitor_state import load_object_monitor, save_object_monitor

    path = tmp_path / "objects.npz"
    save_object_monitor(monitor, path)
    model = instrumented[0].SerializeToString()
    assert monitor.providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in working_providers():
        with pytest.raises(InputError, match="do not work on this machine; working: .*CPUExecutionProvider"):
            load_object_monitor(model, path, providers="cuda")
        pytest.skip("no working CUDA execution provider here: the GPU half of this test did not run")
    gpu = load_object_monitor(model, path, providers="cuda")
    assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
    d = detector["digits"]
    x = make_scenes(d.x, d.y, 8, seed=6, size=64, scale=(16, 24)).images
    a, b = monitor.score(x), gpu.score(x)
    np.testing.assert_array_equal(a.objects.cls, b.objects.cls)
    np.testing.assert_allclose(a.members, b.members, rtol=1e-3, atol=1e-4)


def test_without_synthetic_objects_every_member_fuses_with_a_warning(monitor, detector, instrumented, monkeypatch):
    """A detector that finds none of the altered objects again leaves nothing to choose from."""
    from nnwatch.calibration.groups import CalibrationWarning
    from nnwatch.eval.scenes import make_scenes
    from nnwatch.objects import object_monitor as om

    monkeypatch.setattr(om, "matches_altered", lambda found, altered, which: np.zeros(len(found), bool))
    d = detector["digits"]
    x = make_scenes(d.x, d.y, 120, seed=2, size=64, scale=(16, 24), per_frame=(1, 3)).images
    mon = ObjectMonitor(instrumented[0].SerializeToString(), threads=1)
    mon.objects_, mon.image_, mon.n_classes_ = monitor.objects_, monitor.image_, monitor.n_classes_
    with pytest.warns(CalibrationWarning, match="fused members not chosen: no synthetic objects.*every member fuses"):
        mon.calibrate(x, alpha=0.1)
    assert mon.member_choice_ is None and mon.fused_members_ == mon.members
