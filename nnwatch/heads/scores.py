"""The language-model detectors: each turns one prompt sweep into a score (higher = more unsafe).

Two cost tiers, because they decide what a monitored call must run:

- ``prefill``: read the last token's residual state at some layers of the plain prefill
  (:class:`ResidualProbe`, :class:`RefusalDirection`, :class:`DirectionCombination`); the
  prefill is the only pass.
- ``masked``: also re-run the layers above each head with that head's query scaled to
  ~0 (:class:`HeadAngle`, the published single-head score, and :class:`HeadLogistic`, a
  probe over several heads' angles).

Each detector is plain data (directions, logistic weights) written to and read from the
detector file as checked JSON.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, ProfileError
from .collect import Sweep
from .logistic import Logistic, logistic_from_json, logistic_to_json

PREFILL, MASKED = "prefill", "masked"


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ProfileError(f"{where}: {what}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _head_list(v: Any, n_layers: int, n_heads: int, where: str) -> list[tuple[int, int]]:
    _need(isinstance(v, list) and len(v) > 0, where, "'heads' must be a non-empty list of [layer, head]")
    for h in v:
        _need(isinstance(h, list) and len(h) == 2 and all(_int(a) for a in h), where, f"head {h!r} is not [layer, head]")
        _need(0 <= h[0] < n_layers and 0 <= h[1] < n_heads, where,
              f"head L{h[0]}H{h[1]} outside layers 0..{n_layers - 1}, heads 0..{n_heads - 1}")
    return [(int(a), int(b)) for a, b in v]


def _layer(v: Any, n_layers: int, where: str) -> int:
    _need(_int(v) and 0 <= v <= n_layers, where, f"layer {v!r} outside 0..{n_layers} (0: embeddings, {n_layers}: final)")
    return int(v)


def _vector(v: Any, n: int, where: str) -> np.ndarray:
    _need(isinstance(v, list) and len(v) == n and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                       and math.isfinite(a) for a in v),
          where, f"needs {n} finite numbers")
    return np.array(v, np.float64)


@dataclass
class HeadAngle:
    """The published score: the angle (degrees) between the final last-token state with and
    without one head ("One Head to Rule Them All", NeurIPS 2025)."""

    head: tuple[int, int]
    kind = "head_angle"
    cost = MASKED

    @property
    def heads(self) -> list[tuple[int, int]]:
        return [self.head]

    def layers(self) -> list[int]:
        return []

    def score(self, s: Sweep) -> np.ndarray:
        return s.angle_columns(self.heads)[:, 0]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "heads": [list(self.head)]}


@dataclass
class HeadLogistic:
    """A logistic probe over several heads' angles."""

    head_list: list
    logistic: Logistic
    kind = "head_logistic"
    cost = MASKED

    @property
    def heads(self) -> list[tuple[int, int]]:
        return [tuple(h) for h in self.head_list]

    def layers(self) -> list[int]:
        return []

    def score(self, s: Sweep) -> np.ndarray:
        return self.logistic.decision(s.angle_columns(self.heads))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "heads": [list(h) for h in self.head_list], "logistic": logistic_to_json(self.logistic)}


@dataclass
class ResidualProbe:
    """A logistic probe on the last token's residual state entering one layer."""

    layer: int
    logistic: Logistic
    kind = "residual_probe"
    cost = PREFILL
    heads: tuple = ()

    def layers(self) -> list[int]:
        return [self.layer]

    def score(self, s: Sweep) -> np.ndarray:
        return self.logistic.decision(s.states[:, self.layer])

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "logistic": logistic_to_json(self.logistic)}


@dataclass
class RefusalDirection:
    """Projection of the last token's residual state on the unit difference of the unsafe and
    safe class means at one layer (the "refusal direction", Arditi et al. 2024)."""

    layer: int
    direction: np.ndarray
    kind = "refusal_direction"
    cost = PREFILL
    heads: tuple = ()

    def layers(self) -> list[int]:
        return [self.layer]

    def score(self, s: Sweep) -> np.ndarray:
        return s.states[:, self.layer].astype(np.float64) @ self.direction

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "direction": self.direction.tolist()}


@dataclass
class DirectionCombination:
    """The refusal-direction projections of several layers, combined by a logistic fit."""

    layer_list: list
    directions: np.ndarray
    logistic: Logistic
    kind = "direction_combination"
    cost = PREFILL
    heads: tuple = ()

    def layers(self) -> list[int]:
        return list(self.layer_list)

    def projections(self, s: Sweep) -> np.ndarray:
        return np.einsum("nld,ld->nl", s.states[:, self.layer_list].astype(np.float64), self.directions)

    def score(self, s: Sweep) -> np.ndarray:
        return self.logistic.decision(self.projections(s))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": list(self.layer_list), "directions": self.directions.tolist(),
                "logistic": logistic_to_json(self.logistic)}


@dataclass
class MlpCoverage:
    """nnwatch's coverage score (mean of nc, kmnc, tknc and nbc, :mod:`nnwatch.kernels.coverage`)
    of the last token's MLP activations in every layer, against a one-class profile of the safe
    training prompts: how unlike benign prompts the model's neurons behave. Its profile lives in
    a checked ``.npz`` beside the detector file (``file``)."""

    profile: Any
    rare_rate: float = 0.01
    file: str = ""
    kind = "mlp_coverage"
    cost = PREFILL
    heads: tuple = ()
    needs_mlp = True

    def layers(self) -> list[int]:
        return []

    @functools.cached_property
    def tables(self) -> Any:
        from ..profile.signature import compile_tables

        return compile_tables(self.profile, rare_rate=self.rare_rate, min_class_samples=1, warn=False)

    def score(self, s: Sweep) -> np.ndarray:
        from ..kernels.coverage import SCORE_NAMES, coverage_scores
        from ..kernels.layout import pack_layers

        if s.mlp is None:
            raise InputError("mlp_coverage needs the MLP activations: this sweep did not capture them")
        if s.mlp.shape[1] != sum(self.profile.layer_sizes):
            raise InputError(f"MLP activations have {s.mlp.shape[1]} neurons, the profile "
                             f"{sum(self.profile.layer_sizes)}")
        layers = np.split(np.ascontiguousarray(s.mlp, np.float32), np.cumsum(self.profile.layer_sizes)[:-1], axis=1)
        out = coverage_scores(pack_layers(layers), len(s.mlp), np.zeros(len(s.mlp), np.int64), self.tables,
                              parallel=False)
        return out[:, [SCORE_NAMES.index(k) for k in ("nc", "kmnc", "tknc", "nbc")]].mean(axis=1)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "profile": self.file, "digest": self.profile.digest(), "rare_rate": self.rare_rate}


@dataclass
class PromptLength:
    """Prompt length in tokens, oriented as on the training prompts: the confound every
    detector must beat (a baseline, never a default)."""

    sign: float
    kind = "prompt_length"
    cost = PREFILL
    heads: tuple = ()

    def layers(self) -> list[int]:
        return []

    def score(self, s: Sweep) -> np.ndarray:
        return self.sign * s.lengths.astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sign": self.sign}


Score = HeadAngle | HeadLogistic | ResidualProbe | RefusalDirection | DirectionCombination | MlpCoverage | PromptLength


def score_from_json(d: Any, n_layers: int, n_heads: int, hidden: int, where: str, folder: Path | None = None,
                    fingerprint: str | None = None) -> Score:
    """Validate one detector's JSON and rebuild it.

    Parameters
    ----------
    d : object
        Parsed JSON (as ``to_json`` writes it).
    n_layers, n_heads, hidden : int
        The model's layout: layers, heads per layer, residual width.
    where : str
        Name for messages.
    folder : Path, optional
        Folder of the detector file (``mlp_coverage`` profiles are read from there).
    fingerprint : str, optional
        The model's fingerprint (an ``mlp_coverage`` profile must carry it).

    Returns
    -------
    Score
        The detector.

    Raises
    ------
    ProfileError
        Unknown kind, or a field missing or out of range.
    """
    _need(isinstance(d, dict), where, "is not an object")
    kind = d.get("kind")
    if kind == HeadAngle.kind:
        heads = _head_list(d.get("heads"), n_layers, n_heads, where)
        _need(len(heads) == 1, where, "a head angle reads exactly one head")
        return HeadAngle(heads[0])
    if kind == HeadLogistic.kind:
        heads = _head_list(d.get("heads"), n_layers, n_heads, where)
        return HeadLogistic(heads, logistic_from_json(d.get("logistic"), len(heads), where))
    if kind == ResidualProbe.kind:
        return ResidualProbe(_layer(d.get("layer"), n_layers, where), logistic_from_json(d.get("logistic"), hidden, where))
    if kind == RefusalDirection.kind:
        return RefusalDirection(_layer(d.get("layer"), n_layers, where), _vector(d.get("direction"), hidden, where))
    if kind == DirectionCombination.kind:
        layers = d.get("layers")
        _need(isinstance(layers, list) and len(layers) > 0, where, "'layers' must be a non-empty list")
        layers = [_layer(v, n_layers, where) for v in layers]
        dirs = d.get("directions")
        _need(isinstance(dirs, list) and len(dirs) == len(layers), where, "needs one direction per layer")
        return DirectionCombination(layers, np.stack([_vector(v, hidden, where) for v in dirs]),
                                    logistic_from_json(d.get("logistic"), len(layers), where))
    if kind == MlpCoverage.kind:
        from ..profile.store import load_profile

        name = d.get("profile")
        _need(isinstance(name, str) and name and "/" not in name and "\\" not in name and folder is not None, where,
              "'profile' must name a .npz file beside the detector file")
        rate = d.get("rare_rate")
        _need(isinstance(rate, float) and 0 < rate < 1, where, "rare_rate must be in (0, 1)")
        profile = load_profile(folder / name, fingerprint=fingerprint)
        _need(profile.digest() == d.get("digest"), where, f"profile {name} was changed since the detector was fitted "
              "(digest differs); fit again")
        return MlpCoverage(profile, rate, name)
    if kind == PromptLength.kind:
        _need(d.get("sign") in (1.0, -1.0), where, "sign must be 1 or -1")
        return PromptLength(float(d["sign"]))
    raise ProfileError(f"{where}: unknown detector kind {kind!r} (known: {HeadAngle.kind}, {HeadLogistic.kind}, "
                       f"{ResidualProbe.kind}, {RefusalDirection.kind}, {DirectionCombination.kind}, "
                       f"{MlpCoverage.kind}, {PromptLength.kind})")


def needs_mlp(scores: Sequence[Score]) -> bool:
    """Whether any of ``scores`` reads MLP activations.

    Parameters
    ----------
    scores : sequence of Score
        Detectors.

    Returns
    -------
    bool
        True when the sweep must capture them.
    """
    return any(getattr(sc, "needs_mlp", False) for sc in scores)


def heads_needed(scores: Sequence[Score]) -> list[tuple[int, int]]:
    """Every head any of ``scores`` masks, in first-use order.

    Parameters
    ----------
    scores : sequence of Score
        Detectors.

    Returns
    -------
    list of (layer, head)
        Heads.
    """
    out: list[tuple[int, int]] = []
    for sc in scores:
        out += [tuple(h) for h in sc.heads if tuple(h) not in out]
    return out
