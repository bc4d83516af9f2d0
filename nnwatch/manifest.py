"""The tap manifest: which graph outputs an instrumented model exposes and how to read them.

It is stored as JSON in the ONNX model's ``metadata_props`` under :data:`MANIFEST_KEY`, so the
runtime reads it through onnxruntime (``custom_metadata_map``) without the ``onnx`` package.
Stdlib only.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ModelError

MANIFEST_KEY = "nnwatch.manifest"
HEAD_KEY = "nnwatch.head"  # the final linear layer (weights as data), when it is one
PREPROCESS_KEY = "nnwatch.preprocess"  # the declared input preprocessing of recorded frames (JSON fields)
MANIFEST_FORMAT = "nnwatch.manifest"
MANIFEST_VERSION = 1
REDUCTIONS = ("none", "mean", "max")
TAP_DTYPES = ("float32", "uint8", "int8")
JOINED_OUTPUT = "nnwatch/taps"  # the one output of joined taps, float32 (batch, N)


def check_logit_columns(n_columns: int, where: str) -> None:
    """Refuse a model whose logits cannot name a predicted class.

    Parameters
    ----------
    n_columns : int
        Columns of the logits output.
    where : str
        The model, for the message.

    Raises
    ------
    ModelError
        Fewer than two columns.
    """
    if n_columns < 2:
        raise ModelError(f"{where}: the logits output has {n_columns} column; nnwatch monitors classifiers, whose "
                         "logits (batch, classes) have one column per class (at least 2). A one-output regressor "
                         "has no predicted class to profile; a binary classifier with one logit z can output "
                         "Concat(-z, z) instead")


@dataclass(frozen=True)
class Tap:
    """One monitored layer.

    Attributes
    ----------
    output : str
        Graph output name that carries the layer's values.
    layer : str
        Human name of the layer (torch module path, or the ONNX tensor name).
    source : str
        The ONNX tensor that was tapped.
    shape : tuple of int
        Per-sample shape of ``output`` (batch axis removed).
    reduction : str
        How a feature map becomes one value per channel: ``"none"`` (already a vector),
        ``"mean"`` or ``"max"`` over the spatial axes.
    in_graph : bool
        True when the reduction is done by nodes in the graph (``output`` is then ``(C,)``);
        False when the monitor reduces the full map after the run.
    dtype : str
        Element type of ``output``: ``"float32"``, or ``"uint8"``/``"int8"`` for a quantized
        tensor exposed as its integers (a quarter of the bytes to copy), which the runtime
        dequantizes as ``(q - zero_point) * scale``.
    scale : float
        Quantization scale (1.0 for float taps).
    zero_point : int
        Quantization zero point (0 for float taps).
    """

    output: str
    layer: str
    source: str
    shape: tuple[int, ...]
    reduction: str = "none"
    in_graph: bool = True
    dtype: str = "float32"
    scale: float = 1.0
    zero_point: int = 0

    @property
    def neurons(self) -> int:
        """Number of neurons (channels, or units of a dense layer) this tap contributes."""
        return int(self.shape[0]) if self.shape else 1


@dataclass(frozen=True)
class TapManifest:
    """Everything the runtime needs to know about an instrumented model.

    Attributes
    ----------
    fingerprint : str
        sha256 of the original (untapped) model file, hex.
    input_name : str
        Name of the model input that receives the data batch.
    input_shape : tuple
        Per-sample input shape; ``None`` for a dynamic axis.
    batch : int or None
        Fixed batch size of the graph, or None when the batch axis is dynamic.
    logits : str
        Graph output holding the classifier's logits (pre-softmax).
    taps : tuple of Tap
        Monitored layers in graph order.
    original_outputs : tuple of str
        Outputs the model had before instrumenting.
    penultimate : str or None
        Layer name of the features that feed the classifier (used by feature-space
        detectors such as Mahalanobis), or None when it could not be identified.
    selection : dict or None
        When the taps were chosen under a latency budget (``nnwatch instrument --budget``):
        the measured cost and value of every candidate, the budget and the choice.
    joined : str or None
        Graph output that holds every tap side by side, float32 ``(batch, N)`` in tap order
        (:data:`JOINED_OUTPUT`): one output, so one copy per call on any device. The taps'
        ``output`` tensors then feed it and are not graph outputs themselves. None: one graph
        output per tap.
    macs : int or None
        Multiply-adds of one sample through the original model, counted from its graph
        (:mod:`nnwatch.export.macs`); what a monitor's costs are weighed against without a
        stopwatch. None when some product's shapes could not be inferred, or for a model
        instrumented before the count was recorded.
    """

    fingerprint: str
    input_name: str
    input_shape: tuple
    batch: int | None
    logits: str
    taps: tuple[Tap, ...]
    original_outputs: tuple[str, ...] = field(default_factory=tuple)
    penultimate: str | None = None
    selection: dict | None = None
    joined: str | None = None
    macs: int | None = None

    @property
    def layer_names(self) -> list[str]:
        """Layer names in tap order."""
        return [t.layer for t in self.taps]

    @property
    def layer_sizes(self) -> list[int]:
        """Neurons per layer in tap order."""
        return [t.neurons for t in self.taps]

    def to_json(self) -> str:
        """Serialize to the JSON stored in the model metadata.

        Returns
        -------
        str
            JSON text with format name and version.
        """
        body: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION}
        body.update(asdict(self))
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TapManifest":
        """Parse and validate manifest JSON.

        Parameters
        ----------
        text : str
            JSON written by :meth:`to_json`.

        Returns
        -------
        TapManifest
            The parsed manifest.

        Raises
        ------
        ModelError
            Malformed JSON, wrong format or version, or missing/invalid fields.
        """
        try:
            body = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ModelError(f"nnwatch manifest in the model metadata is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
            raise ModelError("model metadata does not hold an nnwatch manifest")
        if body.get("version") != MANIFEST_VERSION:
            raise ModelError(
                f"nnwatch manifest version {body.get('version')!r} is not supported "
                f"(this nnwatch reads version {MANIFEST_VERSION}); re-instrument the model"
            )
        try:
            taps = tuple(
                Tap(
                    output=str(t["output"]),
                    layer=str(t["layer"]),
                    source=str(t["source"]),
                    shape=tuple(int(d) for d in t["shape"]),
                    reduction=str(t["reduction"]),
                    in_graph=bool(t["in_graph"]),
                    dtype=str(t.get("dtype", "float32")),
                    scale=float(t.get("scale", 1.0)),
                    zero_point=int(t.get("zero_point", 0)),
                )
                for t in body["taps"]
            )
            manifest = cls(
                fingerprint=str(body["fingerprint"]),
                input_name=str(body["input_name"]),
                input_shape=tuple(None if d is None else int(d) for d in body["input_shape"]),
                batch=None if body["batch"] is None else int(body["batch"]),
                logits=str(body["logits"]),
                taps=taps,
                original_outputs=tuple(str(o) for o in body.get("original_outputs", ())),
                penultimate=None if body.get("penultimate") is None else str(body["penultimate"]),
                selection=None if body.get("selection") is None else dict(body["selection"]),
                joined=None if body.get("joined") is None else str(body["joined"]),
                macs=None if body.get("macs") is None else int(body["macs"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ModelError(f"nnwatch manifest is incomplete or malformed ({exc!r}); re-instrument the model") from None
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Check internal consistency.

        Raises
        ------
        ModelError
            No taps, duplicate outputs, unknown reduction or non-positive sizes.
        """
        if not self.taps:
            raise ModelError("nnwatch manifest lists no monitored layers")
        outputs = [t.output for t in self.taps]
        if len(set(outputs)) != len(outputs):
            raise ModelError(f"nnwatch manifest lists a tap output twice: {outputs}")
        for t in self.taps:
            if t.reduction not in REDUCTIONS:
                raise ModelError(f"tap {t.layer!r}: reduction {t.reduction!r} not in {REDUCTIONS}")
            if not t.shape or any(d <= 0 for d in t.shape):
                raise ModelError(f"tap {t.layer!r}: per-sample shape {t.shape} must be static and positive")
            if t.dtype not in TAP_DTYPES:
                raise ModelError(f"tap {t.layer!r}: element type {t.dtype!r} not in {TAP_DTYPES}")
            if not (np.isfinite(t.scale) and t.scale > 0):
                raise ModelError(f"tap {t.layer!r}: quantization scale {t.scale!r} must be finite and positive")
            if t.in_graph and len(t.shape) != 1:
                raise ModelError(f"tap {t.layer!r}: a reduced (in-graph) tap must be a vector, got {t.shape}")
        if self.joined is not None and any(t.dtype != "float32" or not t.in_graph for t in self.taps):
            raise ModelError("nnwatch manifest: joined taps must all be float32 vectors reduced in the graph")
        if self.penultimate is not None and self.penultimate not in self.layer_names:
            raise ModelError(f"nnwatch manifest: penultimate layer {self.penultimate!r} is not a tap")
        if self.macs is not None and self.macs < 0:
            raise ModelError(f"nnwatch manifest: multiply-adds {self.macs} must be >= 0")
        if len(self.fingerprint) != 64:
            raise ModelError("nnwatch manifest fingerprint is not a sha256 hex digest")


def encode_head(weight: np.ndarray, bias: np.ndarray) -> str:
    """The classifier head as JSON metadata (float32, row-major, base64).

    Parameters
    ----------
    weight : numpy.ndarray
        ``(K, D)``: logits = weight @ features + bias.
    bias : numpy.ndarray
        ``(K,)``.

    Returns
    -------
    str
        JSON text.
    """
    w = np.ascontiguousarray(weight, np.float32)
    b = np.ascontiguousarray(bias, np.float32)
    return json.dumps({"shape": list(w.shape), "weight": base64.b64encode(w.tobytes()).decode("ascii"),
                       "bias": base64.b64encode(b.tobytes()).decode("ascii")})


def decode_head(text: str, n_classes: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Read :func:`encode_head` output and check it against the model.

    Parameters
    ----------
    text : str
        The metadata value.
    n_classes, n_features : int
        What the head must map from and to.

    Returns
    -------
    tuple of numpy.ndarray
        ``(weight float32 (K, D), bias float32 (K,))``.

    Raises
    ------
    ModelError
        Malformed, or shapes that do not fit the model.
    """
    try:
        d = json.loads(text)
        k, dim = (int(v) for v in d["shape"])
        w = np.frombuffer(base64.b64decode(d["weight"], validate=True), np.float32)
        b = np.frombuffer(base64.b64decode(d["bias"], validate=True), np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the model's classifier-head metadata is malformed ({type(exc).__name__})") from None
    if (k, dim) != (n_classes, n_features) or w.size != k * dim or b.size != k or not np.isfinite(w).all():
        raise ModelError(f"the model's classifier head has shape {(k, dim)}, expected {(n_classes, n_features)}; "
                         "re-instrument the model")
    return w.reshape(k, dim).copy(), b.copy()
