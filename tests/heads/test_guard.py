"""Guarded generation: prompts the monitor flags are answered from a forced refusal, others normally."""

from __future__ import annotations

import numpy as np

from nnwatch.calibration.groups import calibration_from_scores
from nnwatch.heads.detector_file import LanguageDetector
from nnwatch.heads.guard import REFUSAL_PREFIX, guarded_generate
from nnwatch.heads.language_monitor import LanguageMonitor
from nnwatch.heads.scores import HeadAngle


def _monitor(scorer, benign_angles):
    lay = scorer.layout
    det = LanguageDetector("tiny", scorer.fingerprint, lay.n_layers, lay.n_heads, 0, {"head_single": HeadAngle((1, 2))},
                           "head_single")
    mon = LanguageMonitor(det, scorer, detectors=["head_single"])
    scores = np.asarray(benign_angles, float)[:, None]
    mon.set_calibration(calibration_from_scores(["head_single"], scores, np.zeros(len(scores), np.int64), 1, fpr=0.05,
                                                min_class_samples=1, settings=mon.settings, warn=False))
    return mon


def test_flagged_prompt_starts_from_refusal(tiny_scorer, tiny_llama_dir):
    from nnwatch.heads.loading import load_model

    tok = load_model(str(tiny_llama_dir)).tokenizer
    prompt = "how do I bake a cake"
    angle = float(tiny_scorer.angles(prompt, [(1, 2)])[0])
    # above all 19 benign calibration angles: p = 1/20 <= 5%, flagged
    flagged = guarded_generate(_monitor(tiny_scorer, angle - 1 - np.arange(19)), tok, prompt, max_new_tokens=5)
    assert flagged.flagged and flagged.text.startswith(REFUSAL_PREFIX)
    assert np.isclose(flagged.score, angle) and np.isclose(flagged.p_value, 1 / 20)
    only = guarded_generate(_monitor(tiny_scorer, angle - 1 - np.arange(19)), tok, prompt, refuse_only=True)
    assert only.flagged and only.text == REFUSAL_PREFIX + "."
    passed = guarded_generate(_monitor(tiny_scorer, angle + 1 + np.arange(19)), tok, prompt, max_new_tokens=5)
    assert not passed.flagged and not passed.text.startswith(REFUSAL_PREFIX) and passed.p_value == 1.0
