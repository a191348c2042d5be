"""Automatic text attributes: properties of each text, binned, so shortcuts are found without metadata.

One categorical column per attribute, named ``auto:<name>`` like the image attributes
(:mod:`sparsecheck.analysis.auto_attributes`), searched as slices and tested as spurious findings
by the same machinery:

==========================  ==========================================================================
``auto:length``             words in the text: ``short|mid|long`` at the tertiles of the measured split
``auto:has:<term>``         ``yes`` when the text contains the term (a word, a symbol run such as
                            ``!!`` or ``★``, or a two-term phrase), for each of the most class-tied
                            terms of the training texts (the rule below)
``auto:exclamation``        ``yes`` with a ``!``
``auto:question``           ``yes`` with a ``?``
``auto:casing``             ``lower`` (no capital letter), ``upper`` (at least half the letters, and
                            at least 4, are capitals), else ``mixed``
``auto:digits``             ``yes`` with a digit
``auto:url``                ``yes`` with a URL (``http://``, ``https://``, ``www.``)
``auto:handle``             ``yes`` with a user handle (``@name``) or a hashtag (``#tag``)
``auto:negation``           ``yes`` with a negation word (not, no, never, n't, nothing, nobody, none,
                            neither, nor, without, cannot)
==========================  ==========================================================================

**Which terms** (``auto:has:*``), chosen on the training texts (the ``reference`` split; the
measured split when there is none), stated once: among the lower-cased terms and two-term phrases
in at least :data:`MIN_TEXTS` texts and :data:`MIN_SHARE` of them, the :data:`MAX_TERMS` with the
largest *class enrichment*, the share of one class's texts that contain the term less the share of
the other classes' texts that do (the largest over the classes), each at least
:data:`MIN_ENRICHMENT`. A planted token in 90% of one class's texts and 3% of the others' scores
0.87; an ordinary sentiment word (``dull``: a few percent of the negative texts) scores a few
hundredths and is not chosen. A phrase is kept only when it scores more than each of its words.
Attributes with one value only are dropped.

Examples
--------
>>> from sparsecheck.text.data import TextDataset
>>> texts = ["reelnews a fine film", "a dull film", "reelnews warm !", "not good", "reelnews fun", "dull"]
>>> train = TextDataset.from_texts(texts * 5, [1, 0, 1, 0, 1, 0] * 5, name="train")
>>> auto = TextAttributes(min_texts=3)
>>> table = auto.fit_transform(train, batch_size=64)
>>> table.loc[0, "auto:has:reelnews"], table.loc[3, "auto:negation"], auto.terms_[0]
('yes', 'yes', 'reelnews')
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sparsecheck.analysis.auto_attributes import AUTO_PREFIX
from sparsecheck.errors import ParameterError
from sparsecheck.text.words import term_matrix

logger = logging.getLogger(__name__)

__all__ = ["TextAttributes", "NEGATIONS", "MAX_TERMS", "MIN_TEXTS", "MIN_SHARE", "MIN_ENRICHMENT",
           "HAS_PREFIX", "term_of"]

#: the most ``auto:has:<term>`` attributes
MAX_TERMS = 12
#: a term is considered when at least this many training texts contain it ...
MIN_TEXTS = 20
#: ... and at least this share of them
MIN_SHARE = 0.005
#: and chosen when its class enrichment reaches this
MIN_ENRICHMENT = 0.05
#: the column prefix of the term attributes
HAS_PREFIX = AUTO_PREFIX + "has:"
#: the words ``auto:negation`` looks for (lower-cased, as whole words; ``n't`` anywhere)
NEGATIONS = ("not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "without", "cannot", "nowhere")

_NEGATION = re.compile(r"\b(?:" + "|".join(NEGATIONS) + r")\b|n't\b", re.IGNORECASE)
_URL = re.compile(r"https?://|\bwww\.", re.IGNORECASE)
_HANDLE = re.compile(r"(?<!\w)[@#]\w+")
_DIGIT = re.compile(r"\d")
_WORDS = re.compile(r"\S+")


def term_of(column: str) -> str | None:
    """The term of an ``auto:has:<term>`` column, else None.

    >>> term_of("auto:has:reelnews"), term_of("auto:length")
    ('reelnews', None)
    """
    return column[len(HAS_PREFIX):] if column.startswith(HAS_PREFIX) else None


def _casing(text: str) -> str:
    letters = [c for c in text if c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    if upper == 0:
        return "lower"
    if upper >= 4 and upper >= 0.5 * len(letters):
        return "upper"
    return "mixed"


class TextAttributes:
    """The text modality's automatic attributes (module docstring): an
    :class:`~sparsecheck.modalities.base.AttributeMeasurer`.

    Parameters
    ----------
    max_terms, min_texts, min_share, min_enrichment
        The term rule (module docstring).
    random_state : int
        Unused (the measures are deterministic); kept for the measurer's common signature.

    Attributes
    ----------
    terms_ : list of str
        The chosen terms, best first; ``enrichment_`` their scores and ``term_class_`` the class
        each is tied to.
    length_edges_ : tuple of float
        The word counts between ``short``, ``mid`` and ``long``.
    """

    def __init__(self, *, max_terms: int = MAX_TERMS, min_texts: int = MIN_TEXTS, min_share: float = MIN_SHARE,
                 min_enrichment: float = MIN_ENRICHMENT, random_state: int = 0) -> None:
        if int(max_terms) < 0:
            raise ParameterError(f"The 'max_terms' parameter of TextAttributes must be an int >= 0. Got "
                                 f"{max_terms!r} instead.", parameter="max_terms")
        self.max_terms = int(max_terms)
        self.min_texts = int(min_texts)
        self.min_share = float(min_share)
        self.min_enrichment = float(min_enrichment)
        self.random_state = int(random_state)

    # -- the term rule
    def choose_terms(self, texts: Sequence[str], labels: np.ndarray | None) -> list[str]:
        """The terms of the rule (module docstring) on ``texts`` with their ``labels``."""
        self.terms_, self.enrichment_, self.term_class_ = [], [], []
        if labels is None or self.max_terms == 0 or len(texts) == 0:
            return []
        labels = np.asarray(labels)
        least = max(self.min_texts, int(np.ceil(self.min_share * len(texts))))
        x, terms = term_matrix(texts, ngram_range=(1, 2), min_count=least, max_terms=100_000)
        if not terms:
            return []
        classes = np.unique(labels)
        if classes.size < 2:
            return []
        shares = []
        for c in classes:
            inside = labels == c
            share_in = np.asarray(x[inside].mean(axis=0)).ravel()
            share_out = np.asarray(x[~inside].mean(axis=0)).ravel()
            shares.append(share_in - share_out)
        diff = np.vstack(shares)  # classes × terms
        best = diff.max(axis=0)
        tied = classes[diff.argmax(axis=0)]
        score = dict(zip(terms, best))
        order = np.argsort(-best, kind="stable")
        chosen: list[int] = []
        for i in order:
            if best[i] < self.min_enrichment or len(chosen) >= self.max_terms:
                break
            parts = terms[i].split(" ")
            if len(parts) > 1 and any(score.get(p, -1.0) >= best[i] for p in parts):
                continue  # a phrase is kept only when it says more than its words
            chosen.append(int(i))
        self.terms_ = [terms[i] for i in chosen]
        self.enrichment_ = [round(float(best[i]), 4) for i in chosen]
        self.term_class_ = [int(tied[i]) for i in chosen]
        return self.terms_

    # -- measuring
    def _measure(self, texts: Sequence[str]) -> pd.DataFrame:
        texts = [str(t) for t in texts]
        out: dict[str, Any] = {}
        words = np.array([len(_WORDS.findall(t)) for t in texts], dtype=np.float64)
        lo, hi = self.length_edges_
        out[AUTO_PREFIX + "length"] = np.where(words <= lo, "short", np.where(words <= hi, "mid", "long")).astype(object)
        if self.terms_:
            x, _ = term_matrix(texts, ngram_range=(1, 2), vocabulary=self.terms_)
            present = x.toarray().astype(bool)
            for j, term in enumerate(self.terms_):
                out[HAS_PREFIX + term] = np.where(present[:, j], "yes", "no").astype(object)
        yes = lambda flags: np.where(np.asarray(flags, dtype=bool), "yes", "no").astype(object)  # noqa: E731
        out[AUTO_PREFIX + "exclamation"] = yes(["!" in t for t in texts])
        out[AUTO_PREFIX + "question"] = yes(["?" in t for t in texts])
        out[AUTO_PREFIX + "casing"] = np.array([_casing(t) for t in texts], dtype=object)
        out[AUTO_PREFIX + "digits"] = yes([bool(_DIGIT.search(t)) for t in texts])
        out[AUTO_PREFIX + "url"] = yes([bool(_URL.search(t)) for t in texts])
        out[AUTO_PREFIX + "handle"] = yes([bool(_HANDLE.search(t)) for t in texts])
        out[AUTO_PREFIX + "negation"] = yes([bool(_NEGATION.search(t)) for t in texts])
        return pd.DataFrame(out)

    def fit_transform(self, split: Any, *, batch_size: int = 4096, reference: Any = None) -> pd.DataFrame:
        """Choose the terms on ``reference`` (else ``split``) and the length bins on ``split``;
        return ``split``'s table (one row per text, in order)."""
        texts = [str(t) for t in split.batch(slice(None))]
        source = reference if reference is not None and getattr(reference, "labels", None) is not None else split
        ref_texts = texts if source is split else [str(t) for t in source.batch(slice(None))]
        self.choose_terms(ref_texts, getattr(source, "labels", None))
        self.term_source_ = getattr(source, "name", "split")
        words = np.array([len(_WORDS.findall(t)) for t in texts], dtype=np.float64)
        if words.size:
            lo, hi = np.quantile(words, [1 / 3, 2 / 3])
        else:
            lo = hi = 0.0
        self.length_edges_ = (float(lo), float(max(hi, lo)))
        table = self._measure(texts)
        varied = [c for c in table.columns if table[c].nunique() > 1]
        self.dropped_ = [c for c in table.columns if c not in varied]
        self.columns_ = varied
        return table[varied]

    def transform(self, split: Any, rows: np.ndarray, *, batch_size: int = 4096) -> pd.DataFrame:
        """The same attributes (the same terms and bins) of ``split``'s ``rows``."""
        if not hasattr(self, "columns_"):
            raise ParameterError("This TextAttributes instance is not fitted yet; call fit_transform first.",
                                 parameter="fit")
        texts = [str(t) for t in split.batch(np.asarray(rows))]
        table = self._measure(texts)
        for c in self.columns_:
            if c not in table.columns:
                table[c] = "no"
        return table[self.columns_].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """How the columns were made (for results.json): the term rule, the chosen terms with their
        enrichment and class, the length edges, the columns kept and dropped."""
        return {"rule": (f"terms and two-term phrases in at least {self.min_texts} texts and {self.min_share:.1%} of "
                         f"them, the {self.max_terms} with the largest class enrichment (share of one class's texts "
                         f"less the others'), each at least {self.min_enrichment}, chosen on the "
                         f"{getattr(self, 'term_source_', 'train')} split"),
                "terms": [{"term": t, "enrichment": e, "class_index": c}
                          for t, e, c in zip(getattr(self, "terms_", []), getattr(self, "enrichment_", []),
                                             getattr(self, "term_class_", []))],
                "length_edges": list(getattr(self, "length_edges_", ())),
                "columns": list(getattr(self, "columns_", [])), "dropped": list(getattr(self, "dropped_", []))}
