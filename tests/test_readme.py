"""The README's Python example runs as written (on a foreign ONNX classifier)."""

from __future__ import annotations

import re

import numpy as np

from tests.conftest import REPO


def test_readme_python_example(tmp_path, monkeypatch, digits_mlp):
    model, splits = digits_mlp
    monkeypatch.chdir(tmp_path)
    (tmp_path / "classifier.onnx").write_bytes(model.SerializeToString())
    np.savez(tmp_path / "train.npz", x=splits["train"][0], y=splits["train"][1])
    np.savez(tmp_path / "val.npz", x=splits["val"][0], y=splits["val"][1])
    text = (REPO / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    scope = {"frame": splits["test"][0][0], "x_train": splits["train"][0], "y_train": splits["train"][1],
             "x_val": splits["val"][0], "y_val": splits["val"][1]}
    exec(compile(code, "README.md", "exec"), scope)
    v = scope["v"]
    assert v.pred.shape == (1,) and v.confidence.shape == (1,) and "coverage" in v.scores
    assert "coverage" in v.p_values and v.flag[0] == (v.confidence[0] <= 0.05)
    assert (tmp_path / "profile.npz").is_file()
