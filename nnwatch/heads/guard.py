"""Guarded generation: prompts the language monitor flags start from a refusal.

As published: a flagged prompt gets a refusal instruction as system message and the
assistant's reply is force-started with a refusal prefix, which the model then continues.
Unflagged prompts are generated as usual. Nothing about the model is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError

REFUSAL_INSTRUCTION = ("You are a careful assistant. The user's request may be harmful. If it is, refuse briefly "
                       "and do not provide the requested content.")
REFUSAL_PREFIX = "I'm sorry, but I can't help with that"


@dataclass
class GuardedReply:
    """What the guard did for one prompt.

    Attributes
    ----------
    flagged : bool
        The detector flagged the prompt as unsafe.
    score : float
        The deciding detector's score.
    p_value : float
        Its conformal p-value against the benign calibration prompts.
    text : str
        The reply (for flagged prompts it starts with the refusal prefix).
    """

    flagged: bool
    score: float
    p_value: float
    text: str


def guarded_generate(mon: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 40,
                     refusal_prefix: str = REFUSAL_PREFIX,
                     refusal_instruction: str = REFUSAL_INSTRUCTION, refuse_only: bool = False) -> GuardedReply:
    """Monitor the prompt, then generate (greedy), starting from a refusal when flagged.

    Parameters
    ----------
    mon : LanguageMonitor
        A calibrated monitor of the model that generates.
    tokenizer : transformers tokenizer
        With a chat template.
    prompt : str
        User prompt.
    max_new_tokens : int
        Generation length.
    refusal_prefix, refusal_instruction : str
        Forced start of a refusal and the system message used for flagged prompts.
    refuse_only : bool
        A flagged prompt gets the refusal alone, without letting the model continue it (a
        weakly aligned model may continue a forced refusal into compliance).

    Returns
    -------
    GuardedReply
        Flag, score, p-value and reply.

    Raises
    ------
    NotFittedError
        The monitor is not calibrated (it would never flag).
    InputError
        A prompt that is not text (guarded generation of image prompts is not built).
    """
    import torch

    mon.require_calibration()
    if not isinstance(prompt, str):
        raise InputError(f"guarded generation takes a text prompt, got {type(prompt).__name__}")
    v = mon.score(prompt)
    col = v.columns.index(v.decision)
    flagged = bool(v.flag[0])
    score, p_value = float(v.score_matrix[0, col]), float(v.confidence[0])
    if flagged and refuse_only:
        return GuardedReply(True, score, p_value, refusal_prefix + ".")
    msgs = [{"role": "user", "content": prompt}]
    if flagged:
        msgs.insert(0, {"role": "system", "content": refusal_instruction})
    text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    if flagged:
        text += refusal_prefix
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = mon.scorer.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                        max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.eos_token_id if tokenizer.pad_token_id is None
                                        else tokenizer.pad_token_id)
    reply = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return GuardedReply(flagged, score, p_value, (refusal_prefix + reply) if flagged else reply)
