"""The fused verdict: several detectors' conformal evidence, one calibrated decision.

Calibration (clean data only):

1. The calibration samples are split in two halves, per predicted class, by a seeded
   permutation: the *member* half A and the *fusion* half B.
2. Each member detector's scores on A, all classes pooled, form one sorted table. A live
   input's evidence from member ``k`` is ``-log`` of its conformal p-value against that table,
   with an exponential tail beyond its largest score; the fused statistic ``T`` is the sum of
   the strongest half of the members' evidence (:mod:`nnwatch.kernels.fusion`).
   The members: the candidates :func:`choose_members` keeps (no near-copies, within the cost
   budget), then, by default, only those that separate anomalies made from half A's inputs
   (:mod:`.synthetic_inputs`) from half A itself, by the rule of :mod:`.separation`.
3. ``T`` of every sample of B is computed against A, and the live ``T`` gets the conformal
   p-value against B's ``T`` of its class group (own, pooled or global, as every calibrated
   detector); the fused flag is ``p <= alpha``.

Guarantee: given A, ``T`` (its members included) is a fixed function; B and clean live inputs are exchangeable, so
``P(fused flag | clean, group) <= alpha`` exactly as for a single detector (the calibration
samples are never used twice for the same decision). The combination is chosen for power, not
validity: validity comes from step 3 whatever the members' dependence. It was chosen on clean
data and anomalies made from it (noise, blends of two classes, blur, low contrast), never on
the benchmark's attacks or other datasets, which only validate it (docs/coverage.md,
benchmarks/fusion_study.py): pooled evidence has ~C times finer p-values than per-class
evidence, and keeping the strongest half stops members that are blind, or inverted, on an
anomaly from diluting the ones that see it.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..kernels.conformal import ConformalTables
from ..kernels.fusion import TAIL_QUANTILE, FusionTables, fused_statistic, tail_scales
from ..profile.schema import Calibration
from .groups import CalibrationWarning, check_calibration_size, compile_conformal
from .separation import Separation

FUSED = "fused"
RULE = "strongest-half"  # nnwatch.kernels.fusion: the sum of the strongest half of pooled member evidence
REDUNDANCY = 0.95
COST_BUDGET = 0.10  # a costed member may add at most this share of the model's multiply-adds per sample
NOT_MEMBERS = ("coverage", FUSED)  # "coverage" is already the mean of four coverage columns


def split_halves(classes: np.ndarray, seed: int) -> np.ndarray:
    """Which calibration samples form the member half A (the rest is B), per class.

    Parameters
    ----------
    classes : numpy.ndarray
        int ``(M,)`` predicted class of each calibration sample.
    seed : int
        Seed of the permutation within each class.

    Returns
    -------
    numpy.ndarray
        bool ``(M,)``: True for A. Each class's samples are split as evenly as possible.
    """
    classes = np.asarray(classes, np.int64)
    in_a = np.zeros(len(classes), bool)
    rng = np.random.default_rng(seed)
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        in_a[rng.permutation(idx)[::2]] = True
    return in_a


def spearman(scores: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between the columns (ties get their mean rank).

    Parameters
    ----------
    scores : numpy.ndarray
        ``(M, D)``.

    Returns
    -------
    numpy.ndarray
        ``(D, D)``; 0 for a constant column.
    """
    m, d = scores.shape
    ranks = np.empty((m, d))
    for j in range(d):
        values, inverse, counts = np.unique(scores[:, j], return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        ranks[:, j] = (ends - (counts - 1) / 2.0)[inverse]
    ranks -= ranks.mean(axis=0)
    norm = np.sqrt((ranks ** 2).sum(axis=0))
    safe = np.where(norm > 0, norm, 1.0)
    rho = (ranks.T @ ranks) / np.outer(safe, safe)
    rho[norm == 0, :] = 0.0
    rho[:, norm == 0] = 0.0
    return rho


def choose_members(cal: Calibration, candidates: Sequence[str], redundancy: float = REDUNDANCY,
                   costs: dict[str, float] | None = None, budget: float | None = None,
                   rows: np.ndarray | None = None) -> list[str]:
    """Members of the fusion: candidates in the given (cost) order, near-copies and costly ones skipped.

    Parameters
    ----------
    cal : Calibration
        Clean calibration scores of the candidates.
    candidates : sequence of str
        Detectors, cheapest first.
    redundancy : float
        Skip a candidate whose absolute Spearman correlation with a chosen member is at
        least this, on the clean calibration scores.
    costs : dict, optional
        Counted per-sample cost of the costed candidates (missing: free, i.e. compiled columns).
    budget : float, optional
        Skip a costed candidate costing more than this; 0 skips every costed candidate.
    rows : numpy.ndarray, optional
        bool ``(M,)``: the calibration samples the correlations are measured on (default: all;
        :func:`add_fusion` passes half A, so that the members do not depend on half B).

    Returns
    -------
    list of str
        The members (at least one).

    Raises
    ------
    InputError
        No candidate is calibrated and within the budget.
    """
    costs = costs or {}
    # a costed candidate needs a budget that covers it; a budget of 0 admits the free columns only
    names = [n for n in candidates if n in cal.detectors and n not in NOT_MEMBERS
             and (budget is None or n not in costs or (budget > 0 and costs[n] <= budget))]
    if not names:
        raise InputError(f"none of {list(candidates)} is calibrated, within the cost budget and can join a fusion "
                         f"(calibrated: {cal.detectors})")
    scores = cal.scores if rows is None else cal.scores[np.asarray(rows, bool)]
    rho = np.abs(spearman(scores[:, [cal.detectors.index(n) for n in names]]))
    chosen: list[int] = []
    for j in range(len(names)):
        if all(rho[j, k] < redundancy for k in chosen):
            chosen.append(j)
    return [names[j] for j in chosen]


def fusion_spec(cal: Calibration, members: Sequence[str], seed: int = 0, costs: dict[str, float] | None = None,
                budget: float | None = None, model_macs: int | None = None) -> dict:
    """The fusion recorded with a calibration (checked, JSON-able).

    Parameters
    ----------
    cal : Calibration
        The calibration the members come from.
    members : sequence of str
        Member detectors, all calibrated.
    seed : int
        Seed of the A/B split.
    costs, budget, model_macs : optional
        Counted per-sample multiply-adds of the candidates, the budget they were held to and
        the model's own count (recorded).

    Returns
    -------
    dict
        ``{"members", "rule", "seed", "tail_quantile", "costs", "budget", "model_macs"}``: the
        counts of every weighed candidate (compiled members: 0), so the choice can be audited.

    Raises
    ------
    InputError
        A member is not calibrated, or the halves would be too small for ``cal.fpr``.
    """
    members = list(dict.fromkeys(members))
    missing = [m for m in members if m not in cal.detectors or m in NOT_MEMBERS]
    if not members or missing:
        raise InputError(f"fusion members must be calibrated detectors other than {list(NOT_MEMBERS)}; "
                         f"not usable: {missing or 'none given'} (calibrated: {cal.detectors})")
    check_calibration_size(len(cal.classes), cal.fpr, "a fused verdict", parts=2)
    counted = {m: 0 for m in members}  # compiled members: free
    counted.update({name: int(n) for name, n in (costs or {}).items()})  # every weighed candidate
    return {"members": members, "rule": RULE, "seed": int(seed), "tail_quantile": TAIL_QUANTILE,
            "costs": counted, "budget": None if budget is None else float(budget),
            "model_macs": None if model_macs is None else int(model_macs)}


def check_spec(spec: dict, cal: Calibration) -> None:
    """Refuse a fusion whose record does not match this nnwatch or the calibration.

    Raises
    ------
    ModelMismatchError
        Another combination rule or tail, or members missing from the calibration.
    """
    if spec.get("rule") != RULE or spec.get("tail_quantile") != TAIL_QUANTILE:
        raise ModelMismatchError(f"this calibration's fusion uses rule {spec.get('rule')!r} with tail quantile "
                                 f"{spec.get('tail_quantile')!r}; this nnwatch computes {RULE!r} with "
                                 f"{TAIL_QUANTILE}: calibrate again")
    missing = [m for m in spec.get("members", []) if m not in cal.detectors]
    if missing or not spec.get("members"):
        raise ModelMismatchError(f"fusion members {missing} are not in the calibration ({cal.detectors})")


def compile_fusion(cal: Calibration, columns: Sequence[str], n_classes: int) -> tuple[FusionTables, ConformalTables]:
    """Member tables (half A) and the fused statistic's conformal tables (half B).

    Parameters
    ----------
    cal : Calibration
        A calibration with a ``fusion`` record.
    columns : sequence of str
        The monitor's score-matrix columns (must include every member).
    n_classes : int
        ``C``.

    Returns
    -------
    tuple
        ``(FusionTables with members as column indices, one-row ConformalTables)``.

    Raises
    ------
    ModelMismatchError
        A member is not one of the monitor's columns, or the record is malformed.
    """
    spec = cal.fusion
    if spec is None:
        raise ModelMismatchError("this calibration has no fused verdict; calibrate again to get one")
    check_spec(spec, cal)
    members = list(spec["members"])
    absent = [m for m in members if m not in columns]
    if absent:
        raise ModelMismatchError(f"the fused verdict was calibrated over {members}; this monitor does not run "
                                 f"{absent}: add them to its detectors, or calibrate again for this detector set")
    in_a = split_halves(cal.classes, int(spec["seed"]))
    rows = [cal.detectors.index(m) for m in members]
    # member evidence against all of half A, classes pooled (finer p-values); the per-class
    # calibration is the final stage's, on half B
    ref = np.ascontiguousarray(np.sort(cal.scores[in_a][:, rows], axis=0).T)
    starts, ends = np.zeros(n_classes, np.int64), np.full(n_classes, ref.shape[1], np.int64)
    scale = tail_scales(ref, starts, ends)
    local = FusionTables(members=np.arange(len(members), dtype=np.int64), ref=ref, starts=starts, ends=ends,
                         scale=scale)
    t_b = fused_statistic(cal.scores[~in_a][:, rows], cal.classes[~in_a], local)
    half_b = Calibration(detectors=[FUSED], scores=t_b[:, None], classes=cal.classes[~in_a], fpr=cal.fpr,
                         min_class_samples=cal.min_class_samples)
    fused_tables, _ = compile_conformal(half_b, [FUSED], n_classes)
    tables = FusionTables(members=np.array([list(columns).index(m) for m in members], np.int64), ref=local.ref,
                          starts=local.starts, ends=local.ends, scale=scale)
    return tables, fused_tables


def add_fusion(cal: Calibration, candidates: Sequence[str], members: Sequence[str] | None = None,
               seed: int = 0, warn: bool = True, costs: dict[str, float] | None = None,
               budget: float | None = None, model_macs: int | None = None,
               separating: Callable[[list[str], np.ndarray], Separation] | None = None) -> Calibration:
    """Record a fused verdict in a calibration (members chosen by :func:`choose_members` if not given,
    then, with ``separating``, kept only where they separate synthetic anomalies).

    Parameters
    ----------
    cal : Calibration
        Calibration of the candidate detectors.
    candidates : sequence of str
        Detectors that may join, cheapest first.
    members : sequence of str, optional
        The members, chosen by the user.
    seed : int
        Seed of the A/B split.
    warn : bool
        Warn (:class:`CalibrationWarning`) instead of raising when the calibration is too small.
    costs, budget, model_macs : optional
        Counted candidate costs, the budget of :func:`choose_members`, the model's count.
    separating : callable, optional
        ``separating(candidates, in_a)`` -> :class:`~nnwatch.calibration.separation.Separation`:
        the candidates that separate synthetic anomalies made from the member half A (``in_a``,
        the bool mask of :func:`split_halves`) from half A itself. Only half A is read, so the
        fused statistic stays a fixed function given A and the guarantee stands. Used when the
        members are not given and more than one candidate remains; recorded as ``separation``.

    Returns
    -------
    Calibration
        ``cal``, with ``fusion`` set (left None when too small and ``warn``).
    """
    separation = None
    if members is not None:
        chosen = list(members)
    else:
        in_a = split_halves(cal.classes, seed)  # the choice reads half A only: B calibrates what it chose
        chosen = choose_members(cal, candidates, costs=costs, budget=budget, rows=in_a)
        if separating is not None and len(chosen) > 1:
            try:
                separation = separating(chosen, in_a)
                chosen = list(separation.members)
            except InputError as exc:  # too little data to make anomalies from: the candidates fuse
                warnings.warn(f"fused members not chosen by separation ({exc}); every candidate fuses",
                              CalibrationWarning, stacklevel=2)
    try:
        cal.fusion = fusion_spec(cal, chosen, seed, costs, budget, model_macs)
        if separation is not None:
            cal.fusion["separation"] = separation.to_dict()
    except InputError as exc:
        if not warn or members is not None:
            raise
        warnings.warn(f"no fused verdict: {exc}", CalibrationWarning, stacklevel=2)
    return cal
