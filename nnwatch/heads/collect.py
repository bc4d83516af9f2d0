"""Run many prompts through a scorer: head angles and per-layer hidden states in one sweep.

Prompts are grouped by shared token prefix (see :func:`plan_prefixes`), each prefix is run
once, and every prompt then costs one plain pass over its own tokens plus the masked
re-runs of the layers from each head's layer on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .._progress import Progress
from ..errors import InputError
from .angles import angle_degrees
from .prompts import PromptSet, plan_prefixes, prompt_text


@dataclass
class Sweep:
    """Per-prompt results of one sweep.

    Attributes
    ----------
    angles : numpy.ndarray
        ``(N, len(heads))`` degrees.
    states : numpy.ndarray
        ``(N, L+1, D)`` float32 last-token hidden states (entering each layer, then final).
    lengths : numpy.ndarray
        ``(N,)`` prompt tokens after templating.
    heads : list of (layer, head)
        Column order of ``angles``.
    seconds : numpy.ndarray
        ``(N,)`` wall time per prompt (prefix passes are charged to the first prompt using them).
    mlp : numpy.ndarray or None
        ``(N, L * I)`` float32 last-token MLP activations, when asked for.
    prefill_seconds : numpy.ndarray or None
        ``(N,)`` wall time of each prompt's plain pass alone (the rest of ``seconds`` is
        the masked re-runs).
    texts : tuple of str or None
        Each prompt's text (an image prompt's text), for detectors that read the words.
    """

    angles: np.ndarray
    states: np.ndarray
    lengths: np.ndarray
    heads: list
    seconds: np.ndarray
    mlp: np.ndarray | None = None
    prefill_seconds: np.ndarray | None = None
    texts: tuple | None = None

    def angle_columns(self, heads: Sequence[tuple[int, int]]) -> np.ndarray:
        """Angles of ``heads``, in that order.

        Parameters
        ----------
        heads : sequence of (layer, head)
            Heads this sweep masked.

        Returns
        -------
        numpy.ndarray
            ``(N, len(heads))`` degrees.
        """
        cols = {tuple(h): k for k, h in enumerate(self.heads)}
        missing = [h for h in heads if tuple(h) not in cols]
        if missing:
            raise InputError(f"heads {missing} were not masked in this sweep (it masked {self.heads})")
        return self.angles[:, [cols[tuple(h)] for h in heads]]

    def subset(self, index: np.ndarray) -> "Sweep":
        """Rows ``index`` as a new sweep.

        Parameters
        ----------
        index : numpy.ndarray
            Rows (int indices or a boolean mask).

        Returns
        -------
        Sweep
            The rows.
        """
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        texts = None if self.texts is None else tuple(np.asarray(self.texts, dtype=object)[index].tolist())
        return Sweep(self.angles[index], self.states[index], self.lengths[index], self.heads, self.seconds[index],
                     pick(self.mlp), pick(self.prefill_seconds), texts)


def encode_all(encode: Callable[[object], dict], prompts: Sequence[object], label: str = "prompts",
               text_only: bool = False) -> list[dict]:
    """Encode every prompt before any model pass, naming the first one refused (the one such step).

    Parameters
    ----------
    encode : callable
        Prompt -> model inputs (a scorer's encoder).
    prompts : sequence
        Text prompts or :class:`~nnwatch.heads.prompts.ImagePrompt`.
    label : str
        What the prompts are, for the message.
    text_only : bool
        Refuse prompts whose inputs are more than token ids (images), for runtimes that take
        text only.

    Returns
    -------
    list of dict
        The model inputs, in prompt order.

    Raises
    ------
    InputError
        A prompt the encoder refuses (over-long, empty, unreadable image), or an image prompt
        where ``text_only``; the message says which prompt.
    """
    out = []
    for n, prompt in enumerate(prompts):
        try:
            enc = encode(prompt)
        except InputError as exc:
            raise InputError(f"{label}, prompt {n + 1} of {len(prompts)}: {exc}") from None
        if text_only and set(enc) - {"input_ids", "attention_mask"}:
            raise InputError(f"{label}, prompt {n + 1} of {len(prompts)}: the onnxruntime prefill takes text prompts "
                             "only; score image prompts on the torch path")
        out.append(enc)
    return out


def sweep(scorer: object, prompts: PromptSet | Sequence[str], heads: Sequence[tuple[int, int]],
          share_prefixes: bool = True, min_gain: int = 16, progress: bool = False, label: str = "prompts",
          mlp: bool = False) -> Sweep:
    """Angles for ``heads`` and hidden states for every prompt.

    Parameters
    ----------
    scorer : TorchHeadScorer
        The scorer.
    prompts : PromptSet or sequence of str
        Prompts.
    heads : sequence of (layer, head)
        Heads to mask (may be empty: hidden states only).
    share_prefixes : bool
        Run shared token prefixes once.
    min_gain : int
        See :func:`plan_prefixes`.
    progress : bool
        Progress line on stderr.
    label : str
        Progress label.
    mlp : bool
        Also keep last-token MLP activations.

    Returns
    -------
    Sweep
        The results, in prompt order.
    """
    texts = list(prompts.prompts if isinstance(prompts, PromptSet) else prompts)
    heads = [(int(a), int(b)) for a, b in heads]
    ids, text_only, encoded = [], [], []
    for enc in encode_all(scorer.encode, texts, label):  # type: ignore[attr-defined]
        ids.append(enc["input_ids"][0].tolist())
        text_only.append(set(enc) <= {"input_ids", "attention_mask"})
        encoded.append(enc if text_only[-1] else None)  # pixels are not kept for a whole sweep
    plens = plan_prefixes(ids, min_gain) if share_prefixes else [0] * len(ids)
    # Image prompts run whole: a shared prefix passes only token ids, and their forward needs
    # the pixels together with the image tokens.
    plens = [p if ok else 0 for p, ok in zip(plens, text_only)]
    order = sorted(range(len(texts)), key=lambda i: (ids[i][:plens[i]], i))
    n_layers = scorer.layout.n_layers
    angles = np.zeros((len(texts), len(heads)))
    states = None
    acts = None
    seconds = np.zeros(len(texts))
    prefill = np.zeros(len(texts))
    bar = Progress(len(texts), label, progress)
    state, key = None, None
    for i in order:
        start = time.perf_counter()
        want = tuple(ids[i][:plens[i]])
        if want != key:
            state, key = (scorer.prefix(want) if want else None), want
        final, layer_states, ctx = scorer.base_pass(encoded[i] if encoded[i] is not None else texts[i], state)
        prefill[i] = time.perf_counter() - start
        if states is None:
            states = np.zeros((len(texts), n_layers + 1, layer_states.shape[1]), np.float32)
        states[i] = layer_states
        if mlp:
            a = scorer.mlp_activations(ctx)
            if a is not None:
                if acts is None:
                    acts = np.zeros((len(texts), a.shape[0]), np.float32)
                acts[i] = a
        if heads:
            masked = scorer.masked_from_base(ctx, heads)
            angles[i] = [angle_degrees(final, masked[h]) for h in heads]
        seconds[i] = time.perf_counter() - start
        bar.update(1)
    bar.close()
    return Sweep(angles, states, np.array([len(x) for x in ids]), heads, seconds, acts, prefill,
                 tuple(prompt_text(p) for p in texts))
