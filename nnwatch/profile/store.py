"""Save and load profiles: one .npz of plain arrays (no pickle) with a JSON header.

Writes are atomic. Loading checks the format, version, every array's dtype and shape
against the header, value sanity (finite ranges, non-negative counts, consistent totals) and
optionally the model fingerprint, and raises :class:`ProfileError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_with
from ..errors import ModelMismatchError, ProfileError
from .schema import FORMAT_VERSION, Calibration, Profile, RangeStats, SectionStats

_HEADER_KEYS = {
    "format": str, "format_version": int, "fingerprint": str, "layer_names": list, "layer_sizes": list,
    "n_classes": int, "k_sections": int, "k_top": int, "reduction": str, "min_confidence": float,
    "dataset": str, "class_counts": list,
}
MAX_NEURONS = 50_000_000
READABLE_VERSIONS = (1, FORMAT_VERSION)
MAX_HEADER_BYTES = 1 << 24


# the fusion record; a calibration from before member costs were counted (timed instead) still
# loads, and its monitor says to calibrate again where the rule it records is not this nnwatch's
FUSION_KEYS = {"members", "rule", "seed", "tail_quantile", "costs", "budget", "model_macs"}
FUSION_KEYS_TIMED = {"members", "rule", "seed", "tail_quantile", "costs_us", "budget_us"}
ERROR_KEYS = {"detector", "threshold", "risk", "delta", "grid", "seed", "n", "certified", "coverage", "errors",
              "answered"}

def _peek(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a member's .npy header, without reading (or allocating) the data."""
    with archive.open(name + ".npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, dtype


def content_digest(header_bytes: bytes, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the header JSON and every array (name, dtype, shape, bytes), in name order.

    Parameters
    ----------
    header_bytes : bytes
        The stored header JSON.
    arrays : dict
        Every stored array except ``header`` and ``checksum``.

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256(header_bytes)
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _arrays(profile: Profile) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for group, obj in (("ranges", profile.ranges), ("sections", profile.sections)):
        for f in fields(obj):
            out[f"{group}.{f.name}"] = np.ascontiguousarray(getattr(obj, f.name))
    cal = profile.calibration
    if cal is not None:
        out["calibration.scores"] = cal.scores.astype(np.float64)
        out["calibration.classes"] = cal.classes.astype(np.int64)
    return out


def save_profile(profile: Profile, path: str | os.PathLike) -> None:
    """Write ``profile`` to ``path`` atomically.

    Parameters
    ----------
    profile : Profile
        Profile to save.
    path : path
        Destination (.npz).
    """
    header = dict(profile.header)
    cal = profile.calibration
    header["calibration"] = None if cal is None else {
        "detectors": list(cal.detectors), "fpr": float(cal.fpr), "min_class_samples": int(cal.min_class_samples),
        "settings": dict(cal.settings), "fusion": None if cal.fusion is None else dict(cal.fusion),
        **({} if cal.errors is None else {"errors": dict(cal.errors)}),
    }
    arrays = _arrays(profile)
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    # The checksum turns any damage to the content (a flipped bit in a range, a changed k)
    # into a refusal instead of a silently different monitor.
    checksum = content_digest(header_bytes, arrays)
    arrays["header"] = np.frombuffer(header_bytes, dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(checksum.encode("ascii"), dtype=np.uint8)

    def write(tmp: Path) -> None:
        # Compressed: per-class section counts are mostly zeros for many-class models
        # (a 1000-class MobileNet profile: 300 MB raw).
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write_with(path, write)


def _expected(header: dict[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    rows = header["n_classes"] + 1
    n = sum(header["layer_sizes"])
    k = header["k_sections"]
    fl = header.get("feature_layer")
    d = header["layer_sizes"][fl] if fl is not None else 0
    spec = {
        "ranges.count": (np.int64, (rows,)), "ranges.min": (np.float32, (rows, n)),
        "ranges.max": (np.float32, (rows, n)), "ranges.mean": (np.float64, (rows, n)),
        "ranges.m2": (np.float64, (rows, n)), "ranges.topk_count": (np.int64, (rows, n)),
        "ranges.feat_sum": (np.float64, (rows, d)), "ranges.feat_outer": (np.float64, (d, d)),
        "ranges.sample_feats": (np.float32, (None, d)), "ranges.sample_keys": (np.uint64, (None,)),
        "ranges.sample_class": (np.int64, (None,)),
        "sections.edges_lo": (np.float32, (rows, n)), "sections.edges_hi": (np.float32, (rows, n)),
        "sections.threshold": (np.float32, (n,)), "sections.section_hits": (np.int64, (rows, n, k)),
        "sections.active_count": (np.int64, (rows, n)), "sections.outside_count": (np.int64, (rows, n)),
    }
    cal = header.get("calibration")
    if cal is not None:
        m = None  # number of calibration samples: read from the file
        n_det = len(cal["detectors"])
        spec["calibration.scores"] = (np.float64, (m, n_det))
        spec["calibration.classes"] = (np.int64, (m,))
        if header["format_version"] == 1:
            spec["calibration.thresholds"] = (np.float64, (rows, n_det))
    return spec


def _check_header(header: Any, where: str) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != "nnwatch.profile":
        raise ProfileError(f"{where}: not an nnwatch profile (header format missing)")
    version = header.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ProfileError(
            f"{where}: profile format version {version!r} is not supported "
            f"(this nnwatch reads versions {list(READABLE_VERSIONS)}); rebuild the profile")

    for key, typ in _HEADER_KEYS.items():
        value = header.get(key)
        if typ is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ProfileError(f"{where}: header field {key!r} missing or not a {typ.__name__}")
    sizes = header["layer_sizes"]
    if not sizes or not all(isinstance(s, int) and s > 0 for s in sizes) or sum(sizes) > MAX_NEURONS:
        raise ProfileError(f"{where}: layer_sizes {sizes!r} must be positive integers (at most {MAX_NEURONS} in all)")
    if len(header["layer_names"]) != len(sizes):
        raise ProfileError(f"{where}: {len(header['layer_names'])} layer names for {len(sizes)} layers")
    if not 1 <= header["n_classes"] <= 1_000_000 or len(header["class_counts"]) != header["n_classes"]:
        raise ProfileError(f"{where}: n_classes/class_counts inconsistent")
    if header["k_sections"] < 1 or header["k_top"] < 1 or header["k_sections"] * sum(sizes) > 10 * MAX_NEURONS:
        raise ProfileError(f"{where}: k_sections/k_top out of range")
    fl = header.get("feature_layer")
    if fl is not None and (not isinstance(fl, int) or not 0 <= fl < len(sizes)):
        raise ProfileError(f"{where}: feature_layer {fl!r} is not a layer index")
    fs = header.get("feature_sample", 0)
    if not isinstance(fs, int) or isinstance(fs, bool) or not 0 <= fs <= 10_000_000:
        raise ProfileError(f"{where}: feature_sample {fs!r} must be an integer in [0, 1e7]")
    thr = header.get("threshold")
    if thr != "mean" and not (isinstance(thr, (int, float)) and np.isfinite(thr)):
        raise ProfileError(f"{where}: threshold {thr!r} must be 'mean' or a number")
    stats = header.get("input_stats")
    if stats is not None and (not isinstance(stats, dict) or set(stats) != {"count", "min", "max", "sum", "sumsq"}
                              or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in stats.values())):
        raise ProfileError(f"{where}: input_stats must hold numbers count, min, max, sum, sumsq")
    channels = header.get("input_channel_stats")
    if channels is not None and (
            not isinstance(channels, dict) or set(channels) != {"axis", "count", "sum", "sumsq"}
            or channels["axis"] not in (1, 3) or not isinstance(channels["count"], list)
            or not 1 <= len(channels["count"]) <= 4
            or any(not isinstance(channels[k], list) or len(channels[k]) != len(channels["count"])
                   or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in channels[k])
                   for k in ("count", "sum", "sumsq"))):
        raise ProfileError(f"{where}: input_channel_stats must hold axis 1 or 3 and lists count, sum, sumsq "
                           "of 1 to 4 channels")
    sketch = header.get("input_sketch")
    if sketch is not None and (
            not isinstance(sketch, dict) or set(sketch) != {"size", "hashes"} or not isinstance(sketch["size"], int)
            or not 1 <= sketch["size"] <= 1 << 20 or not isinstance(sketch["hashes"], list)
            or len(sketch["hashes"]) > sketch["size"]
            or not all(isinstance(h, str) and len(h) == 16 and all(c in "0123456789abcdef" for c in h)
                       for h in sketch["hashes"])):
        raise ProfileError(f"{where}: input_sketch must hold size and at most size 16-digit hex hashes")
    cal = header.get("calibration")
    if cal is not None:
        if (not isinstance(cal, dict) or not isinstance(cal.get("detectors"), list) or not cal["detectors"]
                or not all(isinstance(d, str) for d in cal["detectors"])
                or not isinstance(cal.get("fpr"), float) or not isinstance(cal.get("min_class_samples"), int)
                or not isinstance(cal.get("settings", {}), dict)):
            raise ProfileError(f"{where}: calibration header is malformed")
        errors = cal.get("errors")
        if errors is not None and (
                not isinstance(errors, dict) or set(errors) != ERROR_KEYS
                or not isinstance(errors["detector"], str) or errors["detector"] not in cal["detectors"]
                or not (errors["threshold"] is None or isinstance(errors["threshold"], (int, float)))
                or not all(isinstance(errors[k], float) and 0 < errors[k] < 1 for k in ("risk", "delta"))):
            raise ProfileError(f"{where}: calibration error-verdict record is malformed (its detector must be "
                               "calibrated, risk and delta in (0, 1))")
        fusion = cal.get("fusion")
        if fusion is not None and (
                not isinstance(fusion, dict)
                or set(fusion) - {"separation"} not in (FUSION_KEYS, FUSION_KEYS_TIMED)
                or not isinstance(fusion.get("costs", fusion.get("costs_us")), dict)
                or not all(isinstance(v, (int, float)) for v in fusion.get("costs", fusion.get("costs_us")).values())
                or not all(fusion.get(k) is None or isinstance(fusion[k], (int, float))
                           for k in ("budget", "budget_us", "model_macs"))
                or not isinstance(fusion["members"], list) or not fusion["members"]
                or not all(isinstance(m, str) and m in cal["detectors"] for m in fusion["members"])
                or not isinstance(fusion["rule"], str) or not isinstance(fusion["seed"], int)
                or not isinstance(fusion["tail_quantile"], float)):
            raise ProfileError(f"{where}: calibration fusion record is malformed (members must be calibrated detectors)")
        separation = None if fusion is None else fusion.get("separation")
        if separation is not None and (
                not isinstance(separation, dict) or separation.get("members") != fusion["members"]
                or not isinstance(separation.get("auroc"), dict)
                or not all(isinstance(row, dict) and all(isinstance(v, float) for v in row.values())
                           for row in separation["auroc"].values())
                or not isinstance(separation.get("synthetic"), dict) or not isinstance(separation.get("clean"), int)):
            raise ProfileError(f"{where}: calibration fusion record is malformed (its separation table does not match "
                               "its members)")
    return header


def load_profile(path: str | os.PathLike, fingerprint: str | None = None) -> Profile:
    """Load and validate a profile.

    Parameters
    ----------
    path : path
        The .npz written by :func:`save_profile`.
    fingerprint : str, optional
        sha256 of the model the caller will use; a profile for another model is refused.

    Returns
    -------
    Profile
        The validated profile.

    Raises
    ------
    ProfileError
        Missing, corrupt, truncated, wrong-version or inconsistent file.
    ModelMismatchError
        The profile belongs to another model.
    """
    where = f"profile {path}"
    if not Path(path).is_file():
        raise ProfileError(f"{where}: file does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    # numpy reads the file by its first bytes: a .npy array (or anything else) with a zip
    # directory appended opens as a zip but not as an .npz archive.
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ProfileError(f"{where}: not a .npz archive (it does not start with a zip entry); an nnwatch profile "
                           "is the .npz file `nnwatch profile` writes")
    try:
        with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if "header" not in names:
                raise ProfileError(f"{where}: no header; not an nnwatch profile")
            shape, dtype = _peek(archive, "header")
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_HEADER_BYTES:
                raise ProfileError(f"{where}: header has the wrong type or size")
            raw = data["header"]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ProfileError(f"{where}: header has the wrong type")
            try:
                header = json.loads(raw.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ProfileError(f"{where}: header is not valid JSON ({exc})") from None
            header = _check_header(header, where)
            spec = _expected(header)
            missing = sorted(set(spec) - names)
            if missing:
                raise ProfileError(f"{where}: arrays missing: {missing}")
            arrays = {}
            for name, (dtype, shape) in spec.items():
                # Check the declared shape and dtype before reading: a damaged or hostile file
                # must not make us allocate what its header claims.
                got_shape, got_dtype = _peek(archive, name)
                if got_dtype != dtype:
                    raise ProfileError(f"{where}: array {name!r} has dtype {got_dtype}, expected {np.dtype(dtype)}")
                if len(got_shape) != len(shape) or any(s is not None and a != s for a, s in zip(got_shape, shape)):
                    raise ProfileError(f"{where}: array {name!r} has shape {got_shape}, expected {shape}")
                if name == "calibration.scores" and got_shape[0] > 100_000_000:
                    raise ProfileError(f"{where}: calibration holds {got_shape[0]} samples; too many")
                if name.startswith("ranges.sample_") and got_shape[0] > int(header.get("feature_sample") or 0):
                    raise ProfileError(f"{where}: {name} holds {got_shape[0]} vectors, more than feature_sample")
                arrays[name] = data[name]
            if "checksum" not in names:
                raise ProfileError(f"{where}: no checksum; not a complete nnwatch profile")
            if _peek(archive, "checksum") != ((64,), np.dtype(np.uint8)):
                raise ProfileError(f"{where}: checksum has the wrong type")
            stored = data["checksum"]
            if stored.dtype != np.uint8 or stored.shape != (64,):
                raise ProfileError(f"{where}: checksum has the wrong type")
            if stored.tobytes().decode("ascii", "replace") != content_digest(raw.tobytes(), arrays):
                raise ProfileError(f"{where}: checksum mismatch: the file is damaged or was edited")
    except ProfileError:
        raise
    # RuntimeError: zipfile's "encrypted, password required" when a damaged header sets that flag bit;
    # TokenError and SyntaxError: numpy's parser of a damaged array header
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError, MemoryError, RecursionError,
            NotImplementedError, RuntimeError, tokenize.TokenError, SyntaxError) as exc:
        raise ProfileError(f"{where}: unreadable or truncated ({type(exc).__name__}: {exc})") from None
    profile = _assemble(header, arrays, where)
    if fingerprint is not None and profile.fingerprint != fingerprint:
        raise ModelMismatchError(
            f"{where} was built for model {profile.fingerprint[:12]}…, not for this model "
            f"({fingerprint[:12]}…); build a profile for this model with `nnwatch profile`")
    return profile


def _assemble(header: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> Profile:
    ranges = RangeStats(**{f.name: arrays[f"ranges.{f.name}"] for f in fields(RangeStats)})
    sections = SectionStats(**{f.name: arrays[f"sections.{f.name}"] for f in fields(SectionStats)})
    count = ranges.count
    if (count < 0).any() or count[-1] != count[:-1].sum() or count[-1] == 0:
        raise ProfileError(f"{where}: class counts are negative, inconsistent or all zero")
    if header["class_counts"] != count[:-1].tolist():
        raise ProfileError(f"{where}: header class_counts disagree with the arrays")
    if (ranges.topk_count < 0).any():
        raise ProfileError(f"{where}: negative topk_count")
    m = ranges.sample_keys.shape[0]
    if (ranges.sample_feats.shape[0] != m or ranges.sample_class.shape[0] != m
            or m > int(header.get("feature_sample") or 0)):
        raise ProfileError(f"{where}: feature sample arrays disagree in length or exceed feature_sample")
    if m and ((np.diff(ranges.sample_keys.astype(np.float64)) < 0).any() or not np.isfinite(ranges.sample_feats).all()
              or ranges.sample_class.min() < 0 or ranges.sample_class.max() >= header["n_classes"]):
        raise ProfileError(f"{where}: feature sample is unsorted, non-finite or has classes out of range")
    for name in ("section_hits", "active_count", "outside_count"):
        if (getattr(sections, name) < 0).any():
            raise ProfileError(f"{where}: negative {name}")
    nonempty = count > 0
    if not (np.isfinite(ranges.min[nonempty]).all() and np.isfinite(ranges.max[nonempty]).all()
            and (ranges.min[nonempty] <= ranges.max[nonempty]).all()):
        raise ProfileError(f"{where}: neuron ranges are not finite or min > max")
    for name in ("mean", "m2", "feat_sum", "feat_outer"):
        if not np.isfinite(getattr(ranges, name)).all():
            raise ProfileError(f"{where}: {name} has NaN/Inf values")
    if (ranges.m2 < -1e-6 * (1 + np.abs(ranges.mean) ** 2 * count[:, None])).any():
        raise ProfileError(f"{where}: negative variance (m2)")
    if not (np.isfinite(sections.edges_lo).all() and np.isfinite(sections.edges_hi).all()
            and (sections.edges_lo <= sections.edges_hi).all() and np.isfinite(sections.threshold).all()):
        raise ProfileError(f"{where}: section edges or thresholds are not finite or lo > hi")
    per_neuron = sections.section_hits.sum(axis=2) + sections.outside_count
    if not (per_neuron == per_neuron[:, :1]).all():
        raise ProfileError(f"{where}: section counts differ between neurons of one class")
    if (sections.active_count > per_neuron).any() or (ranges.topk_count > count[:, None]).any():
        raise ProfileError(f"{where}: activation counts exceed sample counts")
    calibration = None
    cal = header.get("calibration")
    if cal is not None and header["format_version"] == 1:
        # Version 1 thresholds came from a biased quantile rule: keep the statistics, drop them.
        warnings.warn(f"{where}: its calibration was made by an older nnwatch with a rule that misses the target "
                      "false-alarm rate; it is ignored: run `nnwatch calibrate` again", UserWarning, stacklevel=3)
    elif cal is not None:
        scores = arrays["calibration.scores"]
        classes = arrays["calibration.classes"]
        if classes.shape[0] != scores.shape[0] or scores.shape[0] == 0:
            raise ProfileError(f"{where}: calibration scores and classes disagree or are empty")
        if classes.size and (classes.min() < 0 or classes.max() >= header["n_classes"]):
            raise ProfileError(f"{where}: calibration classes out of range")
        if not np.isfinite(scores).all():
            raise ProfileError(f"{where}: calibration has NaN/Inf scores")
        if not 0.0 < cal["fpr"] < 1.0 or cal["min_class_samples"] < 1:
            raise ProfileError(f"{where}: calibration fpr {cal['fpr']} not in (0, 1) or min_class_samples < 1")
        if len(set(cal["detectors"])) != len(cal["detectors"]):
            raise ProfileError(f"{where}: calibration names a detector twice")
        calibration = Calibration(detectors=list(cal["detectors"]), scores=scores, classes=classes,
                                  fpr=cal["fpr"], min_class_samples=cal["min_class_samples"],
                                  settings=dict(cal.get("settings", {})), fusion=cal.get("fusion"),
                                  errors=cal.get("errors"))
    header = {k: v for k, v in header.items() if k != "calibration"}
    header["format_version"] = FORMAT_VERSION
    return Profile(header=header, ranges=ranges, sections=sections, calibration=calibration)
