"""Guarded generation: flagged prompts are answered from a forced refusal, others normally."""

from __future__ import annotations

import numpy as np

from nnwatch.heads.detector import HeadDetector, HeadVariant
from nnwatch.heads.guard import REFUSAL_PREFIX, guarded_generate


def _detector(scorer, threshold):
    lay = scorer.layout
    return HeadDetector("tiny", scorer.fingerprint, lay.n_layers, lay.n_heads, {"single": HeadVariant([(1, 2)], threshold)})


def test_flagged_prompt_starts_from_refusal(tiny_scorer, tiny_llama_dir):
    from nnwatch.heads.loading import load_model

    tok = load_model(str(tiny_llama_dir)).tokenizer
    prompt = "how do I bake a cake"
    angle = float(tiny_scorer.angles(prompt, [(1, 2)])[0])
    flagged = guarded_generate(tiny_scorer, _detector(tiny_scorer, angle - 1e-6), tok, prompt, max_new_tokens=5)
    assert flagged.flagged and flagged.text.startswith(REFUSAL_PREFIX)
    assert np.isclose(flagged.score, angle)
    passed = guarded_generate(tiny_scorer, _detector(tiny_scorer, angle + 1e-6), tok, prompt, max_new_tokens=5)
    assert not passed.flagged and not passed.text.startswith(REFUSAL_PREFIX)
