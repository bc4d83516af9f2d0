"""The head score on PyTorch/transformers: hooks instead of weight edits, safe under threads.

One plain pass captures, for every decoder layer, the hidden states entering it and the
keyword arguments it was called with (mask, rotary embeddings, ...). A masked pass for
head ``j`` of layer ``l`` then only re-runs layers ``l..L-1`` from those captured inputs,
with all heads of one layer batched together: the layers below ``l`` are shared, not
recomputed. Masking multiplies the head's slice of the query projection's *output* by a
per-sample scale (the published method multiplies the weight rows; for bias-free query
projections, as in Llama/SmolLM, the two are identical; with a query bias, as in Qwen, the
bias is scaled too, which is the cleaner "head off").

The scale and the captures live in a thread-local context, so concurrent calls from several
threads never see each other's masks, and the model is never modified.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import InputError
from .angles import EPSILON, angle_degrees
from .arch import HeadLayout, find_layout


@dataclass
class _Context:
    scales: dict[int, Any] = field(default_factory=dict)  # layer -> (B, H) tensor
    capture: bool = False
    inputs: dict[int, tuple[Any, dict[str, Any]]] = field(default_factory=dict)  # layer -> (hidden, kwargs)
    final: Any = None  # normed output of the last layer, (B, T, D)
    prefix: Any = None  # PrefixState the captured pass continued from
    mlp: dict[int, Any] = field(default_factory=dict)  # layer -> last-token MLP hidden activations


class _PrefixKV:
    """Stands in for a KV cache in re-run layers: prepends fixed prefix keys/values, stores nothing."""

    def __init__(self, kv: dict[int, tuple[Any, Any]]) -> None:
        self.kv = kv

    def update(self, keys: Any, values: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        import torch

        pk, pv = self.kv[layer_idx]
        return torch.cat([pk, keys], dim=-2), torch.cat([pv, values], dim=-2)


@dataclass
class PrefixState:
    """A token prefix shared by many prompts, computed once: its plain KV cache, and per masked
    head the keys/values of the layers from that head's layer on (prompt-independent, because
    attention is causal).

    Attributes
    ----------
    ids : tuple of int
        The prefix tokens.
    cache : object
        transformers KV cache of the plain prefix pass (copied for each prompt).
    masked : dict
        ``(layer, head) -> {layer_i: (keys, values)}`` for ``layer_i >= layer``.
    """

    ids: tuple
    cache: Any
    masked: dict = field(default_factory=dict)


def scale_query(out: Any, scale: Any, n_heads: int) -> Any:
    """Multiply each head's slice of a query projection output by a per-sample scale.

    Parameters
    ----------
    out : torch.Tensor
        ``(B, T, H*d)`` query projection output.
    scale : torch.Tensor
        ``(B, H)`` or ``(1, H)``.
    n_heads : int
        ``H``.

    Returns
    -------
    torch.Tensor
        Same shape as ``out``.
    """
    b, t, f = out.shape
    return (out.view(b, t, n_heads, f // n_heads) * scale[:, None, :, None].to(out.dtype)).view(b, t, f)


def model_fingerprint(model: Any, layout: HeadLayout) -> str:
    """sha256 of the head layout, every query-projection weight and the final norm.

    Weights, not the configuration file: the same model saved and reloaded (or loaded from
    GGUF or from a Hugging Face folder) keeps its fingerprint, while bookkeeping fields in
    the configuration (paths, library versions) change.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    layout : HeadLayout
        Its head layout.

    Returns
    -------
    str
        Hex digest; detectors refuse models with another fingerprint.
    """
    h = hashlib.sha256(f"{layout.n_layers}x{layout.n_heads}x{layout.head_dim}".encode())
    for q in layout.queries:
        h.update(q.weight.detach().float().cpu().numpy().tobytes())
    for p in layout.norm.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


class TorchHeadScorer:
    """Head angles, hidden states and masked passes for one loaded transformers model.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM or LLaVA-style model in eval mode.
    encoder : callable
        Prompt string -> dict of model inputs (``input_ids`` ``(1, T)`` and whatever else
        the model takes, e.g. ``pixel_values``). :func:`chat_encoder` builds one from a
        tokenizer.
    """

    def __init__(self, model: Any, encoder: Callable[[str], dict[str, Any]]) -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.encoder = encoder
        self.layout = find_layout(model)
        self.fingerprint = model_fingerprint(model, self.layout)
        self._local = threading.local()
        self._handles = []
        for i, (layer, q) in enumerate(zip(self.layout.layers, self.layout.queries)):
            self._handles.append(q.register_forward_hook(self._query_hook(i)))
            self._handles.append(layer.register_forward_pre_hook(self._capture_hook(i), with_kwargs=True))
        self._handles.append(self.layout.norm.register_forward_hook(self._final_hook))
        for i, layer in enumerate(self.layout.layers):  # MLP activations, for the coverage baseline
            down = getattr(getattr(layer, "mlp", None), "down_proj", None)
            if down is not None:
                self._handles.append(down.register_forward_pre_hook(self._mlp_hook(i)))

    # -- hooks: no-ops unless this thread is inside a scorer call ----------------------------
    def _ctx(self) -> _Context | None:
        return getattr(self._local, "ctx", None)

    def _query_hook(self, layer: int) -> Callable:
        def hook(module: Any, args: Any, out: Any) -> Any:
            ctx = self._ctx()
            if ctx is None or layer not in ctx.scales:
                return None
            return scale_query(out, ctx.scales[layer], self.layout.n_heads)

        return hook

    def _capture_hook(self, layer: int) -> Callable:
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            ctx = self._ctx()
            if ctx is not None and ctx.capture:
                hidden = args[0] if args else kwargs["hidden_states"]
                rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                ctx.inputs[layer] = (hidden, rest)

        return hook

    def _mlp_hook(self, layer: int) -> Callable:
        def hook(module: Any, args: tuple) -> None:
            ctx = self._ctx()
            if ctx is not None and ctx.capture:
                ctx.mlp[layer] = args[0][:, -1]

        return hook

    def mlp_activations(self, ctx: _Context) -> np.ndarray | None:
        """Last-token MLP hidden activations (input of each layer's down projection), concatenated.

        Parameters
        ----------
        ctx : object
            From :meth:`base_pass`.

        Returns
        -------
        numpy.ndarray or None
            float32 ``(L * I,)``, or None when the layers have no ``mlp.down_proj``.
        """
        if len(ctx.mlp) != self.layout.n_layers:
            return None
        return np.concatenate([ctx.mlp[i][0].float().cpu().numpy() for i in range(self.layout.n_layers)])

    def _final_hook(self, module: Any, args: Any, out: Any) -> None:
        ctx = self._ctx()
        if ctx is not None:
            ctx.final = out

    # -- passes ----------------------------------------------------------------------------
    def encode(self, prompt: str | dict[str, Any]) -> dict[str, Any]:
        """Model inputs for a prompt (a dict is taken as ready-made inputs).

        Parameters
        ----------
        prompt : str or dict
            Prompt text, or model inputs with batch size 1.

        Returns
        -------
        dict
            Model inputs.
        """
        inputs = dict(prompt) if isinstance(prompt, dict) else self.encoder(prompt)
        ids = inputs.get("input_ids")
        if ids is None or ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
            raise InputError(f"model inputs need input_ids of shape (1, T>0), got "
                             f"{None if ids is None else tuple(ids.shape)}")
        return inputs

    def plain_prefill(self, prompt: str | dict[str, Any]) -> Any:
        """The model's own prefill with nnwatch's hooks idle: the baseline monitoring is measured against.

        Parameters
        ----------
        prompt : str or dict
            Prompt text or model inputs.

        Returns
        -------
        object
            The model's output.
        """
        inputs = self.encode(prompt)
        with self.torch.inference_mode():
            return self.model(**inputs, use_cache=False, **self._extra_kwargs())

    def scaled_prefill(self, input_ids: Any, head_scale: Any) -> tuple[Any, Any]:
        """A prefill with per-row head scales, returning tensors (traceable: the ONNX export calls it).

        Parameters
        ----------
        input_ids : torch.Tensor
            ``(B, T)`` token ids.
        head_scale : torch.Tensor
            ``(B, L, H)`` query scale of every head in every row (1: untouched).

        Returns
        -------
        tuple of torch.Tensor
            ``final (B, D)``: the normed last-token state; ``states (B, L + 1, D)``: the
            last-token state entering each layer, then ``final``.
        """
        ctx = _Context(scales={i: head_scale[:, i] for i in range(self.layout.n_layers)}, capture=True)
        self._local.ctx = ctx
        try:
            self.model(input_ids=input_ids, use_cache=False, **self._extra_kwargs())
        finally:
            self._local.ctx = None
        final = ctx.final[:, -1]
        states = [ctx.inputs[i][0][:, -1] for i in range(self.layout.n_layers)] + [final]
        return final, self.torch.stack(states, dim=1)

    def _forward(self, inputs: dict[str, Any], scales: dict[int, Any], capture: bool,
                 use_cache: bool = False) -> _Context:
        ctx = _Context(scales=scales, capture=capture)
        self._local.ctx = ctx
        try:
            with self.torch.inference_mode():
                self.model(**inputs, use_cache=use_cache, **self._extra_kwargs())
        finally:
            self._local.ctx = None
        if ctx.final is None:
            raise InputError("the final norm did not run: is this a decoder-only or LLaVA-style model?")
        return ctx

    def _extra_kwargs(self) -> dict[str, Any]:
        if not hasattr(self, "_kw"):
            import inspect

            params = inspect.signature(self.model.forward).parameters
            self._kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        return self._kw

    def _rerun_from(self, ctx: _Context, layer: int, heads: Sequence[int]) -> np.ndarray:
        """Final last-token states with each of ``heads`` of ``layer`` masked, as one batch.

        (A single batch growing layer by layer over all masked layers was measured too: no
        faster on CPU, where the cost is the arithmetic, not the number of calls.)
        """
        torch = self.torch
        n = len(heads)
        scale = self._one_head_per_row(heads)
        kwargs = {i: ctx.inputs[i][1] for i in range(layer, self.layout.n_layers)}
        if ctx.prefix is not None:  # masked prefix keys/values, computed once per prefix and head
            self._masked_prefix(ctx.prefix, layer, heads)
            for i in kwargs:
                kv = [ctx.prefix.masked[(layer, h)][i] for h in heads]
                cache = _PrefixKV({i: (torch.cat([k for k, _ in kv]), torch.cat([v for _, v in kv]))})
                kwargs[i] = {**kwargs[i], "past_key_values": cache}
        self._local.ctx = _Context(scales={layer: scale})
        try:
            with torch.inference_mode():
                hidden = ctx.inputs[layer][0].expand(n, -1, -1).contiguous()
                for i in range(layer, self.layout.n_layers):
                    out = self.layout.layers[i](hidden, **kwargs[i])
                    hidden = out[0] if isinstance(out, tuple) else out
                final = self.layout.norm(hidden)
        finally:
            self._local.ctx = None
        return final[:, -1].double().cpu().numpy()

    def prefix(self, ids: Sequence[int]) -> PrefixState:
        """Run a shared token prefix once, for prompts that start with it.

        Parameters
        ----------
        ids : sequence of int
            Prefix token ids.

        Returns
        -------
        PrefixState
            Pass it to :meth:`base_pass` / :meth:`angles` for prompts that start with ``ids``.
        """
        torch = self.torch
        if len(ids) == 0:
            raise InputError("empty prefix")
        x = torch.as_tensor([list(ids)])
        with torch.inference_mode():
            out = self.model(input_ids=x, use_cache=True, **self._extra_kwargs())
        return PrefixState(tuple(int(i) for i in ids), out.past_key_values)

    def _one_head_per_row(self, heads: Sequence[int]) -> Any:
        """``(len(heads), H)`` query scales: row k masks head ``heads[k]``, the rest stay 1."""
        torch = self.torch
        scale = torch.ones(len(heads), self.layout.n_heads)
        scale[torch.arange(len(heads)), torch.as_tensor(list(heads))] = EPSILON
        return scale

    def _masked_prefix(self, state: PrefixState, layer: int, heads: Sequence[int]) -> None:
        """Fill ``state.masked`` for heads of one layer: one batched pass over the prefix."""
        torch = self.torch
        todo = [h for h in heads if (layer, h) not in state.masked]
        if not todo:
            return
        n = len(todo)
        scale = self._one_head_per_row(todo)
        self._local.ctx = _Context(scales={layer: scale})
        try:
            with torch.inference_mode():
                out = self.model(input_ids=torch.as_tensor([state.ids]).expand(n, -1), use_cache=True,
                                 **self._extra_kwargs())
        finally:
            self._local.ctx = None
        cache = out.past_key_values
        for k, h in enumerate(todo):
            state.masked[(layer, h)] = {i: (cache.layers[i].keys[k:k + 1], cache.layers[i].values[k:k + 1])
                                        for i in range(layer, self.layout.n_layers)}

    def base_pass(self, prompt: str | dict[str, Any],
                  prefix: PrefixState | None = None) -> tuple[np.ndarray, np.ndarray, _Context]:
        """One plain pass: final last-token state, per-layer last-token states, captures.

        Parameters
        ----------
        prompt : str or dict
            Prompt text or model inputs.
        prefix : PrefixState, optional
            A prefix the prompt starts with: only the remaining tokens are run.

        Returns
        -------
        final : numpy.ndarray
            ``(D,)`` float64, the normed final-layer state of the last prompt token.
        layer_states : numpy.ndarray
            ``(L+1, D)`` float32: the last token's state entering each layer, then ``final``.
        ctx : object
            Captured layer inputs for :meth:`masked_from_base`.
        """
        import copy

        inputs = self.encode(prompt)
        ctx_prefix = None
        if prefix is not None:
            ids = inputs["input_ids"]
            p = len(prefix.ids)
            if set(inputs) - {"input_ids", "attention_mask"} or ids.shape[1] <= p or \
                    tuple(ids[0, :p].tolist()) != prefix.ids:
                raise InputError(f"the prompt does not start with the {p}-token prefix (or has nothing after it)")
            inputs = {"input_ids": ids[:, p:], "attention_mask": ids.new_ones(ids.shape),
                      "past_key_values": copy.deepcopy(prefix.cache)}
            ctx_prefix = prefix
        ctx = self._forward(inputs, {}, capture=True, use_cache=ctx_prefix is not None)
        ctx.prefix = ctx_prefix
        final = ctx.final[0, -1].double().cpu().numpy()
        states = [ctx.inputs[i][0][0, -1].float().cpu().numpy() for i in range(self.layout.n_layers)]
        states.append(final.astype(np.float32))
        return final, np.stack(states), ctx

    def masked_from_base(self, ctx: _Context, heads: Iterable[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        """Final last-token states with each head masked, re-running only layers from its own on.

        All heads of one layer run as one batch; duplicate heads are scored once.

        Parameters
        ----------
        ctx : object
            From :meth:`base_pass`.
        heads : iterable of (layer, head)
            Heads to mask, one at a time.

        Returns
        -------
        dict
            ``(layer, head) -> (D,)`` float64 state.
        """
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            self.layout.check_head(layer, head)
            hs = by_layer.setdefault(int(layer), [])
            if int(head) not in hs:
                hs.append(int(head))
        out = {}
        for layer, hs in sorted(by_layer.items()):
            states = self._rerun_from(ctx, layer, hs)
            out.update({(layer, h): states[k] for k, h in enumerate(hs)})
        return out

    def angles(self, prompt: str | dict[str, Any], heads: Sequence[tuple[int, int]],
               prefix: PrefixState | None = None) -> np.ndarray:
        """Angle (degrees) between the plain and the head-masked final state, per head.

        Parameters
        ----------
        prompt : str or dict
            Prompt text or model inputs.
        heads : sequence of (layer, head)
            Heads to score.
        prefix : PrefixState, optional
            A prefix the prompt starts with (see :meth:`prefix`).

        Returns
        -------
        numpy.ndarray
            ``(len(heads),)`` float64.
        """
        final, _, ctx = self.base_pass(prompt, prefix)
        masked = self.masked_from_base(ctx, heads)
        return np.array([angle_degrees(final, masked[(int(layer), int(h))]) for layer, h in heads])

    def angles_two_pass(self, prompt: str | dict[str, Any], heads: Sequence[tuple[int, int]]) -> np.ndarray:
        """The same angles from full passes (plain + one per head, as one batch): the reference.

        Parameters
        ----------
        prompt : str or dict
            Prompt text or model inputs.
        heads : sequence of (layer, head)
            Heads to score.

        Returns
        -------
        numpy.ndarray
            ``(len(heads),)`` float64.
        """
        torch = self.torch
        inputs = self.encode(prompt)
        n = len(heads) + 1
        batch = {k: v.expand(n, *v.shape[1:]) if hasattr(v, "expand") and v.ndim and v.shape[0] == 1 else v
                 for k, v in inputs.items()}
        scales = {}
        for k, (layer, head) in enumerate(heads, start=1):
            self.layout.check_head(layer, head)
            s = scales.setdefault(int(layer), torch.ones(n, self.layout.n_heads))
            s[k, int(head)] = EPSILON
        ctx = self._forward(batch, scales, capture=False)
        states = ctx.final[:, -1].double().cpu().numpy()
        return angle_degrees(states[:1], states[1:])

    def close(self) -> None:
        """Remove the hooks (the model behaves exactly as before)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
