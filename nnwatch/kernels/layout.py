"""The activation buffer every kernel reads: one row per sample, all monitored layers side by side.

All monitored layers of a batch live in one flat float32 array, sample-major: sample ``b``'s
neurons are ``buf[b * N : (b + 1) * N]`` and layer ``l`` is the column block
``off[l] : off[l + 1]`` of that row. It is exactly the ``(B, N)`` tensor an instrumented model
with joined taps returns (``nnwatch/taps``, :mod:`nnwatch.export.instrument`), so onnxruntime
writes it in place with no copy; models with one output per tap are copied into it.
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
    """Copy per-layer ``(B, n_l)`` arrays into one sample-major float32 buffer.

    Parameters
    ----------
    layers : sequence of numpy.ndarray
        One ``(B, n_l)`` array per layer, same ``B``.
    out : numpy.ndarray, optional
        Preallocated float32 buffer of ``B * sum(n_l)`` elements.

    Returns
    -------
    numpy.ndarray
        float32 ``(B * N,)``, sample-major.

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
    total = sum(a.shape[1] for a in layers)
    if out is None:
        out = np.empty(total * batch, dtype=np.float32)
    rows = out.reshape(batch, total)
    pos = 0
    for a in layers:
        rows[:, pos : pos + a.shape[1]] = a
        pos += a.shape[1]
    return out


def unpack_layers(buf: np.ndarray, batch: int, offsets: np.ndarray) -> list[np.ndarray]:
    """Views of the per-layer ``(B, n_l)`` column blocks of a packed buffer.

    Parameters
    ----------
    buf : numpy.ndarray
        Sample-major buffer of ``B * N`` values.
    batch : int
        Batch size ``B``.
    offsets : numpy.ndarray
        Output of :func:`layer_offsets`.

    Returns
    -------
    list of numpy.ndarray
        Views, no copies (strided: each row of a block is contiguous).
    """
    rows = buf.reshape(batch, int(offsets[-1]))
    return [rows[:, offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
