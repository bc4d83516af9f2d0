"""Compact coverage tables: 6 bytes per class and neuron instead of ~40, for many-class models.

Full tables take 37 bytes per class and neuron (float32 ranges, float64 reciprocals, one
byte per k-section and state): ~70 MiB for 1,000 classes and 2,000 neurons. Per class and
neuron the compact tables keep three uint16 in one row, so the predicted class's row is one
contiguous read:

- the class range's ends as codes on a per-neuron grid of 65,535 steps spanning that
  neuron's range over all classes, rounded *outward* (the decoded range contains the
  profile's);
- one bit per k-section (k <= 12), the on-rare, off-rare and top-k-rare bits, and a bit for
  a range that is a single point in the profile.

The reciprocals are recomputed from the decoded ends, by the same IEEE formulas the full
tables use. A point range rounds to a range one step wide; its point bit keeps what a point
means in the full tables (one section, and distances outside it in units of the global
range), so ``nb_excess`` does not blow up by the grid's resolution. So the compact tables
score *exactly* like full tables compiled from the profile with its ranges rounded outward
to the grid, point ranges keeping their section and unit
(:func:`nnwatch.profile.signature.rounded_tables`; tested bit for bit). Against the unrounded
profile, the counting scores differ only for values within one grid step (1/65,535 of the
neuron's range over all classes) of a range end or a section boundary; ``nb_excess`` also
changes where a class range is only a few steps wide, since its unit is that width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_array
from ..errors import InputError
from ._jit import njit

GRID = 65535  # steps of the per-neuron grid (uint16 codes)
MAX_SECTIONS = 12  # k-section bits that fit beside the four flag bits in a uint16
POINT_BIT, ON_BIT, OFF_BIT, TOPK_BIT = 12, 13, 14, 15


@dataclass(frozen=True)
class CompactTables:
    """Per-class rarity, packed: row ``c`` of :attr:`cells` is class ``c``.

    Attributes
    ----------
    offsets : numpy.ndarray
        int64 ``(L + 1,)`` layer offsets.
    base, step : numpy.ndarray
        float64 ``(N,)``: a range end with code ``q`` is ``float32(base + q * step)``.
    fallback_unit : numpy.ndarray
        float64 ``(N,)``: the range unit of ``nb_excess`` where a class range is a point
        (the global row's width, or 1).
    threshold : numpy.ndarray
        float32 ``(N,)`` activation threshold of neuron coverage.
    cells : numpy.ndarray
        uint16 ``(C, N, 3)``: low code, high code, rarity bits.
    k_sections : int
        k of k-multisection coverage (<= 12).
    k_top : int
        k of top-k coverage.
    """

    offsets: np.ndarray
    base: np.ndarray
    step: np.ndarray
    fallback_unit: np.ndarray
    threshold: np.ndarray
    cells: np.ndarray
    k_sections: int
    k_top: int

    def __post_init__(self) -> None:
        off = check_array(self.offsets, "tables.offsets", np.int64, (None,))
        if off.size < 2 or off[0] != 0 or (np.diff(off) < 1).any():
            raise InputError("tables.offsets must start at 0 and increase by at least 1 per layer")
        n = int(off[-1])
        cells = check_array(self.cells, "tables.cells", np.uint16, (None, n, 3))
        if cells.shape[0] < 1:
            raise InputError("tables.cells needs at least one class row")
        for name in ("base", "step", "fallback_unit"):
            arr = check_array(getattr(self, name), f"tables.{name}", np.float64, (n,))
            if not np.isfinite(arr).all():
                raise InputError(f"tables.{name} must be finite")
        if (self.step < 0).any() or (self.fallback_unit <= 0).any():
            raise InputError("tables.step must be >= 0 and tables.fallback_unit > 0")
        check_array(self.threshold, "tables.threshold", np.float32, (n,))
        if not 1 <= int(self.k_sections) <= MAX_SECTIONS or int(self.k_top) < 1:
            raise InputError(f"tables: k_sections must be in [1, {MAX_SECTIONS}] and k_top >= 1, "
                             f"got {self.k_sections}, {self.k_top}")

    @property
    def n_classes(self) -> int:
        """Number of class rows."""
        return int(self.cells.shape[0])

    @property
    def n_neurons(self) -> int:
        """Total neurons over all layers."""
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        """Memory held by the tables, in bytes."""
        return sum(a.nbytes for a in (self.offsets, self.base, self.step, self.fallback_unit, self.threshold,
                                      self.cells))


def grid(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron grid spanning every row's range: ``(base, step)``, float64 ``(N,)``.

    Parameters
    ----------
    lo, hi : numpy.ndarray
        float32 ``(R, N)`` range ends of all rows (classes and the global row), finite.

    Returns
    -------
    tuple of numpy.ndarray
        ``base`` (the lowest end) and ``step`` (so that code GRID reaches past the highest end).
    """
    base = lo.min(axis=0).astype(np.float64)
    top = hi.max(axis=0).astype(np.float64)
    # a hair wider than (top - base) / GRID, so the top end is reached before the last code
    step = (top - base) / GRID * (1 + 1e-9) + np.abs(top) * 1e-12
    return base, step


def decode(base: np.ndarray, step: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """float32 range ends from codes: ``float32(base + q * step)``, as the kernel computes them.

    Parameters
    ----------
    base, step : numpy.ndarray
        float64 ``(N,)`` grid of :func:`grid`.
    codes : numpy.ndarray
        uint16 ``(R, N)`` codes.

    Returns
    -------
    numpy.ndarray
        float32 ``(R, N)`` range ends.
    """
    return (base + codes.astype(np.float64) * step).astype(np.float32)


def encode_outward(values: np.ndarray, base: np.ndarray, step: np.ndarray, up: bool) -> np.ndarray:
    """uint16 codes whose decoded value is <= ``values`` (``up=False``) or >= (``up=True``).

    Parameters
    ----------
    values : numpy.ndarray
        float32 ``(R, N)``, within each neuron's grid.
    base, step : numpy.ndarray
        Output of :func:`grid`.
    up : bool
        Round up (high ends) or down (low ends).

    Returns
    -------
    numpy.ndarray
        uint16 ``(R, N)``.
    """
    safe = np.where(step > 0, step, 1.0)
    exact = (values.astype(np.float64) - base) / safe
    codes = np.clip(np.ceil(exact) if up else np.floor(exact), 0, GRID).astype(np.int64)
    codes[:, step == 0] = 0
    # float32 rounding of the decoded value can land on the wrong side: move one code out
    for _ in range(2):
        got = decode(base, step, codes)
        wrong = got < values if up else got > values
        if not wrong.any():
            break
        codes = np.clip(codes + np.where(wrong, 1 if up else -1, 0), 0, GRID)
    return codes.astype(np.uint16)


def pack_bits(section_rare: np.ndarray, on_rare: np.ndarray, off_rare: np.ndarray,
              topk_rare: np.ndarray, point: np.ndarray) -> np.ndarray:
    """uint16 ``(R, N)``: bit s = section s rare, then the point, on, off and top-k bits."""
    k = section_rare.shape[2]
    if k > MAX_SECTIONS:
        raise InputError(f"compact tables hold at most {MAX_SECTIONS} k-sections, the profile has {k}; "
                         "use the full tables (compact_tables=False)")
    weights = (1 << np.arange(k)).astype(np.uint32)
    bits = (section_rare.astype(np.uint32) * weights).sum(axis=2)
    bits |= point.astype(np.uint32) << POINT_BIT
    bits |= on_rare.astype(np.uint32) << ON_BIT
    bits |= off_rare.astype(np.uint32) << OFF_BIT
    bits |= topk_rare.astype(np.uint32) << TOPK_BIT
    return bits.astype(np.uint16)


@njit(exact=True)
def decode_cell(base, step, lo_code, hi_code, point, k, fallback_unit):
    """A packed cell's ``(low, high, inv_width, inv_unit)``; for use inside kernels.

    Strict IEEE: the same values numpy computes for the rounded profile's full tables.
    """
    low = np.float32(base + np.float64(lo_code) * step)
    high = np.float32(base + np.float64(hi_code) * step)
    width = np.float64(high) - np.float64(low)
    if width > 0 and not point:
        inv_w = k / width
        inv_u = 1.0 / width
    else:
        inv_w = 0.0
        inv_u = 1.0 / fallback_unit
    return low, high, inv_w, inv_u
