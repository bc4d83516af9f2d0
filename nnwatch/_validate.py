"""Boundary checks shared by the public entry points; each error says what would be accepted."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import InputError


def unknown_name(kind: str, name: str, available: Iterable[str]) -> InputError:
    """Build the error for a name that is not among ``available``, listing the choices.

    Parameters
    ----------
    kind : str
        What the name refers to ("tensor", "layer", "detector").
    name : str
        The requested name.
    available : iterable of str
        Names that would have been accepted.

    Returns
    -------
    InputError
        The error to raise.
    """
    names = sorted(available)
    shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
    return InputError(f"{kind} {name!r} not found; available: {shown or '(none)'}")


def as_float32_batch(x: object, name: str, expected_tail: Sequence[int | None] | None = None) -> np.ndarray:
    """Convert ``x`` to a C-contiguous float32 array and check its trailing dimensions.

    Parameters
    ----------
    x : array_like
        Input batch; first axis is the batch axis.
    name : str
        Name used in error messages.
    expected_tail : sequence of int or None, optional
        Required sizes of the axes after the batch axis; ``None`` entries accept any size.

    Returns
    -------
    numpy.ndarray
        float32, C-contiguous.

    Raises
    ------
    InputError
        Non-numeric data, wrong rank or wrong trailing sizes.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name}: dtype {arr.dtype} is not numeric; pass a float or integer array")
    if expected_tail is not None:
        want = tuple(expected_tail)
        if arr.ndim != len(want) + 1:
            raise InputError(
                f"{name}: expected shape (batch, {', '.join('?' if d is None else str(d) for d in want)}), "
                f"got {arr.shape}"
            )
        for axis, (got, exp) in enumerate(zip(arr.shape[1:], want), start=1):
            if exp is not None and got != exp:
                raise InputError(
                    f"{name}: axis {axis} has size {got}, the model expects {exp} "
                    f"(expected shape (batch, {', '.join('?' if d is None else str(d) for d in want)}), got {arr.shape})"
                )
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_probability(value: float, name: str) -> float:
    """Check that ``value`` lies strictly inside (0, 1).

    Parameters
    ----------
    value : float
        The number to check.
    name : str
        Parameter name for the message.

    Returns
    -------
    float
        ``value`` as float.

    Raises
    ------
    InputError
        Outside (0, 1).
    """
    v = float(value)
    if not 0.0 < v < 1.0:
        raise InputError(f"{name} must be in (0, 1), got {value}")
    return v
