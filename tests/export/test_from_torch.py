"""Export from PyTorch: module-path layer names, dynamic batch, values equal torch's."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nnwatch.errors import InputError
from nnwatch.eval.models import digits_cnn
from nnwatch.export.from_torch import export_module, load_factory


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = digits_cnn().eval()
    folder = tmp_path_factory.mktemp("export")
    manifest = export_module(net, torch.zeros(1, 1, 8, 8), folder / "m.onnx", plain_out=folder / "p.onnx")
    return net, manifest, folder


def test_auto_layers_are_module_paths(exported):
    _, manifest, _ = exported
    # Sequential: 0 conv,1 relu,2 conv,3 relu,4 pool,5 conv,6 relu,7 flatten,8 fc,9 relu,10 fc
    assert manifest.layer_names == ["1", "3", "6", "9"]
    assert manifest.layer_sizes == [16, 32, 32, 64]
    assert manifest.penultimate == "9"
    assert manifest.batch is None


@pytest.mark.parametrize("batch", [1, 5])
def test_values_match_torch(exported, batch):
    net, manifest, folder = exported
    x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
    sess = ort.InferenceSession(str(folder / "m.onnx"), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {manifest.input_name: x})))
    with torch.no_grad():
        t = torch.from_numpy(x)
        acts = {}
        for i, layer in enumerate(net):
            t = layer(t)
            acts[str(i)] = t.numpy()
    np.testing.assert_allclose(outs[manifest.logits], acts["10"], rtol=1e-4, atol=1e-5)
    joined = np.split(outs[manifest.joined], np.cumsum(manifest.layer_sizes)[:-1], axis=1)
    for tap, got in zip(manifest.taps, joined):
        want = acts[tap.layer]
        want = want.mean(axis=(2, 3)) if want.ndim == 4 else want
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_plain_model_has_only_logits(exported):
    _, _, folder = exported
    sess = ort.InferenceSession(str(folder / "p.onnx"), providers=["CPUExecutionProvider"])
    assert len(sess.get_outputs()) == 1


def test_named_layers(tmp_path):
    manifest = export_module(digits_cnn().eval(), torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx", layers=["3", "8"])
    assert manifest.layer_names == ["3", "8", "9"]  # the classifier's input features are added
    assert manifest.penultimate == "9"
    manifest = export_module(digits_cnn().eval(), torch.zeros(1, 1, 8, 8), tmp_path / "p.onnx", layers=["3", "8"],
                             include_penultimate=False)
    assert manifest.layer_names == ["3", "8"] and manifest.penultimate is None
    with pytest.raises(InputError, match="not found; available"):
        export_module(digits_cnn().eval(), torch.zeros(1, 1, 8, 8), tmp_path / "n.onnx", layers=["nope"])


def test_load_factory_errors():
    with pytest.raises(InputError, match="MODULE:FACTORY"):
        load_factory("no_colon")
    with pytest.raises(InputError, match="cannot import"):
        load_factory("surely_not_a_module_xyz:f")
    assert isinstance(load_factory("nnwatch.eval.models:digits_cnn"), torch.nn.Module)
