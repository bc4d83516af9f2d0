"""What a detector's outputs mean: presets for the common layouts, a small spec file for others.

A layout names which model output holds what, the box format, how class scores are
expressed, and, where the model has no NMS of its own, the NMS step nnwatch runs with its
thresholds (recorded in every profile and result made with the layout).

Presets:

``yolov8``
    One raw head ``(B, 4 + C, N)``: per candidate ``cx, cy, w, h`` in input pixels, then C
    per-class sigmoid scores (Ultralytics YOLOv8/v11 export without NMS). NMS is a declared
    step (score >= 0.25, IoU 0.7, at most 300 boxes: Ultralytics' defaults).
``nms``
    Post-NMS ``(B, K, 6)``: ``x1, y1, x2, y2, score, class`` per row; rows with a negative
    class or a score of 0 are padding. No class score vector per box.
``boxes-scores-classes``
    Three outputs ``(B, K, 4)`` boxes ``x1, y1, x2, y2``, ``(B, K)`` scores, ``(B, K)``
    classes (torchvision / TF Object Detection style, after NMS).

A spec file is JSON with the fields of :class:`OutputLayout` (``preset`` may name a preset to
start from)::

    {"preset": "yolov8", "outputs": ["output0"], "score_threshold": 0.4}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._validate import unknown_name
from ..errors import InputError

KINDS = ("raw", "nms", "separate")
BOX_FORMATS = ("xyxy", "cxcywh")
CLASS_SCORES = ("sigmoid", "softmax", "logits")


@dataclass(frozen=True)
class OutputLayout:
    """How to read a detector's outputs.

    Parameters
    ----------
    kind : {"raw", "nms", "separate"}
        ``raw``: one ``(B, 4 + C, N)`` head before NMS; ``nms``: one ``(B, K, 6)`` table;
        ``separate``: boxes, scores and classes outputs.
    outputs : tuple of str
        Model output names in role order (raw/nms: one; separate: boxes, scores, classes).
        Empty: the model's first outputs, in order.
    box_format : {"xyxy", "cxcywh"}
        Box coordinates.
    class_scores : {"sigmoid", "softmax", "logits"}
        What the raw head's C values are (raw only).
    normalized : bool
        Boxes in ``[0, 1]`` of the input size instead of pixels.
    score_threshold : float
        Candidates below it are dropped (raw: before NMS; others: padding rows).
    iou : float
        NMS overlap threshold (raw only; the others come after the model's own NMS).
    max_det : int
        Most objects per frame.
    """

    kind: str
    outputs: tuple[str, ...] = ()
    box_format: str = "xyxy"
    class_scores: str = "sigmoid"
    normalized: bool = False
    score_threshold: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"layout kind must be one of {KINDS}, got {self.kind!r}")
        if self.box_format not in BOX_FORMATS:
            raise InputError(f"layout box_format must be one of {BOX_FORMATS}, got {self.box_format!r}")
        if self.class_scores not in CLASS_SCORES:
            raise InputError(f"layout class_scores must be one of {CLASS_SCORES}, got {self.class_scores!r}")
        if not 0.0 <= self.score_threshold <= 1.0 or not 0.0 <= self.iou <= 1.0:
            raise InputError(f"layout score_threshold and iou must lie in [0, 1], got {self.score_threshold}, {self.iou}")
        if not isinstance(self.max_det, int) or self.max_det < 1:
            raise InputError(f"layout max_det must be an integer >= 1, got {self.max_det!r}")
        if len(self.outputs) not in (0, self.n_outputs):
            raise InputError(f"a {self.kind!r} layout names {self.n_outputs} output(s), got {list(self.outputs)}")

    @property
    def n_outputs(self) -> int:
        """How many model outputs the layout reads."""
        return 3 if self.kind == "separate" else 1

    @property
    def runs_nms(self) -> bool:
        """Whether nnwatch runs NMS (the model has none)."""
        return self.kind == "raw"

    @property
    def has_class_scores(self) -> bool:
        """Whether each object comes with its full class score vector (energy, MSP)."""
        return self.kind == "raw"

    def to_dict(self) -> dict[str, Any]:
        """The layout as JSON-ready fields (recorded in profiles and results)."""
        d = dataclasses.asdict(self)
        d["outputs"] = list(self.outputs)
        return d

    def shape_problem(self, shapes: Sequence[Sequence[Any]]) -> str | None:
        """Why outputs of these shapes do not fit the layout (None: they fit).

        Parameters
        ----------
        shapes : sequence of shapes
            The shapes of the outputs the layout reads, in role order; symbolic dimensions
            may be strings or None.

        Returns
        -------
        str or None
            The problem, or None.
        """
        if len(shapes) < self.n_outputs:
            return f"needs {self.n_outputs} outputs, the model has {len(shapes)}"
        s = [tuple(x) for x in shapes[: self.n_outputs]]

        def fixed(d: Any) -> int | None:
            return d if isinstance(d, int) and d > 0 else None

        if self.kind == "raw":
            if len(s[0]) != 3:
                return f"needs one (B, 4 + C, N) output, got {s[0]}"
            ch = fixed(s[0][1])
            if ch is not None and ch < 5:
                return f"needs 4 box values and at least one class score on axis 1, got {s[0]}"
            return None
        if self.kind == "nms":
            if len(s[0]) != 3 or fixed(s[0][2]) not in (None, 6):
                return f"needs one (B, K, 6) output, got {s[0]}"
            return None
        if len(s[0]) != 3 or fixed(s[0][2]) not in (None, 4):
            return f"needs boxes (B, K, 4) first, got {s[0]}"
        if len(s[1]) != 2 or len(s[2]) != 2:
            return f"needs scores (B, K) and classes (B, K) after the boxes, got {s[1]} and {s[2]}"
        return None


PRESETS: dict[str, OutputLayout] = {
    "yolov8": OutputLayout("raw", box_format="cxcywh", class_scores="sigmoid", score_threshold=0.25, iou=0.7,
                           max_det=300, name="yolov8"),
    "nms": OutputLayout("nms", score_threshold=0.0, name="nms"),
    "boxes-scores-classes": OutputLayout("separate", score_threshold=0.0, name="boxes-scores-classes"),
}


def fitting_presets(shapes: Sequence[Sequence[Any]]) -> list[str]:
    """Presets that read exactly these outputs and whose shape rules they satisfy.

    Parameters
    ----------
    shapes : sequence of shapes
        Every output's shape, in model order. A model with more outputs than a preset reads
        (a segmentation head beside the boxes) needs a spec naming its ``outputs``.

    Returns
    -------
    list of str
        Preset names.
    """
    return [name for name, layout in PRESETS.items()
            if layout.n_outputs == len(shapes) and layout.shape_problem(shapes) is None]


def load_layout(spec: str | Mapping[str, Any] | OutputLayout) -> OutputLayout:
    """A layout from a preset name, a JSON spec file, a mapping, or a layout.

    Parameters
    ----------
    spec : str, mapping or OutputLayout
        Preset name (``yolov8``), path of a ``.json`` spec, or the spec's fields.

    Returns
    -------
    OutputLayout
        The layout.

    Raises
    ------
    InputError
        Unknown preset, unreadable or invalid spec, unknown fields.
    """
    if isinstance(spec, OutputLayout):
        return spec
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        path = Path(spec)
        if path.suffix.lower() != ".json":
            raise unknown_name("layout", spec, [*PRESETS, "a .json spec file"])
        try:
            fields = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"layout spec {spec}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"layout spec {spec}: not readable JSON ({e})") from None
        if not isinstance(fields, dict):
            raise InputError(f"layout spec {spec}: expected a JSON object of layout fields")
        return _from_fields(fields, spec)
    return _from_fields(dict(spec), "layout")


def _from_fields(fields: dict[str, Any], where: str) -> OutputLayout:
    base: dict[str, Any] = {}
    preset = fields.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise unknown_name("layout preset", str(preset), PRESETS)
        base = dataclasses.asdict(PRESETS[preset])
    known = {f.name for f in dataclasses.fields(OutputLayout)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(f"{where}: unknown layout field(s) {unknown}; accepted: {sorted(known | {'preset'})}")
    merged = {**base, **fields}
    merged["outputs"] = tuple(merged.get("outputs", ()))
    merged.setdefault("name", preset or Path(where).stem)
    if "kind" not in merged:
        raise InputError(f"{where}: a layout needs 'kind' ({', '.join(KINDS)}) or a 'preset' ({', '.join(PRESETS)})")
    try:
        return OutputLayout(**merged)
    except TypeError as e:
        raise InputError(f"{where}: {e}") from None
