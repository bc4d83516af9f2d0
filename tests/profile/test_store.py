"""Saving is atomic; loading validates everything and names the problem."""

from __future__ import annotations

import base64
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnwatch.calibration.groups import calibration_from_scores
from nnwatch.errors import ModelMismatchError, ProfileError
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.store import content_digest, load_profile, save_profile


@pytest.fixture
def profile(rng):
    layers = [rng.normal(size=(120, 5)).astype(np.float32), rng.normal(size=(120, 3)).astype(np.float32)]
    labels = rng.integers(0, 3, 120)
    b = ProfileBuilder([5, 3], 3, feature_layer=1).update_ranges(layers, labels).finish_ranges()
    p = b.update_sections(layers, labels).build("a" * 64, ["l0", "l1"], dataset="unit")
    p.calibration = calibration_from_scores(["x", "y"], rng.random((40, 2)), rng.integers(0, 3, 40), 3, 0.1, 5,
                                            settings={"rare_rate": 0.01, "profile_digest": p.digest()}, warn=False)
    return p


def test_roundtrip(tmp_path, profile):
    path = tmp_path / "p.npz"
    save_profile(profile, path)
    back = load_profile(path, fingerprint="a" * 64)
    assert back.header == profile.header
    for name in ("count", "min", "max", "mean", "m2", "topk_count", "feat_sum", "feat_outer"):
        np.testing.assert_array_equal(getattr(back.ranges, name), getattr(profile.ranges, name))
    np.testing.assert_array_equal(back.sections.section_hits, profile.sections.section_hits)
    np.testing.assert_array_equal(back.calibration.scores, profile.calibration.scores)
    np.testing.assert_array_equal(back.calibration.classes, profile.calibration.classes)
    assert back.calibration.detectors == ["x", "y"]
    assert back.calibration.settings == profile.calibration.settings
    assert back.digest() == profile.digest()  # what a calibration is checked against survives a save


def test_version_1_file_loads_without_its_biased_calibration(tmp_path, profile):
    save_profile(profile, tmp_path / "v2.npz")

    def to_v1(arrays):
        header = json.loads(arrays["header"].tobytes())
        header["format_version"] = 1
        header["calibration"] = {"detectors": ["x", "y"], "fpr": 0.1, "min_class_samples": 5}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        arrays["calibration.thresholds"] = np.zeros((4, 2))

    _rewrite(tmp_path / "v2.npz", tmp_path / "v1.npz", to_v1)
    with pytest.warns(UserWarning, match="calibrate. again"):
        old = load_profile(tmp_path / "v1.npz")
    assert old.calibration is None
    np.testing.assert_array_equal(old.sections.section_hits, profile.sections.section_hits)


def test_wrong_model_is_refused(tmp_path, profile):
    save_profile(profile, tmp_path / "p.npz")
    with pytest.raises(ModelMismatchError, match="built for model aaaaaaaaaaaa"):
        load_profile(tmp_path / "p.npz", fingerprint="b" * 64)


def _rewrite(src, dst, change, sign=True):
    """Edit a saved profile; ``sign`` recomputes the checksum, as a hostile writer would."""
    with np.load(src, allow_pickle=True) as d:
        arrays = {k: d[k] for k in d.files}
    change(arrays)
    if sign:
        body = {k: v for k, v in arrays.items() if k not in ("header", "checksum")}
        try:
            digest = content_digest(arrays["header"].tobytes(), body)
        except (ValueError, TypeError):  # object arrays have no bytes to hash
            digest = "0" * 64
        arrays["checksum"] = np.frombuffer(digest.encode(), np.uint8)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def _header_change(fn):
    def change(arrays):
        h = json.loads(arrays["header"].tobytes())
        fn(h)
        arrays["header"] = np.frombuffer(json.dumps(h).encode(), np.uint8)
    return change


CORRUPTIONS = {
    "missing array": (lambda a: a.pop("sections.section_hits"), "arrays missing"),
    "wrong dtype": (lambda a: a.__setitem__("ranges.min", a["ranges.min"].astype(np.float64)), "dtype"),
    "wrong shape": (lambda a: a.__setitem__("ranges.max", a["ranges.max"][:, :2]), "shape"),
    "nan range": (lambda a: a["ranges.min"].__setitem__((0, 0), np.nan), "not finite"),
    "negative count": (lambda a: a["sections.active_count"].__setitem__((0, 0), -1), "negative"),
    "inconsistent hits": (lambda a: a["sections.section_hits"].__setitem__((0, 0, 0), 10_000), "differ between neurons"),
    "object array": (lambda a: a.__setitem__("ranges.count", np.array([object()], dtype=object)), "dtype object"),
    "wrong version": (_header_change(lambda h: h.__setitem__("format_version", 99)), "version 99"),
    "not a profile": (_header_change(lambda h: h.__setitem__("format", "other")), "not an nnwatch profile"),
    "missing header key": (_header_change(lambda h: h.pop("k_top")), "k_top"),
    "huge sizes": (_header_change(lambda h: h.__setitem__("layer_sizes", [10**9, 3])), "layer_sizes"),
    "header garbage": (lambda a: a.__setitem__("header", np.frombuffer(b"{not json", np.uint8)), "not valid JSON"),
    "counts disagree": (_header_change(lambda h: h.__setitem__("class_counts", [1, 2, 3])), "class_counts"),
    "calibration nan": (lambda a: a["calibration.scores"].__setitem__((0, 0), np.nan), "NaN"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_files_are_refused_with_a_reason(tmp_path, profile, case):
    save_profile(profile, tmp_path / "good.npz")
    change, message = CORRUPTIONS[case]
    _rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ProfileError, match=message):
        load_profile(tmp_path / "bad.npz")


def test_unsigned_edit_is_caught_by_the_checksum(tmp_path, profile):
    save_profile(profile, tmp_path / "good.npz")

    def nudge(a):
        a["ranges.mean"][0, 0] += 1e-3  # plausible values: only the checksum can tell

    _rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", nudge, sign=False)
    with pytest.raises(ProfileError, match="checksum mismatch"):
        load_profile(tmp_path / "bad.npz")
    _rewrite(tmp_path / "good.npz", tmp_path / "bad2.npz", lambda a: a.pop("checksum"), sign=False)
    with pytest.raises(ProfileError, match="no checksum"):
        load_profile(tmp_path / "bad2.npz")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999), flips=st.lists(st.integers(0, 10**9), max_size=4))
def test_truncated_or_flipped_bytes_never_crash(tmp_path, profile, cut, flips):
    save_profile(profile, tmp_path / "good.npz")
    data = bytearray((tmp_path / "good.npz").read_bytes())
    for f in flips:
        data[f % len(data)] ^= 0xFF
    if not flips:
        data = data[: int(cut * len(data))]
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    try:
        p = load_profile(tmp_path / "bad.npz")
    except ProfileError:
        return
    # Only damage outside the content (zip metadata) can survive, and then nothing changed.
    np.testing.assert_array_equal(p.ranges.mean, profile.ranges.mean)
    np.testing.assert_array_equal(p.sections.section_hits, profile.sections.section_hits)
    assert p.header == profile.header


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "nope.npz")


def test_failed_save_keeps_the_old_file(tmp_path, profile, monkeypatch):
    path = tmp_path / "p.npz"
    save_profile(profile, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_profile(profile, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temp file left behind
    assert zipfile.is_zipfile(path)


def test_an_entry_flagged_as_encrypted_is_refused_as_damaged(tmp_path, profile):
    """A flipped bit in a zip header can mark an entry encrypted; zipfile then raises RuntimeError
    (found by tests/reliability/test_file_fuzz.py). It must read as a damaged profile."""
    path = tmp_path / "p.npz"
    save_profile(profile, path)
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")  # the first central-directory entry
    raw[central + 8] |= 0x01  # its general-purpose flag, bit 0: encrypted
    path.write_bytes(bytes(raw))
    with pytest.raises(ProfileError, match="unreadable or truncated"):
        load_profile(path)


def test_an_npy_array_with_a_zip_directory_appended_is_refused(tmp_path):
    """Found by the atheris fuzzer (benchmarks/fuzz_profile.py): an .npy header that numpy's
    tokenizer cannot read, followed by a zip end-of-directory record. zipfile opens it, numpy
    reads it as an .npy array and its header parser raised tokenize.TokenError."""
    crash = base64.b64decode(
        "k05VTVBZAQCAAAAAAAAAXX0AAABdfQAAAABQSwAAUEsFBntpAQAAAAAAAAAAAAAAAAAAAAAAAF1dfQB8"
        "fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8"
        "fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHx8fHxdXX0="
    )
    path = tmp_path / "p.npz"
    path.write_bytes(crash)
    with pytest.raises(ProfileError, match="not a .npz archive"):
        load_profile(path)


def test_a_damaged_array_header_inside_the_archive_is_refused(tmp_path, profile):
    path = tmp_path / "p.npz"
    save_profile(profile, path)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    name = next(n for n in members if n != "header.npy")
    raw = members[name]
    members[name] = raw[:10] + b"{'descr': '<f4', 'shape': (3," + b" " * (len(raw[10:128]) - 30) + raw[128:]
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ProfileError, match="unreadable or truncated \\(TokenError"):  # numpy's header tokenizer
        load_profile(path)
