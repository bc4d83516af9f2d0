"""The project's own safe/unsafe contrast pairs: well formed, paired on one word, and new."""

from __future__ import annotations

import json
from collections import Counter

from nnwatch.heads.prompts import CONTRAST_PAIRS, contrast_pairs
from tests.conftest import shared_data


def test_every_pair_has_one_safe_and_one_unsafe_prompt_sharing_its_word():
    rows = [json.loads(line) for line in CONTRAST_PAIRS.read_text().splitlines()]
    pairs = Counter(r["pair"] for r in rows)
    assert len(pairs) >= 100 and set(pairs.values()) == {2}
    by_pair = {}
    for r in rows:
        by_pair.setdefault(r["pair"], {})[r["label"]] = r
    for pair in by_pair.values():
        assert set(pair) == {0, 1}
        word = pair[0]["keyword"].lower()
        stem = word[: max(4, len(word) - 2)]
        assert stem in pair[0]["prompt"].lower() and stem in pair[1]["prompt"].lower(), word
    ps = contrast_pairs()
    assert len(ps) == len(rows) and ps.labels.sum() == len(rows) // 2 and len(set(ps.ids)) == len(rows)


def test_pairs_are_not_taken_from_the_shared_prompt_sets():
    ours = {p.strip().lower() for p in contrast_pairs().prompts}
    folder = shared_data("prompts")
    for path in folder.glob("*.jsonl"):
        theirs = {json.loads(line)["prompt"].strip().lower() for line in path.read_text().splitlines() if line.strip()}
        assert not ours & theirs, path.name


def test_train_and_test_halves_split_by_word():
    """The halves share no alarming word and no pair; together they are the whole set."""
    import json

    from nnwatch.heads.prompts import CONTRAST_PAIRS, contrast_pairs

    rows = {r["id"]: r for r in map(json.loads, CONTRAST_PAIRS.read_text().splitlines())}
    train, test = contrast_pairs("train"), contrast_pairs("test")
    assert len(train) + len(test) == len(contrast_pairs()) == len(rows)
    words = [{rows[i]["keyword"] for i in half.ids} for half in (train, test)]
    assert not words[0] & words[1]
    for half in (train, test):
        pairs = [rows[i]["pair"] for i in half.ids]
        assert all(pairs.count(p) == 2 for p in pairs)  # both prompts of every pair
