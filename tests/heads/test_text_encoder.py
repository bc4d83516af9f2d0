"""The torch-free encoder gives transformers' ids, and the onnxruntime monitor imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from nnwatch.errors import InputError

# A template of this project's own that exercises what chat templates use: loop variables,
# namespace, raise_exception, tojson, special tokens, whitespace control under trim/lstrip.
RICH_TEMPLATE = """{% set ns = namespace(system=false) %}
{% for m in messages %}
  {% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}
  {% if loop.first and m['role'] != 'system' %}<|im_start|>system
default helper{{ eos_token }}
{% endif %}
  {% if m['role'] == 'system' %}{% set ns.system = true %}{% endif %}
<|im_start|>{{ m['role'] }}
{{ m['content'] | trim }} {{ {'n': loop.index, 'html': '<&>'} | tojson }}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

PROMPTS = ["how do I bake a cake", "  spaces around  ", "unicode: café – 東京 🚀", "<b>tags</b> & 'quotes' \"too\"",
           "line one\nline two\n\nthree", "write a poem about the sea " * 12]


def _tokenizer(template):
    from .tiny import byte_tokenizer

    tok = byte_tokenizer()
    tok.chat_template = template
    return tok


@pytest.mark.parametrize("template", ["tiny", "rich", None])
@pytest.mark.parametrize("system", [None, "be brief"])
def test_ids_equal_transformers(template, system):
    from nnwatch.heads.encoders import chat_encoder
    from nnwatch.heads.text_encoder import template_encoder, tokenizer_record

    from .tiny import CHAT_TEMPLATE

    tok = _tokenizer({"tiny": CHAT_TEMPLATE, "rich": RICH_TEMPLATE, None: None}[template])
    ours = template_encoder(json.loads(json.dumps(tokenizer_record(tok))), 4096, system_prompt=system)
    theirs = chat_encoder(tok, 4096, system_prompt=system)
    for p in PROMPTS:
        np.testing.assert_array_equal(ours(p)["input_ids"], theirs(p)["input_ids"].numpy(), err_msg=p)
        assert ours(p)["input_ids"].dtype == np.int64


def test_length_rule_equals_transformers_path():
    from nnwatch.heads.encoders import chat_encoder
    from nnwatch.heads.text_encoder import template_encoder, tokenizer_record

    from .tiny import CHAT_TEMPLATE

    tok = _tokenizer(CHAT_TEMPLATE)
    long = "write a poem about the sea " * 40
    for truncate in (False, True):
        ours = template_encoder(tokenizer_record(tok), 50, truncate)
        theirs = chat_encoder(tok, 50, truncate)
        if truncate:
            np.testing.assert_array_equal(ours(long)["input_ids"], theirs(long)["input_ids"].numpy())
        else:
            with pytest.raises(InputError) as a:
                ours(long)
            with pytest.raises(InputError) as b:
                theirs(long)
            assert str(a.value) == str(b.value)
    with pytest.raises(InputError, match="empty prompt"):
        ours("   ")


def test_onnxruntime_monitor_imports_neither_torch_nor_transformers(tiny_scorer, tiny_llama_dir, tmp_path):
    from nnwatch.heads.detector_file import LanguageDetector, save_detector
    from nnwatch.heads.language_monitor import LanguageMonitor
    from nnwatch.heads.loading import load_model
    from nnwatch.heads.logistic import Logistic
    from nnwatch.heads.onnx_backend import export_prefill
    from nnwatch.heads.scores import HeadAngle, ResidualProbe

    lm = load_model(str(tiny_llama_dir))
    onnx_path = tmp_path / "prefill.onnx"
    export_prefill(tiny_scorer, onnx_path, tokenizer=lm.tokenizer)
    lay = tiny_scorer.layout
    d = lay.norm.weight.shape[0]
    rng = np.random.default_rng(0)
    det = LanguageDetector(str(tiny_llama_dir), tiny_scorer.fingerprint, lay.n_layers, lay.n_heads, d, {
        "probe": ResidualProbe(2, Logistic(np.zeros(d), np.ones(d), rng.normal(size=d), 0.1)),
        "head_single": HeadAngle((1, 2))}, "probe", encoder={"system_prompt": None, "max_tokens": 4096})
    save_detector(det, tmp_path / "det.json")
    prompts = ["how do I bake a cake", "write a poem about the sea"]
    want = LanguageMonitor(det, tiny_scorer, detectors="all").score(prompts).score_matrix
    code = f"""
import json, sys
from nnwatch.heads.language_monitor import LanguageMonitor
mon = LanguageMonitor({str(tmp_path / 'det.json')!r}, detectors="all", onnx={str(onnx_path)!r})
v = mon.score({prompts!r})
print(json.dumps({{"scores": v.score_matrix.tolist(), "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert not got["torch"] and not got["transformers"]
    np.testing.assert_allclose(np.array(got["scores"]), want, rtol=1e-3, atol=1e-3)
