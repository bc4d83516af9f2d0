"""Public kernel wrappers refuse bad arrays before compiled code runs (never a crash)."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.errors import InputError
from nnwatch.kernels.accumulate import accumulate_ranges
from nnwatch.kernels.conformal import ConformalTables, conformal_p_values
from nnwatch.kernels.coverage import coverage_scores, make_scratch
from nnwatch.kernels.verdict import (SOURCE_DETECTOR, SOURCE_MAHALANOBIS, STAGE_ALL, Mahalanobis, VerdictPlan,
                                     VerdictTables)
from nnwatch.kernels.layout import pack_layers
from nnwatch.profile.builder import ProfileBuilder
from nnwatch.profile.signature import compile_tables


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(60, 5)).astype(np.float32), rng.normal(size=(60, 3)).astype(np.float32)]
    labels = rng.integers(0, 3, 60)
    b = ProfileBuilder([5, 3], 3, k_top=3).update_ranges(layers, labels).finish_ranges()
    return compile_tables(b.update_sections(layers, labels).build("0" * 64, ["a", "b"]), min_class_samples=1)


def good(tables, batch=4):
    return np.zeros(batch * tables.n_neurons, np.float32), np.zeros(batch, np.int64)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(buf=a["buf"].astype(np.float64)), "buf: dtype float64, expected float32"),
    (lambda a: a.update(buf=a["buf"][:-1]), "buf: shape"),
    (lambda a: a.update(buf=np.zeros(2 * a["buf"].size, np.float32)[::2]), "not C-contiguous"),
    (lambda a: a.update(pred=np.array([0, 1, 3, 0])), "class 3 out of range"),
    (lambda a: a.update(pred=np.array([0, 1, -1, 0])), "class -1 out of range"),
    (lambda a: a.update(pred=np.zeros(4, np.int32)), "pred: dtype int32, expected int64"),
    (lambda a: a.update(batch=0), "batch must be an integer >= 1"),
    (lambda a: a.update(out=np.zeros((4, 5))), "out: shape"),
    (lambda a: a.update(scratch=make_scratch(1, 2)), "too small; need at least \\(1, 3\\)"),
    (lambda a: a.update(scratch=make_scratch(1, 3), parallel=True), "too small; need at least \\(4, 3\\)"),
    (lambda a: a.update(scratch=(np.zeros((4, 3), np.float64), np.zeros((4, 3), np.int64))), "scratch\\[0\\]: dtype"),
    (lambda a: a.update(tables="tables"), "expected CoverageTables"),
])
def test_coverage_scores_refuses_bad_arguments(tables, change, message):
    buf, pred = good(tables)
    args = {"buf": buf, "batch": 4, "pred": pred, "tables": tables, "out": None, "parallel": False, "scratch": None}
    change(args)
    with pytest.raises(InputError, match=message):
        coverage_scores(**args)


def test_read_only_output_is_refused(tables):
    buf, pred = good(tables)
    out = np.zeros((4, 6))
    out.setflags(write=False)
    with pytest.raises(InputError, match="read-only"):
        coverage_scores(buf, 4, pred, tables, out=out)


def test_malformed_tables_are_refused(tables):
    from dataclasses import replace

    with pytest.raises(InputError, match="tables.section_rare"):
        replace(tables, section_rare=tables.section_rare[:, :-1])
    with pytest.raises(InputError, match="tables.offsets"):
        replace(tables, offsets=np.array([0, 5, 5, 8]))
    with pytest.raises(InputError, match="tables.k_top"):
        replace(tables, k_top=0)
    for name in ("inv_width", "inv_unit"):  # they become section indices and distances inside the kernel
        for value in (np.nan, -1.0, np.inf):
            arr = getattr(tables, name).copy()
            arr[0, 0] = value
            with pytest.raises(InputError, match=f"tables.{name} must be finite and >= 0"):
                replace(tables, **{name: arr})


def test_verdict_plan_binds_checked_arrays(tables):
    n = tables.n_neurons
    vt = VerdictTables(3, n, tables.offsets, np.array([0, SOURCE_DETECTOR]), [np.ones(2, np.bool_)], tables)
    with pytest.raises(InputError, match="logits: shape"):
        VerdictPlan(vt, 2, np.zeros((2, 4), np.float32), np.zeros(2 * n, np.float32))
    with pytest.raises(InputError, match="buf: shape"):
        VerdictPlan(vt, 2, np.zeros((2, 3), np.float32), np.zeros(5, np.float32))
    with pytest.raises(InputError, match="buf: dtype float64"):
        VerdictPlan(vt, 2, np.zeros((2, 3), np.float32), np.zeros(2 * n))


def test_conformal_inputs_are_checked():
    with pytest.raises(InputError, match="sorted ascending"):
        ConformalTables(np.array([[3.0, 1.0, 2.0]]), np.zeros(1, np.int64), np.full(1, 3, np.int64),
                        np.ones(1, np.int64), 0.3)
    with pytest.raises(InputError, match="non-empty and inside ref"):
        ConformalTables(np.array([[1.0, 2.0]]), np.zeros(1, np.int64), np.full(1, 5, np.int64),
                        np.ones(1, np.int64), 0.3)
    t = ConformalTables(np.array([[1.0, 2.0, 3.0]]), np.zeros(2, np.int64), np.full(2, 3, np.int64),
                        np.zeros(2, np.int64), 0.2)
    with pytest.raises(InputError, match="class 2 out of range"):
        conformal_p_values(np.zeros((1, 1)), np.array([2]), t)
    with pytest.raises(InputError, match="scores: shape"):
        conformal_p_values(np.zeros((1, 2)), np.array([0]), t)


def test_verdict_tables_check_what_they_pack(tables):
    n = tables.n_neurons
    masks = [np.ones(2, np.bool_)]
    with pytest.raises(InputError, match="coverage columns need coverage tables"):
        VerdictTables(3, n, tables.offsets, np.array([0, SOURCE_DETECTOR]), masks)
    with pytest.raises(InputError, match="sources must name"):
        VerdictTables(3, n, tables.offsets, np.array([7, SOURCE_DETECTOR]), masks, tables)
    with pytest.raises(InputError, match="mask: shape"):
        VerdictTables(3, n, tables.offsets, np.array([SOURCE_DETECTOR]), masks)
    with pytest.raises(InputError, match="must cover 4 classes"):
        VerdictTables(4, n, tables.offsets, np.array([0, SOURCE_DETECTOR]), masks, tables)
    with pytest.raises(InputError, match="Mahalanobis column needs"):
        VerdictTables(3, n, tables.offsets, np.array([SOURCE_MAHALANOBIS]), [np.ones(1, np.bool_)])
    bad = Mahalanobis(0, 5, np.zeros((5, 2)), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(InputError, match="means_t: shape"):
        VerdictTables(3, n, tables.offsets, np.array([SOURCE_MAHALANOBIS]), [np.ones(1, np.bool_)], mahalanobis=bad)
    vt = VerdictTables(3, n, tables.offsets, np.array([SOURCE_DETECTOR, SOURCE_DETECTOR]),
                       [np.ones(2, np.bool_), np.array([True, False])])
    plan = VerdictPlan(vt, 2, np.zeros((2, 3), np.float32), np.zeros(2 * n, np.float32))
    with pytest.raises(InputError, match="decision column 5"):
        plan(STAGE_ALL, 0, 5)
    with pytest.raises(InputError, match="decision column 1"):
        plan(STAGE_ALL, 1, 1)  # inactive under that mask
    with pytest.raises(InputError, match="mask 2"):
        plan(STAGE_ALL, 2, 0)
    with pytest.raises(InputError, match="expected a StreamState"):
        plan(STAGE_ALL, 0, 1, (np.zeros(3, np.int64), np.zeros(3)))  # raw arrays never reach the kernel
    plan(STAGE_ALL, 0, 1)


def test_profile_accumulation_checks_labels(tables):
    n = tables.n_neurons
    rows = 4
    arrays = [np.zeros(rows, np.int64), np.full((rows, n), np.inf, np.float32), np.full((rows, n), -np.inf, np.float32),
              np.zeros((rows, n)), np.zeros((rows, n)), np.zeros((rows, n), np.int64)]
    buf, _ = good(tables, 2)
    with pytest.raises(InputError, match="labels must be in \\[-1, 3\\)"):
        accumulate_ranges(buf, 2, tables.offsets, np.array([0, 3]), *arrays, 3)
    accumulate_ranges(buf, 2, tables.offsets, np.array([0, -1]), *arrays, 3)
    assert arrays[0].tolist() == [1, 0, 0, 1]


def test_pack_layers_feeds_the_checked_wrapper(tables):
    layers = [np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)]
    got = coverage_scores(pack_layers(layers), 2, np.zeros(2, np.int64), tables)
    assert got.shape == (2, 6)
