"""Every Numba kernel goes through the one flag policy in kernels/_jit.py."""

from __future__ import annotations

import re

from nnwatch.kernels._jit import FASTMATH
from tests.conftest import REPO


def test_no_kernel_bypasses_the_jit_policy():
    offenders = []
    for path in (REPO / "nnwatch").rglob("*.py"):
        if path.name == "_jit.py":
            continue
        text = path.read_text()
        if re.search(r"numba\.(njit|jit)\b|from numba import .*\b(njit|jit)\b", text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_fastmath_keeps_nan_and_inf_semantics():
    # Activations can be NaN/Inf; "nnan"/"ninf" would let the compiler assume they are not.
    assert not {"nnan", "ninf", "fast"} & set(FASTMATH)
