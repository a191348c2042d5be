"""The parameter constraints of :class:`~sparsecheck.sparse.SparseDecisionLayer`, declared once in
the way of scikit-learn's ``_parameter_constraints`` (:data:`PARAMETER_CONSTRAINTS`): the layer's
checks, the words of its error messages and the limits of the config's ``sparse`` section are all
generated from them."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
import torch

from sparsecheck.sparse.solvers import fista as _fista

#: the path solvers a layer may use
_SOLVERS = ("auto", "fista", "glm_saga")


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_device(v: Any) -> bool:
    if isinstance(v, torch.device):
        return v.type in ("cpu", "cuda")
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None)


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

#: what each parameter of :class:`~sparsecheck.sparse.SparseDecisionLayer` accepts, stated once:
#: the layer's checks, their messages and the config's limits (``sparse.*``) all come from here.
#: ``None`` admits None, ``"boolean"`` a bool.
PARAMETER_CONSTRAINTS: dict[str, list[_Constraint]] = {
    "alpha": [Interval(numbers.Real, 0, 1, "both")],
    "n_lambdas": [Interval(numbers.Integral, 1, None, "left")],
    "lambda_min_ratio": [Interval(numbers.Real, 0, 1, "neither")],
    "tolerance": [Interval(numbers.Real, 0, 1, "both")],
    "features_per_class": [None, Interval(numbers.Integral, 1, None, "left")],
    "early_stop": ["boolean"],
    "solver": [Options(_SOLVERS)],
    "precision": [Options(tuple(_fista.PRECISIONS))],
    "max_epochs": [None, Interval(numbers.Integral, 1, None, "left")],
    "tol": [None, Interval(numbers.Real, 0, None, "neither")],
    "lookbehind": [Interval(numbers.Integral, 1, None, "left")],
    "batch_size": [Interval(numbers.Integral, 1, None, "left")],
    "step_size": [Interval(numbers.Real, 0, None, "neither")],
    "device": [Options(("auto", "cpu", "cuda"), extra="'cuda:<index>'", test=_is_device)],
    "random_state": [None, Interval(numbers.Integral, 0, 2 ** 32 - 1, "both")],
}


def _describe_one(c: _Constraint) -> str:
    return "None" if c is None else "a bool" if c == "boolean" else c.describe()  # type: ignore[union-attr]


def _accepts(c: _Constraint, v: Any) -> bool:
    if c is None:
        return v is None
    if c == "boolean":
        return isinstance(v, (bool, np.bool_))
    return bool(c(v))  # type: ignore[operator]


def describe(name: str) -> str:
    """What ``name`` accepts, in words: "None or an int in the range [1, inf)"."""
    return " or ".join(_describe_one(c) for c in PARAMETER_CONSTRAINTS[name])


def is_valid(name: str, value: Any) -> bool:
    """Whether ``value`` satisfies one of ``name``'s constraints."""
    return any(_accepts(c, value) for c in PARAMETER_CONSTRAINTS[name])


def field_limits(name: str) -> dict[str, float]:
    """``name``'s numeric bounds as pydantic ``Field`` keywords, for the config (``sparse.<name>``).

    >>> field_limits("lambda_min_ratio"), field_limits("features_per_class")
    ({'gt': 0, 'lt': 1}, {'ge': 1})
    """
    bounds = [c for c in PARAMETER_CONSTRAINTS[name] if isinstance(c, Interval)]
    return bounds[0].field_limits() if bounds else {}


_CONSTRAINTS: dict[str, tuple[str, Any]] = {
    name: (describe(name), lambda v, name=name: is_valid(name, v)) for name in PARAMETER_CONSTRAINTS}


# ---------------------------------------------------------------------- data handling
