r"""A text classifier that reads the prompt's words and nothing of the model: TF-IDF features and
a logistic regression, the baseline a language-model detector has to beat (if it does not, the
model's internals add nothing the words alone do not say).

Fitted with scikit-learn (``TfidfVectorizer`` + ``LogisticRegression``, the standard text
baseline); scored here in numpy from the fitted vocabulary, idf weights and coefficients, so
the detector file holds plain JSON and scoring needs no scikit-learn. The numpy scoring is the
same function as scikit-learn's ``decision_function`` on the fitted pipeline (tested against it):

- words: lower-cased, the token pattern ``(?u)\b\w\w+\b``, then unigrams and bigrams
  (joined by one space), each kept when it is in the vocabulary;
- features: ``(1 + log tf) * idf`` (sublinear term frequency), scaled to unit L2 norm;
- score: ``features @ coef + intercept``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Sequence

import numpy as np

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
    needs_text = True

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

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Scores of texts (higher = more unsafe).

        Parameters
        ----------
        texts : sequence of str
            Prompts.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float64.
        """
        out = np.full(len(texts), self.intercept)
        for n, text in enumerate(texts):
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
        """
        if s.texts is None:
            raise InputError("the text baseline reads the prompts' texts, and this sweep did not keep them")
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
        if not isinstance(d.get("intercept"), (int, float)) or not math.isfinite(d["intercept"]):
            raise ProfileError(f"{where}: 'intercept' must be a finite number")
        c = d.get("c")
        if not isinstance(c, (int, float)) or not c > 0:
            raise ProfileError(f"{where}: 'c' must be a positive number")
        want = {"token_pattern": TOKEN.pattern, "ngrams": list(NGRAMS), "lowercase": True, "sublinear_tf": True,
                "norm": "l2"}
        if d.get("analyzer") != want:
            raise ProfileError(f"{where}: 'analyzer' must be {want} (this version reads no other)")
        if min(d["idf"]) < 1.0:
            raise ProfileError(f"{where}: idf weights are at least 1 (smoothed idf); fit again")
        return cls(voc, np.array(d["idf"]), np.array(d["coef"]), float(d["intercept"]), float(c))


def fit_pipeline(texts: Sequence[str], labels: np.ndarray, c: float) -> Any:
    """scikit-learn's TF-IDF + logistic regression pipeline with this module's settings, fitted.

    Parameters
    ----------
    texts : sequence of str
        Training prompts.
    labels : numpy.ndarray
        ``(N,)`` 1 = unsafe.
    c : float
        Inverse L2 strength.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The fitted pipeline (steps ``tfidf``, ``logistic``).
    """
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
    except ImportError:
        raise InputError("the text baseline is fitted with scikit-learn; install it (pip install -c constraints.txt "
                         "-e \".[llm]\")") from None
    pipe = Pipeline([("tfidf", TfidfVectorizer(lowercase=True, token_pattern=TOKEN.pattern, ngram_range=NGRAMS,
                                               min_df=MIN_DF, sublinear_tf=True, norm="l2")),
                     ("logistic", LogisticRegression(C=c, max_iter=5000))])
    try:
        return pipe.fit(list(texts), np.asarray(labels))
    except ValueError as exc:  # e.g. no term in two prompts
        raise InputError(f"the text baseline cannot be fitted on these {len(texts)} prompts: {exc}") from None


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


def fit_text_classifier(texts: Sequence[str], labels: np.ndarray, c: float) -> TextClassifier:
    """Fit the baseline.

    Parameters
    ----------
    texts : sequence of str
        Training prompts.
    labels : numpy.ndarray
        ``(N,)`` 1 = unsafe (both classes present).
    c : float
        Inverse L2 strength.

    Returns
    -------
    TextClassifier
        The fitted detector.
    """
    labels = np.asarray(labels)
    if len(texts) != len(labels) or not ((labels == 0).any() and (labels == 1).any()):
        raise InputError(f"the text baseline needs one label per text and both classes, got {len(texts)} texts, "
                         f"{len(labels)} labels")
    return from_pipeline(fit_pipeline(texts, labels, c), c)
