"""A tiny random-weight LLaVA (CLIP vision tower + Llama language tower) built from a config:
the head score runs with an image in the prompt, through hooks on the language tower."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    from .tiny import llama_config

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=llama_config(vocab_size=320), image_token_index=310,
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(config).eval()
    folder = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(folder)
    return model, folder


def _inputs(config, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    n_image_tokens = (32 // 8) ** 2  # CLIP patches; the "default" strategy drops the class token
    text = torch.randint(0, 300, (1, 6), generator=g)
    ids = torch.cat([text[:, :2], torch.full((1, n_image_tokens), config.image_token_index), text[:, 2:]], dim=1)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randn(1, 3, 32, 32, generator=g)}


def test_layout_is_found_in_the_language_tower(tiny_llava):
    from nnwatch.heads.arch import find_layout

    model, _ = tiny_llava
    lay = find_layout(model)
    assert lay.stack_path == "model.language_model.layers" and lay.n_layers == 3 and lay.n_heads == 4


def test_image_prompt_scores_agree_between_shared_and_full_passes(tiny_llava):
    from nnwatch.heads.torch_scorer import TorchHeadScorer

    model, _ = tiny_llava
    scorer = TorchHeadScorer(model, encoder=lambda p: (_ for _ in ()).throw(AssertionError("inputs are given")))
    heads = [(layer, head) for layer in range(3) for head in range(4)]
    for seed in (0, 1):
        inputs = _inputs(model.config, seed)
        shared = scorer.angles(inputs, heads)
        full = scorer.angles_two_pass(inputs, heads)
        np.testing.assert_allclose(shared, full, atol=1e-4)
        assert shared.max() > 0
    a = scorer.angles(_inputs(model.config, 0), heads)
    other_image = _inputs(model.config, 0)
    other_image["pixel_values"] = other_image["pixel_values"] + 1.0
    assert not np.allclose(a, scorer.angles(other_image, heads))  # the image reaches the score
    scorer.close()


def test_local_llava_directory_loads_as_image_text_model(tiny_llava):
    from nnwatch.heads.arch import find_layout
    from nnwatch.heads.torch_scorer import model_fingerprint

    model, folder = tiny_llava
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    assert model_fingerprint(loaded, find_layout(loaded)) == model_fingerprint(model, find_layout(model))
