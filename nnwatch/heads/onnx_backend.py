"""The language monitor's features on onnxruntime: the prefill exported with a per-sample head
scale as a graph input, so the plain and the masked passes run as one batch in one call.

Graph: ``input_ids`` (B, T) int64 and ``head_scale`` (B, L, H) float32 in; ``final`` (B, D),
the normed last-token state, and ``states`` (B, L + 1, D), the last-token state entering
each layer then ``final``, out (the prefill detectors read ``states`` of the plain row).
Row 0 of a batch has all scales 1 (plain); each further row has one head at 1e-5. The
model's fingerprint and layout are stored in the ONNX metadata so a fitted detector refuses
a graph of another model.

Exporting needs torch; scoring (:class:`OnnxHeadScorer`) needs only numpy and onnxruntime.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, ModelError
from .angles import EPSILON, angle_degrees
from .collect import Sweep, encode_all
from .prompts import prompt_text

META_KEY = "nnwatch.heads"
TOKENIZER_KEY = "nnwatch.heads.tokenizer"  # the tokenizer record (text_encoder.tokenizer_record), JSON


@dataclass(frozen=True)
class PromptEncoder:
    """What the onnxruntime path needs of a scorer: the encoder and the model's fingerprint.

    Attributes
    ----------
    encode : callable
        Prompt -> ``{"input_ids": (1, T)}``.
    fingerprint : str
        The model's fingerprint (from the prefill's metadata).
    """

    encode: Callable[[Any], dict]
    fingerprint: str


def export_prefill(scorer: Any, path: str | os.PathLike, example: str = "Hello, how are you?",
                   opset: int = 18, tokenizer: Any = None) -> None:
    """Export the scorer's model prefill with a ``head_scale`` input (and its tokenizer).

    Parameters
    ----------
    scorer : TorchHeadScorer
        Scorer wrapping the model (its hooks apply the scale during tracing).
    path : path
        Destination ``.onnx`` (written atomically).
    example : str
        Example prompt for tracing (any text; sequence length stays dynamic).
    opset : int
        ONNX opset.
    tokenizer : transformers tokenizer, optional
        A fast tokenizer to carry in the metadata, so scoring needs neither torch nor
        transformers (:mod:`.text_encoder`).
    """
    import torch

    from ..export.instrument import MAX_IR_VERSION, save_onnx

    lay = scorer.layout

    class Prefill(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = scorer.model

        def forward(self, input_ids: Any, head_scale: Any) -> Any:
            return scorer.scaled_prefill(input_ids, head_scale)

    ids = scorer.encode(example)["input_ids"].expand(2, -1).contiguous()
    scale = torch.ones(2, lay.n_layers, lay.n_heads)
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("seq", min=2, max=8192)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(Prefill().eval(), (ids, scale), dynamo=True, opset_version=opset,
                                        input_names=["input_ids", "head_scale"], output_names=["final", "states"],
                                        dynamic_shapes=({0: batch, 1: seq}, {0: batch}), report=False,
                                        verbose=False)
        except Exception as exc:
            raise ModelError(f"exporting the prefill failed: {type(exc).__name__}: {exc}") from None
    model = program.model_proto
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    entry = model.metadata_props.add()
    entry.key = META_KEY
    entry.value = json.dumps({"fingerprint": scorer.fingerprint, "n_layers": lay.n_layers, "n_heads": lay.n_heads})
    if tokenizer is not None:
        from .text_encoder import tokenizer_record

        entry = model.metadata_props.add()
        entry.key = TOKENIZER_KEY
        entry.value = json.dumps(tokenizer_record(tokenizer))
    save_onnx(model, path)


class OnnxHeadScorer:
    """Head angles from an exported prefill; plain and masked passes in one batched call.

    Parameters
    ----------
    path : path
        ``.onnx`` written by :func:`export_prefill`.
    providers : str or sequence
        onnxruntime providers (``auto`` picks those that work).
    threads : int, optional
        Intra-op threads.
    """

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] = "auto",
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        from ..monitor.providers import resolve_providers
        from ..monitor.runner import session_options

        try:
            self.session = ort.InferenceSession(os.fspath(path), session_options(threads),
                                                providers=resolve_providers(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load {path} in onnxruntime: {exc}") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        names = {i.name for i in self.session.get_inputs()}
        if meta is None or names != {"input_ids", "head_scale"}:
            raise ModelError(f"{path} is not a prefill exported by nnwatch heads (inputs {sorted(names)}, "
                             f"metadata key {META_KEY!r} {'missing' if meta is None else 'present'})")
        info = json.loads(meta)
        self.fingerprint = info["fingerprint"]
        carried = self.session.get_modelmeta().custom_metadata_map.get(TOKENIZER_KEY)
        self.tokenizer = json.loads(carried) if carried else None  # exported without one: torch tokenizes
        self.n_layers, self.n_heads = int(info["n_layers"]), int(info["n_heads"])

    def finals(self, input_ids: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Normed last-token states for one prompt under several head scalings.

        Parameters
        ----------
        input_ids : numpy.ndarray
            ``(1, T)`` token ids.
        scales : numpy.ndarray
            ``(B, L, H)`` float32 head scales.

        Returns
        -------
        numpy.ndarray
            ``(B, D)`` float32.
        """
        ids = np.asarray(input_ids, np.int64)
        if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 1:
            raise InputError(f"input_ids must be (1, T), got {ids.shape}")
        batch = np.repeat(ids, len(scales), axis=0)
        return self.session.run(["final"], {"input_ids": batch, "head_scale": scales.astype(np.float32)})[0]

    def angles(self, input_ids: np.ndarray, heads: Sequence[tuple[int, int]]) -> np.ndarray:
        """Angle per head between the plain and the head-masked final state.

        Parameters
        ----------
        input_ids : numpy.ndarray
            ``(1, T)`` token ids (the same tokenization as the torch scorer).
        heads : sequence of (layer, head)
            Heads to mask, one per batch row.

        Returns
        -------
        numpy.ndarray
            ``(len(heads),)`` degrees.
        """
        scales = np.ones((len(heads) + 1, self.n_layers, self.n_heads), np.float32)
        for k, (layer, head) in enumerate(heads, start=1):
            if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
                raise InputError(f"head L{layer}H{head} does not exist: layers 0..{self.n_layers - 1}, "
                                 f"heads 0..{self.n_heads - 1}")
            scales[k, layer, head] = EPSILON
        out = self.finals(input_ids, scales)
        return angle_degrees(out[:1], out[1:])

    def features(self, input_ids: np.ndarray, heads: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Residual states of the plain pass and each head's angle, from one batched call.

        Parameters
        ----------
        input_ids : numpy.ndarray
            ``(1, T)`` token ids.
        heads : sequence of (layer, head)
            Heads to mask (may be empty: one row, the plain pass).

        Returns
        -------
        tuple of numpy.ndarray
            ``states (L + 1, D)`` float32 and ``angles (len(heads),)`` degrees.

        Raises
        ------
        ModelError
            The graph was exported without ``states`` (re-export it with ``nnwatch heads export``).
        """
        if "states" not in {o.name for o in self.session.get_outputs()}:
            raise ModelError("this prefill graph has no 'states' output (exported by an older nnwatch): export it "
                             "again with `nnwatch heads export`")
        ids = np.asarray(input_ids, np.int64)
        if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 1:
            raise InputError(f"input_ids must be (1, T), got {ids.shape}")
        scales = np.ones((len(heads) + 1, self.n_layers, self.n_heads), np.float32)
        for k, (layer, head) in enumerate(heads, start=1):
            scales[k, layer, head] = EPSILON
        final, states = self.session.run(["final", "states"], {"input_ids": np.repeat(ids, len(scales), axis=0),
                                                              "head_scale": scales})
        return states[0], (angle_degrees(final[:1], final[1:]) if heads else np.zeros(0))


def onnx_sweep(encode: Any, ox: OnnxHeadScorer, prompts: Sequence[Any], heads: Sequence[tuple[int, int]],
               label: str = "prompts") -> Any:
    """A :class:`~nnwatch.heads.collect.Sweep` computed by onnxruntime (no MLP activations).

    Every prompt is encoded before any pass, as in :func:`~nnwatch.heads.collect.sweep`;
    each prompt is one session call (plain row plus one row per head).

    Parameters
    ----------
    encode : callable
        Prompt -> model inputs (the scorer's encoder; only ``input_ids`` is used).
    ox : OnnxHeadScorer
        The exported prefill.
    prompts : sequence
        Text prompts (image prompts need the torch path).
    heads : sequence of (layer, head)
        Heads to mask.
    label : str
        What the prompts are, for messages.

    Returns
    -------
    Sweep
        States, angles, lengths and timings; ``mlp`` is None.
    """
    import time

    ids = [np.asarray(enc["input_ids"], np.int64) for enc in encode_all(encode, prompts, label, text_only=True)]
    n = len(ids)
    angles = np.zeros((n, len(heads)))
    states, seconds = None, np.zeros(n)
    for i, x in enumerate(ids):
        start = time.perf_counter()
        st, angles[i] = ox.features(x, heads)
        if states is None:
            states = np.zeros((n,) + st.shape, np.float32)
        states[i] = st
        seconds[i] = time.perf_counter() - start
    # One batched call holds the plain and the masked rows: all of it counts as inference.
    return Sweep(angles, states, np.array([x.shape[1] for x in ids]), list(heads), seconds, None, seconds,
                 tuple(prompt_text(p) for p in prompts))
