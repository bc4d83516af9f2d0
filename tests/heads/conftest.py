from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the head detector tests need nnwatch[llm] (in the test extra)")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    from .tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_scorer(tiny_llama_dir):
    from nnwatch.heads.encoders import chat_encoder
    from nnwatch.heads.loading import load_model
    from nnwatch.heads.torch_scorer import TorchHeadScorer

    lm = load_model(str(tiny_llama_dir))
    return TorchHeadScorer(lm.model, chat_encoder(lm.tokenizer, max_tokens=4096))


@pytest.fixture(scope="session")
def all_heads(tiny_scorer):
    lay = tiny_scorer.layout
    return [(layer, head) for layer in range(lay.n_layers) for head in range(lay.n_heads)]
