"""The language-model detectors: each turns one prompt sweep into a score (higher = more unsafe).

Two cost tiers, because they decide what a monitored call must run:

- ``prefill``: read the plain prefill only, the last token's residual state at some layers
  (:class:`ResidualProbe`, :class:`RefusalDirection`, :class:`DirectionCombination`), its MLP
  activations (:class:`MlpCoverage`) or the prompt's length (:class:`PromptLength`);
- ``masked``: also re-run the layers above each head with that head's query scaled to ~0
  (:class:`HeadAngle`, the published single-head score, and :class:`HeadLogistic`, a probe
  over several heads' angles).

Each detector is plain data written to and read from the detector file as checked JSON; the
kinds are looked up in :data:`KINDS`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from .._validate import is_finite_list, is_int
from ..errors import InputError, ProfileError
from .collect import Sweep
from .logistic import Logistic, logistic_from_json, logistic_to_json
from .text_baseline import TextClassifier

PREFILL, MASKED = "prefill", "masked"


@dataclass(frozen=True)
class Layout:
    """What a detector's JSON is checked against.

    Attributes
    ----------
    n_layers, n_heads, hidden : int
        Transformer layers, heads per layer, residual width.
    folder : Path or None
        Folder of the detector file (``mlp_coverage`` profiles are read from there).
    fingerprint : str or None
        The model's fingerprint (an ``mlp_coverage`` profile must carry it).
    """

    n_layers: int
    n_heads: int
    hidden: int
    folder: Path | None = None
    fingerprint: str | None = None


class Score(Protocol):
    """A language detector.

    Attributes
    ----------
    kind : str
        Its key in :data:`KINDS` and in the file.
    cost : str
        :data:`PREFILL` or :data:`MASKED`.
    heads : list of (layer, head)
        Heads it masks (empty for prefill detectors).
    needs_mlp : bool
        Whether it reads MLP activations.
    """

    kind: str
    cost: str
    needs_mlp: bool

    @property
    def heads(self) -> list[tuple[int, int]]: ...

    def layers(self) -> list[int]:
        """Residual layers it reads (0: embeddings, L: final)."""

    def score(self, s: Sweep) -> np.ndarray:
        """``(N,)`` float64 scores of a sweep that holds what it reads."""

    def to_json(self) -> dict[str, Any]:
        """Its parameters as plain JSON (with ``kind``)."""


class _Prefill:
    """Defaults of the detectors that read the plain prefill only."""

    cost = PREFILL
    needs_mlp = False
    heads: tuple = ()

    def layers(self) -> list[int]:
        return []


class _Masked:
    """Defaults of the detectors that re-run the layers above masked heads."""

    cost = MASKED
    needs_mlp = False

    def layers(self) -> list[int]:
        return []


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ProfileError(f"{where}: {what}")


def _head_list(v: Any, lay: Layout, where: str) -> list[tuple[int, int]]:
    _need(isinstance(v, list) and len(v) > 0, where, "'heads' must be a non-empty list of [layer, head]")
    for h in v:
        _need(isinstance(h, list) and len(h) == 2 and all(is_int(a) for a in h), where,
              f"head {h!r} is not [layer, head]")
        _need(0 <= h[0] < lay.n_layers and 0 <= h[1] < lay.n_heads, where,
              f"head L{h[0]}H{h[1]} outside layers 0..{lay.n_layers - 1}, heads 0..{lay.n_heads - 1}")
    return [(int(a), int(b)) for a, b in v]


def _layer(v: Any, lay: Layout, where: str) -> int:
    _need(is_int(v) and 0 <= v <= lay.n_layers, where,
          f"layer {v!r} outside 0..{lay.n_layers} (0: embeddings, {lay.n_layers}: final)")
    return int(v)


def _vector(v: Any, n: int, where: str) -> np.ndarray:
    _need(is_finite_list(v, n), where, f"needs {n} finite numbers")
    return np.array(v, np.float64)


@dataclass
class HeadAngle(_Masked):
    """The published score: the angle (degrees) between the final last-token state with and
    without one head ("One Head to Rule Them All", NeurIPS 2025).
    """

    head: tuple[int, int]
    kind = "head_angle"

    @property
    def heads(self) -> list[tuple[int, int]]:
        return [self.head]

    def score(self, s: Sweep) -> np.ndarray:
        return s.angle_columns(self.heads)[:, 0]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "heads": [list(self.head)]}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "HeadAngle":
        heads = _head_list(d.get("heads"), lay, where)
        _need(len(heads) == 1, where, "a head angle reads exactly one head")
        return cls(heads[0])


@dataclass
class HeadLogistic(_Masked):
    """A logistic probe over several heads' angles."""

    angle_heads: list
    logistic: Logistic
    kind = "head_logistic"

    @property
    def heads(self) -> list[tuple[int, int]]:
        return [tuple(h) for h in self.angle_heads]

    def score(self, s: Sweep) -> np.ndarray:
        return self.logistic.decision(s.angle_columns(self.heads))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "heads": [list(h) for h in self.angle_heads],
                "logistic": logistic_to_json(self.logistic)}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "HeadLogistic":
        heads = _head_list(d.get("heads"), lay, where)
        return cls(heads, logistic_from_json(d.get("logistic"), len(heads), where))


@dataclass
class ResidualProbe(_Prefill):
    """A logistic probe on the last token's residual state entering one layer."""

    layer: int
    logistic: Logistic
    kind = "residual_probe"

    def layers(self) -> list[int]:
        return [self.layer]

    def score(self, s: Sweep) -> np.ndarray:
        return self.logistic.decision(s.states[:, self.layer])

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "logistic": logistic_to_json(self.logistic)}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "ResidualProbe":
        return cls(_layer(d.get("layer"), lay, where), logistic_from_json(d.get("logistic"), lay.hidden, where))


@dataclass
class RefusalDirection(_Prefill):
    """Projection of the last token's residual state on the unit difference of the unsafe and
    safe class means at one layer (the "refusal direction", Arditi et al. 2024).
    """

    layer: int
    direction: np.ndarray
    kind = "refusal_direction"

    def layers(self) -> list[int]:
        return [self.layer]

    def score(self, s: Sweep) -> np.ndarray:
        return s.states[:, self.layer].astype(np.float64) @ self.direction

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "direction": self.direction.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "RefusalDirection":
        return cls(_layer(d.get("layer"), lay, where), _vector(d.get("direction"), lay.hidden, where))


@dataclass
class DirectionCombination(_Prefill):
    """The refusal-direction projections of several layers, combined by a logistic fit."""

    read_layers: list
    directions: np.ndarray
    logistic: Logistic
    kind = "direction_combination"

    def layers(self) -> list[int]:
        return list(self.read_layers)

    def projections(self, s: Sweep) -> np.ndarray:
        """``(N, layers)`` projections of each read layer's state on its direction."""
        return np.einsum("nld,ld->nl", s.states[:, self.read_layers].astype(np.float64), self.directions)

    def score(self, s: Sweep) -> np.ndarray:
        return self.logistic.decision(self.projections(s))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": list(self.read_layers), "directions": self.directions.tolist(),
                "logistic": logistic_to_json(self.logistic)}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "DirectionCombination":
        layers = d.get("layers")
        _need(isinstance(layers, list) and len(layers) > 0, where, "'layers' must be a non-empty list")
        layers = [_layer(v, lay, where) for v in layers]
        dirs = d.get("directions")
        _need(isinstance(dirs, list) and len(dirs) == len(layers), where, "needs one direction per layer")
        return cls(layers, np.stack([_vector(v, lay.hidden, where) for v in dirs]),
                   logistic_from_json(d.get("logistic"), len(layers), where))


@dataclass
class MlpCoverage(_Prefill):
    """nnwatch's coverage score (mean of nc, kmnc, tknc and nbc, :mod:`nnwatch.kernels.coverage`)
    of the last token's MLP activations in every layer, against a one-class profile of the safe
    training prompts: how unlike benign prompts the model's neurons behave. Its profile lives in
    a checked ``.npz`` beside the detector file (``file``).
    """

    profile: Any
    rare_rate: float = 0.01
    file: str = ""
    kind = "mlp_coverage"
    needs_mlp = True

    @functools.cached_property
    def tables(self) -> Any:
        """The compiled coverage tables of the profile."""
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

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "MlpCoverage":
        from ..profile.store import load_profile

        name = d.get("profile")
        _need(isinstance(name, str) and name.endswith(".npz") and Path(name).name == name and lay.folder is not None,
              where, "'profile' must name a .npz file in the detector file's folder")
        rate = d.get("rare_rate")
        _need(isinstance(rate, float) and 0 < rate < 1, where, "rare_rate must be in (0, 1)")
        profile = load_profile(lay.folder / name, fingerprint=lay.fingerprint)
        _need(profile.digest() == d.get("digest"), where, f"profile {name} was changed since the detector was fitted "
              "(digest differs); fit again")
        return cls(profile, rate, name)


@dataclass
class PromptLength(_Prefill):
    """Prompt length in tokens, oriented as on the training prompts: the confound every
    detector must beat (a baseline, never a default).
    """

    sign: float
    kind = "prompt_length"

    def score(self, s: Sweep) -> np.ndarray:
        return self.sign * s.lengths.astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sign": self.sign}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Layout, where: str) -> "PromptLength":
        _need(d.get("sign") in (1.0, -1.0), where, "sign must be 1 or -1")
        return cls(float(d["sign"]))


KINDS = {c.kind: c for c in (HeadAngle, HeadLogistic, ResidualProbe, RefusalDirection, DirectionCombination,
                             MlpCoverage, PromptLength, TextClassifier)}


def score_from_json(d: Any, lay: Layout, where: str) -> Score:
    """Validate one detector's JSON and rebuild it.

    Parameters
    ----------
    d : object
        Parsed JSON (as ``to_json`` writes it).
    lay : Layout
        The model's layout and where the file lives.
    where : str
        Name for messages.

    Returns
    -------
    Score
        The detector.

    Raises
    ------
    ProfileError
        Unknown kind, or a field missing or out of range; the message names it.
    """
    _need(isinstance(d, dict), where, "is not an object")
    kind = d.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    _need(cls is not None, where, f"unknown detector kind {d.get('kind')!r} (known: {', '.join(KINDS)})")
    return cls.from_json(d, lay, where)


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
    return any(sc.needs_mlp for sc in scores)


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
