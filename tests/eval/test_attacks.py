"""Attacks: perturbation bounds, and DeepFool against the analytic answer for a linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnwatch.eval.attacks import deepfool, fgsm, pgd


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, 16))
        model[1].bias.zero_()
    x = np.random.default_rng(0).uniform(0.3, 0.7, (40, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    return model, x, y


@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_linf_attacks_stay_in_the_ball_and_range(linear, attack):
    model, x, y = linear
    adv, ok = attack(model, x, y, 0.1)
    assert adv.shape == x.shape and ok.shape == (len(x),)
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        pred = model(torch.from_numpy(adv)).argmax(1).numpy()
    np.testing.assert_array_equal(ok, pred != y)


def test_deepfool_finds_the_minimal_l2_step_of_a_linear_model(linear):
    model, x, y = linear
    adv, ok = deepfool(model, x, y, overshoot=0.02, lo=-10, hi=10)
    assert ok.all()
    w = (model[1].weight[1] - model[1].weight[0]).detach().numpy()
    margin = np.abs(x.reshape(len(x), -1) @ w)
    want = margin / np.linalg.norm(w)  # distance to the decision boundary
    got = np.linalg.norm((adv - x).reshape(len(x), -1), axis=1)
    np.testing.assert_allclose(got, want * 1.02, rtol=1e-3, atol=1e-4)
