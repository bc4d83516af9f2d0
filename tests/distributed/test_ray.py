"""Ray Data: distributed profile and screening equal the single-process results; a killed
worker neither loses nor duplicates results. Runs a local Ray instance with 2 CPUs."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq

from nnwatch.distributed.profile import build_profile_ray
from nnwatch.distributed.screen import _ScreenActor, dataset_from_arrays, screen_ray
from nnwatch.monitor.detectors import COVERAGE
from nnwatch.monitor.monitor import Monitor
from nnwatch.monitor.profiling import build_profile
from nnwatch.profile.store import load_profile
from nnwatch.sources import ArraySource


def test_distributed_profile_equals_single_process(local_ray, digits_monitor_files):
    f = digits_monitor_files
    x, y = f["splits"]["train"]
    single = build_profile(f["model"], ArraySource(x, y, "train"), batch_size=128)
    dist = build_profile_ray(str(f["model"]), dataset_from_arrays(x, y), batch_size=100, concurrency=2)
    for name in ("count", "min", "max", "topk_count", "sample_keys", "sample_feats", "sample_class"):
        np.testing.assert_array_equal(getattr(dist.ranges, name), getattr(single.ranges, name), err_msg=name)
    for name in ("mean", "m2", "feat_sum", "feat_outer"):
        np.testing.assert_allclose(getattr(dist.ranges, name), getattr(single.ranges, name), rtol=1e-10, atol=1e-9)
    for name in ("section_hits", "active_count", "outside_count", "edges_lo", "edges_hi", "threshold"):
        np.testing.assert_array_equal(getattr(dist.sections, name), getattr(single.sections, name), err_msg=name)


def _read(out):
    return pq.read_table(str(out)).to_pandas().sort_values("id").reset_index(drop=True)


def test_distributed_screen_equals_single_process(local_ray, digits_monitor_files, tmp_path):
    f = digits_monitor_files
    x = f["splits"]["test"][0]
    summary = screen_ray(f["model"], f["profile"], dataset_from_arrays(x), tmp_path / "out", batch_size=50)
    table = _read(tmp_path / "out")
    v = Monitor(f["model"], f["profile"], providers="cpu", detectors=COVERAGE)(x)
    assert summary["inputs"] == len(x) and table["id"].tolist() == list(range(len(x)))
    np.testing.assert_array_equal(table["pred"].to_numpy(), v.pred)
    np.testing.assert_array_equal(table["flag"].to_numpy(), v.flag)
    np.testing.assert_array_equal(table["score_coverage"].to_numpy(), v.scores["coverage"])
    assert summary["flagged"] == int(v.flag.sum())


def test_killed_worker_loses_and_duplicates_nothing(local_ray, digits_monitor_files, tmp_path):
    f = digits_monitor_files
    marker = tmp_path / "crashed-once"

    class CrashOnce(_ScreenActor):  # defined here, so Ray ships it by value
        def __call__(self, batch):
            if 100 in set(batch["id"].tolist()) and not marker.exists():
                marker.write_text("x")
                os._exit(1)  # the worker process dies mid-batch
            return super().__call__(batch)

    x = f["splits"]["test"][0]
    summary = screen_ray(f["model"], f["profile"], dataset_from_arrays(x), tmp_path / "out", batch_size=50,
                         actor=CrashOnce)
    assert marker.exists()  # the crash really happened
    table = _read(tmp_path / "out")
    assert table["id"].tolist() == list(range(len(x)))  # every input exactly once
    assert summary["inputs"] == len(x)
    v = Monitor(f["model"], f["profile"], providers="cpu", detectors=COVERAGE)(x)
    np.testing.assert_array_equal(table["score_coverage"].to_numpy(), v.scores["coverage"])


def test_loaded_profile_roundtrip_from_ray(local_ray, digits_monitor_files, tmp_path):
    from nnwatch.profile.store import save_profile

    f = digits_monitor_files
    x, y = f["splits"]["train"]
    p = build_profile_ray(str(f["model"]), dataset_from_arrays(x[:300], y[:300]), batch_size=100)
    save_profile(p, tmp_path / "p.npz")
    assert load_profile(tmp_path / "p.npz").header["class_counts"] == p.header["class_counts"]


def test_cli_ray_profile_and_screen(local_ray, digits_monitor_files, tmp_path, capsys):
    from nnwatch.cli.main import main

    f = digits_monitor_files
    x, y = f["splits"]["train"]
    np.savez(tmp_path / "train.npz", x=x[:400], y=y[:400])
    np.savez(tmp_path / "test.npz", x=f["splits"]["test"][0][:120])
    assert main(["profile", str(f["model"]), "--data", f"npz:{tmp_path / 'train.npz'}", "--out",
                 str(tmp_path / "p.npz"), "--ray", "--workers", "2"]) == 0
    ref = build_profile(f["model"], ArraySource(x[:400], y[:400], "t"))
    np.testing.assert_array_equal(load_profile(tmp_path / "p.npz").sections.section_hits, ref.sections.section_hits)
    capsys.readouterr()
    assert main(["screen", str(f["model"]), str(f["profile"]), "--data", f"npz:{tmp_path / 'test.npz'}",
                 "--out", str(tmp_path / "scores"), "--ray", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "120 inputs" in out
    assert "INFO" not in err and "will hang" not in err and "deprecated" not in err.lower()  # quiet by default
    assert len(_read(tmp_path / "scores")) == 120
