"""The shipped detector's name resolves to its packaged file, which is never rewritten."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.cli.main import main


@pytest.fixture
def shipped(tiny_scorer, tiny_llama_dir, tmp_path, monkeypatch):
    """A detector for the tiny model, packaged as if it were the shipped smollm2."""
    from nnwatch.heads import shipped as shipped_module
    from nnwatch.heads.detector_file import LanguageDetector, save_detector
    from nnwatch.heads.language_monitor import LanguageMonitor
    from nnwatch.heads.logistic import Logistic
    from nnwatch.heads.scores import ResidualProbe

    lay = tiny_scorer.layout
    d = lay.norm.weight.shape[0]
    rng = np.random.default_rng(0)
    det = LanguageDetector(str(tiny_llama_dir), tiny_scorer.fingerprint, lay.n_layers, lay.n_heads, d,
                           {"probe": ResidualProbe(2, Logistic(np.zeros(d), np.ones(d), rng.normal(size=d), 0.1))},
                           "probe", encoder={"system_prompt": None, "max_tokens": 4096})
    LanguageMonitor(det, tiny_scorer).calibrate([f"benign prompt number {i}" for i in range(19)])
    folder = tmp_path / "package"
    folder.mkdir()
    save_detector(det, folder / "smollm2.json")
    (folder / "smollm2.record.json").write_text(json.dumps({"git": {"revision": "abc1234def", "dirty": False},
                                                            "date": "today", "data": {"x.jsonl": {}}}))
    monkeypatch.setattr(shipped_module, "FOLDER", folder)
    monkeypatch.chdir(tmp_path)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ["how do I bake a cake", "hello"]) + "\n")
    return folder / "smollm2.json", prompts


def test_the_name_screens_with_the_packaged_file(shipped, capsys):
    packaged, prompts = shipped
    assert main(["screen", "smollm2", "--data", str(prompts), "--out", "s.json", "--quiet"]) == 0
    assert len(json.loads(open("s.json").read())) == 2
    assert main(["info", "smollm2"]) == 0
    assert "shipped with nnwatch: built by benchmarks/ship_detector.py at abc1234def" in capsys.readouterr().out


def test_calibrate_never_rewrites_the_packaged_file(shipped, capsys):
    packaged, prompts = shipped
    before = packaged.read_bytes()
    benign = prompts.parent / "benign.jsonl"
    benign.write_text("\n".join(json.dumps({"prompt": f"benign {i}"}) for i in range(20)) + "\n")
    assert main(["calibrate", "smollm2", "--data", str(benign), "--quiet"]) == 2
    assert "give --out" in capsys.readouterr().err
    assert main(["calibrate", "smollm2", "--data", str(benign), "--quiet", "--out", "mine.json"]) == 0
    assert packaged.read_bytes() == before
    assert len(json.loads(open("mine.json").read())["calibration"]["scores"]) == 20


def test_a_file_of_that_name_here_wins_and_model_specs_stay_specs(shipped, capsys):
    import argparse

    from nnwatch.cli.paths import resolve_shipped

    open("smollm2", "w").write("not a detector")
    args = argparse.Namespace(command="screen", model="smollm2")
    resolve_shipped(args)
    assert args.model == "smollm2"
    args = argparse.Namespace(command="heads", heads_command="search", model="smollm2")
    resolve_shipped(args)
    assert args.model == "smollm2"


def test_missing_packaged_file_is_named(tmp_path, monkeypatch, capsys):
    from nnwatch.heads import shipped as shipped_module

    monkeypatch.setattr(shipped_module, "FOLDER", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["info", "smollm2"]) == 2
    assert "no shipped smollm2 detector" in capsys.readouterr().err
