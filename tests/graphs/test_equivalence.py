"""The ONNX verdict equals the compiled one, as "equal" is defined for float32 against float64.

The graph computes in float32, the Numba pass in float64 (nnwatch.graphs.verdict_graph):

- counting scores (nc, kmnc, tknc, nbc and their mean, coverage) are exact in both: their
  scores, p-values, counts and flags agree everywhere;
- other scores agree to float32 rounding; their flags (and the decision's) agree everywhere
  except for a sample whose score lies within that rounding of one of its calibration scores
  (a near-tie), which is counted, not hidden;
- NaN/Inf inputs: flagged, confidence 0, in both.

Checked on every model kind (full and compact tables, one and several layers, FP16, INT8 QDQ and
QOperator, a fixed batch) with onnxruntime, and the verdict model alone on onnx's own
ReferenceEvaluator (an independent implementation of the operators) and OpenVINO.
"""

from __future__ import annotations

import numpy as np
import pytest

COUNTING = ("nc", "kmnc", "tknc", "nbc", "coverage")


def _gather_elements():  # type: ignore[no-untyped-def]
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        """onnx 1.23's reference GatherElements uses numpy.choose, which takes at most 64 choices along the
        axis, and its fallback reads only the first index of each row: this is the operator's definition."""

        def _run(self, data, indices, axis=None):  # type: ignore[no-untyped-def]
            return (np.take_along_axis(data, np.where(indices < 0, indices + data.shape[axis], indices), axis=axis),)

    return GatherElements


GatherElements = _gather_elements()
RTOL = {"mahalanobis": 3e-4}  # a sum of squares minus a dot product: float32 cancellation


def near_ties(monitor, column: str, scores: np.ndarray, pred: np.ndarray, rtol: float) -> np.ndarray:
    """Samples whose score is within ``rtol`` (relative) of a calibration score of their block."""
    blocks, group_of = monitor.calibration_reference(column)
    out = np.zeros(len(scores), bool)
    for i, (s, c) in enumerate(zip(scores, pred)):
        if np.isfinite(s):
            ref = blocks[group_of[c]]
            out[i] = np.min(np.abs(ref - s)) <= rtol * max(1.0, abs(s))
    return out


def test_graph_verdicts_equal_the_compiled_ones(variant):
    compiled, graph, x = variant["compiled"], variant["graph"], variant["x"]
    a, b = compiled(x), graph(x)
    finite_logits = np.isfinite(a.logits).all(axis=1)
    np.testing.assert_array_equal(b.pred[finite_logits], a.pred[finite_logits])
    bad = a.nonfinite_input
    assert bad.sum() >= 3 and (b.flag[bad]).all() and (b.confidence[bad] == 0).all()
    np.testing.assert_array_equal(b.nonfinite_input, bad)
    ties_seen = 0
    member_ties = np.zeros(len(x), bool)  # a member's near-tie moves the fused statistic by one count's evidence
    members = compiled.calibration.fusion["members"] if compiled.calibration.fusion else []
    for m in members:
        j = compiled.columns.index(m)
        member_ties |= near_ties(compiled, m, a.score_matrix[:, j], a.pred, 10 * RTOL.get(m, 2e-5))
    compact = compiled.compact_tables
    for j, column in enumerate(compiled.columns):
        sa, sb = a.score_matrix[:, j], b.score_matrix[:, j]
        np.testing.assert_array_equal(np.isinf(sb), np.isinf(sa), err_msg=column)
        fin = np.isfinite(sa) & ~(member_ties if column == "fused" else False)
        if column in COUNTING and not compact:  # the exact ratios, as the compiled engine's (exact_scores)
            np.testing.assert_array_equal(sb[fin], sa[fin], err_msg=column)
        elif column in COUNTING:  # compact cells decode in float32: a neuron at a range end may count differently
            n = compiled.tables.n_neurons
            assert (np.abs(sb[fin] - sa[fin]) <= 1.01 / n).all() and (sb[fin] != sa[fin]).mean() <= 0.05, column
        else:
            np.testing.assert_allclose(sb[fin], sa[fin], rtol=RTOL.get(column, 2e-5), atol=1e-6, err_msg=column)
        if not a.calibrated[j]:
            continue
        differ = a.flag_matrix[:, j] != b.flag_matrix[:, j]
        if column in COUNTING and not compact:
            assert not differ.any(), (column, np.flatnonzero(differ))
            np.testing.assert_allclose(b.p_matrix[:, j], a.p_matrix[:, j], rtol=1e-7, err_msg=column)
        else:
            ties = near_ties(compiled, column, sa, a.pred, 10 * RTOL.get(column, 2e-5))
            if column in COUNTING:  # compact: a count one apart from the compiled one sits next to a tie
                ties |= near_ties(compiled, column, sa, a.pred, 1.01 / compiled.tables.n_neurons)
            if column == "fused":
                ties |= member_ties
            assert not (differ & ~ties).any(), (column, np.flatnonzero(differ & ~ties))
            ties_seen += int(differ.sum())
            same = ~ties
            np.testing.assert_allclose(b.p_matrix[same, j], a.p_matrix[same, j], rtol=1e-6, err_msg=column)
    d = compiled.columns.index(compiled.decision)
    ties = near_ties(compiled, compiled.decision, a.score_matrix[:, d], a.pred, 10 * RTOL.get(compiled.decision, 2e-5))
    assert not ((a.flag != b.flag) & ~ties & ~bad & ~member_ties).any()
    assert ties_seen <= max(2, len(x) // 50)  # near-ties are rare, not a way to pass


def _verdict_input(variant, tmp_path):
    """The tapped model's verdict input on the variant's data (onnxruntime), and the compiled files."""
    import onnxruntime as ort

    from nnwatch.deploy import compile_monitor

    out = tmp_path / "compiled"
    compile_monitor(variant["path"], variant["profile"], out)
    sess = ort.InferenceSession(str(out / "tapped.onnx"), providers=["CPUExecutionProvider"])
    x = variant["x"]
    fixed = sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int):
        x = x[:fixed]
    return out, sess.run(["nnwatch/verdict_input"], {sess.get_inputs()[0].name: x})[0], x


# the verdict model is the same kind of graph for every model precision: one table layout each
@pytest.mark.parametrize("variant", ["mlp", "conv", "mlp_compact"], indirect=True)
@pytest.mark.parametrize("runtime", ["reference", "openvino"])
def test_the_verdict_model_runs_the_same_on_other_runtimes(variant, runtime, tmp_path):
    import onnxruntime as ort

    out, vin, _ = _verdict_input(variant, tmp_path)
    names = ["pred", "flag", "confidence", "count", "scores", "counts", "flags"]
    want = dict(zip(names, ort.InferenceSession(str(out / "verdict.onnx"), providers=["CPUExecutionProvider"]).run(
        names, {"nnwatch/verdict_input": vin})))
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(out / "verdict.onnx"), new_ops=[GatherElements])
        got = dict(zip(names, evaluator.run(names, {"nnwatch/verdict_input": vin})))
    else:
        ov = pytest.importorskip("openvino", reason="OpenVINO's CPU runtime is in the test extra")
        # its CPU plugin runs in bfloat16 where the CPU has it, unless told float32
        compiled = ov.Core().compile_model(str(out / "verdict.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled(vin)
        got = {o.get_any_name(): result[o] for o in compiled.outputs}
    mon = variant["compiled"]
    np.testing.assert_array_equal(got["pred"], want["pred"])
    for j, column in enumerate(mon.columns):
        sa, sb = want["scores"][:, j], got["scores"][:, j]
        np.testing.assert_allclose(sb, sa, rtol=RTOL.get(column, 1e-5), atol=1e-6, err_msg=column)
        differ = (got["flags"][:, j] != want["flags"][:, j]) | (got["counts"][:, j] != want["counts"][:, j])
        if column in COUNTING:
            assert not differ.any(), column
        else:
            ties = near_ties(mon, column, sa.astype(np.float64), want["pred"], 10 * RTOL.get(column, 1e-5))
            assert not (differ & ~ties).any(), (column, np.flatnonzero(differ & ~ties))
    d = mon.columns.index(mon.decision)
    ties = near_ties(mon, mon.decision, want["scores"][:, d].astype(np.float64), want["pred"], 1e-4)
    assert not ((got["flag"] != want["flag"]) & ~ties).any()
