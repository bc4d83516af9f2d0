"""What a detector's outputs mean: presets for the common layouts, a small spec file for others.

A layout names which model output holds what, the box format, how class scores are
expressed, and, where the model has no NMS of its own, the NMS step nnwatch runs with its
thresholds (recorded in every profile and result made with the layout).

Presets:

``yolov8``
    One raw head ``(B, 4 + C, N)``: per candidate ``cx, cy, w, h`` in input pixels, then C
    per-class sigmoid scores (Ultralytics YOLOv8/v11 export without NMS). NMS is a declared
    step (score >= 0.25, IoU 0.7, at most 300 boxes: Ultralytics' defaults).
``yolov5``
    One raw head ``(B, N, 5 + C)``: per candidate ``cx, cy, w, h`` in input pixels, an
    objectness probability, then C per-class probabilities (Ultralytics YOLOv5 export); the
    confidence is objectness x class probability. NMS: score >= 0.25, IoU 0.45, at most 1,000
    boxes (YOLOv5's defaults).
``yolox``
    YOLOX's export without ``--decode_in_inference``: ``(B, N, 5 + C)`` like ``yolov5``, but the
    boxes are raw: on the grids of strides 8, 16 and 32 (candidates in that order, row-major),
    ``cx = (t_x + g_x) s``, ``w = exp(t_w) s``. NMS: score >= 0.3, IoU 0.45 (the YOLOX demo's).
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
        ``raw``: one ``(B, 4 + C, N)`` head before NMS (``(B, N, 4 + C)`` with ``values_last``);
        ``nms``: one ``(B, K, 6)`` table; ``separate``: boxes, scores and classes outputs.
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
    values_last : bool
        Raw heads: candidates on axis 1 and their values on axis 2.
    objectness : bool
        Raw heads: a fifth value, the objectness probability, before the class scores; the
        confidence is objectness x the class probability.
    grid_strides : tuple of int
        Raw heads: the boxes are offsets on grids of these strides (YOLOX), candidates in
        stride order, each grid row-major: ``cx = (t_x + g_x) s``, ``w = exp(t_w) s``.
    """

    kind: str
    outputs: tuple[str, ...] = ()
    box_format: str = "xyxy"
    class_scores: str = "sigmoid"
    normalized: bool = False
    score_threshold: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    values_last: bool = False
    objectness: bool = False
    grid_strides: tuple[int, ...] = ()
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(self.outputs))  # lists from JSON compare equal to tuples
        object.__setattr__(self, "grid_strides", tuple(self.grid_strides))
        for name in ("score_threshold", "iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"layout {name} must be a number in [0, 1], got {value!r}")
        for name in ("values_last", "objectness", "normalized"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"layout {name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.name, str) or any(not isinstance(o, str) for o in self.outputs):
            raise InputError(f"layout name and outputs must be text, got {self.name!r} and {list(self.outputs)}")
        if self.kind not in KINDS:
            raise InputError(f"layout kind must be one of {KINDS}, got {self.kind!r}")
        if self.box_format not in BOX_FORMATS:
            raise InputError(f"layout box_format must be one of {BOX_FORMATS}, got {self.box_format!r}")
        if self.class_scores not in CLASS_SCORES:
            raise InputError(f"layout class_scores must be one of {CLASS_SCORES}, got {self.class_scores!r}")
        if not 0.0 <= self.score_threshold <= 1.0 or not 0.0 <= self.iou <= 1.0:
            raise InputError(f"layout score_threshold and iou must lie in [0, 1], got {self.score_threshold}, {self.iou}")
        if isinstance(self.max_det, bool) or not isinstance(self.max_det, int) or self.max_det < 1:
            raise InputError(f"layout max_det must be an integer >= 1, got {self.max_det!r}")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.grid_strides):
            raise InputError(f"layout grid_strides must be whole numbers >= 1, got {list(self.grid_strides)}")
        if self.kind != "raw" and (self.values_last or self.objectness or self.grid_strides):
            raise InputError("layout fields values_last, objectness and grid_strides describe raw heads; this "
                             f"layout's kind is {self.kind!r}")
        if self.grid_strides and self.box_format != "cxcywh":
            raise InputError("a layout with grid_strides reads grid offsets as cx, cy, w, h: set box_format 'cxcywh'")
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
        d["grid_strides"] = list(self.grid_strides)
        return d

    @property
    def n_values(self) -> int:
        """Raw heads: values per candidate before the class scores (4 box values, objectness)."""
        return 5 if self.objectness else 4

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
            values, cands = (2, 1) if self.values_last else (1, 2)
            want = f"(B, N, {self.n_values} + C)" if self.values_last else f"(B, {self.n_values} + C, N)"
            if len(s[0]) != 3:
                return f"needs one {want} output, got {s[0]}"
            ch, n = fixed(s[0][values]), fixed(s[0][cands])
            if ch is not None and ch < self.n_values + 1:
                return (f"needs {self.n_values} values and at least one class score on axis {values}, got {s[0]} "
                        f"(expected {want})")
            if ch is not None and n is not None and ch > n:
                return (f"has more values per candidate ({ch}, axis {values}) than candidates ({n}, axis {cands}); "
                        f"expected {want}")
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
    "yolov5": OutputLayout("raw", box_format="cxcywh", class_scores="sigmoid", score_threshold=0.25, iou=0.45,
                           max_det=1000, values_last=True, objectness=True, name="yolov5"),
    "yolox": OutputLayout("raw", box_format="cxcywh", class_scores="sigmoid", score_threshold=0.3, iou=0.45,
                          max_det=300, values_last=True, objectness=True, grid_strides=(8, 16, 32), name="yolox"),
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
    merged["grid_strides"] = tuple(merged.get("grid_strides", ()))
    merged.setdefault("name", preset or Path(where).stem)
    if "kind" not in merged:
        raise InputError(f"{where}: a layout needs 'kind' ({', '.join(KINDS)}) or a 'preset' ({', '.join(PRESETS)})")
    try:
        return OutputLayout(**merged)
    except TypeError as e:
        raise InputError(f"{where}: {e}") from None
