"""Where the attention heads live in a Hugging Face causal LM or LLaVA-style model.

The head score needs four things from a model: the stack of decoder layers, each layer's
query projection, the final norm, and the head layout (heads per layer, head width). They are
found by module path so that Llama, Qwen, SmolLM and Mistral families, and the language
tower of LLaVA-style models, work without per-model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ModelError

# Module paths, relative to the loaded model, of the decoder stack and its final norm.
STACK_PATHS = (
    ("model.layers", "model.norm"),  # LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM
    ("model.language_model.layers", "model.language_model.norm"),  # LlavaForConditionalGeneration (transformers 5)
    ("language_model.model.layers", "language_model.model.norm"),  # older LLaVA layout
    ("layers", "norm"),  # a bare LlamaModel
)
QUERY_PATH = "self_attn.q_proj"


def _get(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@dataclass(frozen=True)
class HeadLayout:
    """The decoder stack of one model, as the head score uses it.

    Attributes
    ----------
    layers : list
        Decoder layer modules, first to last.
    queries : list
        Each layer's query projection (an ``nn.Linear``: output features = heads x width).
    norm : module
        The final norm applied to the last layer's output.
    n_heads : int
        Query heads per layer.
    head_dim : int
        Width of one head's query slice.
    stack_path : str
        Where the stack was found (for messages and fingerprints).
    """

    layers: list
    queries: list
    norm: Any
    n_heads: int
    head_dim: int
    stack_path: str

    @property
    def n_layers(self) -> int:
        """Decoder layers."""
        return len(self.layers)

    def check_head(self, layer: int, head: int) -> None:
        """Raise :class:`InputError` naming the valid range if ``(layer, head)`` does not exist.

        Parameters
        ----------
        layer, head : int
            Zero-based indices.
        """
        from ..errors import InputError

        if not (0 <= int(layer) < self.n_layers and 0 <= int(head) < self.n_heads):
            raise InputError(f"head L{layer}H{head} does not exist: this model has layers 0..{self.n_layers - 1} "
                             f"and heads 0..{self.n_heads - 1}")


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def find_layout(model: Any) -> HeadLayout:
    """Locate decoder layers, query projections and the final norm.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face causal LM or LLaVA-style model.

    Returns
    -------
    HeadLayout
        The layout.

    Raises
    ------
    ModelError
        No supported layout; the message lists the module paths that were looked for.
    """
    for stack_path, norm_path in STACK_PATHS:
        layers = _get(model, stack_path)
        norm = _get(model, norm_path)
        if layers is None or norm is None or len(layers) == 0:
            continue
        queries = [_get(layer, QUERY_PATH) for layer in layers]
        if any(q is None or not hasattr(q, "out_features") for q in queries):
            continue
        cfg = _text_config(getattr(model, "config", None))
        n_heads = getattr(cfg, "num_attention_heads", None)
        if not n_heads or queries[0].out_features % n_heads:
            raise ModelError(f"{stack_path}: cannot split {queries[0].out_features} query features into "
                             f"num_attention_heads={n_heads} heads")
        return HeadLayout(list(layers), queries, norm, int(n_heads), queries[0].out_features // int(n_heads),
                          stack_path)
    looked = ", ".join(f"{s}[i].{QUERY_PATH} with {n}" for s, n in STACK_PATHS)
    raise ModelError(f"unsupported attention layout in {type(model).__name__}: looked for {looked}. "
                     "Supported: decoder-only causal LMs with separate q_proj (Llama, Qwen, SmolLM, Mistral "
                     "families) and LLaVA-style models built on them")
