"""LIME text on a deep feature's activation: which words make one feature of the sparse layer fire.

As for images (:mod:`sparsecheck.analysis.lime_features`) and in Wong, Santurkar & Madry (ICML
2021), LIME's local linear model is regressed on the feature's *standardised activation*, not on
a class probability. ``lime.lime_text.LimeTextExplainer`` removes words (every occurrence of a
word at once) from the text and fits one linear model per feature on the same perturbed texts:
explaining several features of one text costs the forward passes of one.

A :class:`TextExplanation`'s attribution map is one weight per distinct word of the text, in the
order of first appearance: two explanations of the same text (a trained and a randomised model,
for the sanity check) have maps of the same shape.

Examples
--------
>>> import numpy as np
>>> def target(texts):  # a "feature" that counts the word "charming"
...     return np.array([[t.split().count("charming")] for t in texts], dtype=float)
>>> lime = LimeTextFeatureExplainer(num_samples=200, random_state=0)
>>> exp = lime.explain("a charming , charming film", target, feature=7)
>>> exp.words, [w for w, _ in exp.top_words(1)], bool(exp.word_weights()["charming"] > 1.5)
(['a', 'charming', 'film'], ['charming'], True)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from sparsecheck.errors import DataError, ParameterError

__all__ = ["TextExplanation", "LimeTextFeatureExplainer", "WORD_PATTERN", "word_spans"]

#: what LIME text (and the highlights) take as a word: a run of word characters
WORD_PATTERN = r"\W+"
_WORD = re.compile(r"\w+", re.UNICODE)


def word_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, word)`` of every word of ``text`` (the words LIME text perturbs).

    >>> word_spans("it 's fine")
    [(0, 2, 'it'), (4, 5, 's'), (6, 10, 'fine')]
    """
    return [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(str(text))]


@dataclass
class TextExplanation:
    """LIME's local linear model of one feature's standardised activation on one text.

    Attributes
    ----------
    feature : int
    text : str — the explained text
    words : list of str — its distinct words, in order of first appearance
    weights : ndarray (len(words),) — LIME coefficient of each word (activation gained by keeping it)
    intercept, score : float — the local model's intercept and weighted R²
    activation : float — standardised activation on the unperturbed text
    """

    feature: int
    text: str
    words: list[str]
    weights: np.ndarray
    intercept: float
    score: float
    activation: float
    example_id: str | None = None
    num_samples: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0

    @property
    def example(self) -> str:
        return self.text

    def attribution_map(self) -> np.ndarray:
        """One weight per distinct word (:attr:`words`)."""
        return self.weights

    def word_weights(self) -> dict[str, float]:
        return {w: float(v) for w, v in zip(self.words, self.weights)}

    def top_words(self, k: int = 5, *, sign: int = 1) -> list[tuple[str, float]]:
        """The ``k`` words that raise (``sign=1``) or lower (``sign=-1``) the activation most."""
        order = np.argsort(-sign * self.weights, kind="stable")
        return [(self.words[i], round(float(self.weights[i]), 4)) for i in order[:k] if sign * self.weights[i] > 0]

    def to_dict(self) -> dict[str, Any]:
        """Summary without arrays (JSON-ready): the strongest words either way."""
        return {"feature": int(self.feature), "example_id": self.example_id, "activation": float(self.activation),
                "score": float(self.score), "intercept": float(self.intercept), "n_words": len(self.words),
                "raising": self.top_words(5, sign=1), "lowering": self.top_words(5, sign=-1),
                "num_samples": int(self.num_samples), "seconds": round(float(self.seconds), 4)}


@dataclass
class LimeTextFeatureExplainer:
    """LIME text explanations of feature activations (``lime.lime_text``), seeded.

    Parameters
    ----------
    num_samples : int
        Perturbed texts per explanation.
    kernel_width : float
        LIME's kernel width over cosine distances (LIME text's default 25).
    random_state : int
        Seeds the perturbations: every explanation of one text draws the same perturbed texts.
    batch_size : int, optional
        Perturbed texts handed to the target per call; default: the target's ``batch_size_for``,
        else all at once. ``last_batch_size_`` records the size used.
    """

    num_samples: int = 1000
    kernel_width: float = 25.0
    random_state: int = 0
    batch_size: int | None = None
    last_batch_size_: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.num_samples) < 2:
            raise ParameterError(f"The 'num_samples' parameter of LimeTextFeatureExplainer must be an int >= 2. "
                                 f"Got {self.num_samples!r} instead.", parameter="num_samples")

    def _batched(self, target: Callable[[Any], np.ndarray], example: str) -> Callable[[Sequence[str]], np.ndarray]:
        step = self.batch_size
        if step is None and hasattr(target, "batch_size_for"):
            step = target.batch_size_for(example)
        step = max(1, min(int(self.num_samples), int(step or self.num_samples)))
        self.last_batch_size_ = step

        def fn(texts: Sequence[str]) -> np.ndarray:
            texts = list(texts)
            parts = [np.asarray(target(np.asarray(texts[i:i + step], dtype=object)), dtype=np.float64)
                     for i in range(0, len(texts), step)]
            out = np.concatenate(parts)
            return out[:, None] if out.ndim == 1 else out

        return fn

    def explain_many(self, example: Any, target: Callable[[Any], np.ndarray], *, columns: Sequence[int],
                     features: Sequence[int], example_id: str | None = None) -> list[TextExplanation]:
        """Explain several of ``target``'s columns (``columns[j]`` is ``features[j]``'s) on one text
        from one set of perturbed texts."""
        from lime.lime_text import IndexedString, LimeTextExplainer

        columns, features = [int(c) for c in columns], [int(f) for f in features]
        if len(columns) != len(features) or not columns:
            raise ParameterError("explain_many needs one column per feature, at least one", parameter="columns")
        text = str(example)
        indexed = IndexedString(text, bow=True, split_expression=WORD_PATTERN)
        k = indexed.num_words()
        if k == 0:
            raise DataError(f"no words to explain in {text[:60]!r}")
        start = time.perf_counter()
        fwd0 = getattr(target, "forward_seconds", 0.0)
        lime = LimeTextExplainer(kernel_width=float(self.kernel_width), bow=True, split_expression=WORD_PATTERN,
                                 random_state=int(self.random_state), feature_selection="none")
        fn = self._batched(target, text)
        base = fn([text])[0]
        result = lime.explain_instance(text, fn, labels=tuple(columns), top_labels=None, num_features=k,
                                       num_samples=int(self.num_samples))
        words = [str(w) for w in indexed.inverse_vocab]
        seconds = (time.perf_counter() - start) / len(columns)
        forward = (getattr(target, "forward_seconds", 0.0) - fwd0) / len(columns)
        out = []
        for col, feat in zip(columns, features):
            weights = np.zeros(k, dtype=np.float64)
            for idx, w in result.local_exp[col]:
                weights[int(idx)] = float(w)
            score = result.score[col] if isinstance(result.score, dict) else result.score
            out.append(TextExplanation(feature=feat, text=text, words=words, weights=weights,
                                       intercept=float(np.ravel(result.intercept[col])[0]), score=float(score),
                                       activation=float(base[col]), example_id=example_id,
                                       num_samples=int(self.num_samples), seconds=seconds, forward_seconds=forward))
        return out

    def explain(self, example: Any, target: Callable[[Any], np.ndarray], *, feature: int = 0,
                example_id: str | None = None) -> TextExplanation:
        """Explain ``target``'s first column on one text."""
        return self.explain_many(example, target, columns=[0], features=[feature], example_id=example_id)[0]

    def attribute(self, example: Any, target: Callable[[Any], np.ndarray]) -> np.ndarray:
        """One weight per distinct word of the text (the sanity check correlates these)."""
        return self.explain(example, target).attribution_map()
