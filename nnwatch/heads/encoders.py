"""Prompts -> model inputs: chat templates for language models, the processor for image+text ones.

Every encoder refuses an empty prompt, a prompt over ``max_tokens`` (unless truncation is
asked for, and never for a prompt with an image: its image tokens would be cut) and, for a
text-only model, a prompt with an image.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import InputError
from .prompts import ImagePrompt


def fit_length(ids: Any, max_tokens: int, truncate: bool, has_image: bool = False) -> Any:
    """The length rule of every encoder: refuse a prompt over ``max_tokens``, or keep its last tokens.

    Parameters
    ----------
    ids : array-like
        ``(1, T)`` token ids (a torch tensor or a numpy array).
    max_tokens : int
        Longest accepted prompt.
    truncate : bool
        Keep the last ``max_tokens`` tokens instead of refusing (never for a prompt with an image).
    has_image : bool
        The prompt holds image tokens.

    Returns
    -------
    array-like
        ``ids``, or its last ``max_tokens`` columns.

    Raises
    ------
    InputError
        Over the limit and not truncated.
    """
    if ids.shape[1] <= max_tokens:
        return ids
    if truncate and not has_image:
        return ids[:, -max_tokens:]
    hint = ("a prompt with an image is never truncated (its image tokens would be cut): shorten its text"
            if has_image else "shorten it, or allow truncation (--truncate; truncate=True in Python), which keeps "
            "the last tokens")
    raise InputError(f"prompt is {ids.shape[1]} tokens, over the limit of {max_tokens}; {hint}")


def chat_encoder(tokenizer: Any, max_tokens: int = 1024, truncate: bool = False,
                 system_prompt: str | None = None) -> Callable[[str], dict[str, Any]]:
    """Prompt -> model inputs through the tokenizer's chat template (plain text without one).

    Parameters
    ----------
    tokenizer : transformers tokenizer
        The model's tokenizer.
    max_tokens : int
        Longest accepted prompt, in tokens after templating.
    truncate : bool
        Over-long prompts: keep the last ``max_tokens`` tokens (so the generation prompt stays)
        instead of raising.
    system_prompt : str, optional
        System message; None uses the template's default.

    Returns
    -------
    callable
        The encoder.
    """

    def encode(prompt: str) -> dict[str, Any]:
        if isinstance(prompt, ImagePrompt):
            raise InputError(f"a prompt with image {prompt.image} was given to a text-only model; give image prompts "
                             "to a vision-language model folder (LLaVA-style, with its processor)")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("empty prompt: give at least one non-space character")
        if getattr(tokenizer, "chat_template", None):
            msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": prompt}]
            enc = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
        else:
            enc = tokenizer(prompt, return_tensors="pt")
        ids = fit_length(enc["input_ids"], max_tokens, truncate, False)
        return {"input_ids": ids, "attention_mask": ids.new_ones(ids.shape)}

    return encode


def vision_encoder(processor: Any, max_tokens: int = 1024, truncate: bool = False,
                   system_prompt: str | None = None) -> Callable[[Any], dict[str, Any]]:
    """Prompt (text or :class:`~nnwatch.heads.prompts.ImagePrompt`) -> model inputs through a
    vision-language processor and its chat template.

    Parameters
    ----------
    processor : transformers processor
        LLaVA-style processor (image processor + tokenizer).
    max_tokens : int
        Longest accepted prompt, in tokens after templating (image tokens included).
    truncate : bool
        Over-long *text* prompts keep their last ``max_tokens`` tokens; an image prompt is
        never cut (its image tokens would be).
    system_prompt : str, optional
        System message.

    Returns
    -------
    callable
        The encoder.
    """

    def encode(prompt: Any) -> dict[str, Any]:
        image = prompt.image if isinstance(prompt, ImagePrompt) else None
        text = prompt.text if image is not None else prompt
        if not isinstance(text, str) or not text.strip():
            raise InputError("empty prompt: give at least one non-space character")
        if getattr(processor, "chat_template", None):
            content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
            msgs = ([{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt
                    else []) + [{"role": "user", "content": content}]
            templated = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        else:
            templated = (f"{processor.image_token}\n" if image else "") + text
        if image is not None:
            try:
                from PIL import Image
            except ImportError:
                raise InputError("prompts with images need Pillow: pip install 'nnwatch[llm]'") from None
            with Image.open(image) as im:
                enc = processor(images=im.convert("RGB"), text=templated, return_tensors="pt")
        else:
            enc = processor(text=templated, return_tensors="pt")
        ids = fit_length(enc["input_ids"], max_tokens, truncate, image is not None)
        out = {"input_ids": ids, "attention_mask": ids.new_ones(ids.shape)}
        if image is not None:
            out["pixel_values"] = enc["pixel_values"]
        return out

    return encode


def encoder_for(lm: Any, max_tokens: int, truncate: bool = False,
                system_prompt: str | None = None) -> Callable[[Any], dict[str, Any]]:
    """The encoder a loaded model needs: its processor's for image+text models, else its tokenizer's.

    Parameters
    ----------
    lm : LoadedModel
        From :func:`nnwatch.heads.loading.load_model`.
    max_tokens, truncate, system_prompt
        See :func:`chat_encoder`.

    Returns
    -------
    callable
        The encoder.
    """
    if lm.processor is not None:
        return vision_encoder(lm.processor, max_tokens, truncate, system_prompt)
    return chat_encoder(lm.tokenizer, max_tokens, truncate, system_prompt)
