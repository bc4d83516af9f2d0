"""The language detector file: fitted detectors for one model, their cross-validation, the
head search behind the head detectors, and the conformal calibration on benign prompts.

Saved as checked JSON (no pickle), tied to one model by fingerprint. Version 3 adds the
cross-fitted calibration (``cross_fit``, :mod:`.cross_fit`); version 2 files are read as they
are (no cross-fit). Version 1 files (head
search only: a ``single`` and an ``ensemble`` variant with KDE thresholds) are read as their
two head detectors without a calibration; their thresholds are dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from .._validate import is_finite_list, is_int
from ..errors import InputError, ModelMismatchError, ProfileError
from ..profile.schema import Calibration
from .cross_fit import CrossFit, cross_fit_from_json
from .scores import HeadAngle, HeadLogistic, Layout, MlpCoverage, Score, score_from_json

FORMAT = "nnwatch.heads"
FORMAT_VERSION = 3
READS = (1, 2, 3)
DEFAULT_ENCODER = {"system_prompt": None, "max_tokens": 1024}
NAME = re.compile(r"[A-Za-z0-9_]+")  # detector names become CSV columns, --detectors items and file names


@dataclass
class LanguageDetector:
    """Fitted detectors for one language (or vision-language) model.

    Attributes
    ----------
    model : str
        Model spec it was fitted on (``smollm2`` or a directory).
    fingerprint : str
        sha256 of the model's config and query weights.
    n_layers, n_heads, hidden : int
        Layout (``hidden``: residual width; 0 when only head detectors are present).
    detectors : dict
        name -> detector (:mod:`nnwatch.heads.scores`).
    default : str
        The detector that decides unless another is asked for.
    encoder : dict
        ``system_prompt`` and ``max_tokens`` used when fitting (reused when scoring).
    search : dict
        The head search: per-head angle means, counts, ranking, the prompts it used.
    cv : dict
        Cross-validation tables of the fit (:class:`nnwatch.heads.fit.FitResult`).
    calibration : Calibration or None
        Clean scores of benign calibration prompts (one group: class 0).
    info : dict
        How it was fitted: prompt counts, wrapper templates, provenance, length orientation.
    cross_fit : CrossFit or None
        Cross-fitted calibration on the benign training prompts (used while ``calibration``
        is None: a calibration on the user's prompts replaces it).
    """

    model: str
    fingerprint: str
    n_layers: int
    n_heads: int
    hidden: int
    detectors: dict
    default: str
    encoder: dict = field(default_factory=lambda: dict(DEFAULT_ENCODER))
    search: dict = field(default_factory=dict)
    cv: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    info: dict = field(default_factory=dict)
    cross_fit: CrossFit | None = None

    def check_model(self, fingerprint: str) -> None:
        """Refuse a model other than the one fitted on.

        Parameters
        ----------
        fingerprint : str
            The scorer's model fingerprint.
        """
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(f"this detector file was fitted for model {self.model!r} (fingerprint "
                                     f"{self.fingerprint[:12]}...), not for the loaded one ({fingerprint[:12]}...); "
                                     "run `nnwatch heads search` and `nnwatch heads fit` for this model")

    def detectors_json(self) -> dict[str, Any]:
        """Name -> each detector's parameters as JSON."""
        return {k: v.to_json() for k, v in self.detectors.items()}

    def digest(self) -> str:
        """sha256 of the detectors' parameters and the encoder (what calibration scores depend on).

        Returns
        -------
        str
            Hex digest.
        """
        params = {k: {f: v for f, v in d.items() if f != "profile"}  # a profile's file name is not a parameter
                  for k, d in self.detectors_json().items()}
        blob = json.dumps({"detectors": params, "encoder": self.encoder}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The whole file as plain JSON (what :func:`save_detector` writes)."""
        cal = None
        if self.calibration is not None:
            c = self.calibration
            cal = {"detectors": list(c.detectors), "scores": c.scores.tolist(), "fpr": c.fpr,
                   "min_class_samples": c.min_class_samples, "settings": c.settings}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model,
                "fingerprint": self.fingerprint, "n_layers": self.n_layers, "n_heads": self.n_heads,
                "hidden": self.hidden, "encoder": self.encoder, "default": self.default,
                "detectors": self.detectors_json(), "calibration": cal, "search": self.search, "cv": self.cv,
                "info": self.info, "cross_fit": None if self.cross_fit is None else self.cross_fit.to_json()}


def save_detector(det: LanguageDetector, path: str | os.PathLike) -> None:
    """Write a detector file atomically (``mlp_coverage`` profiles first, beside it).

    Parameters
    ----------
    det : LanguageDetector
        The detector.
    path : path
        Destination (``.json``); an ``mlp_coverage`` detector's profile goes to
        ``<stem>.<detector>.npz`` in the same folder.
    """
    from ..profile.store import save_profile

    path = Path(path)
    for name, sc in det.detectors.items():
        if isinstance(sc, MlpCoverage):
            sc.file = f"{path.stem}.{name}.npz"
            save_profile(sc.profile, path.parent / sc.file)
    atomic_write_bytes(path, json.dumps(det.to_json(), indent=1, allow_nan=False).encode())


def _need(cond: bool, path: Any, what: str) -> None:
    if not cond:
        raise ProfileError(f"{path}: invalid detector file: {what}")


def _pos_int(v: Any) -> bool:
    return is_int(v) and 0 < v < 1_000_000


def load_detector(path: str | os.PathLike) -> LanguageDetector:
    """Read and validate a detector file.

    Parameters
    ----------
    path : path
        A file written by :func:`save_detector` (or a version 1 head-search file).

    Returns
    -------
    LanguageDetector
        The detector.

    Raises
    ------
    InputError
        The file cannot be read.
    ProfileError
        Not JSON, another format, or a field out of range; the message names it.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"cannot read detector file {path}: {exc.strerror}") from None
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a detector file (not UTF-8 JSON: {exc})") from None
    return detector_from_json(d, path, Path(path).parent)


def _from_v1(d: dict[str, Any], path: Any) -> dict[str, Any]:
    """A version 1 head-search file as version 2 (its KDE thresholds are not carried over)."""
    variants = d.get("variants")
    _need(isinstance(variants, dict) and "single" in variants, path, "version 1 file without a 'single' variant")
    detectors: dict[str, Any] = {"head_single": {"kind": HeadAngle.kind, "heads": variants["single"].get("heads")}}
    if "ensemble" in variants:
        e = variants["ensemble"]
        detectors["head_ensemble"] = {"kind": HeadLogistic.kind, "heads": e.get("heads"), "logistic": e.get("logistic")}
    return {**d, "format_version": FORMAT_VERSION, "hidden": 0, "default": "head_single", "detectors": detectors,
            "calibration": None, "cv": {}, "info": {"upgraded_from": 1}}


def _calibration(c: Any, path: Any, names: list[str]) -> Calibration | None:
    if c is None:
        return None
    _need(isinstance(c, dict), path, "calibration is not an object")
    dets = c.get("detectors")
    _need(isinstance(dets, list) and dets and all(n in names for n in dets), path,
          f"calibration detectors must be some of {names}")
    scores = c.get("scores")
    ok = isinstance(scores, list) and len(scores) > 0 and all(is_finite_list(r, len(dets)) for r in scores)
    _need(ok, path, f"calibration scores must be rows of {len(dets)} finite numbers")
    fpr = c.get("fpr")
    _need(isinstance(fpr, float) and 0 < fpr < 1, path, "calibration fpr must be in (0, 1)")
    _need(_pos_int(c.get("min_class_samples")), path, "calibration min_class_samples must be a positive integer")
    _need(isinstance(c.get("settings"), dict), path, "calibration settings must be an object")
    arr = np.array(scores, np.float64)
    return Calibration(detectors=list(dets), scores=arr, classes=np.zeros(len(arr), np.int64), fpr=fpr,
                       min_class_samples=int(c["min_class_samples"]), settings=c["settings"])


def detector_from_json(d: Any, path: Any = "detector", folder: Path | None = None) -> LanguageDetector:
    """Validate a parsed detector document (as :meth:`LanguageDetector.to_json` writes it).

    Parameters
    ----------
    d : object
        Parsed JSON.
    path : object
        Where it came from, for messages.
    folder : Path, optional
        Folder holding the file's ``mlp_coverage`` profiles.

    Returns
    -------
    LanguageDetector
        The detector.

    Raises
    ------
    ProfileError
        A field missing or out of range; the message names it.
    """
    _need(isinstance(d, dict) and d.get("format") == FORMAT, path, f"'format' is not {FORMAT!r}")
    if d.get("format_version") == 1:
        d = _from_v1(d, path)
    _need(d.get("format_version") in READS, path,
          f"format_version {d.get('format_version')!r}, this nnwatch reads {', '.join(map(str, READS))}")
    for key in ("n_layers", "n_heads"):
        _need(_pos_int(d.get(key)), path, f"{key} must be a positive integer")
    hidden = d.get("hidden")
    _need(is_int(hidden) and 0 <= hidden < 1_000_000, path,
          "hidden must be a non-negative integer")
    _need(isinstance(d.get("fingerprint"), str) and len(d["fingerprint"]) == 64, path, "fingerprint must be sha256 hex")
    _need(isinstance(d.get("model"), str), path, "model must be a string")
    raw = d.get("detectors")
    _need(isinstance(raw, dict) and len(raw) > 0, path, "detectors must be a non-empty object")
    lay = Layout(d["n_layers"], d["n_heads"], hidden, folder, d["fingerprint"])
    detectors: dict[str, Score] = {}
    for name, v in raw.items():
        _need(NAME.fullmatch(name) is not None, path, f"detector name {name!r}: use letters, digits and _ only")
        detectors[name] = score_from_json(v, lay, f"{path}: detector {name!r}")
    _need(isinstance(d.get("default"), str) and d["default"] in detectors, path,
          f"default {d.get('default')!r} is not one of {sorted(detectors)}")
    enc = d.get("encoder", {})
    max_tokens = enc.get("max_tokens", DEFAULT_ENCODER["max_tokens"]) if isinstance(enc, dict) else None
    _need(isinstance(enc, dict) and _pos_int(max_tokens)
          and (enc.get("system_prompt") is None or isinstance(enc.get("system_prompt"), str)),
          path, "encoder must hold max_tokens (positive int) and system_prompt (string or null)")
    for key in ("search", "cv", "info"):
        _need(isinstance(d.get(key, {}), dict), path, f"{key} must be an object")
    search = d.get("search", {})
    for key in ("safe_mean", "unsafe_mean"):
        if key in search:
            m = search[key]
            _need(isinstance(m, list) and len(m) == d["n_layers"] and all(isinstance(r, list) and len(r) == d["n_heads"]
                                                                           for r in m),
                  path, f"search.{key} must be {d['n_layers']} x {d['n_heads']} numbers")
    return LanguageDetector(d["model"], d["fingerprint"], d["n_layers"], d["n_heads"], hidden, detectors, d["default"],
                            {"system_prompt": enc.get("system_prompt"), "max_tokens": max_tokens}, search,
                            d.get("cv", {}), _calibration(d.get("calibration"), path, list(detectors)),
                            d.get("info", {}), cross_fit_from_json(d.get("cross_fit"), lay, list(detectors), str(path)))
