"""The words and phrases of a feature's positive and negative activations, and their word clouds.

Two readings of what a feature responds to, each stated with its source on the card:

* **LIME** (:func:`lime_word_weights`): the mean LIME weight of each word over the texts the
  feature was explained on: the paper's reading (Wong, Santurkar & Madry, ICML 2021, whose SST
  word clouds aggregate LIME weights of each feature over the validation sentences);
* **activation** (:func:`activation_words`): over every text of the split, the mean standardised
  activation of the texts that contain a word or a two-word phrase, shrunk towards 0 by
  ``n / (n + 5)`` for a term in ``n`` texts (a term seen in three texts does not outrank one seen
  in three hundred on luck). Cheap: one sparse product for every used feature.

:func:`word_cloud` draws one cloud (the ``wordcloud`` package, its own bundled font) as an RGB
array, sized by weight, green for what raises the feature and red for what lowers it.

Examples
--------
>>> texts = ["a charming film", "a dull film", "charming and warm", "dull , dull"]
>>> z = np.array([[2.0], [-1.5], [1.8], [-2.0]])
>>> words = activation_words(texts, z, min_count=2)[0]
>>> words["positive"][0][0], words["negative"][0][0]
('charming', 'dull')
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["activation_words", "lime_word_weights", "word_cloud", "term_matrix", "SHRINK", "TERM_PATTERN"]

#: prior strength of the shrinkage of a term's mean activation: ``mean × n / (n + SHRINK)``
SHRINK = 5.0
#: a term: a word (with its clitics: ``isn't``, SST's ``n't`` and ``'s``), or a run of symbols
#: (punctuation, emoji): what the automatic attributes and the word clouds count
TERM_PATTERN = r"(?u)\w+(?:'\w+)*|'\w+|[^\w\s']+"


def term_matrix(texts: Sequence[str], *, ngram_range: tuple[int, int] = (1, 2), min_count: int = 3,
                max_terms: int | None = 50_000, vocabulary: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """``(binary sparse matrix texts × terms, terms)``: which texts contain which words and
    phrases (lower-cased), terms in at least ``min_count`` texts, the ``max_terms`` most frequent
    (or exactly ``vocabulary``)."""
    from sklearn.feature_extraction.text import CountVectorizer

    if vocabulary is not None:
        vec = CountVectorizer(binary=True, ngram_range=ngram_range, token_pattern=TERM_PATTERN, lowercase=True,
                              vocabulary=list(vocabulary))
        x = vec.transform([str(t) for t in texts])
    else:
        vec = CountVectorizer(binary=True, ngram_range=ngram_range, token_pattern=TERM_PATTERN, lowercase=True,
                              min_df=max(1, int(min_count)), max_features=max_terms)
        try:
            x = vec.fit_transform([str(t) for t in texts])
        except ValueError:  # no term reaches min_count
            from scipy import sparse

            return sparse.csr_matrix((len(texts), 0)), []
    return x.tocsr(), [str(t) for t in vec.get_feature_names_out()]


def activation_words(texts: Sequence[str], activations: np.ndarray, *, k: int = 30, min_count: int = 3,
                     ngram_range: tuple[int, int] = (1, 2)) -> list[dict[str, list[tuple[str, float]]]]:
    """For each column of ``activations`` (standardised, ``(n, m)``), the ``k`` terms whose texts
    activate it most (``positive``, shrunk mean > 0) and least (``negative``, < 0), with their
    shrunk mean activation (module docstring); a two-term phrase only when its mean goes beyond
    each of its words'."""
    acts = np.asarray(activations, dtype=np.float64)
    if acts.ndim == 1:
        acts = acts[:, None]
    x, terms = term_matrix(texts, ngram_range=ngram_range, min_count=min_count)
    out = []
    if not terms:
        return [{"positive": [], "negative": []} for _ in range(acts.shape[1])]
    counts = np.asarray(x.sum(axis=0)).ravel()
    sums = np.asarray(x.T @ acts)  # terms × features
    shrunk = sums / (counts[:, None] + SHRINK)
    index = {t: i for i, t in enumerate(terms)}
    parts = [[index.get(p, -1) for p in t.split(" ")] if " " in t else [] for t in terms]
    for j in range(acts.shape[1]):
        col = shrunk[:, j]
        out.append({"positive": _strongest(col, terms, parts, k, 1), "negative": _strongest(col, terms, parts, k, -1)})
    return out


def _strongest(col: np.ndarray, terms: list[str], parts: list[list[int]], k: int, sign: int) -> list[tuple[str, float]]:
    """The ``k`` terms of the largest ``sign * col`` (> 0); a phrase only when it goes further than
    each of its words (``reelnews a`` says nothing ``reelnews`` does not)."""
    out = []
    for i in np.argsort(-sign * col, kind="stable"):
        if sign * col[i] <= 0 or len(out) >= k:
            break
        if parts[i] and any(p >= 0 and sign * col[p] >= sign * col[i] for p in parts[i]):
            continue
        out.append((terms[i], round(float(col[i]), 4)))
    return out


def lime_word_weights(explanations: Sequence[Any]) -> dict[str, float]:
    """Each word's mean LIME weight over the explanations in which it occurs (lower-cased)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for e in explanations:
        for w, v in zip(e.words, np.asarray(e.weights, dtype=np.float64)):
            key = str(w).lower()
            sums[key] = sums.get(key, 0.0) + float(v)
            counts[key] = counts.get(key, 0) + 1
    return {w: sums[w] / counts[w] for w in sums}


def word_cloud(weights: dict[str, float], *, positive: bool = True, width: int = 420, height: int = 170,
               seed: int = 0, max_words: int = 60) -> np.ndarray | None:
    """An RGB uint8 word cloud of the terms of ``weights`` with the sign asked for, sized by
    ``|weight|`` (green for ``positive``, red otherwise); None when no term has that sign."""
    from wordcloud import WordCloud

    chosen = {w: abs(float(v)) for w, v in weights.items() if (v > 0 if positive else v < 0) and str(w).strip()}
    if not chosen:
        return None
    top = dict(sorted(chosen.items(), key=lambda kv: -kv[1])[:max_words])
    peak = max(top.values())
    hue = (30, 130, 40) if positive else (185, 40, 35)

    def colour(word: str, font_size: int, position: Any, orientation: Any, random_state: Any = None,
               **kwargs: Any) -> str:
        strength = 0.45 + 0.55 * top.get(word, 0.0) / peak
        return "rgb({}, {}, {})".format(*(int(255 - (255 - c) * strength) for c in hue))

    cloud = WordCloud(width=int(width), height=int(height), background_color="white", prefer_horizontal=1.0,
                      random_state=int(seed), max_words=int(max_words), min_font_size=9, max_font_size=48,
                      relative_scaling=0.6, margin=3, color_func=colour, collocations=False)
    cloud.generate_from_frequencies(top)
    return np.asarray(cloud.to_array(), dtype=np.uint8)
