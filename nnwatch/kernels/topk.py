"""Per-layer top-k membership: the insertion step shared by the profile and scoring kernels.

Compiled helper for use inside other kernels only; its callers size ``best_v``/``best_i`` to
at least ``kk`` entries (checked by their public wrappers).
"""

from __future__ import annotations

from ._jit import njit


@njit()
def topk_insert(v, j, filled, kk, best_v, best_i):
    """Insert value ``v`` (neuron ``j``) into the running top-``kk``; return the new fill.

    ``best_v`` stays sorted descending; the strict ``>`` keeps the earlier index on ties,
    which is what a stable argsort of ``-v`` gives. NaN never enters (it is not comparable):
    callers skip it, so a NaN neuron is never in the top-k.
    """
    if filled < kk:
        pos = filled
        filled += 1
    elif v > best_v[kk - 1]:
        pos = kk - 1
    else:
        return filled
    while pos > 0 and v > best_v[pos - 1]:
        best_v[pos] = best_v[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_v[pos] = v
    best_i[pos] = j
    return filled
