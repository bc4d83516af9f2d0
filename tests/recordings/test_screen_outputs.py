"""What screening a recording writes: an MCAP of verdicts on the source's timeline, a timeline page,
rows streamed to a file that appears only when complete."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from nnwatch.cli.output import RecordWriter
from nnwatch.errors import InputError
from nnwatch.eval.svg import B, H, T, time_series
from nnwatch.eval.timeline import Timeline

from .conftest import needs
from .test_cli_recordings import T0, cli, profiled, work  # noqa: F401  (the module fixture)


def read_mcap(path):
    from mcap.reader import make_reader

    with open(path, "rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        out = {}
        for schema, channel, message in reader.iter_messages():
            out.setdefault(channel.topic, []).append((schema.name, channel.message_encoding, message.log_time,
                                                      message.publish_time, json.loads(message.data)))
    return summary, meta, out


def test_screen_writes_verdicts_on_the_source_timeline(work, capsys):  # noqa: F811
    d = work
    profiled(d)
    common = ("--data", f"mcap:{d / 'drive.mcap'}", "--preprocess", d / "gray16.json", "--stream", "--batch-size", "4",
              "--quiet")
    assert cli("screen", d / "m.onnx", d / "p.npz", *common, "--out", d / "v.csv") == 0
    assert cli("screen", d / "m.onnx", d / "p.npz", *common, "--out", d / "v.mcap", "--report", d / "t.html") == 0
    assert "timeline" in capsys.readouterr().out
    with open(d / "v.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["id.frame"] == "0" and rows[0]["error"] and rows[0]["index"] == ""  # the corrupt frame's row
    rows = rows[1:]  # the MCAP has verdicts only
    summary, meta, topics = read_mcap(d / "v.mcap")
    assert set(topics) == {"/nnwatch/verdict", "/nnwatch/annotations"}
    assert meta["nnwatch"]["source"] == f"mcap:{d / 'drive.mcap'}" and meta["nnwatch"]["decision"]
    verdicts, notes = topics["/nnwatch/verdict"], topics["/nnwatch/annotations"]
    assert len(verdicts) == len(notes) == len(rows) == 6  # 7 frames, the first one corrupt
    assert {v[0] for v in verdicts} == {"nnwatch.Verdict"} and {n[0] for n in notes} == {"foxglove.ImageAnnotations"}
    assert {v[1] for v in verdicts + notes} == {"json"}
    for row, (_, _, log_time, publish_time, msg), (_, _, note_time, _, note) in zip(rows, verdicts, notes):
        # on the source's timeline: the source message's log time, the frame's header stamp
        assert log_time == publish_time == note_time == int(row["id.log_time_ns"])
        stamp = int(row["id.stamp_ns"])
        assert msg["timestamp"] == {"sec": stamp // 10**9, "nsec": stamp % 10**9}
        assert note["texts"][0]["timestamp"] == msg["timestamp"] == note["circles"][0]["timestamp"]
        assert msg["frame"]["frame"] == int(row["id.frame"]) and msg["index"] == int(row["index"])
        assert msg["pred"] == int(row["pred"]) and msg["flag"] == (row["flag"] == "True")
        assert msg["confidence"] == pytest.approx(float(row["confidence"]), rel=1e-12)
        p_cols = {k[2:]: float(v) for k, v in row.items() if k.startswith("p.")}
        assert p_cols and msg["p_values"] == pytest.approx(p_cols, rel=1e-12)
        assert msg["scores"]["coverage"] == pytest.approx(float(row["score.coverage"]), rel=1e-12)
        assert msg["stream"]["statistic"] == pytest.approx(float(row["stream.statistic"]), rel=1e-12)
        red = note["circles"][0]["fill_color"]["r"] > 0.5
        assert red == msg["flag"] and note["texts"][0]["text"].startswith("FLAGGED" if msg["flag"] else "ok")
    page = (d / "t.html").read_text()
    assert page.count("<svg") == 2 and "most anomalous frames" in page and "data:image/png;base64," in page


def test_mcap_output_needs_frames_with_times(work, capsys):  # noqa: F811
    d = work
    profiled(d)
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'calib'}", "--preprocess",
               d / "gray.json", "--out", d / "untimed.mcap", "--quiet") == 2
    assert "an MCAP timeline needs frames with times" in capsys.readouterr().err
    assert not (d / "untimed.mcap").exists()
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"images:{d / 'calib'}", "--preprocess",
               d / "gray.json", "--out", d / "x.parquet", "--quiet") == 2
    assert "must end in .json or .csv or .mcap" in capsys.readouterr().err


def test_a_failed_run_leaves_the_old_file(tmp_path):
    out = tmp_path / "rows.csv"
    out.write_text("old\n")
    with pytest.raises(RuntimeError, match="scoring failed"):
        with RecordWriter(str(out)) as w:
            w.write([{"index": 0, "flag": True}])
            raise RuntimeError("scoring failed")
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_streamed_rows_read_back(tmp_path, suffix):
    rows = [{"index": i, "flag": bool(i % 2), "confidence": i / 7, "id.path": f"a,{i}.png"} for i in range(10)]
    path = tmp_path / f"r{suffix}"
    with RecordWriter(str(path)) as w:
        for lo in range(0, 10, 3):
            w.write(rows[lo : lo + 3])
    assert w.rows == 10
    if suffix == ".json":
        assert json.loads(path.read_text()) == rows
    else:
        with open(path, newline="") as fh:
            back = list(csv.DictReader(fh))
        assert [r["id.path"] for r in back] == [r["id.path"] for r in rows]
        assert [float(r["confidence"]) for r in back] == [r["confidence"] for r in rows]
    empty = tmp_path / f"e{suffix}"
    with RecordWriter(str(empty)):
        pass
    assert (json.loads(empty.read_text()) == []) if suffix == ".json" else empty.read_text().strip() == "index"
    with pytest.raises(InputError, match="--out must end in"):
        RecordWriter(str(tmp_path / "r.txt"))


def test_timeline_keeps_the_most_anomalous_frames():
    needs("PIL")
    rng = np.random.default_rng(0)
    p = rng.random(500)
    p[[17, 230, 231]] = 1e-6
    x = rng.random((500, 1, 8, 8), dtype=np.float32)
    tl = Timeline(fpr=0.05, keep=5)
    for lo in range(0, 500, 64):
        rows = [{"index": i, "confidence": p[i], "flag": p[i] <= 0.05, "pred": 0, "id.time_s": i / 30}
                for i in range(lo, min(lo + 64, 500))]
        tl.add(rows, x[lo : lo + 64])
    kept = sorted(-item[2] for item in tl._worst)
    assert kept == sorted(np.argsort(p, kind="stable")[:5].tolist())  # the five lowest p-values
    page = tl.render("t")
    order = [int(m) for m in re.findall(r"#(\d+) class", page)]
    assert order[:3] == [17, 230, 231] and len(order) == 5  # most anomalous first, ties in time order
    assert "seconds since the first frame" in page and page.count("data:image/png;base64,") == 5


def test_time_series_never_thins_a_spike_away():
    t = np.arange(100_000, dtype=float)
    y = np.zeros_like(t)
    y[54_321] = 10.0
    svg = time_series(t, y, "x", "t", "y")
    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    ys = [float(pt.split(",")[1]) for pt in points]
    assert len(points) < 1000 and min(ys) == pytest.approx(T) and max(ys) == pytest.approx(H - B)


def test_timeline_page_renders_in_a_browser(work, tmp_path):  # noqa: F811
    from tests.eval.test_report_browser import check_page

    d = work
    profiled(d)
    assert cli("screen", d / "m.onnx", d / "p.npz", "--data", f"mcap:{d / 'drive.mcap'}", "--preprocess",
               d / "gray16.json", "--stream", "--out", tmp_path / "s.json", "--report", tmp_path / "t.html",
               "--quiet") == 0
    check_page(tmp_path / "t.html", tmp_path / "t.png")


def test_screening_the_calibration_recording_is_warned(work, tmp_path, capsys):  # noqa: F811
    import shutil

    d = work
    profiled(d)
    profile = tmp_path / "p.npz"
    shutil.copy(d / "p.npz", profile)
    drive = f"mcap:{d / 'drive.mcap'}"
    pre = ("--preprocess", d / "gray16.json", "--quiet")
    assert cli("calibrate", d / "m.onnx", profile, "--data", f"{drive}[:4]", "--min-class-samples", "2", "--fpr", "0.4", *pre) == 0
    from nnwatch.profile.store import load_profile

    span = load_profile(profile).header["calibrated_on"]
    assert span == {"recording": str((d / "drive.mcap").resolve()), "start": 0, "stop": 4}
    capsys.readouterr()
    assert cli("screen", d / "m.onnx", profile, "--data", f"{drive}[4:]", "--out", tmp_path / "a.csv", *pre) == 0
    err = capsys.readouterr().err
    assert "calibrated on frames [0:4] of the same recording" in err and "read again" not in err
    assert cli("screen", d / "m.onnx", profile, "--data", f"{drive}[2:]", "--out", tmp_path / "b.csv", *pre) == 0
    assert "calibrated on frames [0:4] of this recording, and some of them are read again" in capsys.readouterr().err
    # another recording, and calibrating on an image folder afterwards, clear the record
    assert cli("calibrate", d / "m.onnx", profile, "--data", f"images:{d / 'calib'}", "--preprocess", d / "gray.json",
               "--min-class-samples", "5", "--quiet") == 0
    assert "calibrated_on" not in load_profile(profile).header
    capsys.readouterr()
    assert cli("screen", d / "m.onnx", profile, "--data", f"{drive}[2:]", "--out", tmp_path / "c.csv", *pre) == 0
    assert "same recording" not in capsys.readouterr().err


def test_timeline_ranks_equal_p_values_by_the_decision_score():
    needs("PIL")
    tl = Timeline(fpr=0.05, keep=2, decision="fused")
    rows = [{"index": i, "confidence": 0.01, "flag": True, "score.fused": s} for i, s in enumerate([3.0, 9.0, 1.0, 9.0])]
    tl.add(rows, np.zeros((4, 1, 4, 4), np.float32))
    order = [int(m) for m in re.findall(r"#(\d+) class", tl.render("t"))]
    assert order == [1, 3]  # the two highest scores, the earlier first


def test_csv_bytes_are_the_csv_modules(tmp_path):
    """The CSV writer formats columns itself (speed); the file is byte for byte what the csv
    module writes for the same rows, quoting included."""
    import io

    rng = np.random.default_rng(0)
    n = 200
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, n)
    floats[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324]
    texts = ["plain", "a,b", 'say "hi"', "line\nbreak", "cr\rx", "", " spaced ", "ü/é.png"]
    columns = {"index": np.arange(n), "flag": rng.random(n) < 0.5, "score": floats,
               "p32": rng.random(n).astype(np.float32), "small": rng.integers(0, 255, n).astype(np.uint8),
               "id.path": [texts[i % len(texts)] for i in range(n)],
               "label": [None if i % 3 else i for i in range(n)], 'odd,"name"': np.ones(n)}
    path = tmp_path / "cols.csv"
    with RecordWriter(str(path)) as w:
        for lo in range(0, n, 64):
            w.write({k: v[lo: lo + 64] for k, v in columns.items()})
    want = io.StringIO(newline="")
    writer = csv.writer(want)
    writer.writerow(list(columns))
    lists = [v.tolist() if hasattr(v, "tolist") else v for v in columns.values()]
    writer.writerows([["" if v is None else v for v in row] for row in zip(*lists)])
    assert path.read_bytes() == want.getvalue().encode("utf-8")
    rows = [dict(zip(columns, row)) for row in zip(*lists)]  # the same rows given one dict per input
    with RecordWriter(str(tmp_path / "rows.csv")) as w:
        w.write(rows)
    assert (tmp_path / "rows.csv").read_bytes() == path.read_bytes()
    single = tmp_path / "one.csv"
    with RecordWriter(str(single)) as w:
        w.write([{"id.path": ""}, {"id.path": "x"}])
    want = io.StringIO(newline="")
    csv.writer(want).writerows([["id.path"], [""], ["x"]])
    assert single.read_bytes() == want.getvalue().encode()
