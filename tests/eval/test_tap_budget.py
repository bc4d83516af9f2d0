"""Tap selection under a latency budget (nnwatch instrument --budget)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnwatch.cli.main import main
from nnwatch.errors import InputError
from nnwatch.eval.tap_budget import choose_taps, instrument_within_budget, parse_budget
from nnwatch.monitor.runner import Runner


def deep_conv(rng) -> onnx.ModelProto:
    """x(1,8,8) -> 3 x (Conv 3x3 + Relu) -> Flatten -> Gemm(5); the second Relu is always 0 (dead),
    and the third reads the first through a skip connection."""
    nodes, inits, prev, ch = [], [], "x", 1
    for i in range(3):
        w = rng.normal(size=(4, ch, 3, 3)).astype(np.float32)
        b = np.full(4, -1e3 if i == 1 else 0.1, np.float32)  # layer 1: a dead ReLU (always zero)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes += [helper.make_node("Conv", [prev, f"W{i}", f"B{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        prev, ch = f"r{i}", 4
        if i == 1:  # a skip connection carries layer 0 past the dead layer
            nodes.append(helper.make_node("Add", ["r0", "r1"], ["skip"]))
            prev = "skip"
    inits += [numpy_helper.from_array(rng.normal(size=(5, 256)).astype(np.float32) * 0.1, "Wf"),
              numpy_helper.from_array(np.zeros(5, np.float32), "Bf")]
    nodes += [helper.make_node("Flatten", [prev], ["f"], axis=1),
              helper.make_node("Gemm", ["f", "Wf", "Bf"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_parse_budget():
    assert parse_budget("1.05x") == ("ratio", 1.05) and parse_budget("2.5ms") == ("ms", 2.5)
    for bad in ("1x", "0.9x", "fast", "-1ms", "1.05", "infx", "nanx"):
        with pytest.raises(InputError, match="1.05x"):
            parse_budget(bad)


def test_generous_budget_keeps_valuable_layers_and_records_measurements(rng, tmp_path):
    src = tmp_path / "deep.onnx"
    src.write_bytes(deep_conv(rng).SerializeToString())
    x = rng.random((120, 1, 8, 8), dtype=np.float32)
    manifest, choice = instrument_within_budget(src, tmp_path / "out.onnx", x, "100x", rounds=30)
    assert choice.base == ["f"]  # the classifier input, always kept
    assert set(choice.costs_us) == {"r0", "r1", "r2"} and set(choice.values) == {"r0", "r1", "r2", "f"}
    assert choice.values["r1"] == 0.0  # a dead layer carries nothing
    assert choice.values["r0"] > 0 and choice.values["r2"] > 0
    assert choice.chosen == ["r0", "r2"]
    assert [t.layer for t in manifest.taps] == ["r0", "r2", "f"]
    saved = Runner(tmp_path / "out.onnx", providers="cpu").manifest
    assert saved.selection["chosen"] == ["r0", "r2"] and saved.selection["budget_us"] == pytest.approx(
        100 * choice.plain_us)


def test_impossible_budget_names_the_cheapest_achievable(rng, tmp_path):
    data = deep_conv(rng).SerializeToString()
    x = rng.random((60, 1, 8, 8), dtype=np.float32)
    with pytest.raises(InputError, match="cheapest monitored call"):
        choose_taps(data, x, ("ms", 1e-6), ["r0", "r1", "r2", "f"], "f", {"reduction": "mean",
                                                                          "reduce_in_graph": True}, rounds=20)


def test_cli_budget_errors_exit_2_before_work(rng, tmp_path, capsys):
    src = tmp_path / "deep.onnx"
    src.write_bytes(deep_conv(rng).SerializeToString())
    np.savez(tmp_path / "clean.npz", x=rng.random((60, 1, 8, 8), dtype=np.float32))
    out = tmp_path / "out.onnx"
    cases = [(["--budget", "1.05x"], "needs --data"),
             (["--budget", "0.5x", "--data", f"npz:{tmp_path / 'clean.npz'}"], "ratio above 1"),
             (["--budget", "1.05x", "--data", f"npz:{tmp_path / 'clean.npz'}", "--layers", "r0"], "drop --layers"),
             (["--data", f"npz:{tmp_path / 'clean.npz'}"], "only used with --budget")]
    for extra, message in cases:
        try:
            code = main(["instrument", str(src), "--out", str(out)] + extra)
        except SystemExit as exc:  # argparse's own refusal
            code = exc.code
        assert code == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert main(["instrument", str(src), "--out", str(out), "--budget", "50x", "--data",
                 f"npz:{tmp_path / 'clean.npz'}"]) == 0
    assert "candidate layers kept" in capsys.readouterr().out
