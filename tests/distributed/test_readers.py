"""Worker-side readers: .npz shard folders and Parquet tensor columns become the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.distributed.readers import ray_dataset
from nnwatch.distributed.screen import dataset_from_arrays
from nnwatch.errors import InputError


def _by_id(rows):
    return {r["id"]: r for r in rows}


def test_npz_shards_are_read_with_traceable_ids(local_ray, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((30, 4, 4), dtype=np.float32)
    np.savez(tmp_path / "a.npz", x=x[:20], y=np.arange(20))
    np.savez(tmp_path / "b.npz", x=x[20:])
    rows = _by_id(ray_dataset(f"npzdir:{tmp_path}").take_all())
    assert len(rows) == 30
    np.testing.assert_array_equal(rows["a.npz:3"]["x"], x[3])
    assert rows["a.npz:3"]["y"] == 3
    np.testing.assert_array_equal(rows["b.npz:9"]["x"], x[29])


def test_parquet_tensor_column_round_trips(local_ray, tmp_path):
    x = np.random.default_rng(1).random((25, 3, 2), dtype=np.float32)
    dataset_from_arrays(x, ids=np.arange(100, 125)).write_parquet(str(tmp_path / "pq"))
    rows = _by_id(ray_dataset(f"parquet:{tmp_path / 'pq'}").take_all())
    assert sorted(rows) == list(range(100, 125))
    for i in (100, 124):
        np.testing.assert_array_equal(np.asarray(rows[i]["x"]), x[i - 100])


def test_bad_inputs_name_the_problem(local_ray, tmp_path):
    with pytest.raises(InputError, match="no .npz shards"):
        ray_dataset(f"npzdir:{tmp_path}")
    dataset_from_arrays(np.zeros((3, 2), np.float32)).drop_columns(["id"]).write_parquet(str(tmp_path / "noid"))
    with pytest.raises(InputError, match="no column 'id'"):
        ray_dataset(f"parquet:{tmp_path / 'noid'}")


def test_cli_profile_from_shards_and_screen_from_parquet(local_ray, digits_monitor_files, tmp_path):
    """The CLI's --ray path reads shards and Parquet in the workers; results match one process."""
    import pyarrow.parquet as pq

    from nnwatch.cli.main import main
    from nnwatch.monitor.profiling import build_profile
    from nnwatch.profile.store import load_profile
    from nnwatch.sources import ArraySource

    f = digits_monitor_files
    x, y = f["splits"]["train"]
    shards = tmp_path / "shards"
    shards.mkdir()
    np.savez(shards / "0.npz", x=x[:150], y=y[:150])
    np.savez(shards / "1.npz", x=x[150:300])  # unlabelled shard: predictions are trusted
    out = tmp_path / "p.npz"
    assert main(["profile", str(f["model"]), "--data", f"npzdir:{shards}", "--out", str(out), "--ray",
                 "--batch-size", "64"]) == 0
    dist = load_profile(out)
    labels = np.concatenate([y[:150], np.full(150, -1)])
    single = build_profile(f["model"], ArraySource(x[:300], labels, "train"), batch_size=64)
    np.testing.assert_array_equal(dist.ranges.count, single.ranges.count)
    np.testing.assert_array_equal(dist.sections.section_hits, single.sections.section_hits)
    assert dist.header["samples_seen"] == 300

    xt = f["splits"]["test"][0][:80]
    dataset_from_arrays(xt, ids=np.arange(80)).write_parquet(str(tmp_path / "in"))
    assert main(["screen", str(f["model"]), str(f["profile"]), "--data", f"parquet:{tmp_path / 'in'}",
                 "--out", str(tmp_path / "scores"), "--ray"]) == 0
    table = pq.read_table(str(tmp_path / "scores")).to_pandas().sort_values("id")
    assert table["id"].tolist() == list(range(80))
