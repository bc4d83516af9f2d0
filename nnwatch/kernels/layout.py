"""The layer-blocked activation buffer every kernel reads.

All monitored layers of a batch live in one flat float32 array: layer ``l`` occupies
``buf[B * off[l] : B * off[l + 1]]`` as a row-major ``(B, n_l)`` block. Each block is
contiguous, so onnxruntime can write every tap output straight into its block (no copies),
whatever the batch size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError


def layer_offsets(sizes: Sequence[int]) -> np.ndarray:
    """Neuron offsets of each layer.

    Parameters
    ----------
    sizes : sequence of int
        Neurons per layer.

    Returns
    -------
    numpy.ndarray
        int64 ``(L + 1,)``, ``off[0] = 0``, ``off[L]`` = total neurons.
    """
    off = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(np.asarray(sizes, dtype=np.int64), out=off[1:])
    return off


def pack_layers(layers: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """Copy per-layer ``(B, n_l)`` arrays into one layer-blocked float32 buffer.

    Parameters
    ----------
    layers : sequence of numpy.ndarray
        One ``(B, n_l)`` array per layer, same ``B``.
    out : numpy.ndarray, optional
        Preallocated float32 buffer of ``B * sum(n_l)`` elements.

    Returns
    -------
    numpy.ndarray
        float32 ``(B * N,)``.

    Raises
    ------
    InputError
        Layers of different batch sizes or not 2-D.
    """
    if not layers:
        raise InputError("no layers given")
    batch = layers[0].shape[0]
    for i, a in enumerate(layers):
        if a.ndim != 2 or a.shape[0] != batch:
            raise InputError(f"layer {i}: expected shape ({batch}, n_neurons), got {a.shape}")
    total = sum(a.shape[1] for a in layers) * batch
    if out is None:
        out = np.empty(total, dtype=np.float32)
    pos = 0
    for a in layers:
        n = a.size
        out[pos : pos + n] = a.reshape(-1)
        pos += n
    return out


def unpack_layers(buf: np.ndarray, batch: int, offsets: np.ndarray) -> list[np.ndarray]:
    """Views of the per-layer ``(B, n_l)`` blocks of a packed buffer.

    Parameters
    ----------
    buf : numpy.ndarray
        Layer-blocked buffer.
    batch : int
        Batch size ``B``.
    offsets : numpy.ndarray
        Output of :func:`layer_offsets`.

    Returns
    -------
    list of numpy.ndarray
        Views, no copies.
    """
    return [
        buf[batch * offsets[i] : batch * offsets[i + 1]].reshape(batch, offsets[i + 1] - offsets[i])
        for i in range(len(offsets) - 1)
    ]
