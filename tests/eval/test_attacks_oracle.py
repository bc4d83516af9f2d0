"""FGSM and PGD against torchattacks 3.5.1, the established implementation: identical examples.

torchattacks declares torchvision and requests~=2.25 as requirements although the attacks
used here import neither; as a test extra it would pull a second torch build and downgrade
requests. So the test installs the pinned wheel alone (``pip install --no-deps --target``,
from the package index, like the rest of the test set-up) into a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from nnwatch.eval.attacks import attack_correct, fgsm, pgd

TORCHATTACKS = "torchattacks==3.5.1"


@pytest.fixture(scope="module")
def torchattacks(tmp_path_factory):
    target = tmp_path_factory.mktemp("torchattacks")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           TORCHATTACKS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"could not install {TORCHATTACKS} from the package index: {done.stderr[-1500:]}"
    sys.path.insert(0, str(target))
    try:
        import torchattacks as ta
    finally:
        sys.path.remove(str(target))
    return ta


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (24, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    y[:4] = (y[:4] + 1) % 3  # some labels the model gets "wrong"
    return model, x, y


def test_fgsm_equals_torchattacks(torchattacks, model_and_data):
    model, x, y = model_and_data
    theirs = torchattacks.FGSM(model, eps=0.1)(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    ours, _ = fgsm(model, x, y, 0.1)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_equals_torchattacks(torchattacks, model_and_data, random_start):
    model, x, y = model_and_data
    torch.manual_seed(11)  # torchattacks draws its random start from the global generator
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=7, random_start=random_start)(
        torch.from_numpy(x), torch.from_numpy(y)).numpy()
    ours, _ = pgd(model, x, y, 0.1, alpha=0.02, steps=7, random_start=random_start, seed=11)
    np.testing.assert_array_equal(ours, theirs)


def test_attack_correct_attacks_only_correct_inputs(model_and_data):
    model, x, y = model_and_data
    res = attack_correct(model, x, y, pgd, "pgd", eps=0.3, steps=10)
    assert res.skipped == 4 and res.attempted == len(x) - 4
    assert set(res.source.tolist()) <= set(range(4, len(x)))
    with torch.no_grad():
        new = model(torch.from_numpy(res.x_adv)).argmax(1).numpy()
    assert (new != y[res.source]).all()  # every kept example changed the (correct) prediction
    np.testing.assert_allclose(res.linf, np.abs(res.x_adv - x[res.source]).reshape(len(new), -1).max(1), rtol=1e-6)
    assert res.success_rate == len(new) / res.attempted and len(new) > 0
