"""Adversarial attacks in torch (imported only when used): FGSM and PGD under L-infinity.

Both take a ``torch.nn.Module`` classifier returning logits, inputs in ``[lo, hi]`` and true
labels, and return numpy adversarial inputs plus a mask of successful attacks (prediction
changed away from the true label). Only successful examples should count as positives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("attacks need torch: pip install 'nnwatch[torch]'") from None
    return torch


def _grad_sign(model: Any, x: Any, y: Any) -> Any:
    torch = _torch()
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def _success(model: Any, x_adv: Any, y: Any) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return (model(x_adv).argmax(1) != y).numpy()


def fgsm(model: Any, x: np.ndarray, y: np.ndarray, eps: float, lo: float = 0.0, hi: float = 1.0,
         batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Fast gradient sign method (Goodfellow et al., ICLR 2015).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier (eval mode is set).
    x : numpy.ndarray
        float32 inputs.
    y : numpy.ndarray
        True labels.
    eps : float
        L-infinity radius.
    lo, hi : float
        Valid input range.
    batch_size : int
        Samples per step.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_adv float32, success bool)``.
    """
    return pgd(model, x, y, eps, alpha=eps, steps=1, random_start=False, lo=lo, hi=hi, batch_size=batch_size)


def pgd(model: Any, x: np.ndarray, y: np.ndarray, eps: float, alpha: float | None = None, steps: int = 10,
        random_start: bool = True, lo: float = 0.0, hi: float = 1.0, seed: int = 0,
        batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Projected gradient descent (Madry et al., ICLR 2018), L-infinity.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier.
    x : numpy.ndarray
        float32 inputs.
    y : numpy.ndarray
        True labels.
    eps : float
        L-infinity radius.
    alpha : float or None
        Step size; default ``2.5 * eps / steps``.
    steps : int
        Iterations.
    random_start : bool
        Start from a uniform point in the ball.
    lo, hi : float
        Valid input range.
    seed : int
        Seed of the random start.
    batch_size : int
        Samples per step.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_adv float32, success bool)``.
    """
    torch = _torch()
    if eps <= 0 or steps < 1:
        raise InputError(f"eps must be > 0 and steps >= 1, got {eps}, {steps}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    out_x, out_ok = [], []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        yb = torch.from_numpy(np.asarray(y[start : start + batch_size], np.int64))
        adv = xb.clone()
        if random_start:
            adv = (adv + (torch.rand(adv.shape, generator=gen) * 2 - 1) * eps).clamp(lo, hi)
        for _ in range(steps):
            adv = adv + alpha * _grad_sign(model, adv, yb)
            adv = torch.min(torch.max(adv, xb - eps), xb + eps).clamp(lo, hi).detach()
        out_x.append(adv.numpy())
        out_ok.append(_success(model, adv, yb))
    return np.concatenate(out_x).astype(np.float32), np.concatenate(out_ok)


def deepfool(model: Any, x: np.ndarray, y: np.ndarray, max_iter: int = 50, overshoot: float = 0.02,
             lo: float = 0.0, hi: float = 1.0, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """DeepFool, L2 minimal perturbation (Moosavi-Dezfooli, Fawzi, Frossard, CVPR 2016).

    Each step linearizes the classifier around the current point and moves to the nearest
    linearized decision boundary; the total step is scaled by ``1 + overshoot``.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier.
    x : numpy.ndarray
        float32 inputs.
    y : numpy.ndarray
        True labels (the attack starts from correctly classified samples' labels).
    max_iter : int
        Maximum linearization steps.
    overshoot : float
        Relative overshoot past the boundary.
    lo, hi : float
        Valid input range (applied after each step).
    batch_size : int
        Samples per batch.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_adv float32, success bool)``.
    """
    torch = _torch()
    model = model.eval()
    out_x, out_ok = [], []
    for start in range(0, len(x), batch_size):
        x0 = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        label = torch.from_numpy(np.asarray(y[start : start + batch_size], np.int64))
        r_tot = torch.zeros_like(x0)
        active = torch.ones(len(x0), dtype=torch.bool)
        adv = x0.clone()
        for _ in range(max_iter):
            xa = adv.clone().requires_grad_(True)
            logits = model(xa)
            active = active & (logits.argmax(1) == label)
            if not active.any():
                break
            n_cls = logits.shape[1]
            grads = [torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=k < n_cls - 1)[0] for k in range(n_cls)]
            g = torch.stack(grads, 1)  # (B, K, ...)
            f = logits.detach()
            g_orig = g[torch.arange(len(x0)), label]
            f_orig = f[torch.arange(len(x0)), label]
            w = g - g_orig[:, None]
            fd = (f - f_orig[:, None]).abs()
            norms = w.flatten(2).norm(dim=2) + 1e-8
            ratio = fd / norms
            ratio[torch.arange(len(x0)), label] = float("inf")
            k_best = ratio.argmin(1)
            w_best = w[torch.arange(len(x0)), k_best]
            step = (ratio[torch.arange(len(x0)), k_best] + 1e-4)[:, None] / norms[torch.arange(len(x0)), k_best][:, None]
            r = step.view(-1, *([1] * (x0.dim() - 1))) * w_best
            r_tot = r_tot + torch.where(active.view(-1, *([1] * (x0.dim() - 1))), r, torch.zeros_like(r))
            adv = (x0 + (1 + overshoot) * r_tot).clamp(lo, hi).detach()
        out_x.append(adv.numpy())
        out_ok.append(_success(model, adv, label))
    return np.concatenate(out_x).astype(np.float32), np.concatenate(out_ok)
