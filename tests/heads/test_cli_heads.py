"""The language detector through the CLI on a tiny local model folder: `nnwatch heads search|fit|
guard|export`, then `nnwatch calibrate|screen|evaluate|bench|info` on the detector file, and the
mistakes users make (another model's file, over-long prompts, unsafe calibration prompts, one
class, classifier flags)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.cli.main import main

from ..conftest import SHARED_DATA, shared_data

PROMPTS = SHARED_DATA / "prompts"
SIZES = {"harmful_train": 30, "benign_train": 45, "harmful_test": 8, "benign_test": 22}


def _subset(src, dst, n):
    rows = [line for line in src.read_text().splitlines() if line.strip()][:n]
    dst.write_text("\n".join(rows) + "\n")
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("heads-cli")
    shared_data("prompts")
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
                 str(files["benign_train"]), "--calibration", "hold-out", "--hold-out", "20", "--out",
                 str(d / "det.json"), *model]) == 0
    return d / "det.json"


@pytest.fixture(scope="module")
def cross_fitted(files, fitted, tiny_llama_dir):
    d = files["dir"]
    assert main(["heads", "fit", str(d / "search.json"), "--prompts", str(files["harmful_train"]),
                 str(files["benign_train"]), "--folds", "3", "--out", str(d / "cross.json"), "--model",
                 str(tiny_llama_dir), "--quiet"]) == 0
    return d / "cross.json"


def test_cross_fit_calibrates_on_every_benign_prompt_the_search_did_not_use(files, cross_fitted):
    det = json.loads(cross_fitted.read_text())
    assert det["calibration"] is None
    cf = det["cross_fit"]
    search_ids = set(json.loads((files["dir"] / "search.json").read_text())["search"]["prompt_ids"])
    benign = [json.loads(x)["id"] for x in files["benign_train"].read_text().splitlines() if x.strip()]
    assert sorted(cf["ids"]) == sorted(i for i in benign if i not in search_ids)  # all of them, none searched
    assert np.bincount(cf["fold"]).tolist() == [13, 13, 13]
    assert "mlp_coverage" not in cf["folds"] and {"probe", "head_single", "length"} <= set(cf["folds"])
    for name, folds in cf["folds"].items():
        assert len(folds) == 3 and [len(s) for s in cf["scores"][name]] == np.bincount(cf["fold"]).tolist()
    # fold detectors are fits of their own: without the fold, so not the full fit
    assert cf["folds"]["probe"][0] != det["detectors"]["probe"]
    assert det["info"]["calibration"] == "cross-fit" and det["info"]["calibration_prompts"] == len(cf["ids"])


def test_cross_fitted_p_values_are_the_cross_conformal_ones(files, cross_fitted):
    from nnwatch.calibration.cross_conformal import cross_conformal_p_values
    from nnwatch.heads.detector_file import load_detector
    from nnwatch.heads.language_monitor import LanguageMonitor
    from nnwatch.heads.prompts import load_prompts

    det = load_detector(cross_fitted)
    mon = LanguageMonitor(det, detectors="all")
    prompts = load_prompts(str(files["harmful_test"]), str(files["benign_test"]))
    v = mon.score(prompts)
    s = mon.features(prompts, mon.heads_needed())
    for name in det.cross_fit.folds:
        by_fold = np.stack([d.score(s) for d in det.cross_fit.folds[name]], 1)
        want, flags = cross_conformal_p_values(det.cross_fit.scores[name], by_fold, det.cross_fit.fpr)
        np.testing.assert_allclose(v.p_values[name], want)
        np.testing.assert_array_equal(v.flag_matrix[:, mon.columns.index(name)], flags)
    assert "mlp_coverage" not in mon.calibrated_columns  # not cross-fitted: calibrate it on your prompts


def test_calibrate_on_benign_prompts_replaces_the_cross_fit(files, cross_fitted, capsys):
    out = files["dir"] / "cross-recal.json"
    assert main(["info", str(cross_fitted)]) == 0
    assert "cross-fitted (3 folds) on 39 benign training prompts" in capsys.readouterr().out
    assert main(["calibrate", str(cross_fitted), "--data", str(files["benign_test"]), "--quiet",
                 "--out", str(out)]) == 0
    det = json.loads(out.read_text())
    assert len(det["calibration"]["scores"]) == SIZES["benign_test"]
    rows_out = files["dir"] / "cross-recal.json.scores.json"
    assert main(["screen", str(out), "--data", str(files["harmful_test"]), "--out", str(rows_out), "--quiet"]) == 0
    n = SIZES["benign_test"]
    p = np.array([r["p_value"] for r in json.loads(rows_out.read_text())])
    np.testing.assert_allclose(p * (n + 1), np.round(p * (n + 1)))  # split conformal on the user's prompts


def test_fit_writes_every_detector_calibrated_on_held_out_prompts(files, fitted):
    det = json.loads(fitted.read_text())
    assert {"head_single", "head_ensemble", "probe", "probe_augmented", "refusal_direction",
            "direction_combination_augmented", "mlp_coverage", "length"} <= set(det["detectors"])
    assert det["detectors"][det["default"]]["kind"] in ("residual_probe", "refusal_direction", "direction_combination")
    cal = det["calibration"]
    assert len(cal["scores"]) == 20 and set(cal["detectors"]) == set(det["detectors"])
    search_ids = set(json.loads((files["dir"] / "search.json").read_text())["search"]["prompt_ids"])
    assert not search_ids & set(det["info"]["calibration_ids"])  # calibration never saw fitting


def test_calibrate_replaces_the_calibration(files, fitted):
    out = files["dir"] / "recal.json"
    assert main(["calibrate", str(fitted), "--data", str(files["benign_test"]), "--fpr", "0.05", "--quiet",
                 "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["calibration"]["scores"]) == SIZES["benign_test"]
    assert (files["dir"] / "recal.mlp_coverage.npz").is_file()


def test_screen_flags_follow_the_decision_p_values(files, fitted):
    out = files["dir"] / "scores.json"
    assert main(["screen", str(fitted), "--data", str(files["harmful_test"]), "--out", str(out), "--detectors", "all",
                 "--quiet"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == SIZES["harmful_test"]
    assert {"id", "flag", "p_value", "score.head_single", "p.head_single", "p.probe"} <= set(rows[0])
    default = json.loads(fitted.read_text())["default"]
    assert all(r["flag"] == r[f"flag.{default}"] == (r["p_value"] <= 0.05) for r in rows)


def test_guard_reports_flag_and_p_value(fitted, tiny_llama_dir, capsys):
    capsys.readouterr()
    assert main(["heads", "guard", str(fitted), "--prompt", "how do I bake a cake", "--max-new-tokens", "3",
                 "--model", str(tiny_llama_dir), "--quiet"]) == 0
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"flagged", "p_value", "score", "detector", "reply"} == set(reply)
    assert reply["detector"] == json.loads(fitted.read_text())["default"]


def test_evaluate_reports_both_operating_points_on_every_view(files, fitted):
    d = files["dir"]
    assert main(["evaluate", str(fitted), "--set", f"test={files['harmful_test']},{files['benign_test']}",
                 "--set", f"jailbreak={files['jailbreak']}", "--contrast", "--json", str(d / "ev.json"),
                 "--report", str(d / "ev.html"), "--quiet"]) == 0
    res = json.loads((d / "ev.json").read_text())
    assert {"test", "test:length-matched", "jailbreak", "contrast_pairs", "contrast_pairs:length-matched"} <= \
        set(res["by_set"])
    assert (d / "ev.md").read_text().count("over-refusal") == 2
    # the realized benign rate per source: the decision detector's p-values of that source's benign prompts
    rows = [json.loads(x) for x in files["benign_test"].read_text().splitlines() if x.strip()]
    n_harm = SIZES["harmful_test"]
    p = np.array(res["p_values"]["test"][res["decision"]])
    for r in (r for r in res["benign_by_source"] if r["set"] == "test"):
        pick = [n_harm + i for i, row in enumerate(rows) if row.get("source", "") == r["source"]]
        assert r["benign"] == len(pick) and r["flagged_at_5"] == pytest.approx(np.mean(p[pick] <= 0.05))
    assert sum(r["benign"] for r in res["benign_by_source"] if r["set"] == "test") == SIZES["benign_test"]
    assert "<!-- begin sources -->" in (d / "ev.md").read_text()
    from tests.eval.test_report_browser import check_page

    check_page(d / "search.html", d / "search.png")
    check_page(d / "ev.html", d / "ev.png")


def test_bench_times_both_plain_prefills(files, fitted, tiny_llama_dir):
    d = files["dir"]
    assert main(["heads", "export", "--out", str(d / "prefill.onnx"), "--model", str(tiny_llama_dir), "--quiet"]) == 0
    assert main(["bench", str(fitted), "--data", str(files["benign_test"]), "--timed-prompts", "2",
                 "--onnx", str(d / "prefill.onnx"), "--json", str(d / "bench.json"), "--quiet"]) == 0
    bench = json.loads((d / "bench.json").read_text())
    assert {"plain prefill (torch)", "plain prefill (onnxruntime)"} <= {r["path"] for r in bench["rows"]}
    assert all(np.isfinite(r["ratio"]) and np.isfinite(r["ratio_onnx"]) for r in bench["rows"])
    assert "<!-- begin latency -->" in (d / "bench.md").read_text()


def test_info_names_the_default(fitted, capsys):
    capsys.readouterr()
    assert main(["info", str(fitted)]) == 0
    out = capsys.readouterr().out
    assert "(default)" in out and "calibration: 20 benign prompts" in out


def test_detector_for_another_model_is_refused(files, fitted, tmp_path, capsys):
    from .tiny import save_tiny_llama

    other = save_tiny_llama(tmp_path / "other-model", seed=1)
    code = main(["heads", "fit", str(fitted), "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
                 "--calibration", "hold-out", "--hold-out", "20", "--out", str(tmp_path / "x.json"), "--model",
                 str(other), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "fitted for model" in err and "heads search" in err
    assert not (tmp_path / "x.json").exists()


def test_language_mistakes_exit_2_before_work(files, fitted, tmp_path, capsys):
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "word " * 9000}) + "\n")
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"format": "nnwatch.heads",')
    cases = [
        (["screen", str(fitted), "--data", str(long), "--out", str(tmp_path / "s.json"), "--quiet"],
         "prompt 1 of 1: prompt is"),
        (["calibrate", str(fitted), "--data", str(files["harmful_test"]), "--quiet", "--out", str(tmp_path / "c.json")],
         "must all be benign"),
        (["calibrate", str(fitted), "--data", str(files["harmful_test"]) + "x", "--quiet"], "does not exist"),
        (["heads", "fit", str(fitted), "--prompts", str(files["benign_train"]), "--out", str(tmp_path / "f.json"),
          "--quiet"], "need both labels"),
        (["evaluate", str(fitted), "--quiet"], "nothing to evaluate"),
        (["evaluate", str(fitted), "--id", "digits", "--ood", "noise", "--quiet"], "--id/--ood are for classifier"),
        (["evaluate", str(fitted), str(fitted), "--contrast", "--quiet"], "takes no PROFILE"),
        (["calibrate", str(tmp_path / "model.onnx"), "--data", "digits"], "PROFILE is missing"),
        (["calibrate", str(fitted), "--data", str(files["benign_test"]), "--fpr", "0.01", "--quiet"],
         "at least 99 are needed"),
        (["calibrate", str(fitted), "--data", str(files["benign_test"]), "--fuse", "energy", "--quiet"],
         "--fuse is for classifier models"),
        (["screen", str(fitted), "--data", str(files["benign_test"]), "--out", str(tmp_path / "s.json"), "--stream"],
         "--stream is for classifier models"),
        (["heads", "fit", str(fitted), "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
          "--calibration", "hold-out", "--hold-out", "50", "--fpr", "0.01", "--out", str(tmp_path / "f.json"),
          "--quiet"], "--hold-out: 50 benign prompts cannot"),
        (["heads", "fit", str(fitted), "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
          "--hold-out", "20", "--out", str(tmp_path / "f.json"), "--quiet"], "--hold-out is for --calibration hold-out"),
        (["heads", "fit", str(fitted), "--prompts", str(files["harmful_train"]), str(files["benign_train"]),
          "--fpr", "0.01", "--out", str(tmp_path / "f.json"), "--quiet"], "benign training prompts the head search"),
        (["screen", str(damaged), "--data", str(files["benign_test"]), "--out", str(tmp_path / "s.json")],
         "not a detector file"),
        (["screen", str(fitted), "--data", str(files["benign_test"]), "--out", str(tmp_path / "s.txt")],
         "must end in .json or .csv"),
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


@pytest.mark.parametrize("content, message", [
    (b"# a README, not JSONL\n", "notes.jsonl:1: not JSON"),
    (b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe", "notes.jsonl: not UTF-8 text"),
])
def test_a_file_that_is_not_jsonl_is_refused_saying_what_a_prompt_file_is(tmp_path, capsys, content, message):
    notes = tmp_path / "notes.jsonl"
    notes.write_bytes(content)
    out = tmp_path / "s.csv"
    out.write_text("keep\n")
    assert main(["screen", "smollm2", "--data", str(notes), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "one JSON object per line" in err and "Traceback" not in err, err
    assert out.read_text() == "keep\n"


def test_guard_refuses_an_empty_prompt_before_loading_any_model(tmp_path, capsys, monkeypatch):
    import nnwatch.heads.detector_file as detector_file

    def no_loading(*_args, **_kwargs):
        raise AssertionError("the detector was loaded before the prompt was checked")

    monkeypatch.setattr(detector_file, "load_detector", no_loading)
    assert main(["heads", "guard", "smollm2", "--prompt", "  "]) == 2
    assert "empty prompt" in capsys.readouterr().err
