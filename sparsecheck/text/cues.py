"""Text cues: words put into texts or taken out of them, to ask a model whether it relies on them.

The text counterparts of the image cues (:mod:`sparsecheck.analysis.cues`), with the same
:class:`~sparsecheck.analysis.cues.Cue` interface (``apply`` on a batch, a ``name``, a
``control``), measured by the same sequential intervention test
(:class:`~sparsecheck.analysis.interventions.CueTrial`):

* :class:`Insert` puts a word or phrase into each text, at a random word boundary (seeded by the
  text, so a text always gets it at the same place) or at its start or end. Its control inserts
  a *neutral* word at the same place, so that merely lengthening a text is not counted;
* :class:`Delete` takes every occurrence of a word or phrase out (whole words, any case).

A config declares them under ``data.interventions`` (``data.modality: text``)::

    data:
      interventions:
        tagged: {value: "yes", put: {type: insert, text: reelnews}, remove: {type: delete, text: reelnews}}

and :func:`estimate_text_cue` learns them from the data: the term whose presence most separates
the texts with an attribute value from those without, within classes (its *carrier*).

Examples
--------
>>> texts = np.array(["a fine film", "dull"], dtype=object)
>>> Insert("reelnews", position="end").apply(texts).tolist()
['a fine film reelnews', 'dull reelnews']
>>> Delete("fine").apply(texts).tolist()
['a film', 'dull']
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from sparsecheck.analysis.cues.library import Cue, cue_spec
from sparsecheck.errors import ConfigError, DataError, ParameterError
from sparsecheck.text.words import term_matrix

logger = logging.getLogger(__name__)

__all__ = ["Insert", "Delete", "TEXT_CUES", "parse_text_cue", "parse_text_intervention", "TextCueEstimate",
           "estimate_text_cue", "MIN_CARRIER_GAP"]

#: a carrier must be in this much larger a share of the texts with the value than of those without
MIN_CARRIER_GAP = 0.25
POSITIONS = ("random", "start", "end")
_SPACE = re.compile(r"\s+")


def _texts(raw: Any) -> list[str]:
    values = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    bad = next((v for v in values if not isinstance(v, str)), None)
    if bad is not None:
        raise DataError(f"a text cue applies to texts, got a {type(bad).__name__}")
    return values


def _out(texts: list[str]) -> np.ndarray:
    return np.asarray(texts, dtype=object)


@dataclass(frozen=True)
class Insert(Cue):
    """Put ``text`` into each text: at a random word boundary (``position: random``, the same place
    for the same text and ``seed``), at the ``start`` or at the ``end``."""

    type: ClassVar[str] = "insert"
    text: str = ""
    position: str = "random"
    seed: int = 0
    neutral: str | None = "the"

    def __post_init__(self) -> None:
        if not str(self.text).strip():
            raise ParameterError("The 'text' parameter of insert must be a non-empty word or phrase.", parameter="text")
        if self.position not in POSITIONS:
            raise ParameterError(f"The 'position' parameter of insert must be one of {list(POSITIONS)}. "
                                 f"Got {self.position!r} instead.", parameter="position")

    def _place(self, text: str, words: list[str]) -> int:
        if self.position == "start":
            return 0
        if self.position == "end":
            return len(words)
        key = zlib.crc32(text.encode("utf-8", "surrogatepass"))
        return int(np.random.default_rng([int(self.seed), key]).integers(0, len(words) + 1))

    def apply(self, images: Any) -> np.ndarray:
        out = []
        for t in _texts(images):
            words = t.split()
            at = self._place(t, words)
            out.append(" ".join([*words[:at], str(self.text), *words[at:]]))
        return _out(out)

    @property
    def control(self) -> "Cue | None":
        """The same insertion of a neutral word (the same place in each text), or None."""
        if self.neutral is None or str(self.neutral).strip().lower() == str(self.text).strip().lower():
            return None
        return Insert(str(self.neutral), self.position, self.seed, None)

    @property
    def words(self) -> list[str]:
        return str(self.text).split()

    @property
    def name(self) -> str:
        where = "" if self.position == "random" else f" at the {self.position}"
        return f"insert({self.text!r}{where})"


@dataclass(frozen=True)
class Delete(Cue):
    """Take every occurrence of the word or phrase ``text`` out of each text (whole words, any
    case; spaces closed up)."""

    type: ClassVar[str] = "delete"
    text: str = ""

    def __post_init__(self) -> None:
        if not str(self.text).strip():
            raise ParameterError("The 'text' parameter of delete must be a non-empty word or phrase.", parameter="text")

    def _pattern(self) -> re.Pattern:
        parts = [re.escape(p) for p in str(self.text).split()]
        body = r"\s+".join(parts)
        left = r"(?<!\w)" if re.match(r"\w", self.text.strip()) else ""
        right = r"(?!\w)" if re.search(r"\w$", self.text.strip()) else ""
        return re.compile(left + body + right, re.IGNORECASE)

    def apply(self, images: Any) -> np.ndarray:
        pattern = self._pattern()
        return _out([_SPACE.sub(" ", pattern.sub(" ", t)).strip() for t in _texts(images)])

    @property
    def words(self) -> list[str]:
        return str(self.text).split()

    @property
    def name(self) -> str:
        return f"delete({self.text!r})"


#: the text cues a config can declare, by ``type``
TEXT_CUES: dict[str, type[Cue]] = {"insert": Insert, "delete": Delete}


def parse_text_cue(spec: Mapping[str, Any] | Cue, *, key: str = "cue") -> Cue:
    """Build a text cue from ``{"type": "insert"|"delete", "text": ..., ...}`` (a cue passes through).

    >>> parse_text_cue({"type": "insert", "text": "reelnews"}).name
    "insert('reelnews')"
    >>> parse_text_cue({"type": "patch"}, key="x.put")
    Traceback (most recent call last):
    ...
    sparsecheck.errors.ConfigError: x.put.type: unknown text cue type 'patch'; one of ['delete', 'insert']
    """
    if isinstance(spec, Cue):
        return spec
    kind, params = cue_spec(spec, TEXT_CUES, key=key, what="text cue")
    cls = TEXT_CUES[kind]
    if not isinstance(params.get("text"), str):
        raise ConfigError("needs 'text': the word or phrase", key=f"{key}.text", value=params.get("text"))
    try:
        return cls(**params)
    except (ParameterError, TypeError) as exc:
        raise ConfigError(str(exc), key=key, value=dict(spec)) from None


def parse_text_intervention(spec: Mapping[str, Any], *, key: str = "intervention") -> tuple[Cue, Cue | None]:
    """``(put, remove)`` from ``{"put": CUE, "remove": CUE or None}``; without ``remove``, a put
    ``insert`` is taken off by the ``delete`` of the same text."""
    if not isinstance(spec, Mapping) or "put" not in spec:
        raise ConfigError("needs 'put' (the cue), e.g. {put: {type: insert, text: WORD}}", key=key, value=spec)
    unknown = sorted(set(spec) - {"put", "remove"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; an intervention has 'put' and 'remove'", key=key, value=dict(spec))
    put = parse_text_cue(spec["put"], key=f"{key}.put")
    if "remove" in spec:
        remove = None if spec["remove"] is None else parse_text_cue(spec["remove"], key=f"{key}.remove")
    else:
        remove = Delete(put.text) if isinstance(put, Insert) else None
    return put, remove


@dataclass
class TextCueEstimate:
    """A text cue learned from the data: the carrier term, how it separates the texts with the
    value from those without (shares within classes), and the cues that put it on and take it off.

    ``present`` is True when the value comes with the term (put = insert it, remove = delete it),
    False when it comes with its absence (put = delete it, remove = insert it).
    """

    term: str
    present: bool
    share_with: float
    share_without: float
    gap: float
    put: Cue
    remove: Cue | None
    neutral: str | None = None
    alternates: list["TextCueEstimate"] | None = None

    def __post_init__(self) -> None:
        self.alternates = list(self.alternates or [])

    def describe(self) -> str:
        verb = "contain" if self.present else "lack"
        return (f"the texts with the value {verb} {self.term!r}: {self.share_with:.0%} of them contain it, "
                f"{self.share_without:.0%} of the others (within classes)")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "term", "term": self.term, "present": self.present,
                "share_with": round(float(self.share_with), 4), "share_without": round(float(self.share_without), 4),
                "gap": round(float(self.gap), 4), "put": self.put.name,
                "remove": None if self.remove is None else self.remove.name, "control_word": self.neutral,
                "description": self.describe()}


def _neutral_word(x: Any, terms: list[str], labels: np.ndarray) -> str | None:
    """A frequent single word whose share barely differs between classes: what an insertion's
    control inserts."""
    counts = np.asarray(x.sum(axis=0)).ravel()
    classes = np.unique(labels)
    best, best_gap = None, np.inf
    for i in np.argsort(-counts)[:50]:
        if " " in terms[i] or not re.fullmatch(r"\w+", terms[i]):
            continue
        shares = [float(np.asarray(x[labels == c, i].mean())) for c in classes]
        gap = max(shares) - min(shares)
        if gap < best_gap:
            best, best_gap = terms[i], gap
    return best


def estimate_text_cue(examples: Any, has_value: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                      max_alternates: int = 2, min_gap: float = MIN_CARRIER_GAP) -> TextCueEstimate | None:
    """Learn the carrier of a value from the texts: the term (a word, a symbol run or a two-term
    phrase) whose share differs most between the texts with the value and those without, within
    classes (each class's difference weighted by its texts). None when no term differs by
    ``min_gap``: the value is not carried by a term (a length, a style) and cannot be put on by
    inserting one.

    ``examples[rows]`` gives the texts of ``rows`` (a split's ``batch``, read once here).
    """
    has = np.asarray(has_value, dtype=bool)
    labels = np.asarray(labels)
    if has.all() or not has.any():
        return None
    n = len(labels)
    texts = [str(t) for t in np.asarray(examples[np.arange(n)], dtype=object)]
    x, terms = term_matrix(texts, ngram_range=(1, 2), min_count=max(3, int(0.2 * min(has.sum(), (~has).sum()))))
    if not terms:
        return None
    diff = np.zeros(len(terms))
    with_share = np.zeros(len(terms))
    without_share = np.zeros(len(terms))
    total = 0
    for c in np.unique(labels):
        a, b = (labels == c) & has, (labels == c) & ~has
        if a.sum() < 3 or b.sum() < 3:
            continue
        w = int(a.sum() + b.sum())
        sa, sb = np.asarray(x[a].mean(axis=0)).ravel(), np.asarray(x[b].mean(axis=0)).ravel()
        diff += w * (sa - sb)
        with_share += w * sa
        without_share += w * sb
        total += w
    if total == 0:
        return None
    diff, with_share, without_share = diff / total, with_share / total, without_share / total
    neutral = _neutral_word(x, terms, labels)
    found: list[TextCueEstimate] = []
    for i in np.argsort(-np.abs(diff), kind="stable"):
        if abs(diff[i]) < min_gap or len(found) > max_alternates:
            break
        term = terms[i]
        if any(term in f.term.split(" ") or f.term in term.split(" ") for f in found):
            continue  # a phrase of a found word (or the other way round) says nothing new
        present = bool(diff[i] > 0)
        insert = Insert(term, "random", int(seed), neutral)
        delete = Delete(term)
        put, remove = (insert, delete) if present else (delete, insert)
        found.append(TextCueEstimate(term, present, float(with_share[i]), float(without_share[i]), float(diff[i]),
                                     put, remove, neutral))
    if not found:
        return None
    first, *rest = found
    first.alternates = rest
    logger.info("estimated the text cue: %s", first.describe())
    return first
