"""Text invariance transforms: changes a text's prediction should survive (CheckList, Ribeiro et al.,
ACL 2020), and semantically equivalent rewrite rules (Ribeiro et al., ACL 2018).

An ``invariance`` assertion names one (``data.modality: text``)::

    - {name: robust-to-typos, type: invariance, transform: typos, magnitude: 0.1, max_failing_rate: 0.05}
    - name: rewrite-rules
      type: invariance
      transform: rules
      rules: ["what is -> what's", {from: "do not", to: "don't"}]
      max_failing_rate: 0.02

===============  =============================================================================
``typos``        swap two neighbouring inner letters of words of four letters or more: of each
                 such word with probability ``magnitude`` (0: of one word per text)
``names``        replace each common first name (a list of 200) by another one
``numbers``      replace each number by another of the same number of digits
``neutral``      add a neutral phrase at the start or the end ("To be honest, ", ...)
``contractions`` expand contractions (``isn't`` → ``is not``, also SST's ``is n't``), or
                 contract when there is none to expand (``is not`` → ``isn't``)
``rules``        the assertion's ``rules``, each ``FROM -> TO`` applied wherever ``FROM`` occurs
                 as whole words (any case)
===============  =============================================================================

Every transform is seeded (the assertion's ``random_state``). Only the texts a transform changes
count: a text without a name is no evidence about names (:meth:`TextTransform.changed`).

Examples
--------
>>> import torch
>>> from sparsecheck.modalities.base import Perturbation
>>> p = Perturbation(magnitude=0.0, generator=torch.Generator().manual_seed(0))
>>> texts = np.array(["it is n't what is good", "no contraction"], dtype=object)
>>> TRANSFORMS["contractions"].apply(texts, p).tolist()
['it is not what is good', 'no contraction']
>>> rules = Perturbation(magnitude=0.0, generator=torch.Generator(), rules=(("what is", "what's"),))
>>> TRANSFORMS["rules"].apply(texts, rules).tolist()
["it is n't what's good", 'no contraction']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["TextTransform", "TRANSFORMS", "parse_rules", "FIRST_NAMES", "NEUTRAL_PHRASES", "CONTRACTIONS"]

#: common English first names (``names`` swaps one for another)
FIRST_NAMES = tuple("""James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew
Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan
Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick
Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Ethan Walter Noah Jeremy
Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse Jordan Bryan Billy Joe Bruce
Gabriel Logan Albert Willie Alan Juan Wayne Elijah Randy Roy Vincent Ralph Eugene Russell Bobby Mason Philip Louis
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret Sandra Ashley
Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura Cynthia Kathleen
Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet
Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren Christina Joan Evelyn Judith
Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Madison Frances Kathryn Janice Jean Abigail
Alice Julia Judy Sophia Grace Denise Amber Doris Marilyn Danielle Beverly Isabella Theresa Diana Natalie Brittany
Charlotte Marie Kayla Alexis Lori""".split())
#: phrases ``neutral`` adds (at the start, or, for those starting with a space, at the end)
NEUTRAL_PHRASES = ("To be honest, ", "Anyway, ", "As I said, ", "Well, ", "In my view, ", " , as far as I can tell .",
                   " , I think .", " , in short .")
#: (expanded, contracted) pairs ``contractions`` moves between
CONTRACTIONS = (("is not", "isn't"), ("are not", "aren't"), ("was not", "wasn't"), ("were not", "weren't"),
                ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("cannot", "can't"),
                ("will not", "won't"), ("would not", "wouldn't"), ("could not", "couldn't"),
                ("should not", "shouldn't"), ("has not", "hasn't"), ("have not", "haven't"), ("had not", "hadn't"),
                ("it is", "it's"), ("that is", "that's"), ("what is", "what's"), ("there is", "there's"),
                ("he is", "he's"), ("she is", "she's"), ("i am", "i'm"), ("you are", "you're"),
                ("we are", "we're"), ("they are", "they're"), ("let us", "let's"), ("i have", "i've"),
                ("i will", "i'll"), ("you will", "you'll"))

_NAME = re.compile(r"\b(" + "|".join(FIRST_NAMES) + r")\b")
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z]{4,}")


def _contracted_pattern(contracted: str) -> re.Pattern:
    """``isn't`` also as SST writes it (``is n't``); ``it's`` also as ``it 's``."""
    head, _, tail = contracted.partition("'")
    if tail == "t" and head.endswith("n"):
        body = re.escape(head[:-1]) + r"\s?n\s?'\s?t"
    else:
        body = re.escape(head) + r"\s?'\s?" + re.escape(tail)
    return re.compile(r"(?<!\w)" + body + r"(?!\w)", re.IGNORECASE)


_EXPAND = [(_contracted_pattern(c), e) for e, c in CONTRACTIONS]
_CONTRACT = [(re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, e.split())) + r"(?!\w)", re.IGNORECASE), c)
             for e, c in CONTRACTIONS]


def _match_case(source: str, target: str) -> str:
    return target[:1].upper() + target[1:] if source[:1].isupper() else target


def parse_rules(rules: Sequence[Any] | None) -> tuple[tuple[str, str], ...]:
    """``((from, to), ...)`` from ``"FROM -> TO"`` strings or ``{from: ..., to: ...}`` mappings.

    Raises ValueError naming the rule that is neither, or whose ``from`` is empty.

    >>> parse_rules(["what is -> what's", {"from": "do not", "to": "don't"}])
    (('what is', "what's"), ('do not', "don't"))
    """
    out = []
    for i, rule in enumerate(rules or ()):
        if isinstance(rule, str):
            parts = re.split(r"\s*(?:->|→)\s*", rule.strip(), maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"rules[{i}] {rule!r} is not 'FROM -> TO'")
            src, dst = parts
        elif isinstance(rule, Mapping) and set(rule) == {"from", "to"}:
            src, dst = str(rule["from"]), str(rule["to"])
        else:
            raise ValueError(f"rules[{i}] must be 'FROM -> TO' or {{from: ..., to: ...}}, got {rule!r}")
        if not src.strip() or src.strip() == dst.strip():
            raise ValueError(f"rules[{i}] {rule!r}: FROM must be non-empty and differ from TO")
        out.append((src.strip(), dst.strip()))
    return tuple(out)


@dataclass(frozen=True)
class TextTransform:
    """One text invariance transform (module docstring), on a batch of texts."""

    name: str

    uses_gradient = False

    def check_magnitude(self, magnitude: float) -> None:
        if self.name == "typos" and not 0.0 <= magnitude <= 1.0:
            raise ValueError("typos takes a magnitude in [0, 1]: the share of long words given a typo (0: one per text)")

    def changed(self, raw: Any, moved: Any) -> np.ndarray:
        """Which texts the transform changed (only those count)."""
        return np.array([str(a) != str(b) for a, b in zip(raw, moved)], dtype=bool)

    def apply(self, raw: Any, perturbation: Any) -> np.ndarray:
        seed = int(perturbation.generator.initial_seed()) % (2 ** 32)
        texts = [str(t) for t in (raw.tolist() if isinstance(raw, np.ndarray) else raw)]
        out = [self._one(t, np.random.default_rng([seed, i]), perturbation) for i, t in enumerate(texts)]
        return np.asarray(out, dtype=object)

    def _one(self, text: str, rng: np.random.Generator, p: Any) -> str:
        if self.name == "typos":
            spans = [m.span() for m in _WORD.finditer(text)]
            if not spans:
                return text
            m = float(p.magnitude)
            picked = [s for s in spans if rng.random() < m] if m > 0 else [spans[int(rng.integers(len(spans)))]]
            chars = list(text)
            for a, b in picked:
                j = int(rng.integers(a + 1, b - 2)) if b - a > 3 else a + 1
                chars[j], chars[j + 1] = chars[j + 1], chars[j]
            return "".join(chars)
        if self.name == "names":
            def swap(m: re.Match) -> str:
                others = [n for n in FIRST_NAMES if n != m.group(0)]
                return others[int(rng.integers(len(others)))]
            return _NAME.sub(swap, text)
        if self.name == "numbers":
            def renumber(m: re.Match) -> str:
                digits = len(m.group(0))
                lo = 10 ** (digits - 1) if digits > 1 else 0
                new = m.group(0)
                while new == m.group(0):
                    new = str(int(rng.integers(lo, 10 ** digits)))
                return new
            return _NUMBER.sub(renumber, text)
        if self.name == "neutral":
            phrase = NEUTRAL_PHRASES[int(rng.integers(len(NEUTRAL_PHRASES)))]
            return text.rstrip(" .") + phrase if phrase.startswith(" ") else phrase + text[:1].lower() + text[1:]
        if self.name == "contractions":
            expanded = text
            for pattern, full in _EXPAND:
                expanded = pattern.sub(lambda m, full=full: _match_case(m.group(0), full), expanded)
            if expanded != text:
                return expanded
            for pattern, short in _CONTRACT:
                expanded = pattern.sub(lambda m, short=short: _match_case(m.group(0), short), expanded)
            return expanded
        if self.name == "rules":
            out = text
            for src, dst in getattr(p, "rules", ()) or ():
                pattern = re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, src.split())) + r"(?!\w)", re.IGNORECASE)
                out = pattern.sub(lambda m, dst=dst: _match_case(m.group(0), dst), out)
            return out
        raise ValueError(f"unknown text transform {self.name!r}")


#: the text invariance transforms by name
TRANSFORMS: dict[str, TextTransform] = {n: TextTransform(n) for n in
                                        ("typos", "names", "numbers", "neutral", "contractions", "rules")}
