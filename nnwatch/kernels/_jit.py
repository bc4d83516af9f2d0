"""The one place Numba flags are chosen: fastmath policy, caching, nogil, threading layer.

- fastmath without ``nnan``/``ninf``: activations can be NaN/Inf and the kernels must see them.
- ``cache=True`` so compiled kernels persist across processes; ``NNWATCH_NUMBA_CACHE=0`` turns it off.
- Numba's default ``workqueue`` threading layer aborts the process when parallel kernels are
  entered from two threads at once. nnwatch asks for ``tbb`` or ``omp`` first; if only
  ``workqueue`` is available, parallel kernels are serialized behind a lock
  (:func:`parallel_guard`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Callable, Iterator

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})
CACHE = os.environ.get("NNWATCH_NUMBA_CACHE", "1") != "0"

# Must be set before the first parallel kernel runs.
numba.config.THREADING_LAYER_PRIORITY = ["tbb", "omp", "workqueue"]

_guard_lock = threading.Lock()
_layer_checked = False
_unsafe_layer = False


def njit(parallel: bool = False, exact: bool = False) -> Callable:
    """Decorator with nnwatch's flags.

    Parameters
    ----------
    parallel : bool
        Compile with ``parallel=True`` (use ``prange`` inside).
    exact : bool
        Strict IEEE arithmetic (no fastmath): for values two kernels must compute bit for bit
        alike, such as the fused statistic of calibration samples and of live inputs, whose
        ties decide conformal p-values.

    Returns
    -------
    callable
        A ``numba.njit`` decorator.
    """
    return numba.njit(cache=CACHE, nogil=True, fastmath=False if exact else set(FASTMATH), parallel=parallel,
                      error_model="numpy")


@contextlib.contextmanager
def parallel_guard() -> Iterator[None]:
    """Serialize parallel kernels if the active threading layer is not thread-safe.

    Returns
    -------
    Iterator[None]
        Context manager; holds a lock only under the ``workqueue`` layer.
    """
    if not _layer_checked:
        # Until the first parallel run has shown which layer is active, assume the worst.
        with _guard_lock:
            yield
            _note_layer()
    elif _unsafe_layer:
        with _guard_lock:
            yield
    else:
        yield


def _note_layer() -> None:
    global _layer_checked, _unsafe_layer
    if _layer_checked:
        return
    try:
        _unsafe_layer = numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel kernel has run yet
        return
    _layer_checked = True


def threading_layer() -> str:
    """Name of the threading layer in use, or ``"none"`` before the first parallel run.

    Returns
    -------
    str
        Layer name.
    """
    try:
        return numba.threading_layer()
    except ValueError:
        return "none"
