"""The one place Numba flags are chosen: fastmath policy, caching, nogil, threading layer.

- fastmath without ``nnan``/``ninf``: activations can be NaN/Inf and the kernels must see them.
- ``cache=True`` so compiled kernels persist across processes; ``NNWATCH_NUMBA_CACHE=0`` turns it off.
- The on-disk cache is keyed by the compile flags that change generated code: Numba's own
  cache key ignores ``NUMBA_BOUNDSCHECK``, ``NUMBA_OPT`` and ``NUMBA_DEBUGINFO``, so kernels
  compiled once under a debugging flag would be loaded by every later normal run. Under any
  non-default flag set, kernels are cached in a folder of their own (``flags-<key>`` under
  ``NUMBA_CACHE_DIR``, or under ``~/.cache/nnwatch/numba``); normal runs keep Numba's usual
  location.
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

DEFAULT_CODEGEN = {"boundscheck": 0, "opt": 3, "debuginfo": 0}


def codegen_flags() -> dict[str, int]:
    """The process-wide Numba settings that change the machine code of a kernel.

    Returns
    -------
    dict
        ``boundscheck``, ``opt`` and ``debuginfo`` as integers.
    """
    try:
        opt = int(numba.config.OPT)
    except (TypeError, ValueError):  # "max" or another level name
        opt = -1
    return {"boundscheck": int(bool(numba.config.BOUNDSCHECK)), "opt": opt,
            "debuginfo": int(bool(numba.config.DEBUGINFO_DEFAULT))}


def flag_cache_dir(flags: dict[str, int]) -> str | None:
    """Where kernels compiled under ``flags`` are cached (None: Numba's usual place).

    Parameters
    ----------
    flags : dict
        Output of :func:`codegen_flags`.

    Returns
    -------
    str or None
        A folder keyed by the flags, or None for the default flags.
    """
    if flags == DEFAULT_CODEGEN:
        return None
    base = numba.config.CACHE_DIR or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nnwatch", "numba")
    return os.path.join(base, "flags-" + "-".join(f"{k}{v}" for k, v in sorted(flags.items())))


# Before any kernel is decorated: Numba picks a kernel's cache folder when it is defined.
_keyed = flag_cache_dir(codegen_flags())
if CACHE and _keyed is not None:
    numba.config.CACHE_DIR = _keyed

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
