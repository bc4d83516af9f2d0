"""Guarded generation: prompts the head detector flags start from a refusal.

As published: a flagged prompt gets a refusal instruction as system message and the
assistant's reply is force-started with a refusal prefix, which the model then continues.
Unflagged prompts are generated as usual. Nothing about the model is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        Detector score.
    text : str
        The reply (for flagged prompts it starts with the refusal prefix).
    """

    flagged: bool
    score: float
    text: str


def guarded_generate(scorer: Any, det: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 40,
                     variant: str = "single", refusal_prefix: str = REFUSAL_PREFIX,
                     refusal_instruction: str = REFUSAL_INSTRUCTION) -> GuardedReply:
    """Score the prompt, then generate (greedy), starting from a refusal when flagged.

    Parameters
    ----------
    scorer : TorchHeadScorer
        Scorer of the model that generates.
    det : HeadDetector
        Fitted detector for that model.
    tokenizer : transformers tokenizer
        With a chat template.
    prompt : str
        User prompt.
    max_new_tokens : int
        Generation length.
    variant : str
        Detector variant deciding the flag.
    refusal_prefix, refusal_instruction : str
        Forced start of a refusal and the system message used for flagged prompts.

    Returns
    -------
    GuardedReply
        Flag, score and reply.
    """
    import torch

    det.check_model(scorer.fingerprint)
    v = det.variants[variant]
    angles = scorer.angles(prompt, v.heads)
    score = float(v.score(angles[None, :])[0])
    flagged = score > v.threshold
    msgs = [{"role": "user", "content": prompt}]
    if flagged:
        msgs.insert(0, {"role": "system", "content": refusal_instruction})
    text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    if flagged:
        text += refusal_prefix
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = scorer.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                    do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    reply = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return GuardedReply(flagged, score, (refusal_prefix + reply) if flagged else reply)
