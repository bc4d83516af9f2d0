r"""A text classifier that reads the prompt's words and nothing of the model: TF-IDF features and
a logistic regression, the baseline a language-model detector has to beat (if it does not, the
model's internals add nothing the words alone do not say).

Fitted with scikit-learn (``TfidfVectorizer`` + ``LogisticRegression``, the standard text
baseline); scored here in numpy from the fitted vocabulary, idf weights and coefficients, so
the detector file holds plain JSON and scoring needs no scikit-learn. The numpy scoring is the
same function as scikit-learn's ``decision_function`` on the fitted pipeline (tested against it):

- words: lower-cased, the token pattern ``(?u)\b\w\w+\b``, then unigrams and bigrams
  (joined by one space), each kept when it is in the vocabulary;
- features: ``(1 + log tf) * idf`` (sublinear term frequency; scikit-learn's smoothed
  ``idf = ln((1 + n) / (1 + df)) + 1`` over the ``n`` distinct training prompts), scaled to
  unit L2 norm;
- vocabulary: the terms of at least :data:`MIN_DF` distinct training prompts (wrapped copies
  of a prompt are fitted on, but do not make its words common);
- score: ``features @ coef + intercept``; a prompt with no text (model inputs given as a
  dict) scores NaN.

Reference: the TF-IDF + linear model text classifier is the standard baseline of text
classification (e.g. Wang & Manning, ACL 2012), and the one jailbreak and harmful-prompt
classifiers are compared with.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Sequence

import numpy as np

from .._optional import require
from .._validate import is_finite_list
from ..errors import InputError, ProfileError

TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
NGRAMS = (1, 2)
MIN_DF = 2  # a term must appear in two training prompts
C_GRID = (0.1, 1.0, 10.0, 100.0)  # inverse L2 strengths the fit chooses from


def terms(text: str) -> list[str]:
    """The unigrams and bigrams of a text, as scikit-learn's word analyzer makes them.

    Parameters
    ----------
    text : str
        A prompt.

    Returns
    -------
    list of str
        Terms in order (repeats kept).
    """
    words = TOKEN.findall(text.lower())
    out = list(words) if NGRAMS[0] == 1 else []
    for n in range(max(2, NGRAMS[0]), NGRAMS[1] + 1):
        out += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    return out


class TextClassifier:
    """TF-IDF + logistic regression over the prompt's words (see the module docstring).

    Parameters
    ----------
    vocabulary : sequence of str
        Terms, in feature order.
    idf : numpy.ndarray
        ``(V,)`` idf weights.
    coef : numpy.ndarray
        ``(V,)`` logistic coefficients.
    intercept : float
        Logistic intercept.
    c : float
        The inverse regularization strength it was fitted with (a record).
    """

    kind = "text_tfidf"
    cost = "prefill"  # reads no masked re-run (it reads no model state at all)
    needs_mlp = False

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, coef: np.ndarray, intercept: float,
                 c: float) -> None:
        self.vocabulary = list(vocabulary)
        self.index = {t: i for i, t in enumerate(self.vocabulary)}
        self.idf = np.asarray(idf, np.float64)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = float(intercept)
        self.c = float(c)

    @property
    def heads(self) -> list[tuple[int, int]]:
        return []

    def layers(self) -> list[int]:
        return []

    def score_texts(self, texts: Sequence[str | None]) -> np.ndarray:
        """Scores of texts (higher = more unsafe).

        Parameters
        ----------
        texts : sequence of str or None
            Prompts (None: a prompt without text).

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float64; NaN where the prompt has no text.
        """
        out = np.full(len(texts), self.intercept)
        for n, text in enumerate(texts):
            if text is None:
                out[n] = np.nan
                continue
            counts = Counter(self.index[t] for t in terms(text) if t in self.index)
            if not counts:
                continue
            cols = np.fromiter(counts.keys(), np.int64, len(counts))
            tf = np.fromiter(counts.values(), np.float64, len(counts))
            x = (1.0 + np.log(tf)) * self.idf[cols]
            out[n] += float(x @ self.coef[cols]) / float(np.linalg.norm(x))
        return out

    def score(self, s: Any) -> np.ndarray:
        """Scores of a sweep's prompts, from their texts.

        Parameters
        ----------
        s : Sweep
            A sweep that kept its texts.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float64.

        Raises
        ------
        InputError
            The sweep kept no texts.
        """
        if s.texts is None:
            raise InputError("the text baseline reads the prompts' texts, and this sweep did not keep them; score "
                             "through LanguageMonitor.features (or nnwatch.heads.collect.sweep), or leave text_tfidf "
                             "out with detectors=[...]")
        return self.score_texts(s.texts)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": self.vocabulary, "idf": self.idf.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "c": self.c,
                "analyzer": {"token_pattern": TOKEN.pattern, "ngrams": list(NGRAMS), "lowercase": True,
                             "sublinear_tf": True, "norm": "l2"}}

    @classmethod
    def from_json(cls, d: dict[str, Any], lay: Any, where: str) -> "TextClassifier":
        voc = d.get("vocabulary")
        if not (isinstance(voc, list) and voc and all(isinstance(t, str) and t for t in voc)
                and len(set(voc)) == len(voc)):
            raise ProfileError(f"{where}: 'vocabulary' must be a non-empty list of distinct terms")
        for key in ("idf", "coef"):
            if not is_finite_list(d.get(key)) or len(d[key]) != len(voc):
                raise ProfileError(f"{where}: '{key}' must be {len(voc)} finite numbers (one per term)")
        intercept, c = d.get("intercept"), d.get("c")
        if isinstance(intercept, bool) or not isinstance(intercept, (int, float)) or not math.isfinite(intercept):
            raise ProfileError(f"{where}: 'intercept' must be a finite number")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (math.isfinite(c) and c > 0):
            raise ProfileError(f"{where}: 'c' must be a positive number")
        want = {"token_pattern": TOKEN.pattern, "ngrams": list(NGRAMS), "lowercase": True, "sublinear_tf": True,
                "norm": "l2"}
        if d.get("analyzer") != want:
            raise ProfileError(f"{where}: 'analyzer' must be {want} (this version reads no other)")
        if min(d["idf"]) < 1.0:
            raise ProfileError(f"{where}: idf weights are at least 1 (smoothed idf); fit again")
        return cls(voc, np.array(d["idf"]), np.array(d["coef"]), float(d["intercept"]), float(c))


def fit_pipeline(texts: Sequence[str], labels: np.ndarray, c: float, vocabulary_texts: Sequence[str] | None = None
                 ) -> Any:
    """scikit-learn's TF-IDF + logistic regression pipeline with this module's settings, fitted.

    Parameters
    ----------
    texts : sequence of str
        Training prompts.
    labels : numpy.ndarray
        ``(N,)`` 1 = unsafe.
    c : float
        Inverse L2 strength.
    vocabulary_texts : sequence of str, optional
        The prompts the vocabulary and idf come from (default: ``texts``): the distinct
        prompts, when ``texts`` also holds copies of them inside wrappers.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The fitted pipeline (steps ``tfidf``, ``logistic``).

    Raises
    ------
    MissingDependencyError
        scikit-learn is not installed.
    InputError
        No term of two or more characters appears in :data:`MIN_DF` of the prompts.
    """
    require("sklearn.linear_model", extra="llm")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    vec = TfidfVectorizer(lowercase=True, token_pattern=TOKEN.pattern, ngram_range=NGRAMS, min_df=MIN_DF,
                          sublinear_tf=True, norm="l2")
    source = list(texts if vocabulary_texts is None else vocabulary_texts)
    try:
        vec.fit(source)
    except ValueError:  # no term left after min_df
        raise InputError(f"the text baseline needs words (two or more letters or digits) that {MIN_DF} or more of "
                         f"the {len(source)} training prompts share; these prompts have none") from None
    lr = LogisticRegression(C=c, max_iter=5000).fit(vec.transform(list(texts)), np.asarray(labels))
    return Pipeline([("tfidf", vec), ("logistic", lr)])


def from_pipeline(pipe: Any, c: float) -> TextClassifier:
    """The detector of a fitted pipeline (see :func:`fit_pipeline`).

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        Fitted.
    c : float
        Its inverse L2 strength.

    Returns
    -------
    TextClassifier
        Scores as ``pipe.decision_function``.
    """
    vec, lr = pipe.named_steps["tfidf"], pipe.named_steps["logistic"]
    vocabulary = [""] * len(vec.vocabulary_)
    for term, i in vec.vocabulary_.items():
        vocabulary[i] = term
    return TextClassifier(vocabulary, vec.idf_, lr.coef_[0], float(lr.intercept_[0]), c)


def fit_text_classifier(texts: Sequence[str], labels: np.ndarray, c: float,
                        vocabulary_texts: Sequence[str] | None = None) -> TextClassifier:
    """Fit the baseline.

    Parameters
    ----------
    texts : sequence of str
        Training prompts.
    labels : numpy.ndarray
        ``(N,)`` 1 = unsafe (both classes present).
    c : float
        Inverse L2 strength.
    vocabulary_texts : sequence of str, optional
        See :func:`fit_pipeline`.

    Returns
    -------
    TextClassifier
        The fitted detector.

    Raises
    ------
    InputError
        Labels that do not match the texts, one class only, or too few shared words.
    MissingDependencyError
        scikit-learn is not installed.
    """
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise InputError(f"the text baseline needs one label per text, got {len(texts)} texts and {len(labels)} labels")
    missing = [name for value, name in ((0, "safe (0)"), (1, "unsafe (1)")) if not (labels == value).any()]
    if missing:
        raise InputError(f"the text baseline needs safe (0) and unsafe (1) prompts; there are no {missing[0]} ones")
    if any(not isinstance(t, str) for t in texts):
        raise InputError("the text baseline is fitted on text prompts; some training prompts have no text")
    return from_pipeline(fit_pipeline(texts, labels, c, vocabulary_texts), c)
