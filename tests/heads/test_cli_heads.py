"""The language detector through the CLI on a tiny local model folder: `nnwatch heads search|fit|
guard|export`, then `nnwatch calibrate|screen|evaluate|bench|info` on the detector file, and the
mistakes users make (another model's file, over-long prompts, unsafe calibration prompts, one
class, classifier flags)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.cli.main import main

from ..conftest import REPO

PROMPTS = REPO.parent / "shared" / "data" / "prompts"
SIZES = {"harmful_train": 30, "benign_train": 45, "harmful_test": 8, "benign_test": 22}


def _subset(src, dst, n):
    rows = [line for line in src.read_text().splitlines() if line.strip()][:n]
    dst.write_text("\n".join(rows) + "\n")
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("heads-cli")
    if not PROMPTS.is_dir():
        pytest.fail(f"shared prompt data missing: {PROMPTS}")
    out = {name: _subset(PROMPTS / f"{name}.jsonl", d / f"{name}.jsonl", n) for name, n in SIZES.items()}
    out["jailbreak"] = d / "jailbreak_test.jsonl"
    rows = [json.loads(x) for x in (PROMPTS / "jailbreak_test.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["id"].startswith("jb-DUDE")][:3] + [r for r in rows if r["id"].startswith("jb-DUDE")
                                                                       and r["label"] == 0][:3]
    out["jailbreak"].write_text("\n".join(json.dumps(r) for r in picked) + "\n")
    out["dir"] = d
    return out


@pytest.fixture(scope="module")
def fitted(files, tiny_llama_dir):
    d = files["dir"]
    model = ["--model", str(tiny_llama_dir), "--quiet"]
    assert main(["heads", "search", "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
                 "--per-class", "6", "--ensemble-size", "3", "--max-tokens", "8192", "--out", str(d / "search.json"),
                 "--report", str(d / "search.html"), *model]) == 0
    assert main(["heads", "fit", str(d / "search.json"), "--prompts", str(files["harmful_train"]),
                 str(files["benign_train"]), "--hold-out", "20", "--out", str(d / "det.json"), *model]) == 0
    return d / "det.json"


def test_fit_calibrate_screen_evaluate_bench(files, fitted, tiny_llama_dir, capsys):
    d = files["dir"]
    det = json.loads(fitted.read_text())
    assert {"head_single", "head_ensemble", "probe", "probe_augmented", "refusal_direction",
            "direction_combination_augmented", "length"} <= set(det["detectors"])
    assert det["detectors"][det["default"]]["kind"] in ("residual_probe", "refusal_direction", "direction_combination")
    cal = det["calibration"]
    assert len(cal["scores"]) == 20 and set(cal["detectors"]) == set(det["detectors"])
    search_ids = set(json.loads((d / "search.json").read_text())["search"]["prompt_ids"])
    assert not search_ids & set(det["info"]["calibration_ids"])  # calibration never saw fitting

    assert main(["calibrate", str(fitted), "--data", str(files["benign_test"]), "--fpr", "0.05", "--quiet",
                 "--out", str(d / "recal.json")]) == 0
    assert len(json.loads((d / "recal.json").read_text())["calibration"]["scores"]) == SIZES["benign_test"]

    assert main(["screen", str(fitted), "--data", str(files["harmful_test"]), "--out", str(d / "scores.json"),
                 "--detectors", "all", "--quiet"]) == 0
    rows = json.loads((d / "scores.json").read_text())
    assert len(rows) == SIZES["harmful_test"] and {"id", "flag", "p_value", "score.head_single"} <= set(rows[0])
    default = det["default"]
    assert all(r["flag"] == r[f"flag.{default}"] == (r["p_value"] <= 0.05) for r in rows)

    capsys.readouterr()
    assert main(["heads", "guard", str(fitted), "--prompt", "how do I bake a cake", "--max-new-tokens", "3",
                 "--model", str(tiny_llama_dir), "--quiet"]) == 0
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"flagged", "p_value", "score", "detector", "reply"} == set(reply) and reply["detector"] == default

    assert main(["evaluate", str(fitted), "--set", f"test={files['harmful_test']},{files['benign_test']}",
                 "--set", f"jailbreak={files['jailbreak']}", "--contrast", "--json", str(d / "ev.json"),
                 "--report", str(d / "ev.html"), "--quiet"]) == 0
    res = json.loads((d / "ev.json").read_text())
    assert {"test", "test:length-matched", "jailbreak", "contrast_pairs", "contrast_pairs:length-matched"} <= \
        set(res["by_set"])
    row = res["by_set"]["test"][default]
    p = np.array(res["p_values"]["test"][default])
    y = np.array(res["labels"]["test"])
    assert row["detection_at_5"] == np.mean(p[y == 1] <= 0.05) and row["false_positive_at_1"] == np.mean(p[y == 0] <= 0.01)
    assert (d / "ev.md").read_text().count("over-refusal") == 2

    assert main(["heads", "export", "--out", str(d / "prefill.onnx"), "--model", str(tiny_llama_dir), "--quiet"]) == 0
    assert main(["bench", str(fitted), "--data", str(files["benign_test"]), "--timed-prompts", "2",
                 "--onnx", str(d / "prefill.onnx"), "--json", str(d / "bench.json"), "--quiet"]) == 0
    bench = json.loads((d / "bench.json").read_text())
    paths = {r["path"] for r in bench["rows"]}
    assert {"plain prefill (torch)", "plain prefill (onnxruntime)"} <= paths
    assert all(np.isfinite(r["ratio"]) and np.isfinite(r["ratio_onnx"]) for r in bench["rows"])

    capsys.readouterr()
    assert main(["info", str(fitted)]) == 0
    assert "(default)" in capsys.readouterr().out
    from tests.eval.test_report_browser import check_page

    check_page(d / "search.html", d / "search.png")
    check_page(d / "ev.html", d / "ev.png")


def test_detector_for_another_model_is_refused(files, fitted, tmp_path, capsys):
    from .tiny import save_tiny_llama

    other = save_tiny_llama(tmp_path / "other-model", seed=1)
    code = main(["heads", "fit", str(fitted), "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
                 "--hold-out", "20", "--out", str(tmp_path / "x.json"), "--model", str(other), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "fitted for model" in err and "heads search" in err
    assert not (tmp_path / "x.json").exists()


def test_language_mistakes_exit_2_before_work(files, fitted, tmp_path, capsys):
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "word " * 9000}) + "\n")
    cases = [
        (["screen", str(fitted), "--data", str(long), "--out", str(tmp_path / "s.json"), "--quiet"],
         "over the limit of 8192"),
        (["calibrate", str(fitted), "--data", str(files["harmful_test"]), "--quiet", "--out", str(tmp_path / "c.json")],
         "must all be benign"),
        (["calibrate", str(fitted), "--data", str(files["harmful_test"]) + "x", "--quiet"], "does not exist"),
        (["heads", "fit", str(fitted), "--prompts", str(files["benign_train"]), "--out", str(tmp_path / "f.json"),
          "--quiet"], "need both labels"),
        (["evaluate", str(fitted), "--quiet"], "nothing to evaluate"),
        (["evaluate", str(fitted), "--id", "digits", "--ood", "noise", "--quiet"], "--id/--ood are for classifier"),
        (["evaluate", str(fitted), str(fitted), "--contrast", "--quiet"], "takes no PROFILE"),
        (["calibrate", str(tmp_path / "model.onnx"), "--data", "digits"], "PROFILE is missing"),
    ]
    for argv, message in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and message in err, (argv, err)
    assert main(["screen", str(fitted), "--data", str(long), "--out", str(tmp_path / "s.json"), "--truncate",
                 "--quiet"]) == 0
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "f.json").exists()


def test_bad_prompt_files_are_named(tmp_path, tiny_llama_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "label": 1}\n{"prompt": "", "label": 0}\n')
    code = main(["heads", "search", "--prompts", str(bad), "--out", str(tmp_path / "d.json"),
                 "--model", str(tiny_llama_dir), "--quiet"])
    assert code == 2 and "bad.jsonl:2: needs a non-empty string field 'prompt'" in capsys.readouterr().err
