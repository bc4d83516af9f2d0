"""The fitted head detector: chosen heads, how their angles become one score, the threshold,
and what it was fitted on. Saved as checked JSON (no pickle), tied to one model by fingerprint.

Two variants live in one file:
- ``single``: the published method, one head's angle against a KDE-crossing threshold;
- ``ensemble``: a logistic combination of several heads' angles (heads chosen by the
  search), thresholded the same way.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from ..errors import InputError, ModelMismatchError, ProfileError
from .linear import Logistic

FORMAT = "nnwatch.heads"
FORMAT_VERSION = 1
VARIANTS = ("single", "ensemble")


@dataclass
class HeadVariant:
    """One way of turning head angles into a score.

    Attributes
    ----------
    heads : list of (layer, head)
        Heads whose angles it reads.
    threshold : float
        Flag when score > threshold.
    logistic : Logistic or None
        For ensembles: the combination (log-odds); None: the score is the single angle.
    """

    heads: list
    threshold: float
    logistic: Logistic | None = None

    def score(self, angles: np.ndarray) -> np.ndarray:
        """Scores from angles of ``self.heads`` (columns in that order).

        Parameters
        ----------
        angles : numpy.ndarray
            ``(N, len(heads))`` degrees.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` scores.
        """
        angles = np.asarray(angles, np.float64)
        return angles[:, 0] if self.logistic is None else self.logistic.decision(angles)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"heads": [list(h) for h in self.heads], "threshold": self.threshold}
        if self.logistic is not None:
            lg = self.logistic
            d["logistic"] = {"mean": lg.mean.tolist(), "scale": lg.scale.tolist(), "weights": lg.weights.tolist(),
                             "bias": lg.bias}
        return d


@dataclass
class HeadDetector:
    """A fitted head detector for one model.

    Attributes
    ----------
    model : str
        Model spec it was fitted on (``smollm2`` or a directory).
    fingerprint : str
        sha256 of the model's config and query weights.
    n_layers, n_heads : int
        Head layout.
    variants : dict
        ``"single"`` and optionally ``"ensemble"`` -> :class:`HeadVariant`.
    encoder : dict
        ``system_prompt`` and ``max_tokens`` used when fitting (reused when scoring).
    search : dict
        Per-head calibration statistics: ``safe_mean``, ``unsafe_mean`` (layers x heads),
        ``n_safe``, ``n_unsafe``, ``percentile``, ``ranking``.
    """

    model: str
    fingerprint: str
    n_layers: int
    n_heads: int
    variants: dict
    encoder: dict = field(default_factory=lambda: {"system_prompt": None, "max_tokens": 1024})
    search: dict = field(default_factory=dict)

    @property
    def heads(self) -> list:
        """Every head any variant reads, in first-use order."""
        out: list = []
        for v in self.variants.values():
            out += [tuple(h) for h in v.heads if tuple(h) not in out]
        return out

    def check_model(self, fingerprint: str) -> None:
        """Refuse a model other than the one fitted on.

        Parameters
        ----------
        fingerprint : str
            The scorer's model fingerprint.
        """
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(f"this head detector was fitted for model {self.model!r} (fingerprint "
                                     f"{self.fingerprint[:12]}...), not for the loaded one ({fingerprint[:12]}...); "
                                     "run `nnwatch heads search` for this model")

    def scores(self, angles: np.ndarray) -> dict[str, np.ndarray]:
        """Every variant's score from angles of :attr:`heads`.

        Parameters
        ----------
        angles : numpy.ndarray
            ``(N, len(self.heads))``.

        Returns
        -------
        dict
            Variant -> ``(N,)`` scores.
        """
        cols = {h: k for k, h in enumerate(self.heads)}
        return {name: v.score(angles[:, [cols[tuple(h)] for h in v.heads]]) for name, v in self.variants.items()}

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model,
                "fingerprint": self.fingerprint, "n_layers": self.n_layers, "n_heads": self.n_heads,
                "encoder": self.encoder, "variants": {k: v.to_json() for k, v in self.variants.items()},
                "search": self.search}


def save_detector(det: HeadDetector, path: str | os.PathLike) -> None:
    """Write a detector file atomically.

    Parameters
    ----------
    det : HeadDetector
        The detector.
    path : path
        Destination (``.json``).
    """
    atomic_write_bytes(path, json.dumps(det.to_json(), indent=1, allow_nan=False).encode())


def _need(cond: bool, path: Any, what: str) -> None:
    if not cond:
        raise ProfileError(f"{path}: invalid head detector file: {what}")


def _finite_list(x: Any, n: int | None = None) -> bool:
    return (isinstance(x, list) and (n is None or len(x) == n)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in x))


def _variant(d: Any, path: Any, name: str, n_layers: int, n_heads: int) -> HeadVariant:
    _need(isinstance(d, dict), path, f"variant {name} is not an object")
    heads = d.get("heads")
    _need(isinstance(heads, list) and len(heads) > 0, path, f"variant {name}: 'heads' must be a non-empty list")
    for h in heads:
        _need(isinstance(h, list) and len(h) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in h),
              path, f"variant {name}: head {h!r} is not [layer, head]")
        _need(0 <= h[0] < n_layers and 0 <= h[1] < n_heads, path,
              f"variant {name}: head L{h[0]}H{h[1]} outside layers 0..{n_layers - 1}, heads 0..{n_heads - 1}")
    t = d.get("threshold")
    _need(_finite_list([t]), path, f"variant {name}: threshold must be a finite number")
    lg = None
    if "logistic" in d:
        g = d["logistic"]
        k = len(heads)
        _need(isinstance(g, dict) and all(_finite_list(g.get(f), k) for f in ("mean", "scale", "weights"))
              and _finite_list([g.get("bias")]), path, f"variant {name}: logistic needs mean/scale/weights of "
              f"length {k} and a finite bias")
        _need(all(s > 0 for s in g["scale"]), path, f"variant {name}: logistic scale must be positive")
        lg = Logistic(np.array(g["mean"], float), np.array(g["scale"], float), np.array(g["weights"], float),
                      float(g["bias"]))
    else:
        _need(len(heads) == 1, path, f"variant {name}: several heads need a 'logistic' combination")
    return HeadVariant([tuple(h) for h in heads], float(t), lg)


def load_detector(path: str | os.PathLike) -> HeadDetector:
    """Read and validate a detector file.

    Parameters
    ----------
    path : path
        A file written by :func:`save_detector`.

    Returns
    -------
    HeadDetector
        The detector.

    Raises
    ------
    ProfileError
        Not JSON, another format, or a field out of range; the message names it.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"cannot read head detector {path}: {exc.strerror}") from None
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not a head detector file (not UTF-8 JSON: {exc})") from None
    return detector_from_json(d, path)


def detector_from_json(d: Any, path: Any = "detector") -> HeadDetector:
    """Validate a parsed detector document (as :meth:`HeadDetector.to_json` writes it).

    Parameters
    ----------
    d : object
        Parsed JSON.
    path : object
        Where it came from, for messages.

    Returns
    -------
    HeadDetector
        The detector.

    Raises
    ------
    ProfileError
        A field missing or out of range; the message names it.
    """
    _need(isinstance(d, dict) and d.get("format") == FORMAT, path, f"'format' is not {FORMAT!r}")
    _need(d.get("format_version") == FORMAT_VERSION, path,
          f"format_version {d.get('format_version')!r}, this nnwatch reads {FORMAT_VERSION}")
    for key in ("n_layers", "n_heads"):
        _need(isinstance(d.get(key), int) and not isinstance(d.get(key), bool) and 0 < d[key] < 10_000, path,
              f"{key} must be a positive integer")
    _need(isinstance(d.get("fingerprint"), str) and len(d["fingerprint"]) == 64, path, "fingerprint must be sha256 hex")
    _need(isinstance(d.get("model"), str), path, "model must be a string")
    variants = d.get("variants")
    _need(isinstance(variants, dict) and "single" in variants and set(variants) <= set(VARIANTS), path,
          f"variants must include 'single' and only {VARIANTS}")
    enc = d.get("encoder", {})
    max_tokens = enc.get("max_tokens", 1024) if isinstance(enc, dict) else None
    _need(isinstance(enc, dict) and isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
          and max_tokens > 0 and (enc.get("system_prompt") is None or isinstance(enc.get("system_prompt"), str)),
          path, "encoder must hold max_tokens (positive int) and system_prompt (string or null)")
    search = d.get("search", {})
    _need(isinstance(search, dict), path, "search must be an object")
    for key in ("safe_mean", "unsafe_mean"):
        if key in search:
            m = search[key]
            _need(isinstance(m, list) and len(m) == d["n_layers"] and all(_finite_list(r, d["n_heads"]) for r in m),
                  path, f"search.{key} must be {d['n_layers']} x {d['n_heads']} finite numbers")
    return HeadDetector(d["model"], d["fingerprint"], d["n_layers"], d["n_heads"],
                        {k: _variant(v, path, k, d["n_layers"], d["n_heads"]) for k, v in variants.items()},
                        {"system_prompt": enc.get("system_prompt"), "max_tokens": enc.get("max_tokens", 1024)},
                        d.get("search", {}))
