"""Numba kernels (numpy + numba only): profile accumulation, coverage scoring, conformal decisions.

Public functions and classes validate their arguments before compiled code runs; the
compiled kernels (leading underscore) trust their inputs.
"""

from .conformal import ConformalTables, allowed_count, conformal_p_values
from .coverage import SCORE_NAMES, CoverageTables, argmax_rows, coverage_scores, make_scratch
from .layout import layer_offsets, pack_layers, unpack_layers

__all__ = ["SCORE_NAMES", "ConformalTables", "CoverageTables", "allowed_count", "argmax_rows",
           "conformal_p_values", "coverage_scores", "make_scratch", "layer_offsets", "pack_layers", "unpack_layers"]
