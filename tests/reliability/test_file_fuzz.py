"""Every file nnwatch reads, mutated: each case ends in nnwatch's own error or a valid object.

Counts of cases tried are printed with ``-s`` and recorded by benchmarks/fuzz.py for
docs/reliability.md.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnwatch.errors import NnwatchError
from nnwatch.manifest import TapManifest
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import compile_tables
from nnwatch.profile.store import content_digest, load_profile, save_profile

FUZZ = settings(max_examples=int(os.environ.get("NNWATCH_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def good_profile_bytes(tmp_path_factory):
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(80, 5)).astype(np.float32), rng.normal(size=(80, 3)).astype(np.float32)]
    labels = rng.integers(0, 3, 80)
    p = ProfileBuilder([5, 3], 3, feature_layer=1).update_ranges(layers, labels).finish_ranges()
    p = p.update_sections(layers, labels).build("a" * 64, ["l0", "l1"])
    path = tmp_path_factory.mktemp("fuzz") / "good.npz"
    save_profile(p, path)
    return path.read_bytes()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _pack(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _resign(members: dict[str, bytes]) -> None:
    """Recompute the checksum, as a hostile but careful writer would."""
    try:
        arrays = {n[:-4]: np.lib.format.read_array(io.BytesIO(b), allow_pickle=False) for n, b in members.items()
                  if n not in ("header.npy", "checksum.npy")}
        header = np.lib.format.read_array(io.BytesIO(members["header.npy"]), allow_pickle=False)
        digest = content_digest(header.tobytes(), arrays)
    except Exception:  # unreadable member: leave the old checksum
        return
    members["checksum.npy"] = _npy(np.frombuffer(digest.encode(), np.uint8))


def _check(tmp_path, data: bytes, original: bytes | None = None) -> None:
    path = tmp_path / "case.npz"
    path.write_bytes(data)
    try:
        p = load_profile(path)
    except NnwatchError:
        return
    # Accepted: it must be internally consistent enough to compile and score with...
    tables = compile_tables(p, warn=False)
    assert np.isfinite(tables.lo).all() and np.isfinite(tables.hi).all()
    if original is not None:
        # ...and unsigned damage can only be accepted if the content is unchanged.
        (tmp_path / "orig.npz").write_bytes(original)
        ref = load_profile(tmp_path / "orig.npz")
        assert p.header == ref.header
        np.testing.assert_array_equal(p.ranges.m2, ref.ranges.m2)
        np.testing.assert_array_equal(p.sections.edges_hi, ref.sections.edges_hi)


@FUZZ
@given(st.data())
def test_byte_level_mutations(tmp_path, good_profile_bytes, data):
    raw = bytearray(good_profile_bytes)
    op = data.draw(st.sampled_from(["truncate", "flip", "insert", "zero_run"]))
    if op == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif op == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    elif op == "insert":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        i = data.draw(st.integers(0, len(raw) - 1))
        n = data.draw(st.integers(1, 256))
        raw[i : i + n] = b"\0" * len(raw[i : i + n])
    _check(tmp_path, bytes(raw), good_profile_bytes)


ARRAYS = ["ranges.count", "ranges.min", "ranges.max", "ranges.mean", "ranges.m2", "ranges.topk_count",
          "ranges.feat_sum", "ranges.feat_outer", "sections.edges_lo", "sections.edges_hi", "sections.threshold",
          "sections.section_hits", "sections.active_count", "sections.outside_count", "ranges.sample_feats",
          "ranges.sample_keys", "ranges.sample_class"]


@FUZZ
@given(st.data())
def test_structural_mutations(tmp_path, good_profile_bytes, data):
    members = _members(good_profile_bytes)
    name = data.draw(st.sampled_from(ARRAYS)) + ".npy"
    arr = np.lib.format.read_array(io.BytesIO(members[name]))
    op = data.draw(st.sampled_from(["drop", "dtype", "shape", "nan", "inf", "negative", "object", "huge_header",
                                    "scalar", "fortran"]))
    if op == "drop":
        del members[name]
    elif op == "dtype":
        members[name] = _npy(arr.astype(data.draw(st.sampled_from([np.float16, np.int8, np.uint64, np.complex64]))))
    elif op == "shape":
        members[name] = _npy(np.zeros(tuple(data.draw(st.lists(st.integers(0, 7), max_size=4))), arr.dtype))
    elif op in ("nan", "inf", "negative") and arr.size:
        bad = arr.copy()
        flat = bad.reshape(-1)
        i = data.draw(st.integers(0, flat.size - 1))
        value = {"nan": np.nan, "inf": np.inf, "negative": -5}[op]
        if bad.dtype.kind == "f":
            flat[i] = value
        else:
            flat[i] = -5 if op == "negative" and bad.dtype.kind == "i" else np.iinfo(bad.dtype).max
        members[name] = _npy(bad)
    elif op == "object":
        members[name] = _npy(np.array([{"x": 1}] * max(arr.size, 1), dtype=object))
    elif op == "huge_header":
        # A header that claims an enormous array but holds a few bytes: must not allocate.
        header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": (10**12,)}
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        members[name] = buf.getvalue() + b"\0" * 16
    elif op == "scalar":
        members[name] = _npy(np.array(3, arr.dtype))
    else:
        members[name] = _npy(np.asfortranarray(arr))
    if data.draw(st.booleans()):
        _resign(members)
    _check(tmp_path, _pack(members))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=12)


@FUZZ
@given(st.data())
def test_header_mutations(tmp_path, good_profile_bytes, data):
    members = _members(good_profile_bytes)
    header = json.loads(np.lib.format.read_array(io.BytesIO(members["header.npy"])).tobytes())
    key = data.draw(st.sampled_from(sorted(header) + ["calibration", "extra"]))
    if data.draw(st.booleans()):
        header.pop(key, None)
    else:
        header[key] = data.draw(JSON_VALUES)
    members["header.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    if data.draw(st.booleans()):
        _resign(members)
    _check(tmp_path, _pack(members))


def test_deeply_nested_header_json(tmp_path, good_profile_bytes):
    members = _members(good_profile_bytes)
    members["header.npy"] = _npy(np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8))
    _check(tmp_path, _pack(members))


@FUZZ
@given(st.data())
def test_manifest_json_mutations(data):
    good = json.loads(TapManifest(
        fingerprint="f" * 64, input_name="x", input_shape=(1, 8, 8), batch=None, logits="logits",
        taps=(), original_outputs=("logits",)).to_json())
    good["taps"] = [{"output": "a", "layer": "a", "source": "a", "shape": [4], "reduction": "mean", "in_graph": True}]
    key = data.draw(st.sampled_from(sorted(good)))
    body = dict(good)
    if data.draw(st.booleans()):
        body.pop(key)
    else:
        body[key] = data.draw(JSON_VALUES)
    text = json.dumps(body)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(text)))
        text = text[:cut]
    try:
        m = TapManifest.from_json(text)
    except NnwatchError:
        return
    assert m.taps and all(t.neurons > 0 for t in m.taps)


def _good_head_detector():
    from nnwatch.heads.search import fit_from_angles

    rng = np.random.default_rng(0)
    angles = rng.uniform(1, 3, size=(20, 12))
    angles[10:, 5] += 2
    return fit_from_angles(angles, np.repeat([0, 1], 10), 3, 4, "toy", "c" * 64, ensemble_size=3).to_json()


@FUZZ
@given(st.data())
def test_head_detector_json_mutations(tmp_path, data):
    from nnwatch.heads.detector_file import load_detector

    body = _good_head_detector()
    # pick a field anywhere in the (nested) document and replace or drop it
    parent = body
    for _ in range(data.draw(st.integers(0, 3))):
        children = [k for k, v in parent.items() if isinstance(v, dict) and v]
        if not children:
            break
        parent = parent[data.draw(st.sampled_from(sorted(children)))]
    key = data.draw(st.sampled_from(sorted(parent)))
    if data.draw(st.booleans()):
        parent.pop(key)
    else:
        parent[key] = data.draw(JSON_VALUES)
    text = json.dumps(body)
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    path = tmp_path / "d.json"
    path.write_text(text)
    try:
        det = load_detector(path)
    except NnwatchError:
        return
    from nnwatch.heads.collect import Sweep
    from nnwatch.heads.scores import heads_needed

    heads = heads_needed(list(det.detectors.values()))
    sweep = Sweep(np.ones((2, len(heads))), np.ones((2, det.n_layers + 1, max(det.hidden, 1)), np.float32),
                  np.array([3, 4]), heads, np.zeros(2))
    for d in det.detectors.values():  # a loaded detector always scores
        assert d.score(sweep).shape == (2,)


def test_loaded_head_detector_always_renders(tmp_path):
    """The search statistics a report draws are validated on load."""
    from nnwatch.heads.detector_file import load_detector
    from nnwatch.heads.language_report import search_report

    body = _good_head_detector()
    path = tmp_path / "d.json"
    path.write_text(json.dumps(body))
    assert "<svg" in search_report(load_detector(path))
    body["search"]["safe_mean"] = [[1.0]]
    path.write_text(json.dumps(body))
    with pytest.raises(NnwatchError, match="search.safe_mean must be 3 x 4"):
        load_detector(path)
