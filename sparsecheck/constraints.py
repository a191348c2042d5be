"""Parameter constraints declared once, in the way of scikit-learn's ``_parameter_constraints``.

An owner (a class or function with parameters, e.g. :class:`~sparsecheck.sparse.SparseDecisionLayer`
or :func:`~sparsecheck.analysis.spurious.find_spurious_features`) states, per parameter, the list of
what it accepts: ``None``, ``"boolean"``, an :class:`Interval` or :class:`Options`. From that one
declaration come its checks (:func:`validate`), the words of their error messages
(:func:`describe`) and the limits of the matching config keys (:func:`field_limits`).

>>> rules = {"alpha": [Interval(numbers.Real, 0, 1, "both")], "k": [None, Interval(numbers.Integral, 1, None, "left")]}
>>> describe(rules, "k"), field_limits(rules, "alpha")
('None or an int in the range [1, inf)', {'ge': 0, 'le': 1})
>>> validate(rules, {"alpha": 1.5}, "f")
Traceback (most recent call last):
...
sparsecheck.errors.ParameterError: The 'alpha' parameter of f must be a float in the range [0, 1]. Got 1.5 instead.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import numpy as np

from sparsecheck.errors import ParameterError

__all__ = ["Interval", "Options", "Constraint", "describe", "is_valid", "field_limits", "validate"]


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) between ``low`` and ``high``
    (None: unbounded), ``closed`` on ``"both"`` sides, the ``"left"``, the ``"right"`` or ``"neither"``,
    as scikit-learn's ``_parameter_constraints`` state them.

    >>> Interval(numbers.Real, 0, 1, "both").describe(), Interval(numbers.Integral, 1, None, "left").describe()
    ('a float in the range [0, 1]', 'an int in the range [1, inf)')
    >>> Interval(numbers.Real, 0, 1, "neither").field_limits()
    {'gt': 0, 'lt': 1}
    """

    kind: type
    low: float | None
    high: float | None
    closed: str

    def __call__(self, v: Any) -> bool:
        if not (_is_int(v) if self.kind is numbers.Integral else _is_real(v)):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (v < self.low or (v == self.low and not left)):
            return False
        return self.high is None or not (v > self.high or (v == self.high and not right))

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        noun = "an int" if self.kind is numbers.Integral else "a float"
        return f"{noun} in the range {left}{low}, {high}{right}"

    def field_limits(self) -> dict[str, float]:
        """The same bounds as pydantic ``Field`` keywords (``ge``, ``gt``, ``le``, ``lt``)."""
        out: dict[str, float] = {}
        if self.low is not None:
            out["ge" if self.closed in ("both", "left") else "gt"] = self.low
        if self.high is not None:
            out["le" if self.closed in ("both", "right") else "lt"] = self.high
        return out


@dataclass(frozen=True)
class Options:
    """One of a few strings."""

    values: tuple[str, ...]
    extra: str = ""  # words for values the set does not list (``cuda:<index>``)
    test: Callable[[Any], bool] | None = None

    def __call__(self, v: Any) -> bool:
        return self.test(v) if self.test is not None else (isinstance(v, str) and v in self.values)

    def describe(self) -> str:
        listed = ", ".join(repr(v) for v in self.values) + (f", {self.extra}" if self.extra else "")
        return f"a str among {{{listed}}}"


_Constraint = Union[None, str, Interval, Options]

Constraint = Union[None, str, Interval, Options]


def _describe_one(c: Constraint) -> str:
    return "None" if c is None else "a bool" if c == "boolean" else c.describe()  # type: ignore[union-attr]


def _accepts(c: Constraint, v: Any) -> bool:
    if c is None:
        return v is None
    if c == "boolean":
        return isinstance(v, (bool, np.bool_))
    return bool(c(v))  # type: ignore[operator]


def describe(rules: Mapping[str, list[Constraint]], name: str) -> str:
    """What ``name`` accepts, in words: "None or an int in the range [1, inf)"."""
    return " or ".join(_describe_one(c) for c in rules[name])


def is_valid(rules: Mapping[str, list[Constraint]], name: str, value: Any) -> bool:
    """Whether ``value`` satisfies one of ``name``'s constraints."""
    return any(_accepts(c, value) for c in rules[name])


def field_limits(rules: Mapping[str, list[Constraint]], name: str) -> dict[str, float]:
    """``name``'s numeric bounds as pydantic ``Field`` keywords, for the config key that sets it."""
    bounds = [c for c in rules[name] if isinstance(c, Interval)]
    return bounds[0].field_limits() if bounds else {}




def validate(rules: Mapping[str, list[Constraint]], values: Mapping[str, Any], owner: str) -> None:
    """Raise :class:`~sparsecheck.errors.ParameterError`, in scikit-learn's words, for the first of
    ``values`` that none of its rules accepts."""
    for name, value in values.items():
        if not is_valid(rules, name, value):
            raise ParameterError(f"The {name!r} parameter of {owner} must be {describe(rules, name)}. "
                                 f"Got {value!r} instead.", parameter=name)
