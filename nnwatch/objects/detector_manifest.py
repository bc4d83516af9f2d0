"""What an instrumented detector's metadata says (key ``nnwatch.objects``); read without onnx."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import ModelError
from .layouts import OutputLayout, load_layout

OBJECTS_KEY = "nnwatch.objects"


@dataclass(frozen=True)
class DetectorManifest:
    """What an instrumented detector's extra outputs and metadata say.

    Attributes
    ----------
    layout : OutputLayout
        How to read the detector outputs.
    outputs : tuple of str
        The detector outputs the layout reads, in role order.
    maps : tuple of str
        Output names of the tapped maps.
    tensors : tuple of str
        The tapped tensors in the original graph.
    channels : tuple of int
        Channels of each map.
    input_name : str
        The image input.
    input_size : tuple of int
        ``(height, width)`` of the input.
    fingerprint : str
        sha256 of the original model.
    """

    layout: OutputLayout
    outputs: tuple[str, ...]
    maps: tuple[str, ...]
    tensors: tuple[str, ...]
    channels: tuple[int, ...]
    input_name: str
    input_size: tuple[int, int]
    fingerprint: str

    def to_json(self) -> str:
        """The manifest as JSON text."""
        return json.dumps({"layout": self.layout.to_dict(), "outputs": list(self.outputs), "maps": list(self.maps),
                           "tensors": list(self.tensors), "channels": list(self.channels),
                           "input_name": self.input_name, "input_size": list(self.input_size),
                           "fingerprint": self.fingerprint}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DetectorManifest":
        """Read a manifest written by :meth:`to_json`.

        Parameters
        ----------
        text : str
            JSON text.

        Returns
        -------
        DetectorManifest
            The manifest.
        """
        try:
            d = json.loads(text)
            return cls(layout=load_layout(d["layout"]), outputs=tuple(d["outputs"]), maps=tuple(d["maps"]),
                       tensors=tuple(d["tensors"]), channels=tuple(int(c) for c in d["channels"]),
                       input_name=d["input_name"], input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                       fingerprint=d["fingerprint"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ModelError(f"the model's {OBJECTS_KEY} manifest is damaged ({e}); instrument the original again")


def read_manifest(model: Any) -> DetectorManifest | None:
    """The detector manifest of an instrumented model, or None.

    Parameters
    ----------
    model : onnx.ModelProto or dict
        The model, or its metadata map (onnxruntime's ``get_modelmeta().custom_metadata_map``).

    Returns
    -------
    DetectorManifest or None
        The manifest.
    """
    meta = model if isinstance(model, dict) else {p.key: p.value for p in model.metadata_props}
    text = meta.get(OBJECTS_KEY)
    return None if text is None else DetectorManifest.from_json(text)
