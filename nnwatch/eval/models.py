"""Small torch classifiers and a seeded CPU training loop (for the demo and benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._progress import Progress
from .attacks import torch_module


def digits_cnn(n_classes: int = 10, channels: int = 1) -> Any:
    """A small CNN for 8x8 images (scikit-learn digits).

    Parameters
    ----------
    n_classes : int
        Classes.
    channels : int
        Input channels.

    Returns
    -------
    torch.nn.Module
        conv(16)-relu-conv(32)-relu-maxpool-conv(32)-relu-flatten-fc(64)-relu-fc.
    """
    nn = torch_module().nn
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, n_classes),
    )


def lenet(n_classes: int = 10) -> Any:
    """LeNet-style CNN for 28x28 images (MNIST).

    Parameters
    ----------
    n_classes : int
        Classes.

    Returns
    -------
    torch.nn.Module
        conv(6,5)-relu-pool-conv(16,5)-relu-pool-fc(120)-relu-fc(84)-relu-fc.
    """
    nn = torch_module().nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_classes),
    )


def train_classifier(model: Any, x: np.ndarray, y: np.ndarray, epochs: int = 20, lr: float = 2e-3,
                     batch_size: int = 64, seed: int = 0, augment_shift: int = 0, progress: bool = False) -> Any:
    """Train with Adam and cross-entropy on the CPU, deterministically.

    Parameters
    ----------
    model : torch.nn.Module
        Model to train (in place).
    x : numpy.ndarray
        float32 inputs ``(N, C, H, W)``.
    y : numpy.ndarray
        Labels.
    epochs : int
        Passes over the data.
    lr : float
        Learning rate.
    batch_size : int
        Mini-batch size.
    seed : int
        Seed for initialization order and shuffling.
    augment_shift : int
        Random translations of up to this many pixels (0 = none).
    progress : bool
        Show a progress line per epoch on stderr.

    Returns
    -------
    torch.nn.Module
        The model, in eval mode.
    """
    torch = torch_module()
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    yt = torch.from_numpy(np.asarray(y, np.int64))
    model.train()
    bar = Progress(epochs, "training (epochs)", progress)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(xt)))
        for lo in range(0, len(xt), batch_size):
            idx = order[lo : lo + batch_size]
            xb = xt[idx]
            if augment_shift:
                dy, dx = rng.integers(-augment_shift, augment_shift + 1, 2)
                xb = torch.roll(xb, shifts=(int(dy), int(dx)), dims=(2, 3))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yt[idx])
            loss.backward()
            opt.step()
        bar.update(1)
    bar.close()
    return model.eval()


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier.
    x : numpy.ndarray
        Inputs.
    y : numpy.ndarray
        Labels.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    torch = torch_module()
    with torch.no_grad():
        pred = model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).argmax(1).numpy()
    return float((pred == y).mean())
