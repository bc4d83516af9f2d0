"""Boundary checks shared by the public entry points; each error says what would be accepted."""

from __future__ import annotations

import math
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


def short_list(items: Sequence[object], limit: int = 20) -> str:
    """``[a, b, ...]`` for a message: at most ``limit`` items, then how many more.

    Parameters
    ----------
    items : sequence
        What to list.
    limit : int
        Items shown.

    Returns
    -------
    str
        The list as text.
    """
    items = list(items)
    if len(items) <= limit:
        return str(items)
    return "[" + ", ".join(str(i) for i in items[:limit]) + f", ... {len(items) - limit} more]"


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


def _shape_text(shape: Sequence[int | None]) -> str:
    """``(?, 4)``: a required shape as the messages print it."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_array(arr: object, name: str, dtype: type | np.dtype, shape: Sequence[int | None],
                contiguous: bool = True, writeable: bool = False) -> np.ndarray:
    """Check an array handed to compiled code: exact dtype, shape, layout; no conversion.

    Parameters
    ----------
    arr : object
        The array to check.
    name : str
        Argument name for the message.
    dtype : numpy dtype
        Required dtype.
    shape : sequence of int or None
        Required shape; ``None`` accepts any size on that axis.
    contiguous : bool
        Require C-contiguity.
    writeable : bool
        Require a writeable array (outputs).

    Returns
    -------
    numpy.ndarray
        ``arr`` itself.

    Raises
    ------
    InputError
        Not an ndarray, or wrong dtype, shape, layout or write flag; the message says what
        would be accepted.
    """
    # the checks run on every kernel call (batch 1 included): the messages are built only on failure
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name}: expected a numpy array {np.dtype(dtype)} {_shape_text(shape)}, "
                         f"got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise InputError(f"{name}: dtype {arr.dtype}, expected {np.dtype(dtype)} "
                         f"(convert with .astype(np.{np.dtype(dtype)}))")
    got = arr.shape
    if len(got) != len(shape):
        raise InputError(f"{name}: shape {got}, expected {_shape_text(shape)}")
    for g, w in zip(got, shape):
        if w is not None and g != w:
            raise InputError(f"{name}: shape {got}, expected {_shape_text(shape)}")
    if contiguous and not arr.flags.c_contiguous:
        raise InputError(f"{name}: not C-contiguous; pass np.ascontiguousarray({name})")
    if writeable and not arr.flags.writeable:
        raise InputError(f"{name}: read-only; pass a writeable array")
    return arr


def check_classes(pred: np.ndarray, n_classes: int, name: str = "pred") -> None:
    """Check that every class index lies in ``[0, n_classes)``.

    Parameters
    ----------
    pred : numpy.ndarray
        Integer class indices.
    n_classes : int
        Number of class rows.
    name : str
        Argument name for the message.

    Raises
    ------
    InputError
        An index outside the range (names the first one).
    """
    if pred.size and (pred.min() < 0 or pred.max() >= n_classes):
        bad = int(pred[(pred < 0) | (pred >= n_classes)][0])
        raise InputError(f"{name}: class {bad} out of range; classes must be in [0, {n_classes})")


def is_int(value: object) -> bool:
    """Whether a parsed JSON value is an integer (not a bool).

    Parameters
    ----------
    value : object
        Any value.

    Returns
    -------
    bool
        True for ``int`` other than ``bool``.
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_list(value: object, n: int | None = None) -> bool:
    """Whether a parsed JSON value is a list of ``n`` finite numbers (any length when None).

    Parameters
    ----------
    value : object
        Any value.
    n : int, optional
        Required length.

    Returns
    -------
    bool
        True for a list of finite ints/floats (not bools) of that length.
    """
    return (isinstance(value, list) and (n is None or len(value) == n)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def check_labels(y: np.ndarray, n_classes: int, where: str) -> None:
    """Check class labels against the model's class count (negative labels mean "unknown").

    Parameters
    ----------
    y : numpy.ndarray
        Integer labels ``(N,)``.
    n_classes : int
        Columns of the model's logits.
    where : str
        The data, for the message.

    Raises
    ------
    InputError
        A label is ``>= n_classes``; the message says how many and suggests a shift when
        the labels look 1-based.
    """
    if y.size == 0:
        return
    high = int(y.max())
    if high < n_classes:
        return
    bad = int((y >= n_classes).sum())
    known = y[y >= 0]
    hint = ""
    if known.size and int(known.min()) >= 1 and high == n_classes:
        hint = "; they look 1-based: subtract 1 so that the first class is 0"
    raise InputError(f"{where}: {bad} labels are >= {n_classes}, but the model has {n_classes} classes (labels "
                     f"0..{n_classes - 1}, or -1 for unknown){hint}")
