"""Adversarial attacks in torch (imported only when used): FGSM, PGD (L-infinity), DeepFool (L2).

Each attack takes a ``torch.nn.Module`` classifier returning logits, inputs in ``[lo, hi]``
and labels, and returns numpy adversarial inputs plus a mask of successful attacks
(prediction differs from the label). For evaluation sets use :func:`attack_correct`: it
attacks only inputs the model classifies correctly, so "success" means the prediction
changed, and it keeps only the successful examples, with their norms and the success rate.

FGSM and PGD follow torchattacks 3.5.1's ``FGSM``/``PGD`` operation for operation (same
random start from the same seed, same projection), so both give identical examples; the test
suite checks that against torchattacks itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._optional import require
from ..errors import InputError


def torch_module() -> Any:
    """Import torch, or say which extra installs it.

    Returns
    -------
    module
        ``torch``.

    Raises
    ------
    MissingDependencyError
        torch is not installed.
    """
    return require("torch")



@dataclass(frozen=True)
class AttackResult:
    """Successful adversarial examples made from correctly classified inputs.

    Attributes
    ----------
    name : str
        Attack and settings.
    x_adv : numpy.ndarray
        float32 successful adversarial inputs only.
    source : numpy.ndarray
        int64 index (into the inputs given) of each one's clean original.
    attempted : int
        Correctly classified inputs that were attacked.
    skipped : int
        Inputs left out because the model already misclassified them.
    linf, l2 : numpy.ndarray
        Perturbation norms of the successful examples.
    """

    name: str
    x_adv: np.ndarray
    source: np.ndarray
    attempted: int
    skipped: int
    linf: np.ndarray
    l2: np.ndarray

    @property
    def success_rate(self) -> float:
        """Successful / attempted (NaN when nothing was attempted)."""
        return len(self.x_adv) / self.attempted if self.attempted else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-able counts and norm medians.

        Returns
        -------
        dict
            name, attempted, skipped, successful, success_rate, median_linf, median_l2.
        """
        med = (lambda a: float(np.median(a)) if len(a) else float("nan"))  # noqa: E731
        return {"name": self.name, "attempted": self.attempted, "skipped_misclassified": self.skipped,
                "successful": int(len(self.x_adv)), "success_rate": self.success_rate,
                "median_linf": med(self.linf), "median_l2": med(self.l2)}


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted classes of a torch classifier (eval mode, no gradients).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits.
    x : numpy.ndarray
        Inputs.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    numpy.ndarray
        int64 predictions.
    """
    torch = torch_module()
    model = model.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch_size], np.float32))).argmax(1))
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)


def attack_correct(model: Any, x: np.ndarray, y: np.ndarray, attack: Callable[..., tuple[np.ndarray, np.ndarray]],
                   name: str, **kwargs: Any) -> AttackResult:
    """Attack the correctly classified inputs only; keep the successful examples.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier.
    x : numpy.ndarray
        float32 inputs.
    y : numpy.ndarray
        True labels.
    attack : callable
        :func:`fgsm`, :func:`pgd` or :func:`deepfool`.
    name : str
        Name of the resulting set.
    **kwargs
        Passed to the attack.

    Returns
    -------
    AttackResult
        Successful examples (prediction changed from the correct label), with their sources,
        success rate over the attempted inputs and perturbation norms.
    """
    y = np.asarray(y, np.int64)
    correct = np.flatnonzero(predict(model, x) == y)
    adv, ok = attack(model, x[correct], y[correct], **kwargs) if len(correct) else (x[:0], np.zeros(0, bool))
    delta = (adv[ok] - x[correct][ok]).reshape(int(ok.sum()), -1).astype(np.float64)
    return AttackResult(name=name, x_adv=adv[ok], source=correct[ok], attempted=int(len(correct)),
                        skipped=int(len(x) - len(correct)), linf=np.abs(delta).max(axis=1) if len(delta) else delta[:, 0],
                        l2=np.linalg.norm(delta, axis=1))


def _grad_sign(model: Any, x: Any, y: Any) -> Any:
    torch = torch_module()
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def _success(model: Any, x_adv: Any, y: Any) -> np.ndarray:
    torch = torch_module()
    with torch.no_grad():
        return (model(x_adv).argmax(1) != y).numpy()


def fgsm(model: Any, x: np.ndarray, y: np.ndarray, eps: float, lo: float = 0.0, hi: float = 1.0,
         batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Fast gradient sign method (Goodfellow et al., ICLR 2015): ``clip(x + eps * sign(grad))``.

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
    torch = torch_module()
    if eps <= 0 or not lo < hi:
        raise InputError(f"eps must be > 0 and lo < hi, got eps={eps}, [{lo}, {hi}]")
    model = model.eval()
    out_x, out_ok = [], []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        yb = torch.from_numpy(np.asarray(y[start : start + batch_size], np.int64))
        adv = torch.clamp(xb + eps * _grad_sign(model, xb, yb), min=lo, max=hi).detach()
        out_x.append(adv.numpy())
        out_ok.append(_success(model, adv, yb))
    if not out_x:  # an empty batch
        return np.asarray(x, np.float32).copy(), np.zeros(0, bool)
    return np.concatenate(out_x).astype(np.float32), np.concatenate(out_ok)


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
        Seed of the random start (a generator of its own; the same stream as
        ``torch.manual_seed(seed)`` gives torchattacks).
    batch_size : int
        Samples per step.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x_adv float32, success bool)``.
    """
    torch = torch_module()
    if eps <= 0 or steps < 1 or not lo < hi:
        raise InputError(f"eps must be > 0, steps >= 1 and lo < hi, got eps={eps}, steps={steps}, [{lo}, {hi}]")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if len(x) == 0:
        return np.asarray(x, np.float32).copy(), np.zeros(0, bool)
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    out_x, out_ok = [], []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        yb = torch.from_numpy(np.asarray(y[start : start + batch_size], np.int64))
        adv = xb.clone()
        if random_start:
            adv = torch.clamp(adv + torch.empty_like(adv).uniform_(-eps, eps, generator=gen), min=lo, max=hi)
        for _ in range(steps):
            adv = adv.detach() + alpha * _grad_sign(model, adv, yb)
            delta = torch.clamp(adv - xb, min=-eps, max=eps)
            adv = torch.clamp(xb + delta, min=lo, max=hi).detach()
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
    torch = torch_module()
    if len(x) == 0:
        return np.asarray(x, np.float32).copy(), np.zeros(0, bool)
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
