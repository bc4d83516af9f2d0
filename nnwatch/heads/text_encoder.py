"""Prompts -> token ids without torch or transformers: the ``tokenizers`` library and the chat template.

The exported prefill (``nnwatch heads export``) carries its tokenizer: the fast tokenizer's
JSON, the chat template and the special tokens the template reads (:func:`tokenizer_record`).
:func:`template_encoder` rebuilds the encoder from that record with the ``tokenizers``
library and a sandboxed Jinja environment set up as transformers sets up its own (trimmed
blocks, ``loopcontrols``, a ``tojson`` that does not escape HTML, ``raise_exception``), so the
onnxruntime path imports neither torch nor transformers. The same prompts give the same ids
as :func:`nnwatch.heads.encoders.chat_encoder` (tested against transformers), and the same
rules: empty prompts refused, over-long ones refused or cut to their last ``max_tokens``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

import numpy as np

from .._optional import require
from ..errors import InputError, ModelError
from .encoders import fit_length
from .prompts import ImagePrompt

SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")  # what chat templates read besides messages


def tokenizer_record(tokenizer: Any) -> dict[str, Any]:
    """What a text-only encoder needs, as JSON values, from a transformers fast tokenizer.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast
        The model's tokenizer.

    Returns
    -------
    dict
        ``tokenizer`` (the ``tokenizers`` JSON), ``chat_template`` (str or None), ``special``
        (name -> token text).

    Raises
    ------
    ModelError
        Not a fast tokenizer (no ``tokenizers`` JSON to carry).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("the model's tokenizer is not a fast (tokenizers) tokenizer: the exported prefill cannot "
                         "carry it; score with the torch model instead")
    special = {k: str(getattr(tokenizer, k)) for k in SPECIAL if getattr(tokenizer, k, None) is not None}
    template = getattr(tokenizer, "chat_template", None)
    return {"tokenizer": backend.to_str(), "chat_template": template if isinstance(template, str) else None,
            "special": special}


def _jinja_template(source: str) -> Any:
    jinja2 = require("jinja2", extra="llm")
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["namespace"] = jinja2.utils.Namespace
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateError as exc:  # e.g. transformers' {% generation %} tag, not supported here
        raise ModelError(f"the prefill's chat template cannot be compiled without transformers ({exc}); score with "
                         "the torch model instead (leave out --onnx)") from None


def template_encoder(record: dict[str, Any], max_tokens: int = 1024, truncate: bool = False,
                     system_prompt: str | None = None) -> Callable[[Any], dict[str, np.ndarray]]:
    """Prompt -> ``{"input_ids": (1, T) int64, "attention_mask": (1, T) int64}`` from a tokenizer record.

    Parameters
    ----------
    record : dict
        From :func:`tokenizer_record`.
    max_tokens : int
        Longest accepted prompt, in tokens after templating.
    truncate : bool
        Over-long prompts keep their last ``max_tokens`` tokens instead of being refused.
    system_prompt : str, optional
        System message; None uses the template's default.

    Returns
    -------
    callable
        The encoder.

    Raises
    ------
    ModelError
        The record's tokenizer cannot be read.
    """
    tokenizers = require("tokenizers", extra="llm")
    try:
        tok = tokenizers.Tokenizer.from_str(record["tokenizer"])
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ModelError(f"the prefill's tokenizer cannot be read: {exc}") from None
    template = _jinja_template(record["chat_template"]) if record.get("chat_template") else None
    special = dict(record.get("special", {}))

    def encode(prompt: Any) -> dict[str, np.ndarray]:
        if isinstance(prompt, ImagePrompt):
            raise InputError(f"a prompt with image {prompt.image} was given to a text-only model; give image prompts "
                             "to a vision-language model folder (LLaVA-style, with its processor)")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("empty prompt: give at least one non-space character")
        if template is not None:
            msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": prompt}]
            try:
                text = template.render(messages=msgs, add_generation_prompt=True, **special)
            except Exception as exc:  # jinja2 errors and the template's own raise_exception
                raise InputError(f"the chat template refused the prompt: {exc}") from None
            ids = tok.encode(text, add_special_tokens=False).ids
        else:
            ids = tok.encode(prompt).ids
        arr = fit_length(np.asarray(ids, np.int64)[None, :], max_tokens, truncate)
        return {"input_ids": arr, "attention_mask": np.ones_like(arr)}

    return encode
