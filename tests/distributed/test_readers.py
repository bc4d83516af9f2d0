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


def test_recordings_are_decoded_in_the_workers_as_locally(local_ray, tmp_path):
    import json

    from nnwatch.sources import open_source
    from tests.recordings.conftest import encode, image_msg, needs, write_mcap

    needs("PIL", "mcap", "mcap_ros2")
    rng = np.random.default_rng(2)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "imgs" / cls / f"{i}.png").write_bytes(encode(rng.integers(0, 256, (6, 7), np.uint8), "PNG"))
    (tmp_path / "imgs" / "a" / "9.png").write_bytes(b"not a png")  # skipped in its worker
    pre = {"channels": "gray", "mean": [0.5], "std": [0.5]}
    local = open_source(f"images:{tmp_path / 'imgs'}[1:]", pre)
    with pytest.warns(UserWarning, match="undecodable"):
        want = {i["path"]: (x, y) for xs, ys, ids in local.batches_with_ids(4) for x, y, i in zip(xs, ys, ids)}
    rows = _by_id(ray_dataset(f"images:{tmp_path / 'imgs'}[1:]", preprocess=pre).take_all())
    assert set(rows) == set(want) and len(rows) == 9  # 11 files, the first sliced off, the corrupt one skipped
    for key, (x, y) in want.items():
        np.testing.assert_array_equal(rows[key]["x"], x)
        assert rows[key]["y"] == y
    frames = [rng.integers(0, 256, (4, 5), np.uint8) for _ in range(6)]
    write_mcap(tmp_path / "r.mcap", {"/cam": ("sensor_msgs/msg/Image",
                                               [(image_msg(f, "mono8", 100 + i), 200 + i) for i, f in enumerate(frames)])})
    rows = ray_dataset(f"mcap:{tmp_path / 'r.mcap'}[2:5]", preprocess=pre).take_all()
    ids = sorted((json.loads(r["id"]) for r in rows), key=lambda i: i["frame"])
    assert [i["frame"] for i in ids] == [2, 3, 4] and [i["stamp_ns"] for i in ids] == [102, 103, 104]
    by_frame = {json.loads(r["id"])["frame"]: r["x"] for r in rows}
    np.testing.assert_allclose(by_frame[3], ((frames[3] / 255 - 0.5) / 0.5)[None], atol=1e-6)
