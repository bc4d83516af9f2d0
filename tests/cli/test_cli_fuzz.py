"""No traceback ever reaches a CLI user: hypothesis drives the CLI with generated arguments.

Argument vectors mix valid and broken files (missing, empty, truncated, wrong format, wrong
shape, folders, hostile paths), and zero, negative, huge and non-numeric numbers. Every run
must end with exit code 0 or 2, print no traceback, and leave no output file behind when it
fails; and the input files (model, profile, data) keep their bytes, whatever outputs are named.
(Export, demo and Ray start torch or a Ray cluster per call: their mistakes are covered
by tests/cli/test_mistakes.py.)
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnwatch.cli.main import main

CASES = int(os.environ.get("NNWATCH_CLI_FUZZ_CASES", "2000"))


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_monitor_files):
    f = digits_monitor_files
    d = tmp_path_factory.mktemp("clifuzz")
    (d / "m.onnx").write_bytes(f["model"].read_bytes())
    (d / "p.npz").write_bytes(f["profile"].read_bytes())
    x, y = f["splits"]["test"]
    np.savez(d / "small.npz", x=x[:40], y=y[:40])
    np.savez(d / "nolabels.npz", x=x[:30])
    np.savez(d / "wrongshape.npz", x=x[:10].reshape(10, 8, 8))
    np.savez(d / "strings.npz", x=np.array(["a", "b"]))
    (d / "empty.onnx").write_bytes(b"")
    (d / "empty.npz").write_bytes(b"")
    (d / "trunc.onnx").write_bytes(f["model"].read_bytes()[:200])
    (d / "trunc.npz").write_bytes(f["profile"].read_bytes()[:300])
    (d / "text.onnx").write_text("not a model")
    (d / "plain.onnx").write_bytes(f["plain"].read_bytes())
    (d / "folder").mkdir()
    (d / "out").mkdir()
    return d


def mostly(good, bad):
    """The valid choice about two times in three, so that commands also get to do their work."""
    return st.one_of(st.just(good), st.just(good), st.sampled_from(bad))


def paths(d: Path, good: str):
    bad = [d / "m.onnx", d / "p.npz", d / "plain.onnx", d / "empty.onnx", d / "empty.npz", d / "trunc.onnx",
           d / "trunc.npz", d / "text.onnx", d / "missing.onnx", d / "folder", Path("/dev/null"),
           Path("../../../etc/passwd"), Path(""), Path("-")]
    return mostly(d / good, bad).map(str)


def sources(d: Path):
    bad = [f"npz:{d / 'nolabels.npz'}", f"npz:{d / 'wrongshape.npz'}", f"npz:{d / 'strings.npz'}",
           f"npz:{d / 'empty.npz'}", f"npz:{d / 'missing.npz'}", f"idx:{d}", f"idx:{d}:val", "digits:nope", "nope:x",
           "", f"npzdir:{d}", f"parquet:{d}"]
    return mostly(f"npz:{d / 'small.npz'}", bad)


NUMBERS = mostly("3", ["0", "-1", "1", "17", "256", "100000", "1e9", "x", "0.5", "nan", "-0", "99999999999"])
FRACTIONS = mostly("0.05", ["0", "0.5", "1", "1.5", "-0.1", "nan", "inf", "x", "1e-9"])


INPUTS = ("m.onnx", "p.npz", "small.npz", "plain.onnx")  # files an output must never replace


def outputs(d: Path, good: str):
    bad = ["o.json", "o.csv", "o.txt", "o.npz", "o.onnx", "o.html", "nodir/o.json", "folder"] + \
          [f"input:{name}" for name in INPUTS]

    def where(n: str) -> str:
        if n == "folder":
            return str(d / "folder")
        if n.startswith("input:"):
            return str(d / n.removeprefix("input:"))
        return str(d / "out" / n)

    return mostly(good, bad).map(where)


def digests(d: Path) -> dict[str, str]:
    import hashlib

    return {name: hashlib.sha256((d / name).read_bytes()).hexdigest() for name in INPUTS}


@st.composite
def argv(draw, d: Path):
    cmd = draw(st.sampled_from(["instrument", "profile", "calibrate", "screen", "evaluate", "bench", "info"]))
    args = [cmd]
    if cmd == "instrument":
        args += [draw(paths(d, "plain.onnx")), "--out", draw(outputs(d, "o.onnx"))]
        if draw(st.booleans()):
            args += ["--max-taps", draw(NUMBERS)]
        if draw(st.booleans()):
            args += ["--layers", draw(st.sampled_from(["auto", "nope", "", ",", "h,nope"]))]
    elif cmd == "info":
        args += [draw(paths(d, "p.npz"))]
    else:
        args += [draw(paths(d, "m.onnx"))]
        if cmd != "profile":
            args += [draw(paths(d, "p.npz"))]
        if cmd in ("profile", "calibrate", "screen"):
            args += ["--data", draw(sources(d))]
        if cmd in ("profile", "calibrate", "screen"):
            if cmd != "calibrate" or draw(st.booleans()):
                args += ["--out", draw(outputs(d, "o.json" if cmd == "screen" else "o.npz"))]
        if cmd == "evaluate":
            args += ["--id", draw(sources(d)), "--ood", draw(sources(d))]
            if draw(st.booleans()):
                args += ["--report", draw(outputs(d, "o.html"))]
        if cmd == "bench":
            args += ["--iters", draw(mostly("5", ["0", "-3", "1", "x"])),
                     "--batch", draw(mostly("1", ["0", "3", "-2", "x", "100000000000"]))]
            if draw(st.booleans()):
                args += ["--json", draw(outputs(d, "o.json"))]
        if cmd in ("profile", "calibrate", "screen", "evaluate"):
            for flag, values in (("--batch-size", NUMBERS), ("--limit", NUMBERS)):
                if draw(st.booleans()):
                    args += [flag, draw(values)]
        if cmd == "profile":
            for flag, values in (("--k-top", NUMBERS), ("--k-sections", NUMBERS), ("--rare-rate", FRACTIONS),
                                 ("--min-confidence", FRACTIONS), ("--threshold", NUMBERS)):
                if draw(st.booleans()):
                    args += [flag, draw(values)]
        if cmd == "calibrate":
            for flag, values in (("--fpr", FRACTIONS), ("--min-class-samples", NUMBERS)):
                if draw(st.booleans()):
                    args += [flag, draw(values)]
    if draw(st.integers(0, 9)) == 0:
        args.insert(draw(st.integers(1, len(args))), draw(st.sampled_from(["--bogus", "--quiet", "-v", "--", "-"])))
    return [str(a) for a in args]


def test_cli_never_shows_a_traceback(files):
    seen = {"ok": 0, "refused": 0}

    @settings(max_examples=CASES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(argv(files))
    def check(args):
        out_dir = files / "out"
        for leftover in out_dir.iterdir():
            leftover.unlink() if leftover.is_file() else None
        before = digests(files)
        err, out = io.StringIO(), io.StringIO()
        try:
            with redirect_stderr(err), redirect_stdout(out):
                code = main(args)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        assert code in (0, 2), (args, code, err.getvalue()[-2000:])
        assert "Traceback" not in err.getvalue(), (args, err.getvalue()[-2000:])
        if code == 2:
            assert err.getvalue().strip(), (args, "exit 2 without a message")
            left = [p.name for p in out_dir.iterdir() if not p.name.startswith(".")]
            assert not left, (args, f"a failed command left {left} behind")
        seen["ok" if code == 0 else "refused"] += 1
        after = digests(files)
        if args[0] == "calibrate":  # calibrate updates its PROFILE in place by design (its statistics stay)
            after["p.npz"] = before["p.npz"]
        changed = [name for name in INPUTS if after[name] != before[name]]
        assert not changed, (args, f"an input was overwritten: {changed}")

    check()
    assert seen["ok"] > 20 and seen["refused"] > 20  # both outcomes were exercised
