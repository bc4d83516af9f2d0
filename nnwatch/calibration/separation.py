"""Which candidate members tell anomalies made from clean data from the clean data: one rule for
classifiers and object detectors.

A member of a fused verdict that cannot tell an odd input from a clean one adds clean-looking
evidence to the fused sum and dilutes the members that can. Which members those are depends on
the model and its taps, so it is measured at calibration from what a user has: clean data, and
anomalies made from it (:mod:`.synthetic_inputs` for classifiers,
:mod:`nnwatch.objects.member_choice` for objects). A member's *separation* is its AUROC of the
synthetic anomalies against the clean data, averaged over the kinds of anomaly, minus 0.5
(chance). A member joins when its separation is at least :data:`SHARE_OF_BEST` of the best
member's. The rule has no absolute threshold, so it means the same for a model whose members all
separate well and for one whose members mostly do not; the best member always joins (alone when
no member beats chance). Evidence: benchmarks/fusion_study.py (classifiers) and
benchmarks/objects.py; docs/coverage.md.

This module also holds the AUROC's definition (:func:`auroc`), which
:mod:`nnwatch.eval.metrics` re-exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError

SHARE_OF_BEST = 0.5  # a member joins with at least half the best member's separation (AUROC - 0.5)
RULE = f"mean synthetic AUROC - 0.5 >= {SHARE_OF_BEST} x the best member's"


def check_score_pair(neg: object, pos: object) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as flat float64 arrays: non-empty and without NaN (+inf is accepted).

    Parameters
    ----------
    neg, pos : array_like
        Scores of in-distribution and anomalous samples.

    Returns
    -------
    tuple of numpy.ndarray
        ``(neg, pos)``, flat float64.

    Raises
    ------
    InputError
        An empty set or a NaN.
    """
    neg = np.asarray(neg, np.float64).ravel()
    pos = np.asarray(pos, np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise InputError(f"metrics need both classes: {neg.size} in-distribution and {pos.size} anomalous scores")
    if np.isnan(neg).any() or np.isnan(pos).any():
        raise InputError("scores contain NaN; give finite scores or +inf (for the most anomalous)")
    return neg, pos


def auroc(neg: object, pos: object) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + P(tie) / 2 (higher = anomalous).

    Parameters
    ----------
    neg, pos : array_like
        Scores of in-distribution and anomalous samples (+inf allowed, NaN refused).

    Returns
    -------
    float
        AUROC in [0, 1]; ties are counted exactly, independent of sample order.
    """
    neg, pos = check_score_pair(neg, pos)
    allv = np.concatenate([neg, pos])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sorted_v = allv[order]
    # Average ranks over ties.
    uniq, start, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[neg.size :].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


@dataclass(frozen=True)
class Separation:
    """The members chosen by their separation, with the evidence behind the choice.

    Attributes
    ----------
    members : list of str
        The chosen members, in candidate order.
    auroc : dict
        candidate -> kind of anomaly -> AUROC of synthetic against clean.
    synthetic : dict
        kind -> synthetic anomalies compared.
    clean : int
        Clean samples compared.
    """

    members: list[str]
    auroc: dict[str, dict[str, float]]
    synthetic: dict[str, int]
    clean: int

    @classmethod
    def from_dict(cls, record: dict) -> "Separation":
        """The choice from its :meth:`to_dict` record.

        Raises
        ------
        KeyError, TypeError, ValueError
            A damaged record.
        """
        return cls(members=[str(m) for m in record["members"]],
                   auroc={str(m): {str(k): float(v) for k, v in row.items()} for m, row in record["auroc"].items()},
                   synthetic={str(k): int(v) for k, v in record["synthetic"].items()}, clean=int(record["clean"]))

    def to_dict(self) -> dict:
        """JSON-able record."""
        return {"rule": RULE, "members": list(self.members), "auroc": {m: dict(r) for m, r in self.auroc.items()},
                "synthetic": dict(self.synthetic), "clean": int(self.clean)}

    def separations(self) -> dict[str, float]:
        """Each candidate's separation: its mean AUROC over the kinds minus 0.5.

        Returns
        -------
        dict
            candidate -> separation in ``[-0.5, 0.5]``.
        """
        return {m: float(np.mean(list(row.values()))) - 0.5 for m, row in self.auroc.items()}


def choose_separating(names: Sequence[str], clean: np.ndarray, synthetic: dict[str, np.ndarray],
                      share: float = SHARE_OF_BEST) -> Separation:
    """The candidates whose scores separate synthetic anomalies from clean samples.

    Parameters
    ----------
    names : sequence of str
        The candidates (columns of the score matrices).
    clean : numpy.ndarray
        ``(M, m)`` clean samples' scores (higher = more anomalous; NaN counts as +inf).
    synthetic : dict
        kind -> ``(M_k, m)`` synthetic anomalies' scores (a kind may have none).
    share : float
        Least share of the best candidate's separation that joins.

    Returns
    -------
    Separation

    Raises
    ------
    InputError
        No clean or no synthetic samples to compare, or scores of the wrong width.
    """
    names = list(names)
    clean = np.nan_to_num(np.asarray(clean, np.float64), nan=np.inf, posinf=np.inf, neginf=-np.inf)  # NaN as +inf
    kinds = [k for k, s in synthetic.items() if len(s)]
    if not names or clean.ndim != 2 or clean.shape[1] != len(names):
        raise InputError(f"clean scores must be (samples, {len(names)} candidates), got {clean.shape}")
    if not len(clean) or not kinds:
        raise InputError(f"choosing fused members needs clean and synthetic samples; got {len(clean)} clean and "
                         f"{sum(len(s) for s in synthetic.values())} synthetic: calibrate on more data (for a detector, "
                         "frames where it finds objects), or give the members")
    synth = {k: np.nan_to_num(np.asarray(synthetic[k], np.float64), nan=np.inf, posinf=np.inf, neginf=-np.inf)
             for k in kinds}
    bad = [k for k in kinds if synth[k].ndim != 2 or synth[k].shape[1] != len(names)]
    if bad:
        raise InputError(f"synthetic scores must be (samples, {len(names)} candidates); got "
                         f"{ {k: synth[k].shape for k in bad} }")
    table = {n: {k: auroc(clean[:, j], synth[k][:, j]) for k in kinds} for j, n in enumerate(names)}
    gain = {n: float(np.mean(list(table[n].values()))) - 0.5 for n in names}
    best = max(names, key=lambda n: gain[n])
    chosen = [n for n in names if gain[n] >= share * gain[best]] if gain[best] > 0 else [best]
    return Separation(members=chosen, auroc=table, synthetic={k: int(len(s)) for k, s in synthetic.items()},
                      clean=int(len(clean)))
