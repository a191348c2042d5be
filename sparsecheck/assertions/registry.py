"""The registry of assertion types: what a type is (:class:`AssertionType`), how one is registered
(:func:`register_assertion`) and the parameter models types validate against (:class:`Params`,
:class:`PerExampleParams`, :func:`check_class`); assertions themselves are :mod:`sparsecheck.assertions.spec`."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

from sparsecheck.errors import ParameterError, brief


class Params(BaseModel):
    """Base of every assertion's parameter model: unknown keys are errors, ``class`` is ``class_``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PerExampleParams(Params):
    """Thresholds shared by per-example (Kang et al.) assertions.

    An example fails when its severity exceeds ``severity_threshold``; the assertion fails when
    more than ``max_failing`` examples fail (or, if given, more than a ``max_failing_rate`` share).
    """

    severity_threshold: float = 0.0
    max_failing: int = Field(0, ge=0)
    max_failing_rate: float | None = Field(None, ge=0, le=1)


def check_class(value: Any, info: ValidationInfo) -> Any:
    """Field validator: a class given by name must be one of the config's ``class_names``."""
    names = (info.context or {}).get("class_names")
    if value in ("*", None) or names is None:
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a class: {brief(value)}")
    if isinstance(value, int):
        if not 0 <= value < len(names):
            raise ValueError(f"class index {value} is out of range (there are {len(names)} classes)")
        return value
    if str(value) not in names:
        hint = difflib.get_close_matches(str(value), names, n=1)
        raise ValueError(f"unknown class {brief(value)}" + (f"; did you mean {brief(hint[0])}?" if hint else
                                                             f" (classes: {brief(names, 200)})"))
    return value


@dataclass(frozen=True)
class AssertionType:
    """A registered assertion function and what it needs.

    Attributes
    ----------
    name : str
        What ``type:`` says in YAML.
    func : callable
        ``func(data, params)`` when ``params`` is a model, else ``func(data, **kwargs)``. Returns
        ``Outcome(...)`` (an :class:`~sparsecheck.assertions.AssertionResult`), a bool, or
        per-example severities (an array aligned with the prediction table's rows, or a Series
        indexed by example id).
    family : str
        ``metric``, ``sparse``, ``table``, ``model`` or ``custom``.
    params : pydantic model class or None
        Validates the parameters; None means the function's keyword arguments are the parameters.
    needs_labels : bool or callable
        Whether it needs the ``label`` column (a callable gets the params).
    requires : tuple of str, or callable
        What it needs from the :class:`~sparsecheck.assertions.context.AssertionContext`
        (``sparse_layer``, ``sparse_predictions``, ``feature_attributes``, ``model``, ``dataset``,
        ``input_spec``); a callable gets the params.
    """

    name: str
    func: Callable[..., Any]
    family: str = "custom"
    params: type[BaseModel] | None = None
    needs_labels: bool | Callable[[Any], bool] = False
    requires: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    summary: str = ""


_REGISTRY: dict[str, AssertionType] = {}


def register_assertion(name: str | None = None, *, family: str = "custom", params: type[BaseModel] | None = None,
                       needs_labels: bool | Callable[[Any], bool] = False,
                       requires: Sequence[str] | Callable[[Any], tuple[str, ...]] = (),
                       replace: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an assertion function under ``name`` (default: the function's name).

    The function gets an :class:`~sparsecheck.assertions.context.AssertionContext` (the prediction
    table plus whatever the run has: sparse layer, feature associations, model, dataset) and its
    parameters, and returns ``Outcome(...)`` (an :class:`~sparsecheck.assertions.AssertionResult`),
    a bool, or per-example severities (the Kang et al. form: higher is worse, 0 is fine).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sparsecheck.assertions import Assertion, run_assertions
    >>> @register_assertion("low-confidence", needs_labels=False, replace=True)
    ... def low_confidence(data, floor: float = 0.5):
    ...     return np.clip(floor - data.table["confidence"].to_numpy(), 0, None)
    >>> table = pd.DataFrame({"id": ["a", "b", "c"], "prediction": [0, 1, 1], "confidence": [0.9, 0.4, 0.7]})
    >>> result = run_assertions([Assertion.of("low-confidence", floor=0.5)], table)[0]
    >>> result.status, result.failing_examples["id"].tolist()
    ('fail', ['b'])
    """
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        key = name or func.__name__
        old = _REGISTRY.get(key)
        if old is not None and old.func is not func and not replace:
            raise ParameterError(f"an assertion type named {key!r} is already registered "
                                 f"({old.func.__module__}.{old.func.__qualname__}); pass replace=True",
                                 parameter="name")
        kind = AssertionType(key, func, family, params, needs_labels,
                             requires if callable(requires) else tuple(requires),
                             (inspect.getdoc(func) or "").split("\n", 1)[0])
        _REGISTRY[key] = kind
        func.__sparsecheck_assertion__ = kind  # type: ignore[attr-defined]
        return func
    return decorate


def registered_types() -> dict[str, AssertionType]:
    """A copy of the registry: type name -> :class:`AssertionType`."""
    return dict(_REGISTRY)
