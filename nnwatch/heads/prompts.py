"""Prompt sets: JSONL loading (text, optional image), length-matched subsets, shared-prefix
planning, and the built-in safe-but-alarming prompts paired with unsafe ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class ImagePrompt:
    """A prompt with one image, for vision-language models.

    Attributes
    ----------
    text : str
        The prompt text.
    image : str
        Absolute path of an image file Pillow can read (checked when loaded).
    """

    text: str
    image: str

    def replace_text(self, text: str) -> "ImagePrompt":
        return ImagePrompt(text, self.image)


JSONL_FORMAT = 'prompt files are JSONL: one JSON object per line, e.g. {"prompt": "...", "label": 0}'


def prompt_text(prompt: object) -> str | None:
    """The text of a prompt (an image prompt's text; its image is not read).

    Parameters
    ----------
    prompt : str or ImagePrompt or dict
        A prompt (a dict of ready-made model inputs has no text).

    Returns
    -------
    str or None
        Its text; None for model inputs given as a dict.
    """
    if isinstance(prompt, ImagePrompt):
        return prompt.text
    return prompt if isinstance(prompt, str) else None


def check_image(path: Path, where: str) -> None:
    """Refuse an image file that does not exist or that Pillow cannot read.

    Parameters
    ----------
    path : Path
        Resolved image path.
    where : str
        ``file:line`` for the message.

    Raises
    ------
    InputError
        Missing, unreadable, or Pillow not installed.
    """
    if not path.is_file():
        raise InputError(f"{where}: image {path} does not exist (image paths are relative to the JSONL file)")
    try:
        from PIL import Image
    except ImportError:
        raise InputError(f"{where}: prompts with images need Pillow: pip install 'nnwatch[llm]'") from None
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # Pillow raises many types for damaged or foreign files
        raise InputError(f"{where}: {path} is not an image Pillow can read ({type(exc).__name__}: {exc}); give a "
                         "PNG, JPEG or another format Pillow opens") from None


@dataclass(frozen=True)
class PromptSet:
    """Prompts with labels (1 = unsafe, 0 = safe) and ids.

    Attributes
    ----------
    prompts : tuple of str or ImagePrompt
        Prompts (with an image where the JSONL row has an ``image`` field).
    labels : numpy.ndarray
        int64 ``(N,)``.
    ids : tuple of str
        Stable ids.
    name : str
        Where the set came from.
    sources : tuple of str
        Each row's ``source`` field ("" where it has none; empty tuple: not recorded).
    """

    prompts: tuple
    labels: np.ndarray
    ids: tuple
    name: str
    sources: tuple = ()

    def source_of(self) -> tuple:
        """Each row's source, one per prompt.

        Returns
        -------
        tuple of str
            ``""`` where unknown.
        """
        return self.sources if len(self.sources) == len(self.prompts) else ("",) * len(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: Sequence[int], name: str | None = None) -> "PromptSet":
        """Rows ``index`` as a new set.

        Parameters
        ----------
        index : sequence of int
            Rows to keep.
        name : str, optional
            Name of the subset.

        Returns
        -------
        PromptSet
            The subset.
        """
        idx = list(index)
        src = self.source_of()
        return PromptSet(tuple(self.prompts[i] for i in idx), self.labels[idx], tuple(self.ids[i] for i in idx),
                         name or self.name, tuple(src[i] for i in idx))

    def __add__(self, other: "PromptSet") -> "PromptSet":
        return PromptSet(self.prompts + other.prompts, np.concatenate([self.labels, other.labels]),
                         self.ids + other.ids, f"{self.name}+{other.name}", self.source_of() + other.source_of())


def load_prompts(*paths: str | os.PathLike, label: int | None = None) -> PromptSet:
    """Read JSONL prompt files (``prompt`` and ``label`` per line; ``id`` and ``image`` optional).

    ``image`` is a path relative to the JSONL file (or absolute); the row becomes an
    :class:`ImagePrompt` after the file is checked to be an image.

    Parameters
    ----------
    *paths : path
        One or more ``.jsonl`` files.
    label : int, optional
        Label of rows without a ``label`` field (None: every row needs one; -1: unknown).

    Returns
    -------
    PromptSet
        All rows, in file order.

    Raises
    ------
    InputError
        Missing file, bad JSON, empty prompt or a label other than 0/1, with file and line.
    """
    prompts, labels, ids, sources = [], [], [], []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"prompt file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text; {JSONL_FORMAT}") from None
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not JSON ({exc.msg}); {JSONL_FORMAT}") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                raise InputError(f"{path}:{n}: needs a non-empty string field 'prompt'")
            y = row.get("label", label)
            if y not in (0, 1) and not ("label" not in row and label == -1):
                raise InputError(f"{path}:{n}: label must be 0 (safe) or 1 (unsafe), got {y!r}")
            image = row.get("image")
            if image is not None:
                if not isinstance(image, str) or not image.strip():
                    raise InputError(f"{path}:{n}: 'image' must be a path (string) relative to the JSONL file")
                full = (path.parent / image).resolve()
                check_image(full, f"{path}:{n}")
                prompts.append(ImagePrompt(row["prompt"], str(full)))
            else:
                prompts.append(row["prompt"])
            labels.append(int(y))
            ids.append(str(row.get("id", f"{path.stem}-{n}")))
            sources.append(str(row.get("source") or ""))
    if not prompts:
        raise InputError(f"no prompts in {', '.join(map(str, paths))}")
    return PromptSet(tuple(prompts), np.array(labels, np.int64), tuple(ids), "+".join(Path(p).stem for p in paths),
                     tuple(sources))


CONTRAST_PAIRS = Path(__file__).resolve().parent / "data" / "contrast_pairs.jsonl"


def contrast_pairs(split: str = "all") -> PromptSet:
    """Safe prompts with alarming words, each with an unsafe counterpart on the same word.

    Written for this project (``data/contrast_pairs.jsonl``, 100 pairs): each pair shares
    an alarming word (kill, poison, hack, launder, ...) and most of its phrasing; the safe
    prompt uses the word in a harmless sense or asks for protection or history, the unsafe one
    asks for harm. A detector that keys on vocabulary flags both; one that reads intent
    separates them. Built from no public benchmark.

    Split by alarming word (words in order of first appearance, alternating): ``train`` holds
    the pairs of every other word, ``test`` the rest, so the test half's words were never seen
    in training. ``nnwatch heads fit`` adds the train half as hard examples; ``nnwatch
    evaluate --contrast`` measures over-refusal on the test half.

    Parameters
    ----------
    split : str
        ``all``, ``train`` or ``test``.

    Returns
    -------
    PromptSet
        Prompts (label 1 = unsafe), ids ``contrast-NNN-safe|unsafe``.
    """
    if split not in ("all", "train", "test"):
        raise InputError(f"contrast split {split!r}: use all, train or test")
    ps = load_prompts(CONTRAST_PAIRS)
    if split == "all":
        return ps
    rows = [json.loads(line) for line in CONTRAST_PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    words = list(dict.fromkeys(r["keyword"] for r in rows))
    keep = set(words[0::2] if split == "train" else words[1::2])
    return ps.subset([i for i, r in enumerate(rows) if r["keyword"] in keep], f"contrast_pairs[{split}]")


def length_matched(lengths: np.ndarray, labels: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """Pairs of one safe and one unsafe prompt of (nearly) equal token length.

    Greedy, shortest safe prompts first, each unsafe prompt used at most once. On the
    result, length alone has AUROC near 0.5, so a detector cannot win by counting tokens.

    Parameters
    ----------
    lengths : numpy.ndarray
        Token counts.
    labels : numpy.ndarray
        0/1 labels.
    tolerance : int
        Largest length difference within a pair.

    Returns
    -------
    numpy.ndarray
        Indices of the matched rows (both classes), sorted.
    """
    safe = sorted(np.nonzero(labels == 0)[0], key=lambda i: lengths[i])
    free = list(np.nonzero(labels == 1)[0])
    picked = []
    for i in safe:
        if not free:
            break
        j = min(free, key=lambda k: abs(int(lengths[k]) - int(lengths[i])))
        if abs(int(lengths[j]) - int(lengths[i])) <= tolerance:
            picked += [int(i), int(j)]
            free.remove(j)
    return np.array(sorted(picked), np.int64)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def plan_prefixes(token_ids: Sequence[Sequence[int]], min_gain: int = 32) -> list[int]:
    """Shared-prefix length for each prompt, so common template text is run once.

    Prompts are sorted; a group's prefix is the longest prefix all its members share. Groups
    split recursively while a subgroup of at least two prompts shares ``min_gain`` more tokens
    (the chat template's system prompt is shared by all; a jailbreak template by its group).
    A prefix always leaves at least one token of its prompt to run.

    Parameters
    ----------
    token_ids : sequence of sequences of int
        Tokenized prompts.
    min_gain : int
        Tokens a subgroup must share beyond its parent to get its own prefix.

    Returns
    -------
    list of int
        Prefix length per prompt (0 = none), in input order.
    """
    n = len(token_ids)
    order = sorted(range(n), key=lambda i: list(token_ids[i]))
    lcps = [_lcp(token_ids[order[k]], token_ids[order[k + 1]]) for k in range(n - 1)]
    out = [0] * n

    def assign(lo: int, hi: int, parent: int) -> None:  # members order[lo:hi] share `parent` tokens
        if hi - lo == 1:
            out[order[lo]] = min(parent, len(token_ids[order[lo]]) - 1)
            return
        p = min(lcps[lo:hi - 1])
        here = p if p >= parent + min_gain else parent
        start = lo
        for k in range(lo, hi - 1):  # split where the group's shortest common prefix ends
            if lcps[k] == p:
                assign(start, k + 1, here)
                start = k + 1
        assign(start, hi, here)

    if n:
        assign(0, n, 0)
    return out
