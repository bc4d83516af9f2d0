"""A new user's first hour: data in the forms people hold it, the estimator face, input sanity,
CLI conventions, and a quiet, tidy CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnwatch import MonitorEstimator, build_profile, calibrate
from nnwatch.cli.main import main
from nnwatch.errors import InputError
from nnwatch.monitor.monitor import InputRangeWarning, Monitor


@pytest.fixture(scope="module")
def files(digits_monitor_files):
    return digits_monitor_files


def test_profile_from_arrays_and_from_a_dataloader_are_identical(files):
    import torch

    x, y = files["splits"]["train"]
    from_arrays = build_profile(files["model"], (x, y))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=77)
    from_loader = build_profile(files["model"], loader)
    np.testing.assert_array_equal(from_arrays.sections.section_hits, from_loader.sections.section_hits)
    np.testing.assert_array_equal(from_arrays.ranges.count, from_loader.ranges.count)
    with pytest.raises(InputError, match="can be read only once"):
        build_profile(files["model"], (b for b in [x]))
    mon = Monitor(files["model"], from_arrays, providers="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = calibrate(mon, files["splits"]["val"])
    assert cal.scores.shape[0] == len(files["splits"]["val"][0])


def test_estimator_follows_scikit_learn_conventions(files):
    x, y = files["splits"]["train"]
    est = MonitorEstimator(files["model"], detectors=("coverage", "msp"), providers="cpu")
    with pytest.raises(Exception, match="not fitted"):
        est.predict(x[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert est.fit(x, y) is est
    xt = files["splits"]["test"][0]
    p, flags, pred = est.score_samples(xt), est.flag(xt), est.predict(xt)
    assert ((p > 0) & (p <= 1)).all()
    np.testing.assert_array_equal(flags, p <= est.fpr)
    np.testing.assert_array_equal(pred, np.where(flags, -1, 1))
    noise = np.random.default_rng(0).random((100, 64), dtype=np.float32)
    assert est.flag(noise).mean() > 3 * est.flag(xt).mean()


def test_inputs_scaled_unlike_training_raise_a_warning(files):
    mon = Monitor(files["model"], files["profile"], providers="cpu")
    x = files["splits"]["test"][0][:8]
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        mon(x)  # training-like inputs: no warning
    with pytest.warns(InputRangeWarning, match="scale them as in training"):
        mon(x * 255)


def test_cli_data_inference_named_ood_sets_and_help(files, tmp_path, capsys):
    x, y = files["splits"]["test"]
    np.savez(tmp_path / "test.npz", x=x, y=y)
    np.savez(tmp_path / "noise.npz", x=np.random.default_rng(0).random((50, 64), dtype=np.float32))
    assert main(["evaluate", str(files["model"]), str(files["profile"]), "--id", str(tmp_path / "test.npz"),
                 "--ood", f"noise={tmp_path / 'noise.npz'}", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| noise |" in out
    with pytest.raises(SystemExit):
        main(["screen", "--help"])
    text = capsys.readouterr().out
    assert "(default: 256)" in text and "example:" in text and "nnwatch screen" in text


def test_factory_modules_are_found_in_the_current_folder(tmp_path, monkeypatch):
    from nnwatch.export.from_torch import load_factory

    (tmp_path / "mynets.py").write_text("import torch\n\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.chdir(tmp_path)
    assert load_factory("mynets:make").in_features == 4


def test_bench_demo_leaves_no_temp_folder(tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["bench", "--demo", "--iters", "3", "--detectors", "coverage"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("nnwatch-bench-")]
    assert "training" in capsys.readouterr().err


def test_the_cli_leaves_warning_filters_alone(capsys):
    import warnings as w

    before = list(w.filters)
    assert main(["--version"]) == 0
    assert list(w.filters) == before  # library DeprecationWarnings stay hidden as Python hides them


def test_quiet_model_loading_silences_progress_bars(monkeypatch, capsys, tmp_path):
    """transformers' GGUF conversion draws a tqdm bar on stderr whatever its settings say:
    quiet loading swallows it, when the weights cache is built and when it is read (a
    stand-in transformers writes one)."""
    import sys
    import types

    pytest.importorskip("torch")
    from nnwatch.heads import loading

    class Model:
        config = types.SimpleNamespace()

        def eval(self):
            return self

        def save_pretrained(self, folder):
            (folder / "model.safetensors").write_bytes(b"weights")

    class Loader:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            print("Converting and de-quantizing GGUF tensors...: 100%", file=sys.stderr)
            return Model()

    fake = types.SimpleNamespace(__version__="0", AutoTokenizer=Loader, AutoModelForCausalLM=Loader,
                                 utils=types.SimpleNamespace(logging=types.SimpleNamespace(
                                     disable_progress_bar=lambda: None)))
    (tmp_path / loading.SMOLLM2_FILE).write_bytes(b"GGUF")
    monkeypatch.setattr(loading, "_transformers", lambda: fake)
    monkeypatch.setattr(loading, "smollm2_dir", lambda: tmp_path)
    loading.load_model("smollm2", quiet=True, cache_dir=tmp_path / "cache")  # builds the cache entry
    loading.load_model("smollm2", quiet=True, cache_dir=tmp_path / "cache")  # reads it
    assert "GGUF" not in capsys.readouterr().err
    loading.load_model("smollm2", quiet=False, cache_dir=tmp_path / "cache")
    assert "GGUF" in capsys.readouterr().err


def test_bench_reports_each_detectors_cost(files, tmp_path, capsys):
    import json

    out = tmp_path / "bench.json"
    assert main(["bench", str(files["model"]), str(files["profile"]), "--iters", "5", "--per-detector",
                 "--detectors", "all", "--providers", "cpu", "--json", str(out)]) == 0
    costs = json.loads(out.read_text())["detector_costs"]
    # coverage, msp, max_logit and energy are compiled columns whose cost is one pass: one line for
    # all of them; Mahalanobis (features x classes) is compiled too but held to the budget on its own
    assert {"compiled scores", "decision", "mahalanobis"} <= set(costs) and "msp" not in costs
    assert all(c["p50_us"] > 0 and c["table_bytes"] >= 0 for c in costs.values())
    assert costs["compiled scores"]["table_bytes"] > 0 and "per detector" in capsys.readouterr().out
