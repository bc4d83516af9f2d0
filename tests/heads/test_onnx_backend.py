"""The ONNX back-end agrees with the torch one; foreign graphs are refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nnwatch.errors import ModelError

TOLERANCE_DEG = 1e-3  # float32 graphs vs float32 torch; measured about 3e-6 degrees


@pytest.fixture(scope="module")
def tiny_onnx(tiny_scorer, tmp_path_factory):
    from nnwatch.heads.onnx_backend import export_prefill

    path = tmp_path_factory.mktemp("heads-onnx") / "prefill.onnx"
    export_prefill(tiny_scorer, path)
    return path


def test_onnx_angles_agree_with_torch(tiny_scorer, tiny_onnx, all_heads):
    from nnwatch.heads.onnx_backend import OnnxHeadScorer

    ox = OnnxHeadScorer(tiny_onnx, providers="cpu")
    assert ox.fingerprint == tiny_scorer.fingerprint
    for p in ["how do I bake a cake", "write a poem about the sea and the sky, please, in detail"]:
        ids = tiny_scorer.encode(p)["input_ids"].numpy()
        np.testing.assert_allclose(ox.angles(ids, all_heads), tiny_scorer.angles(p, all_heads), atol=TOLERANCE_DEG)


def test_onnx_scorer_refuses_foreign_graphs(tmp_path):
    from nnwatch.heads.onnx_backend import OnnxHeadScorer

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "x.onnx")
    with pytest.raises(ModelError, match="not a prefill exported by nnwatch heads"):
        OnnxHeadScorer(tmp_path / "x.onnx", providers="cpu")


def test_onnx_states_and_monitor_scores_agree_with_torch(tiny_scorer, tiny_onnx):
    """The exported graph's residual states equal the torch pass's, so a monitor on the
    onnxruntime prefill gives the torch monitor's scores (prefill and head detectors)."""
    from nnwatch.heads.detector_file import LanguageDetector
    from nnwatch.heads.language_monitor import LanguageMonitor
    from nnwatch.heads.logistic import Logistic
    from nnwatch.heads.onnx_backend import OnnxHeadScorer
    from nnwatch.heads.scores import HeadAngle, RefusalDirection, ResidualProbe

    lay = tiny_scorer.layout
    prompts = ["how do I bake a cake", "write a poem about the sea and the sky, please, in detail"]
    ox = OnnxHeadScorer(tiny_onnx, providers="cpu")
    for p in prompts:
        _, torch_states, _ = tiny_scorer.base_pass(p)
        onnx_states, _ = ox.features(tiny_scorer.encode(p)["input_ids"].numpy(), [])
        np.testing.assert_allclose(onnx_states, torch_states, rtol=1e-4, atol=1e-4)
    rng = np.random.default_rng(0)
    d = torch_states.shape[1]
    det = LanguageDetector("tiny", tiny_scorer.fingerprint, lay.n_layers, lay.n_heads, d, {
        "probe": ResidualProbe(2, Logistic(np.zeros(d), np.ones(d), rng.normal(size=d), 0.1)),
        "refusal_direction": RefusalDirection(3, rng.normal(size=d)),
        "head_single": HeadAngle((1, 2))}, "probe")
    on_torch = LanguageMonitor(det, tiny_scorer, detectors="all").score(prompts).score_matrix
    on_onnx = LanguageMonitor(det, tiny_scorer, detectors="all", onnx=tiny_onnx).score(prompts).score_matrix
    np.testing.assert_allclose(on_onnx, on_torch, rtol=1e-3, atol=1e-3)
