"""Numba kernels (numpy + numba only): profile accumulation, coverage scoring, reductions."""

from .coverage import SCORE_NAMES, CoverageTables, coverage_scores_packed, make_scratch
from .layout import layer_offsets, pack_layers, unpack_layers

__all__ = ["SCORE_NAMES", "CoverageTables", "coverage_scores_packed", "make_scratch",
           "layer_offsets", "pack_layers", "unpack_layers"]
