"""The verdict as standard ONNX operators: default domain, opset 17, float32, no custom ops.

Input: the *verdict input*, float32 ``(B, C + N + 1)``: a sample's ``C`` logits, its ``N``
joined taps (in manifest order) and the number of NaN/Inf values in its input. Outputs (per
sample): the predicted class, the flag, the confidence (the decision column's conformal
p-value), the integer count behind it, and for each exposed column its score, p-value, count
and flag. The rules are those of :mod:`nnwatch.kernels.verdict` and
:mod:`nnwatch.kernels.reference`, compiled a second time:

- prediction: ``ArgMax`` (first maximum);
- coverage (``nc``, ``kmnc``, ``tknc``, ``nbc``, ``nb_excess``, ``coverage``) against the
  predicted class's row of full or compact tables (``Gather``), per-layer top-k with ``TopK``
  of a constant K, every table an initializer;
- ``msp`` as ``T / (1 + T)`` with ``T`` the sum of ``exp(z_k - max)`` over the other classes
  (no cancellation for confident samples), ``max_logit = -max``, ``energy = -(max + log(1 + T))``;
- ``mahalanobis``: ``min_c max(|xW|^2 - 2 xW.m_c + |m_c|^2, 0)`` (two ``MatMul``);
- non-finite: ``IsNaN(x - x)`` (no IsInf: ``inf - inf`` is NaN); a non-finite score, a coverage score
  of a sample with NaN/Inf taps, and every score of a sample whose input held NaN/Inf is +inf;
- p-value ``(1 + count) / (n + 1)`` with ``count = #{calibration scores >= s}`` in the
  class's calibration block, flag ``count < allowed``: the flag is the integer comparison;
- the fused statistic: the sum of the strongest half of the members' evidence (``TopK``,
  :mod:`nnwatch.kernels.fusion`), calibrated the same way.

Precision: the graph computes in float32, the Numba pass in float64. With full tables, scores
that are counts over a fixed denominator (``nc``, ``kmnc``, ``tknc``, ``nbc`` and their mean,
``coverage``) are exact in both: the tests compare the integer counts (below ``2**24``, checked
when the graph is built), so their counts and flags agree exactly. Compact tables decode in
float32 here, so a neuron within a rounding of a range end or section boundary may count
differently. Other scores agree to float32 rounding; a flag can then differ only for a score
within that rounding of a calibration score (tests/graphs count such inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._optional import require
from ..errors import InputError
from ..kernels.compact import OFF_BIT, ON_BIT, POINT_BIT, TOPK_BIT, CompactTables
from ..kernels.coverage import SCORE_NAMES, CoverageTables
from ..kernels.fusion import kept_members
from ..kernels.rules import top_places
from ..kernels.verdict import (LOGIT_SOURCES, SOURCE_COMBINED, SOURCE_DETECTOR, SOURCE_ENERGY, SOURCE_FUSED,
                               SOURCE_MAHALANOBIS, SOURCE_MAX_LOGIT, SOURCE_MSP, VerdictSpec)

OPSET = 17
INF = np.float32(np.inf)
_COUNTING = {0: "neurons", 1: "neurons", 2: "top", 3: "neurons"}  # coverage columns that are ratios of counts
COMPILABLE = ("nc", "kmnc", "tknc", "nbc", "nb_excess", "coverage", "msp", "max_logit", "energy", "mahalanobis",
              "fused")


def _ir():  # type: ignore[no-untyped-def]
    return require("onnx_ir", extra="compile")


class Ops:
    """Named nodes and initializers on an ``onnx_ir`` tape (one prefix for everything it adds).

    Parameters
    ----------
    prefix : str
        Prefix of every value and initializer name.
    opset : int
        Default-domain opset of the graph the nodes join (operators whose inputs changed with
        the opset are written in that opset's form).
    """

    def __init__(self, prefix: str = "nnwatch/verdict/", opset: int = OPSET) -> None:
        self.ir = _ir()
        self.tape = self.ir.tape.Tape()
        self.prefix = prefix
        self.opset = int(opset)
        self._n = 0
        self._consts: dict[tuple, object] = {}
        self._memo: dict[tuple, object] = {}  # one node per (operation, value): no repeated Unsqueeze / Cast

    def _once(self, key: tuple, build):  # type: ignore[no-untyped-def]
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}{hint}_{self._n}"

    def init(self, arr: np.ndarray, hint: str):  # type: ignore[no-untyped-def]
        """An initializer holding ``arr`` (its dtype kept)."""
        arr = np.ascontiguousarray(arr)
        return self.tape.initializer(self.ir.tensor(arr, name=self._name(hint)))

    def const(self, value: object, dtype: type):  # type: ignore[no-untyped-def]
        """A small shared constant (scalar or 1-D)."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(arr, "const")
        return self._consts[key]

    def __call__(self, op_type: str, *inputs: object, hint: str | None = None, **attrs: object):  # type: ignore[no-untyped-def]
        """One node with one output."""
        value = self.tape.op(op_type, list(inputs), attributes=attrs or None)
        value.name = self._name(hint or op_type.lower())
        return value

    def multi(self, op_type: str, *inputs: object, n: int, hint: str | None = None, **attrs: object) -> tuple:
        """One node with ``n`` outputs."""
        values = self.tape.op_multi_out(op_type, list(inputs), attributes=attrs or None, num_outputs=n)
        for v in values:
            v.name = self._name(hint or op_type.lower())
        return tuple(values)

    # -- operators whose signature changed between opsets --------------------------------------
    def reduce(self, op_type: str, x, axis: int = 1, keepdims: int = 0, hint: str | None = None):  # type: ignore[no-untyped-def]
        """``Reduce*`` over one axis: axes as an input where the opset takes one (ReduceSum 13, others 18)."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self(op_type, x, self.const([axis], np.int64), keepdims=keepdims, hint=hint)
        return self(op_type, x, axes=[axis], keepdims=keepdims, hint=hint)

    def squeeze(self, x, axis: int = 1):  # type: ignore[no-untyped-def]
        """Drop one axis (axes as an input from opset 13)."""
        if self.opset >= 13:
            return self._once(("sq", id(x), axis), lambda: self("Squeeze", x, self.const([axis], np.int64)))
        return self._once(("sq", id(x), axis), lambda: self("Squeeze", x, axes=[axis]))

    def unsq(self, x, axis: int = 1):  # type: ignore[no-untyped-def]
        """Add one axis (axes as an input from opset 13)."""
        if self.opset >= 13:
            return self._once(("unsq", id(x), axis), lambda: self("Unsqueeze", x, self.const([axis], np.int64)))
        return self._once(("unsq", id(x), axis), lambda: self("Unsqueeze", x, axes=[axis]))

    # -- small compositions ------------------------------------------------------------------
    def nonfinite(self, x):  # type: ignore[no-untyped-def]
        """bool: NaN or +/-inf, as ``IsNaN(x - x)`` (no IsInf: ``inf - inf`` is NaN; opset 9 on)."""
        return self._once(("nonfinite", id(x)), lambda: self("IsNaN", self("Sub", x, x)))

    def finite(self, x):  # type: ignore[no-untyped-def]
        """bool: neither NaN nor +/-inf."""
        return self._once(("finite", id(x)), lambda: self("Not", self.nonfinite(x)))

    def sum_rows(self, x, dtype: int | None = None):  # type: ignore[no-untyped-def]
        """``ReduceSum`` over axis 1 (after a Cast to ``dtype`` when given), keepdims 0."""
        if dtype is not None:
            x = self("Cast", x, to=dtype)
        return self.reduce("ReduceSum", x)

    def cols(self, x, lo: int, hi: int):  # type: ignore[no-untyped-def]
        """Columns ``lo:hi`` of a 2-D value (bounds as inputs from opset 10, attributes before)."""
        if self.opset < 10:
            return self("Slice", x, starts=[lo], ends=[hi], axes=[1])
        return self("Slice", x, self.const([lo], np.int64), self.const([hi], np.int64), self.const([1], np.int64))

    def col(self, x, j: int):  # type: ignore[no-untyped-def]
        """Column ``j`` of a 2-D value, as 1-D."""
        return self.squeeze(self.cols(x, j, j + 1))

    def f(self, x):  # type: ignore[no-untyped-def]
        """Cast to float32 (once per value)."""
        return self._once(("f", id(x)), lambda: self("Cast", x, to=self.ir.DataType.FLOAT))

    def i(self, x):  # type: ignore[no-untyped-def]
        """Cast to int64 (once per value)."""
        return self._once(("i", id(x)), lambda: self("Cast", x, to=self.ir.DataType.INT64))


@dataclass(frozen=True)
class VerdictOutputs:
    """Names of the verdict graph's outputs.

    Attributes
    ----------
    pred, flag, confidence, count : str
        int64, bool, float32 and int64 ``(B,)``: predicted class, flag, the decision column's
        p-value (0 for a NaN/Inf input), its count (-1 for a NaN/Inf input).
    scores, p_values, counts, flags : str
        float32, float32, int64 and bool ``(B, D)``: every exposed column (``columns``); NaN,
        -1 and False where a column is not calibrated.
    columns : tuple of str
        The exposed columns, in the matrices' order.
    """

    pred: str
    flag: str
    confidence: str
    count: str
    scores: str
    p_values: str
    counts: str
    flags: str
    columns: tuple


def check_compilable(columns: tuple[str, ...], sources: np.ndarray) -> None:
    """Refuse a detector that exists only in Python, by name, listing the compilable ones.

    Parameters
    ----------
    columns : tuple of str
        The monitor's columns.
    sources : numpy.ndarray
        Their sources.

    Raises
    ------
    InputError
        A column filled by Python code.
    """
    python = [c for c, s in zip(columns, sources.tolist()) if s == SOURCE_DETECTOR]
    if python:
        raise InputError(f"detectors {python} exist only in Python and cannot be compiled into ONNX; compilable "
                         f"detectors: {', '.join(COMPILABLE)}")


def build_verdict(ops: Ops, spec: VerdictSpec, columns: tuple[str, ...], decision: int, verdict_input,  # type: ignore[no-untyped-def]
                  expose: tuple[str, ...] | None = None, name_prefix: str = "") -> tuple[list, VerdictOutputs]:
    """Append the verdict to ``ops``'s tape, reading ``verdict_input``.

    Parameters
    ----------
    ops : Ops
        Where the nodes and initializers go.
    spec : VerdictSpec
        The monitor's tables (:attr:`nnwatch.kernels.verdict.VerdictTables.spec`).
    columns : tuple of str
        Column names, in ``spec.sources`` order.
    decision : int
        The deciding column.
    verdict_input : onnx_ir.Value
        float32 ``(B, C + N + 1)``.
    expose : tuple of str, optional
        Columns of the output matrices (default: all).
    name_prefix : str
        Prefix of the output names.

    Returns
    -------
    tuple
        ``(output values, VerdictOutputs)``.

    Raises
    ------
    InputError
        A column that cannot be compiled, one to expose that is not a column, or an
        uncalibrated decision.
    """
    ir = ops.ir
    C, N = int(spec.n_classes), int(spec.n_neurons)
    sources = np.asarray(spec.sources)
    D = sources.shape[0]
    check_compilable(columns, sources)
    expose = tuple(columns) if expose is None else tuple(expose)
    unknown = [c for c in expose if c not in columns]
    if unknown:
        raise InputError(f"cannot expose {unknown}: the monitor's columns are {list(columns)}")
    cal_row = np.full(D, -1, np.int64) if spec.cal_row is None else np.asarray(spec.cal_row)
    fused = int(np.flatnonzero(sources == SOURCE_FUSED)[0]) if (sources == SOURCE_FUSED).any() else -1
    has_fusion = fused >= 0 and spec.fusion is not None
    calibrated = [j for j in range(D) if cal_row[j] >= 0 and j != fused] + ([fused] if has_fusion else [])
    if decision not in calibrated:
        raise InputError(f"the decision column {columns[decision]!r} is not calibrated: calibrate the profile first")
    inexact = [columns[j] for j, n in enumerate(column_denominators(spec)) if n >= 2**24]
    if inexact:
        raise InputError(f"columns {inexact} count over {2**24:,} or more places, beyond what float32 holds exactly: "
                         "leave them out of the monitor's detectors, or tap fewer neurons")
    logits = ops.cols(verdict_input, 0, C)
    v = ops.cols(verdict_input, C, C + N)
    bad_in = ops("Greater", ops.col(verdict_input, C + N), ops.const(0.0, np.float32), hint="bad_input")
    bad_col = ops.unsq(bad_in)
    pred = ops("ArgMax", logits, axis=1, keepdims=0, select_last_index=0, hint="pred")
    cov = _coverage(ops, spec, v, pred, sources)
    logit_scores = _logit_scores(ops, logits, pred, C) if np.isin(sources, LOGIT_SOURCES).any() else {}
    maha = _mahalanobis(ops, spec, v) if (sources == SOURCE_MAHALANOBIS).any() else None
    plain = [j for j in range(D) if j != fused]
    pieces, cmp_pieces = [], []
    for j in plain:
        src = int(sources[j])
        key = src if src >= 0 else "coverage"
        s = cov[key] if src >= 0 or src == SOURCE_COMBINED else \
            maha if src == SOURCE_MAHALANOBIS else logit_scores[src]
        pieces.append(ops.unsq(s))
        cmp_pieces.append(ops.unsq(cov["counts"][key]) if key in cov.get("counts", {}) and
                          (src in _COUNTING or src == SOURCE_COMBINED) else ops.unsq(s))
    raw = ops("Concat", *pieces, axis=1) if len(pieces) > 1 else pieces[0]
    inf = ops.const(INF, np.float32)
    invalid = ops("Or", bad_col, ops("Not", ops.finite(raw)))
    scores = ops("Where", invalid, inf, raw, hint="scores")  # (B, D')
    # what the conformal tests compare: the counts of counting columns, the scores of the others
    cmp_raw = ops("Concat", *cmp_pieces, axis=1) if len(cmp_pieces) > 1 else cmp_pieces[0]
    compared = ops("Where", invalid, inf, cmp_raw, hint="compared")
    calib = _Calibration(ops, spec, pred, bad_in, np.asarray(spec.offsets))
    position = {j: k for k, j in enumerate(plain)}
    tested = [j for j in calibrated if j != fused]
    results = []  # (columns, p, count, flag), (B, k) each
    if tested:
        sc = ops("Gather", compared, ops.const([position[j] for j in tested], np.int64), axis=1)
        refs = np.stack([calib.compared(spec.conformal.ref[cal_row[j]], int(sources[j])) for j in tested])
        results.append((tested,) + calib.test(refs, sc, calib.main, "cal"))
    matrix = scores
    if has_fusion:
        t = _fused_statistic(ops, spec, calib, scores, compared, position, sources)
        t = ops.unsq(ops("Where", bad_in, inf, t, hint="fused"))
        refs = calib.compared(spec.fusion[1].ref[0], SOURCE_FUSED)[None]
        results.append(([fused],) + calib.test(refs, t, calib.fused, "fused_cal"))
        matrix = ops("Concat", scores, t, axis=1)
        position[fused] = len(plain)
    order = [position[columns.index(name)] for name in expose]
    outputs: list = []

    def out(value, name: str, dtype, shape: list):  # type: ignore[no-untyped-def]
        value.name = name_prefix + name
        value.dtype = dtype
        value.shape = ir.Shape(shape)
        outputs.append(value)
        return value.name

    # p-values, counts and flags of every column: calibrated ones from the tests, others NaN / -1 / False
    p_all = ops("Concat", *[r[1] for r in results], ops("Where", bad_col, ops.const(np.nan, np.float32),
                                                         ops.const(np.nan, np.float32)), axis=1)
    c_all = ops("Concat", *[r[2] for r in results], ops("Where", bad_col, ops.const(-1, np.int64),
                                                         ops.const(-1, np.int64)), axis=1)
    f_all = ops("Concat", *[r[3] for r in results], ops("And", bad_col, ops.const(False, np.bool_)), axis=1)
    where = {j: k for k, j in enumerate(j for r in results for j in r[0])}
    missing = len(where)  # the NaN / -1 / False column
    pick = ops.const([where.get(columns.index(name), missing) for name in expose], np.int64)
    d = where[decision]
    names = VerdictOutputs(
        pred=out(ops("Identity", pred), "pred", ir.DataType.INT64, ["batch"]),
        flag=out(ops("Or", ops.squeeze(ops.cols(f_all, d, d + 1)), bad_in), "flag", ir.DataType.BOOL, ["batch"]),
        confidence=out(ops.squeeze(ops.cols(p_all, d, d + 1)), "confidence", ir.DataType.FLOAT, ["batch"]),
        count=out(ops.squeeze(ops.cols(c_all, d, d + 1)), "count", ir.DataType.INT64, ["batch"]),
        scores=out(ops("Gather", matrix, ops.const(order, np.int64), axis=1), "scores", ir.DataType.FLOAT,
                   ["batch", len(expose)]),
        p_values=out(ops("Gather", p_all, pick, axis=1), "p_values", ir.DataType.FLOAT, ["batch", len(expose)]),
        counts=out(ops("Gather", c_all, pick, axis=1), "counts", ir.DataType.INT64, ["batch", len(expose)]),
        flags=out(ops("Gather", f_all, pick, axis=1), "flags", ir.DataType.BOOL, ["batch", len(expose)]),
        columns=expose)
    return outputs, names


def _coverage(ops: Ops, spec: VerdictSpec, v, pred, sources: np.ndarray) -> dict:  # type: ignore[no-untyped-def]
    """The coverage scores (by column index, and ``"coverage"``), +inf for samples with NaN/Inf taps."""
    if not ((sources >= 0) | (sources == SOURCE_COMBINED)).any():
        return {}
    tables = spec.coverage
    N = int(spec.n_neurons)
    offsets = np.asarray(spec.offsets)
    k_top = int(tables.k_top)
    if isinstance(tables, CompactTables):
        cell = _compact_cells(ops, tables, v, pred)
    elif isinstance(tables, CoverageTables):
        cell = _full_cells(ops, tables, pred)
    else:
        raise InputError("coverage columns need coverage tables")
    lo, hi, inv_w, inv_u, on_r, off_r, section_rare, topk_rare, section_index = cell
    thr = ops.init(np.asarray(tables.threshold, np.float32)[None], "threshold")
    active = ops("Greater", v, thr)
    nc = ops.sum_rows(ops("Where", active, on_r, off_r), ops.ir.DataType.FLOAT)
    inside = ops("And", ops("GreaterOrEqual", v, lo), ops("LessOrEqual", v, hi), hint="inside")
    k = int(tables.k_sections) if isinstance(tables, CompactTables) else int(tables.section_rare.shape[2])
    sec = section_index(v, lo, inv_w, k)
    km = ops.sum_rows(ops("Where", inside, section_rare(sec), ops.const(1.0, np.float32)))
    outside = ops("Not", inside)
    nb = ops.sum_rows(outside, ops.ir.DataType.FLOAT)
    below = ops("Mul", ops("Sub", lo, v), inv_u)
    above = ops("Mul", ops("Sub", v, hi), inv_u)
    zero = ops.const(0.0, np.float32)
    excess = ops("Where", ops("Less", v, lo), below, ops("Where", ops("Greater", v, hi), above, zero))
    excess = ops("Where", ops("IsNaN", v), ops.const(INF, np.float32), excess)
    nbx = ops("Div", ops.sum_rows(excess), ops.const(float(N), np.float32))
    # top-k per layer (NaN never enters: it becomes -inf; a sample with NaN taps scores +inf anyway)
    vv = ops("Where", ops("IsNaN", v), ops.const(-INF, np.float32), v)
    picks, tk_total = [], top_places(offsets, k_top)
    for layer in range(offsets.size - 1):
        a, b = int(offsets[layer]), int(offsets[layer + 1])
        kk = min(k_top, b - a)
        _, idx = ops.multi("TopK", ops.cols(vv, a, b), ops.const([kk], np.int64), n=2, axis=1, largest=1, sorted=1)
        picks.append(ops("Add", idx, ops.const(a, np.int64)))
    top_idx = ops("Concat", *picks, axis=1) if len(picks) > 1 else picks[0]
    tk = ops.sum_rows(topk_rare(top_idx), ops.ir.DataType.FLOAT)
    n = ops.const(float(N), np.float32)
    ratios = {0: ops("Div", nc, n, hint="nc"), 1: ops("Div", km, n, hint="kmnc"),
              2: ops("Div", tk, ops.const(float(tk_total), np.float32), hint="tknc"), 3: ops("Div", nb, n, hint="nbc"),
              4: nbx}
    bad_taps = ops("Greater", ops.sum_rows(ops.nonfinite(v), ops.ir.DataType.FLOAT),
                   ops.const(0.0, np.float32), hint="bad_taps")
    out = {j: ops("Where", bad_taps, ops.const(INF, np.float32), r, hint=SCORE_NAMES[j]) for j, r in ratios.items()}
    # the mean as one exact ratio of integers (kernels.rules.coverage_mean): ((nc+km+nb) T + tk N) / (4 N T)
    counts = ops("Add", ops("Mul", ops("Add", ops("Add", nc, km), nb), ops.const(float(tk_total), np.float32)),
                 ops("Mul", tk, ops.const(float(N), np.float32)))
    mean = ops("Div", counts, ops.const(float(4 * N * tk_total), np.float32))
    out["coverage"] = ops("Where", bad_taps, ops.const(INF, np.float32), mean, hint="coverage")
    # The counts behind the ratios: what the conformal tests compare (exact in float32, whatever a
    # runtime's division rounds to).
    infinity = ops.const(INF, np.float32)
    out["counts"] = {0: nc, 1: km, 2: tk, 3: nb, "coverage": counts}
    out["counts"] = {k: ops("Where", bad_taps, infinity, c) for k, c in out["counts"].items()}
    return out


def _full_cells(ops: Ops, t: CoverageTables, pred) -> tuple:  # type: ignore[no-untyped-def]
    """The predicted class's rows of full tables (``Gather``)."""
    def rows(arr: np.ndarray, hint: str, dtype: type):  # type: ignore[no-untyped-def]
        return ops("Gather", ops.init(np.asarray(arr, dtype), hint), pred, axis=0)

    lo, hi = rows(t.lo, "lo", np.float32), rows(t.hi, "hi", np.float32)
    inv_w, inv_u = rows(t.inv_width, "inv_width", np.float32), rows(t.inv_unit, "inv_unit", np.float32)
    on_r, off_r = rows(t.on_rare, "on_rare", np.float32), rows(t.off_rare, "off_rare", np.float32)
    sec = rows(t.section_rare, "section_rare", np.float32)  # (B, N, k)
    topk = rows(t.topk_rare, "topk_rare", np.float32)  # (B, N)

    def section_rare(s):  # type: ignore[no-untyped-def]
        return ops.squeeze(ops("GatherElements", sec, ops.unsq(s, 2), axis=2), 2)

    def topk_rare(idx):  # type: ignore[no-untyped-def]
        return ops("GatherElements", topk, idx, axis=1)

    k = int(t.section_rare.shape[2])
    edges = rows(section_thresholds(t.lo, t.hi, t.inv_width, k), "section_thresholds", np.float32) if k > 1 else None

    def section_index(v, lo, inv_w, k):  # type: ignore[no-untyped-def]
        # exact: the number of the class's section thresholds at or below v (float32 comparisons)
        if edges is None:  # one section: index 0 everywhere (Less(v, v) is false, also for NaN/Inf)
            return ops("Cast", ops("Less", v, v), to=ops.ir.DataType.INT64)
        return ops.reduce("ReduceSum", ops.i(ops("GreaterOrEqual", ops.unsq(v, 2), edges)), axis=2)

    return lo, hi, inv_w, inv_u, on_r, off_r, section_rare, topk_rare, section_index


def _compact_cells(ops: Ops, t: CompactTables, v, pred) -> tuple:  # type: ignore[no-untyped-def]
    """The predicted class's packed row, decoded in float32 (codes on the per-neuron grid, bits)."""
    cells = ops("Gather", ops.init(np.asarray(t.cells, np.uint16), "cells"), pred, axis=0)  # (B, N, 3)
    cells = ops.i(cells)

    def part(i: int):  # type: ignore[no-untyped-def]
        return ops.squeeze(ops("Slice", cells, ops.const([i], np.int64), ops.const([i + 1], np.int64),
                               ops.const([2], np.int64)), 2)

    q_lo, q_hi, bits = part(0), part(1), part(2)
    base = ops.init(np.asarray(t.base, np.float32)[None], "grid_base")
    step = ops.init(np.asarray(t.step, np.float32)[None], "grid_step")
    lo = ops("Add", base, ops("Mul", ops.f(q_lo), step), hint="lo")
    hi = ops("Add", base, ops("Mul", ops.f(q_hi), step), hint="hi")

    def bit(values, position):  # type: ignore[no-untyped-def]
        return ops("Mod", ops("Div", values, position), ops.const(2, np.int64))

    point = ops("Equal", bit(bits, ops.const(1 << POINT_BIT, np.int64)), ops.const(1, np.int64))
    width = ops("Sub", hi, lo)
    ranged = ops("And", ops("Greater", width, ops.const(0.0, np.float32)), ops("Not", point))
    safe = ops("Where", ranged, width, ops.const(1.0, np.float32))
    inv_w = ops("Where", ranged, ops("Div", ops.const(float(t.k_sections), np.float32), safe), ops.const(0.0, np.float32))
    fb = ops.init((1.0 / np.asarray(t.fallback_unit, np.float64)).astype(np.float32)[None], "inv_fallback_unit")
    inv_u = ops("Where", ranged, ops("Div", ops.const(1.0, np.float32), safe), fb)
    on_r = ops.f(bit(bits, ops.const(1 << ON_BIT, np.int64)))
    off_r = ops.f(bit(bits, ops.const(1 << OFF_BIT, np.int64)))
    powers = ops.const([1 << s for s in range(int(t.k_sections))], np.int64)

    def section_rare(s):  # type: ignore[no-untyped-def]
        return ops.f(bit(bits, ops("Gather", powers, s, axis=0)))

    def topk_rare(idx):  # type: ignore[no-untyped-def]
        return bit(ops("GatherElements", bits, idx, axis=1), ops.const(1 << TOPK_BIT, np.int64))

    def section_index(v, lo, inv_w, k):  # type: ignore[no-untyped-def]
        # float32 arithmetic on the decoded cell: as the kernel's float64 one but at float32 rounding
        raw = ops("Floor", ops("Mul", ops("Sub", v, lo), inv_w))
        raw = ops("Where", ops("IsNaN", raw), ops.const(0.0, np.float32), raw)  # NaN and outside: masked later
        return ops("Clip", ops.i(raw), ops.const(0, np.int64), ops.const(k - 1, np.int64), hint="section")

    return lo, hi, inv_w, inv_u, on_r, off_r, section_rare, topk_rare, section_index


def _logit_scores(ops: Ops, logits, pred, C: int) -> dict:  # type: ignore[no-untyped-def]
    """msp, max_logit and energy from one softmax sum that leaves the top class out."""
    top = ops.reduce("ReduceMax", logits, keepdims=1, hint="logit_max")
    e = ops("Exp", ops("Sub", logits, top))
    others = ops("Not", ops("Equal", ops.const(np.arange(C)[None], np.int64), ops.unsq(pred)))
    t = ops.sum_rows(ops("Where", others, e, ops.const(0.0, np.float32)))  # sum over the other classes
    top1 = ops.squeeze(top)
    one = ops.const(1.0, np.float32)
    lse = ops("Add", top1, ops("Log", ops("Add", one, t)), hint="logsumexp")
    return {SOURCE_MSP: ops("Div", t, ops("Add", one, t), hint="msp"), SOURCE_MAX_LOGIT: ops("Neg", top1, hint="max_logit"),
            SOURCE_ENERGY: ops("Neg", lse, hint="energy")}


def _mahalanobis(ops: Ops, spec: VerdictSpec, v):  # type: ignore[no-untyped-def]
    """Squared Mahalanobis distance to the nearest class mean; +inf for NaN/Inf features."""
    m = spec.mahalanobis
    x = ops.cols(v, int(m.lo), int(m.hi))
    z = ops("MatMul", x, ops.init(np.asarray(m.whiten, np.float32), "whiten"))
    zz = ops.unsq(ops.sum_rows(ops("Mul", z, z)))
    dots = ops("MatMul", z, ops.init(np.asarray(m.means_t, np.float32), "whitened_means_t"))
    two = ops.const(2.0, np.float32)
    d = ops("Add", ops("Sub", zz, ops("Mul", two, dots)), ops.init(np.asarray(m.norms, np.float32)[None], "mean_norms"))
    d = ops("Where", ops("Less", d, ops.const(0.0, np.float32)), ops.const(0.0, np.float32), d)
    nearest = ops.reduce("ReduceMin", d)
    bad = ops("Greater", ops.sum_rows(ops("Not", ops.finite(x)), ops.ir.DataType.FLOAT), ops.const(0.0, np.float32))
    return ops("Where", bad, ops.const(INF, np.float32), nearest, hint="mahalanobis")


def section_thresholds(lo: np.ndarray, hi: np.ndarray, inv_width: np.ndarray, k: int) -> np.ndarray:
    """Exact float32 section boundaries: ``t[c, n, j - 1]`` is the least float32 ``v`` in the range
    with ``floor((float64(v) - float64(lo)) * inv_width) >= j`` (+inf where none).

    So the kernel's section of a value in ``[lo, hi]``, ``min(floor(...), k - 1)``, is exactly the
    number of thresholds at or below it, which float32 comparisons in any runtime compute alike.

    Parameters
    ----------
    lo, hi : numpy.ndarray
        float32 ``(C, N)`` ranges.
    inv_width : numpy.ndarray
        float64 ``(C, N)``: ``k / (hi - lo)``, 0 for a point range.
    k : int
        Sections.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, N, k - 1)``.
    """
    lo = np.asarray(lo, np.float32)
    hi = np.asarray(hi, np.float32)
    iw = np.asarray(inv_width, np.float64)
    lo64 = lo.astype(np.float64)
    out = np.full(lo.shape + (max(k - 1, 0),), np.inf, np.float32)
    ranged = iw > 0

    def reaches(v: np.ndarray, j: int) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.floor((v.astype(np.float64) - lo64) * iw) >= j

    for j in range(1, k):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v = np.where(ranged, lo64 + j / np.where(ranged, iw, 1.0), np.inf).astype(np.float32)
        for _ in range(4):  # within an ulp or two of the boundary: walk to the least value that reaches it
            down = np.nextafter(v, np.float32(-np.inf))
            v = np.where(ranged & reaches(down, j) & (down >= lo), down, v)
            v = np.where(ranged & ~reaches(v, j), np.nextafter(v, np.float32(np.inf)), v)
        v = np.where(ranged & reaches(v, j) & (v <= hi), v, np.float32(np.inf))
        out[..., j - 1] = v
    return out


def graph_ratio(ref: np.ndarray, denominator: int) -> np.ndarray:
    """Calibration scores that are ratios of counts, as the graph computes them: float32(k) / float32(n).

    Parameters
    ----------
    ref : numpy.ndarray
        float64 ratios ``k / n``.
    denominator : int
        ``n``.

    Returns
    -------
    numpy.ndarray
        float32, the correctly rounded ``k / n`` (what ``Div`` of the two float32 gives).
    """
    counts = np.rint(np.asarray(ref, np.float64) * denominator).astype(np.float32)
    return counts / np.float32(denominator)


def count_denominator(spec: VerdictSpec, source: int) -> int | None:
    """The fixed denominator of a counting column's ratios: ``N``, ``T`` or ``4 N T`` (None for others).

    Parameters
    ----------
    spec : VerdictSpec
        The monitor's tables.
    source : int
        The column's compiled source.

    Returns
    -------
    int or None
        The denominator; None for a column that is not a ratio of counts.
    """
    if spec.coverage is None:
        return None
    places = top_places(np.asarray(spec.offsets), int(spec.coverage.k_top))
    if source in _COUNTING:
        return int(spec.n_neurons) if _COUNTING[source] == "neurons" else places
    if source == SOURCE_COMBINED:
        return 4 * int(spec.n_neurons) * places
    return None


def column_denominators(spec: VerdictSpec) -> np.ndarray:
    """Per column, the denominator of its ratios of counts, or 0 (see :func:`count_denominator`).

    The graph computes a counting column's score as ``float32(k) / float32(n)``; ``rint(score * n) / n``
    in float64 is then the compiled engine's score exactly (``n < 2**24``, checked when the graph is built).

    Parameters
    ----------
    spec : VerdictSpec
        The monitor's tables.

    Returns
    -------
    numpy.ndarray
        int64 ``(D,)``.
    """
    return np.array([count_denominator(spec, int(src)) or 0 for src in np.asarray(spec.sources)], np.int64)


class _Calibration:
    """Conformal counts against sorted calibration blocks (one block per class's group)."""

    def __init__(self, ops: Ops, spec: VerdictSpec, pred, bad_in, offsets: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        self.ops, self.spec, self.pred, self.bad_in = ops, spec, pred, bad_in
        self.tk_total = top_places(offsets, int(spec.coverage.k_top)) if spec.coverage is not None else 1
        self.main = self._blocks(spec.conformal, "cal") if spec.conformal is not None else None
        self.fused = self._blocks(spec.fusion[1], "fused_cal") if spec.fusion is not None else None

    def _blocks(self, tables, hint: str) -> tuple:  # type: ignore[no-untyped-def]
        ops = self.ops
        width = int(tables.ref.shape[1])
        lo = ops.unsq(ops("Gather", ops.init(np.asarray(tables.starts, np.int64), f"{hint}_starts"), self.pred, axis=0))
        hi = ops.unsq(ops("Gather", ops.init(np.asarray(tables.ends, np.int64), f"{hint}_ends"), self.pred, axis=0))
        idx = ops.const(np.arange(width)[None], np.int64)
        in_block = ops("And", ops("GreaterOrEqual", idx, lo), ops("Less", idx, hi), hint=f"{hint}_block")
        n = ops.squeeze(ops("Sub", hi, lo))
        allowed = None if not hasattr(tables, "allowed") else ops(
            "Gather", ops.init(np.asarray(tables.allowed, np.int64), f"{hint}_allowed"), self.pred, axis=0)
        return in_block, n, allowed

    def member_blocks(self, tables) -> tuple:  # type: ignore[no-untyped-def]
        """Block membership and sizes of the fusion members' calibration half (no allowed counts)."""
        return self._blocks(tables, "members")

    def denominator(self, source: int) -> int | None:
        """The fixed denominator of a counting column's ratios (None for other columns)."""
        return count_denominator(self.spec, source)

    def compared(self, ref: np.ndarray, source: int) -> np.ndarray:
        """Calibration scores in the space the tests compare: counts for counting columns (exact), else float32."""
        n = self.denominator(source)
        if n is not None:
            return np.rint(np.asarray(ref, np.float64) * n).astype(np.float32)
        return np.asarray(ref, np.float32)

    def as_graph_scores(self, ref: np.ndarray, source: int) -> np.ndarray:
        """Calibration scores as the graph computes the column's scores (exact ratios for counting columns)."""
        n = self.denominator(source)
        return graph_ratio(ref, n) if n is not None else np.asarray(ref, np.float32)

    def at_least(self, refs: np.ndarray, scores, in_block, dtype: int, hint: str):  # type: ignore[no-untyped-def]
        """``#{calibration scores >= s}`` in each sample's block, for ``k`` columns at once: ``(B, k)``."""
        ops = self.ops
        ref = ops.init(np.asarray(refs, np.float32)[None], f"{hint}_calibration_scores")  # (1, k, R)
        hits = ops("And", ops.unsq(in_block, 1), ops("GreaterOrEqual", ref, ops.unsq(scores, 2)))  # (B, k, R)
        return ops.reduce("ReduceSum", ops("Cast", hits, to=dtype), axis=2)

    def test(self, refs: np.ndarray, scores, blocks: tuple, hint: str) -> tuple:  # type: ignore[no-untyped-def]
        """p-values, counts and flags ``(B, k)`` of ``k`` score columns against their calibration rows."""
        ops = self.ops
        in_block, n, allowed = blocks
        count = self.at_least(refs, scores, in_block, ops.ir.DataType.INT64, hint)
        one = ops.const(1, np.int64)
        p = ops("Div", ops.f(ops("Add", one, count)), ops.f(ops.unsq(ops("Add", n, one))))
        flag = ops("Less", count, ops.unsq(allowed))
        bad = ops.unsq(self.bad_in)
        return (ops("Where", bad, ops.const(0.0, np.float32), p, hint=f"p_{hint}"),
                ops("Where", bad, ops.const(-1, np.int64), count, hint=f"count_{hint}"),
                ops("Or", flag, bad, hint=f"flag_{hint}"))


def _fused_statistic(ops: Ops, spec: VerdictSpec, calib: _Calibration, scores, compared, position: dict,  # type: ignore[no-untyped-def]
                     sources: np.ndarray):
    """The strongest half of the members' -log p (an exponential tail beyond the block's maximum), summed: ``(B,)``."""
    members, _ = spec.fusion
    columns = np.asarray(members.members).tolist()
    rows = list(zip(np.asarray(members.ref), columns))
    refs = np.stack([calib.compared(row, int(sources[c])) for row, c in rows])  # what n_ge compares
    ratios = np.stack([calib.as_graph_scores(row, int(sources[c])) for row, c in rows])  # what the tail measures
    ends = np.asarray(members.ends)
    in_block, n, _ = calib.member_blocks(members)
    pick = ops.const([position[c] for c in columns], np.int64)
    s = ops("Gather", scores, pick, axis=1)  # (B, m)
    n_ge = calib.at_least(refs, ops("Gather", compared, pick, axis=1), in_block, ops.ir.DataType.FLOAT, "members")
    n1 = ops.unsq(ops.f(ops("Add", n, ops.const(1, np.int64))))
    top = ops("Gather", ops.init(ratios[:, ends - 1].T.copy(), "member_max"), calib.pred, axis=0)  # (B, m)
    scale = ops("Gather", ops.init(np.asarray(members.scale, np.float32).T.copy(), "member_scale"), calib.pred, axis=0)
    inside = ops("Neg", ops("Log", ops("Div", ops("Add", ops.const(1.0, np.float32), n_ge), n1)))
    tail = ops("Add", ops("Log", n1), ops("Div", ops("Sub", s, top), scale))
    evidence = ops("Where", ops("Greater", n_ge, ops.const(0.0, np.float32)), inside, tail, hint="evidence")
    # the strongest half of the members' evidence (nnwatch.kernels.fusion.kept_members), added up
    strongest, _ = ops.multi("TopK", evidence, ops.const([kept_members(len(columns))], np.int64), n=2, axis=1,
                             largest=1, sorted=1)
    return ops.sum_rows(strongest)
