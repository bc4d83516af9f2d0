"""`nnwatch heads search|screen|export|evaluate` end to end on a tiny local model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.cli.main import main

from ..conftest import REPO

PROMPTS = REPO.parent / "shared" / "data" / "prompts"


def _subset(src, dst, n):
    rows = [line for line in src.read_text().splitlines() if line.strip()][:n]
    dst.write_text("\n".join(rows) + "\n")
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("heads-cli")
    if not PROMPTS.is_dir():
        pytest.fail(f"shared prompt data missing: {PROMPTS}")
    out = {name: _subset(PROMPTS / f"{name}.jsonl", d / f"{name}.jsonl", 12)
           for name in ("harmful_train", "benign_train", "harmful_test", "benign_test")}
    out["jailbreak"] = d / "jailbreak_test.jsonl"
    rows = [json.loads(x) for x in (PROMPTS / "jailbreak_test.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["id"].startswith("jb-DUDE")][:3] + [r for r in rows if r["id"].startswith("jb-DUDE")
                                                                       and r["label"] == 0][:3]
    out["jailbreak"].write_text("\n".join(json.dumps(r) for r in picked) + "\n")
    out["dir"] = d
    return out


def test_search_screen_export_evaluate(files, tiny_llama_dir, capsys):
    d = files["dir"]
    model = ["--model", str(tiny_llama_dir), "--quiet"]
    assert main(["heads", "search", "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
                 "--per-class", "6", "--ensemble-size", "3", "--max-tokens", "8192", "--out", str(d / "det.json"),
                 "--report", str(d / "search.html"), *model]) == 0
    det = json.loads((d / "det.json").read_text())
    assert set(det["variants"]) == {"single", "ensemble"} and "<svg" in (d / "search.html").read_text()

    assert main(["heads", "screen", str(d / "det.json"), "--prompts", str(files["harmful_test"]),
                 "--out", str(d / "scores.json"), *model]) == 0
    rows = json.loads((d / "scores.json").read_text())
    assert len(rows) == 12 and all(r["flag"] == (r["score"] > det["variants"]["single"]["threshold"]) for r in rows)

    capsys.readouterr()
    assert main(["heads", "guard", str(d / "det.json"), "--prompt", "how do I bake a cake", "--max-new-tokens", "3",
                 *model]) == 0
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(reply) == {"flagged", "score", "reply"} and isinstance(reply["flagged"], bool)

    assert main(["heads", "export", "--out", str(d / "prefill.onnx"), *model]) == 0
    assert main(["heads", "evaluate", str(d / "det.json"), "--train", str(files["harmful_train"]),
                 str(files["benign_train"]), "--test", str(files["harmful_test"]), str(files["benign_test"]),
                 "--test", str(files["jailbreak"]), "--borderline", "--latency-prompts", "2",
                 "--onnx", str(d / "prefill.onnx"), "--out-dir", str(d / "eval"), *model]) == 0
    res = json.loads((d / "eval" / "heads_evaluation.json").read_text())
    sets = {r["set"] for r in res["rows"]}
    assert {"test", "test:length-matched", "jailbreak_test", "borderline_safe"} <= sets
    assert {r["detector"] for r in res["rows"]} == {"head_single", "head_ensemble", "probe_logistic",
                                                     "probe_mahalanobis", "length", "coverage_kmnc_mlp",
                                                     "coverage_nbc_mlp"}
    assert res["latency"]["onnx_max_angle_diff"] < 1e-3
    assert np.isfinite([r["ratio"] for r in res["latency"]["rows"]]).all()
    assert "<svg" in (d / "eval" / "heads_report.html").read_text()
    from tests.eval.test_report_browser import check_page

    check_page(d / "search.html", d / "search.png")
    check_page(d / "eval" / "heads_report.html", d / "eval.png")


def test_detector_for_another_model_is_refused(files, tiny_llama_dir, tmp_path, capsys):
    from nnwatch.heads.search import fit_from_angles
    from nnwatch.heads.detector import save_detector

    rng = np.random.default_rng(0)
    det = fit_from_angles(rng.uniform(0, 1, (8, 12)), np.repeat([0, 1], 4), 3, 4, "other", "f" * 64, ensemble_size=0)
    save_detector(det, tmp_path / "other.json")
    code = main(["heads", "screen", str(tmp_path / "other.json"), "--prompts", str(files["harmful_test"]),
                 "--out", str(tmp_path / "s.json"), "--model", str(tiny_llama_dir), "--quiet"])
    assert code == 2 and "fitted for model 'other'" in capsys.readouterr().err


def test_bad_prompt_files_are_named(tmp_path, tiny_llama_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "label": 1}\n{"prompt": "", "label": 0}\n')
    code = main(["heads", "search", "--prompts", str(bad), "--out", str(tmp_path / "d.json"),
                 "--model", str(tiny_llama_dir), "--quiet"])
    assert code == 2 and "bad.jsonl:2: needs a non-empty string field 'prompt'" in capsys.readouterr().err
