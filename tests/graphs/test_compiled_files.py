"""What ``nnwatch compile`` writes: files that run without nnwatch, refusals, sizes, thresholds."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nnwatch.cli.main import main
from nnwatch.deploy import compile_monitor
from nnwatch.errors import InputError
from nnwatch.graphs.verdict_graph import OPSET, section_thresholds
from tests.conftest import REPO, missing

from .conftest import build_variant


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compiled")
    v = build_variant("mlp", folder)
    compile_monitor(v["path"], v["profile"], folder / "out")
    return v, folder / "out"


def _verdict_input(out, x):
    sess = ort.InferenceSession(str(out / "tapped.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["nnwatch/verdict_input"], {sess.get_inputs()[0].name: x})[0]


def test_the_files_are_standard_onnx_and_the_merged_model_is_the_two_others(mlp):
    v, out = mlp
    assert sorted(p.name for p in out.iterdir()) == ["monitored.onnx", "tapped.onnx", "verdict.json", "verdict.onnx"]
    verdict = onnx.load(str(out / "verdict.onnx"))
    onnx.checker.check_model(verdict, full_check=True)
    assert [(o.domain, o.version) for o in verdict.opset_import] == [("", OPSET)]
    ops = {n.op_type for n in verdict.graph.node}
    assert not ops & {"IsInf", "Loop", "If", "Scan"} and all(n.domain == "" for n in verdict.graph.node)
    assert all(i.data_type != onnx.TensorProto.DOUBLE for i in verdict.graph.initializer)
    assert all(int(n.attribute[0].i) != onnx.TensorProto.DOUBLE for n in verdict.graph.node if n.op_type == "Cast")
    record = json.loads((out / "verdict.json").read_text())
    assert record["profile_digest"] == v["profile"].digest() and record["decision"] == v["compiled"].decision
    x = v["x"]
    vin = _verdict_input(out, x)
    names = ["pred", "flag", "confidence", "count", "scores"]
    separate = ort.InferenceSession(str(out / "verdict.onnx"), providers=["CPUExecutionProvider"]).run(
        names, {"nnwatch/verdict_input": vin})
    merged_sess = ort.InferenceSession(str(out / "monitored.onnx"), providers=["CPUExecutionProvider"])
    merged = merged_sess.run([f"nnwatch/{n}" for n in names], {merged_sess.get_inputs()[0].name: x})
    for a, b, n in zip(separate, merged, names):
        np.testing.assert_array_equal(a, b, err_msg=n)


def test_the_verdict_model_runs_in_a_process_without_nnwatch(mlp, tmp_path):
    """A C++ or robot process has onnxruntime and the files, nothing of nnwatch."""
    v, out = mlp
    vin = _verdict_input(out, v["x"])
    np.save(tmp_path / "input.npy", vin)
    script = f"""
import sys
sys.modules["nnwatch"] = None  # importing nnwatch now fails
import numpy as np, onnxruntime as ort
sess = ort.InferenceSession({str(out / "verdict.onnx")!r}, providers=["CPUExecutionProvider"])
pred, flag, conf = sess.run(["pred", "flag", "confidence"], {{"nnwatch/verdict_input": np.load({str(tmp_path / "input.npy")!r})}})
np.savez({str(tmp_path / "out.npz")!r}, pred=pred, flag=flag, conf=conf)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    want = v["graph"](v["x"])
    np.testing.assert_array_equal(got["pred"], want.pred)
    np.testing.assert_array_equal(got["flag"], want.flag)
    np.testing.assert_array_equal(got["conf"], want.confidence.astype(np.float32))


NODE_SCRIPT = """
const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, input, rows, width] = process.argv.slice(2);
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const session = await ort.InferenceSession.create(model);
  const feeds = {'nnwatch/verdict_input': new ort.Tensor('float32', data, [Number(rows), Number(width)])};
  const out = await session.run(feeds);
  console.log(JSON.stringify({pred: Array.from(out.pred.data, Number), flag: Array.from(out.flag.data, Boolean),
                              confidence: Array.from(out.confidence.data)}));
})();
"""


def _node_runtime(folder):  # type: ignore[no-untyped-def]
    """A folder with onnxruntime-node installed from the npm registry (once per session)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("Node.js and npm (the JavaScript verdict test)", "install Node.js 20 with npm")
    (folder / "package.json").write_text('{"name": "nnwatch-node-check", "private": true}')
    # The CPU build is in the npm package; its install script would also fetch CUDA binaries from
    # nuget.org, which the verdict does not need (and which a machine limited to npm cannot reach).
    env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL_CUDA="skip", ONNXRUNTIME_NODE_INSTALL="skip")
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "onnxruntime-node@1"],
                          cwd=folder, capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:
        missing("onnxruntime-node from the npm registry", f"npm install onnxruntime-node failed: {done.stderr[-500:]}")
    return node


def test_node_js_prints_the_same_verdicts_as_python(mlp, tmp_path_factory):
    v, out = mlp
    folder = tmp_path_factory.mktemp("node")
    node = _node_runtime(folder)
    vin = np.ascontiguousarray(_verdict_input(out, v["x"]), np.float32)
    (folder / "input.bin").write_bytes(vin.tobytes())
    (folder / "verdict.js").write_text(NODE_SCRIPT)
    done = subprocess.run([node, "verdict.js", str(out / "verdict.onnx"), "input.bin", str(vin.shape[0]),
                           str(vin.shape[1])], cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    want = ort.InferenceSession(str(out / "verdict.onnx"), providers=["CPUExecutionProvider"]).run(
        ["pred", "flag", "confidence"], {"nnwatch/verdict_input": vin})
    assert got["pred"] == want[0].tolist() and got["flag"] == want[1].tolist()
    np.testing.assert_array_equal(np.array(got["confidence"], np.float32), want[2])


def test_the_example_node_script_refuses_bad_arguments(mlp, tmp_path_factory):
    v, out = mlp
    folder = tmp_path_factory.mktemp("node-example-bad")
    node = shutil.which("node")
    if node is None:
        missing("Node.js (the JavaScript verdict test)", "install Node.js 20")
    shutil.copy(REPO / "examples" / "verdict.js", folder / "verdict.js")
    (folder / "odd.bin").write_bytes(np.zeros(7, np.float32).tobytes())
    for args, message in ((["verdict.onnx"], "expected three arguments"),
                          ([str(out / "verdict.onnx"), "odd.bin", "x"], "WIDTH must be an integer"),
                          ([str(out / "verdict.onnx"), "odd.bin", "3"], "not a whole number of float32 rows")):
        done = subprocess.run([node, "verdict.js", *args], cwd=folder, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and message in done.stderr and "usage:" in done.stderr, done.stderr


def test_the_example_node_script_in_examples_runs(mlp, tmp_path_factory):
    """examples/verdict.js, the script the README points to, scores the same verdicts."""
    v, out = mlp
    folder = tmp_path_factory.mktemp("node-example")
    node = _node_runtime(folder)
    vin = np.ascontiguousarray(_verdict_input(out, v["x"][:5]), np.float32)
    (folder / "input.bin").write_bytes(vin.tobytes())
    shutil.copy(REPO / "examples" / "verdict.js", folder / "verdict.js")
    done = subprocess.run([node, "verdict.js", str(out / "verdict.onnx"), "input.bin", str(vin.shape[1])], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    want = ort.InferenceSession(str(out / "verdict.onnx"), providers=["CPUExecutionProvider"]).run(
        ["flag"], {"nnwatch/verdict_input": vin})[0]
    assert [line.split()[2] == "flag=true" for line in done.stdout.strip().splitlines()] == want.tolist()


def test_refusals_name_the_problem(tmp_path, mlp, capsys, digits_monitor_files):
    from nnwatch.export.instrument import instrument_file
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.profile.store import save_profile

    v, _ = mlp
    f = digits_monitor_files
    uncalibrated = build_profile(f["model"], f["splits"]["train"], batch_size=200)
    with pytest.raises(InputError, match="not calibrated"):
        compile_monitor(f["model"], uncalibrated, tmp_path / "a")
    with pytest.raises(InputError, match=r"\['knn'\] exist only in Python.*compilable detectors: nc"):
        compile_monitor(v["path"], v["profile"], tmp_path / "b", detectors=("coverage", "knn", "fused"))
    separate = tmp_path / "separate.onnx"
    instrument_file(f["plain"], separate, join_taps=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nnwatch.calibration.calibrate import calibrate
        from nnwatch.monitor.monitor import Monitor

        prof = build_profile(separate, f["splits"]["train"], batch_size=200)
        mon = Monitor(separate, prof, providers="cpu")
        calibrate(mon, f["splits"]["val"], min_class_samples=10)
        save_profile(mon.profile, tmp_path / "separate.npz")
    assert main(["compile", str(separate), str(tmp_path / "separate.npz"), "--out", str(tmp_path / "c")]) == 2
    assert "taps joined into one output" in capsys.readouterr().err
    assert main(["compile", str(v["path"]), str(v["path"]), "--out", str(tmp_path / "d")]) == 2
    assert "look swapped" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    # the instrumented model saved as monitored.onnx, compiled into its own folder: never replaced
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(v["path"], here / "monitored.onnx")
    save_profile(v["profile"], here / "profile.npz")
    before = (here / "monitored.onnx").read_bytes()
    assert main(["compile", str(here / "monitored.onnx"), str(here / "profile.npz"), "--out", str(here)]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert (here / "monitored.onnx").read_bytes() == before and sorted(p.name for p in here.iterdir()) == [
        "monitored.onnx", "profile.npz"]
    assert main(["compile", str(here / "monitored.onnx"), str(here / "profile.npz"), "--out", str(here),
                 "--no-merged"]) == 2  # the stale merged model would be removed: refused too
    assert (here / "monitored.onnx").read_bytes() == before


def test_old_opsets_get_the_two_models_and_no_merged_one(tmp_path):
    v = build_variant("conv", tmp_path)
    model = onnx.load(str(v["path"]))
    assert model.opset_import[0].version == 17
    from nnwatch.graphs.assemble import merged_model, tapped_model

    old = onnx.load(str(v["path"]))
    old.opset_import[0].version = 12  # every op of this graph means the same at 12
    raw = old.SerializeToString()
    with pytest.raises(InputError, match="opset 12; a merged model needs opset 13"):
        merged_model(raw, v["compiled"].verdict_tables.spec, v["compiled"].columns, 0, {})
    tapped = tapped_model(raw, {})
    sess = ort.InferenceSession(tapped.SerializeToString(), providers=["CPUExecutionProvider"])
    vin = sess.run(["nnwatch/verdict_input"], {sess.get_inputs()[0].name: v["x"][:3]})[0]
    assert vin.shape == (3, 5 + v["compiled"].tables.n_neurons + 1)
    assert (vin[:, -1] == 0).all()
    bad = v["x"][-4:]  # NaN, +inf, -inf, clean
    old.opset_import[0].version = 9  # the oldest the tapped model takes (IsNaN): NaN/Inf counted the same
    sess = ort.InferenceSession(tapped_model(old.SerializeToString(), {}).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    vin = sess.run(["nnwatch/verdict_input"], {sess.get_inputs()[0].name: bad})[0]
    np.testing.assert_array_equal(vin[:, -1], (~np.isfinite(bad)).reshape(4, -1).sum(1))
    old.opset_import[0].version = 8
    with pytest.raises(InputError, match="opset 8; the tapped model counts NaN/Inf inputs with IsNaN"):
        tapped_model(old.SerializeToString(), {})


def test_section_thresholds_are_exactly_the_kernels_sections():
    rng = np.random.default_rng(0)
    k = 10
    lo = rng.normal(size=(5, 40)).astype(np.float32)
    hi = (lo + np.abs(rng.normal(size=lo.shape)) * rng.choice([1e-6, 1.0, 1e4], size=lo.shape)).astype(np.float32)
    hi[0, :4] = lo[0, :4]  # point ranges: one section
    width = hi.astype(np.float64) - lo.astype(np.float64)
    inv_w = np.where(width > 0, k / np.where(width > 0, width, 1.0), 0.0)
    t = section_thresholds(lo, hi, inv_w, k)
    for c in range(lo.shape[0]):
        for n in range(lo.shape[1]):
            edges = t[c, n][np.isfinite(t[c, n])]
            values = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf),
                                     lo[c, n] + (hi[c, n] - lo[c, n]) * rng.random(100).astype(np.float32),
                                     [lo[c, n], hi[c, n]]]).astype(np.float32)
            values = values[(values >= lo[c, n]) & (values <= hi[c, n])]
            want = np.minimum(np.floor((values.astype(np.float64) - np.float64(lo[c, n])) * inv_w[c, n]), k - 1)
            np.testing.assert_array_equal((values[:, None] >= t[c, n][None]).sum(axis=1), want)


def test_a_thousand_class_verdict_model_fits_16_mib(tmp_path):
    """Compact tables: the verdict model's initializers for 1,000 classes and 2,000 neurons."""
    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.eval.zoo import wide_classifier
    from nnwatch.export.instrument import instrument
    from nnwatch.monitor.detectors import COMPILED
    from nnwatch.monitor.monitor import Monitor
    from nnwatch.monitor.profiling import build_profile

    rng = np.random.default_rng(0)
    path = tmp_path / "wide.onnx"
    path.write_bytes(instrument(wide_classifier(rng, 1000, 1488, 512))[0].SerializeToString())
    x = rng.normal(size=(4000, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profile = build_profile(path, x[:3000], batch_size=500)
        mon = Monitor(path, profile, detectors=COMPILED, min_signature_samples=1, providers="cpu", threads=1)
        calibrate(mon, x[3000:], fpr=0.2, min_class_samples=1, batch_size=500)
    assert mon.compact_tables
    compile_monitor(path, mon.profile, tmp_path / "out", detectors=COMPILED, merged=False)
    model = onnx.load(str(tmp_path / "out" / "verdict.onnx"))
    size = sum(onnx.numpy_helper.to_array(i).nbytes for i in model.graph.initializer)
    assert size <= 16 * 2**20, size / 2**20
    assert os.path.getsize(tmp_path / "out" / "verdict.onnx") <= 17 * 2**20


def test_the_graph_engine_follows_a_new_calibration(mlp):
    """Calibrating a graph-engine monitor again rebuilds its graph: no verdict from the old tables."""
    from nnwatch.calibration.calibrate import calibrate
    from nnwatch.monitor.monitor import Monitor

    v, _ = mlp
    x = v["x"][:-4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = Monitor(v["path"], copy.deepcopy(v["profile"]), providers="cpu", min_signature_samples=5,
                        engine="graph")
        before = graph.graph_model
        calibrate(graph, x, fpr=0.3, min_class_samples=10, batch_size=100)
        fresh = Monitor(v["path"], graph.profile, providers="cpu", min_signature_samples=5, engine="graph")
    assert graph.graph_model != before
    a, b = graph(x), fresh(x)
    np.testing.assert_array_equal(a.flag, b.flag)
    np.testing.assert_array_equal(a.p_matrix, b.p_matrix)
    assert a.flag.mean() > 0.15  # the new, looser calibration, not the old one
