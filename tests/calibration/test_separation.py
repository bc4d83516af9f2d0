"""The fused members' choice by separation: simulations where the right answer is known, and the
AUROC it rests on against a pairwise count."""

from __future__ import annotations

import numpy as np
import pytest

from nnwatch.calibration.separation import SHARE_OF_BEST, Separation, auroc, choose_separating
from nnwatch.errors import InputError

KINDS = ("noise", "blend", "blur")


def test_auroc_is_the_pairwise_probability_with_ties_as_half():
    rng = np.random.default_rng(0)
    for _ in range(20):
        neg = rng.integers(0, 6, rng.integers(1, 30)).astype(float)
        pos = rng.integers(0, 6, rng.integers(1, 30)).astype(float)
        pos[rng.random(len(pos)) < 0.1] = np.inf
        pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
        assert auroc(neg, pos) == pytest.approx(np.mean(pairs), abs=1e-12)
    with pytest.raises(InputError, match="NaN"):
        auroc([0.0, np.nan], [1.0])


def test_informative_members_join_and_uninformative_ones_do_not():
    """Simulation: members 0 and 2 shift synthetic objects, member 1 is blind, member 3 is
    inverted; over many draws the choice is exactly {0, 2}."""
    rng = np.random.default_rng(0)
    names = ["a", "blind", "b", "inverted"]
    for _ in range(50):
        clean = rng.normal(size=(300, 4))
        shift = np.array([1.0, 0.0, 0.8, -1.0])
        synthetic = {k: rng.normal(size=(200, 4)) + shift for k in KINDS}
        choice = choose_separating(names, clean, synthetic)
        assert choice.members == ["a", "b"]


def test_the_share_of_the_best_members_separation_decides():
    """A member joins with at least SHARE_OF_BEST of the best member's AUROC - 0.5, whatever the
    best member's level: the same members join when every separation is scaled."""
    from statistics import NormalDist

    rng = np.random.default_rng(4)
    clean = rng.normal(size=(6000, 4))
    for best in (0.15, 0.4):  # every member weak, or strong
        # a shift d of a unit Gaussian has AUROC Phi(d / sqrt 2): member 2's separation is 0.6 of the
        # best member's, member 3's 0.4
        gains = np.array([best, 0.0, 0.6 * best, 0.4 * best])
        shift = np.array([np.sqrt(2) * NormalDist().inv_cdf(0.5 + g) for g in gains])
        synthetic = {k: rng.normal(size=(6000, 4)) + shift for k in KINDS}
        choice = choose_separating(["best", "blind", "above", "below"], clean, synthetic)
        gain = {m: np.mean(list(r.values())) - 0.5 for m, r in choice.auroc.items()}
        assert gain["above"] >= SHARE_OF_BEST * gain["best"] > gain["below"]
        assert choice.members == ["best", "above"]


def test_when_no_member_beats_chance_the_best_one_fuses_alone():
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(400, 3))
    synthetic = {k: rng.normal(size=(300, 3)) + np.array([-0.3, -0.6, -0.1]) for k in KINDS}
    assert choose_separating(["x", "y", "z"], clean, synthetic).members == ["z"]


def test_nan_scores_count_as_most_anomalous():
    clean = np.zeros((10, 1))
    synthetic = {"shuffle": np.full((5, 1), np.nan)}
    assert choose_separating(["m"], clean, synthetic).auroc["m"]["shuffle"] == 1.0


def test_without_samples_the_choice_is_refused_and_the_record_round_trips():
    with pytest.raises(InputError, match="synthetic"):
        choose_separating(["m"], np.zeros((4, 1)), {k: np.zeros((0, 1)) for k in KINDS})
    rng = np.random.default_rng(3)
    choice = choose_separating(["m", "n"], rng.normal(size=(50, 2)), {"blend": rng.normal(size=(40, 2)) + 2})
    assert Separation.from_dict(choice.to_dict()) == choice
