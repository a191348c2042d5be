"""The declarative assertion: what is checked, at what severity, against what threshold.

An :class:`Assertion` is a small immutable object: a ``name``, a ``type`` (a registered assertion
function), a ``severity`` (``error`` fails the run, ``warning`` is reported), and validated
parameters (the scope, e.g. ``by: [background]`` or ``class: seven``, and the threshold, e.g.
``min: 0.8``). Built-in types are registered by :mod:`sparsecheck.assertions.builtins` and
:mod:`sparsecheck.assertions.model_assertions`; users register their own with
:func:`register_assertion` or reference a function from YAML as ``custom: package.module:function``.

In a config, assertions are a list under ``assertions:``::

    assertions:
      - name: accuracy-by-slice
        type: accuracy
        by: [background, annotator]
        max_drop: 0.10
        confidence: 0.95
      - name: confident-predictions
        custom: mypackage.checks:low_confidence     # fn(data, **params) -> severities
        severity: warning
        max_failing_rate: 0.05

A config implies an error-severity assertion named ``better-than-chance``: the dense head's test
accuracy must be significantly above the majority-class rate (type ``better_than_chance``; when
the predictions match the labels under another class order, its message names that order).
Declaring ``data.spurious_attributes`` implies one named ``no-spurious-reliance``: it fails exactly
on the run's spurious findings for those attributes (type ``no_spurious_findings``: the same rule
and the same count as the report's findings; the rule's thresholds are ``analysis.spurious_*``).
An entry with an implied assertion's name and no ``type`` adjusts it (``enabled: false``,
``severity: warning``, its parameters); one with a ``type`` replaces it. The association-only check
is the ``no_reliance`` type.

Malformed specs raise :class:`~sparsecheck.errors.AssertionSpecError` naming the assertion and key,
when the config is loaded, before any work.

Examples
--------
>>> a = parse_assertion({"name": "acc", "type": "accuracy", "min": 0.8})
>>> a.name, a.type, a.severity, a.family, a.needs_labels, a.threshold, a.scope
('acc', 'accuracy', 'error', 'metric', True, 0.8, 'overall')
>>> parse_assertion({"name": "acc", "type": "accuracy", "min": "not-a-number"})
Traceback (most recent call last):
...
sparsecheck.errors.AssertionSpecError: assertion 'acc', key 'min': Input should be a valid number, unable to parse string as a number (got 'not-a-number')
>>> [a.name for a in parse_assertions([], spurious_attributes=["background"])]
['no-spurious-reliance']
>>> [(a.name, a.enabled) for a in parse_assertions([{"name": "better-than-chance", "enabled": False}],
...                                                  chance_guard=True)]
[('better-than-chance', False)]
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from sparsecheck.assertions.results import SEVERITIES
from sparsecheck.errors import AssertionSpecError, ParameterError, brief
from sparsecheck.assertions.registry import (
    AssertionType,
    Params,
    PerExampleParams,
    _REGISTRY,
    check_class,
    register_assertion,
    registered_types,
)

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.assertions.context import AssertionContext
    from sparsecheck.assertions.results import AssertionResult

__all__ = [
    "Assertion",
    "AssertionType",
    "Params",
    "PerExampleParams",
    "register_assertion",
    "registered_types",
    "parse_assertion",
    "parse_assertions",
    "DEFAULT_RELIANCE",
    "DEFAULT_CHANCE",
    "DEFAULT_AUTOMATIC",
    "check_class",
]

#: name of the assertion implied by ``data.spurious_attributes``
DEFAULT_RELIANCE = "no-spurious-reliance"
#: name of the assertion a config implies: the dense head beats the majority-class rate
DEFAULT_CHANCE = "better-than-chance"
#: name of the assertion implied by the automatic image attributes: no shortcut found from the pixels
DEFAULT_AUTOMATIC = "no-automatic-shortcuts"
#: what an entry with one of these names and no ``type`` adjusts
IMPLIED = (DEFAULT_CHANCE, DEFAULT_RELIANCE, DEFAULT_AUTOMATIC)
COMMON_KEYS = ("name", "type", "custom", "severity", "enabled", "description")


# --------------------------------------------------------------------------- the assertion
@dataclass(frozen=True)
class Assertion:
    """One declared assertion.

    Build one with :meth:`of` (any registered type), a built-in constructor such as
    ``Assertion.accuracy(min=0.8)``, :meth:`custom` (your function), or from YAML with
    :func:`parse_assertion`. Run it with :func:`sparsecheck.assertions.run_assertions`.

    Examples
    --------
    >>> a = Assertion.of("recall", name="recall-seven", **{"class": "seven"}, min=0.9, severity="warning")
    >>> a.scope, a.threshold, a.severity
    ('class seven', 0.9, 'warning')
    >>> a.to_spec()
    {'name': 'recall-seven', 'type': 'recall', 'severity': 'warning', 'min': 0.9, 'class': 'seven'}
    """

    name: str
    type: str
    params: Any = None  # a Params model instance, or a dict of keyword arguments for custom functions
    severity: str = "error"
    enabled: bool = True
    description: str = ""
    kind: AssertionType | None = field(default=None, repr=False, compare=False)
    #: added by :func:`parse_assertions` because the config implies it (``better-than-chance``, or
    #: ``no-spurious-reliance`` from ``data.spurious_attributes``), not declared
    implied: bool = field(default=False, repr=False, compare=False)

    # ---- constructors
    @classmethod
    def of(cls, type: str, *, name: str | None = None, severity: str = "error", enabled: bool = True,
           description: str = "", class_names: Sequence[str] | None = None, **params: Any) -> "Assertion":
        """An assertion of a registered ``type`` with ``params`` (validated; errors name the key)."""
        raw = {"name": name or type, "type": type, "severity": severity, "enabled": enabled,
               "description": description, **_unalias(params)}
        return parse_assertion(raw, class_names=class_names)

    @classmethod
    def custom(cls, func: Callable[..., Any] | str, *, name: str | None = None, severity: str = "error",
               needs_labels: bool | None = None, description: str = "", **params: Any) -> "Assertion":
        """An assertion from your own function ``func(data, **params)`` (or ``"package.module:function"``).

        The function returns ``Outcome(...)`` (an AssertionResult), a bool, or per-example
        severities; with severities, ``severity_threshold``, ``max_failing`` and ``max_failing_rate``
        set when it fails.

        Examples
        --------
        >>> import pandas as pd
        >>> from sparsecheck.assertions import run_assertions
        >>> table = pd.DataFrame({"id": ["a", "b"], "prediction": [0, 0], "confidence": [0.9, 0.8]})
        >>> a = Assertion.custom(lambda data: data.table["prediction"].nunique() > 1, name="uses-classes")
        >>> run_assertions([a], table)[0].status
        'fail'
        """
        raw: dict[str, Any] = {"name": name or getattr(func, "__name__", "custom"), "custom": func,
                               "severity": severity, "description": description, **params}
        if needs_labels is not None:
            raw["needs_labels"] = needs_labels
        return parse_assertion(raw)

    # ---- derived properties
    @property
    def family(self) -> str:
        return self.kind.family if self.kind else "custom"

    @property
    def needs_labels(self) -> bool:
        """Whether it needs labels (a monitoring job on unlabeled batches runs only those that don't)."""
        if self.kind is None:
            return False
        if isinstance(self.params, dict) and "needs_labels" in self.params:
            return bool(self.params["needs_labels"])
        nl = self.kind.needs_labels
        return bool(nl(self.params) if callable(nl) else nl)

    @property
    def requires(self) -> tuple[str, ...]:
        """What it needs besides the prediction table (see :class:`AssertionType`)."""
        if self.kind is None:
            return ()
        req = self.kind.requires
        return tuple(req(self.params) if callable(req) else req)

    @property
    def param_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (YAML names, e.g. ``class`` not ``class_``)."""
        if isinstance(self.params, BaseModel):
            return self.params.model_dump(by_alias=True)
        return dict(self.params or {})

    @property
    def scope(self) -> str:
        """What the assertion looks at, in words: ``overall``, ``slices by a, b``, ``class seven``, ..."""
        p = self.param_dict
        parts = []
        if p.get("class") not in (None, "*"):
            parts.append(f"class {p['class']}")
        elif "class" in p:
            parts.append("every class")
        if p.get("by"):
            parts.append("slices by " + ", ".join("×".join(b) if isinstance(b, (list, tuple)) else str(b)
                                                  for b in p["by"]))
        for key in ("attribute", "key", "sequence", "transform", "column"):
            if p.get(key):
                v = p[key]
                parts.append(f"{key} {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}")
        if p.get("head") == "sparse":
            parts.append("sparse head")
        return "; ".join(parts) or "overall"

    @property
    def threshold(self) -> Any:
        """The declared threshold (first of min, max, max_drop, max_increase, max_gap, max_share, ...)."""
        p = self.param_dict
        for key in ("min", "max", "max_drop", "max_increase", "max_gap", "max_share", "max_failing_rate",
                    "max_failing"):
            if p.get(key) is not None:
                return p[key]
        return None

    def replace(self, **changes: Any) -> "Assertion":
        """A copy with some fields changed (``name``, ``severity``, ``enabled``, ``description``)."""
        return dataclasses.replace(self, **changes)

    def to_spec(self) -> dict[str, Any]:
        """The YAML form (defaults left out): ``parse_assertion(a.to_spec())`` gives ``a`` back."""
        out: dict[str, Any] = {"name": self.name}
        if self.kind is not None and self.kind.name.startswith("custom:"):
            out["custom"] = self.kind.name.removeprefix("custom:")
        else:
            out["type"] = self.type
        out["severity"] = self.severity
        if not self.enabled:
            out["enabled"] = False
        if self.description:
            out["description"] = self.description
        if isinstance(self.params, BaseModel):
            out.update(self.params.model_dump(by_alias=True, exclude_defaults=True))
        else:
            out.update(self.params or {})
        return out

    def evaluate(self, data: "AssertionContext") -> "AssertionResult | bool | Any":
        """Call the assertion function on ``data`` (the engine turns the return value into a result)."""
        if self.kind is None:
            raise ParameterError(f"assertion {self.name!r} has no function", parameter="kind")
        if self.kind.params is not None:
            return self.kind.func(data, self.params)
        kwargs = {k: v for k, v in (self.params or {}).items() if k not in _CUSTOM_RESERVED}
        return self.kind.func(data, **kwargs)


# --------------------------------------------------------------------------- parsing
_CUSTOM_RESERVED = ("needs_labels", "severity_threshold", "max_failing", "max_failing_rate")


def _unalias(params: Mapping[str, Any]) -> dict[str, Any]:
    return {("class" if k in ("class_", "cls") else k): v for k, v in params.items()}


def _label(raw: Any, index: int | None) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"]:
        return raw["name"]
    if isinstance(raw, Mapping) and isinstance(raw.get("type"), str):
        return raw["type"]
    return f"assertions[{index}]" if index is not None else "<assertion>"


def _loc_key(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif str(p).startswith(("function-", "list[", "tuple[", "dict[", "union[", "str", "int", "float",
                                "literal[", "nullable[", "is-instance", "lax-", "json-or-python")):
            continue
        else:
            parts.append(str(p))
    return ".".join(parts) or "<params>"


def _short(value: Any) -> str:
    return brief(value, 60)


def _validate_model(model: type[BaseModel], params: dict[str, Any], label: str,
                    class_names: Sequence[str] | None) -> BaseModel:
    try:
        return model.model_validate(params, context={"class_names": None if class_names is None
                                                     else list(class_names)})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _loc_key(err["loc"])
        if err["type"] == "extra_forbidden":
            known = sorted(f.alias or n for n, f in model.model_fields.items())
            hint = difflib.get_close_matches(key, known, n=1)
            raise AssertionSpecError("unknown key" + (f"; did you mean {hint[0]!r}?" if hint else "")
                                     + f" (keys: {', '.join(COMMON_KEYS[:1] + COMMON_KEYS[3:] + tuple(known))})",
                                     assertion=label, key=key) from None
        if err["type"] == "missing":
            raise AssertionSpecError("required key is missing", assertion=label, key=key) from None
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["loc"]:
            msg += f" (got {_short(err.get('input'))})"
        raise AssertionSpecError(msg, assertion=label, key=key if err["loc"] else None,
                                 value=err.get("input")) from None


def _import_custom(ref: Any, label: str) -> AssertionType:
    if callable(ref):
        func = ref
        where = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"
    else:
        if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
            raise AssertionSpecError(f"must look like 'package.module:function', got {_short(ref)}",
                                     assertion=label, key="custom", value=ref)
        mod_name, attr = ref.split(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise AssertionSpecError(f"cannot import {mod_name!r}: {exc}", assertion=label, key="custom",
                                     value=ref) from exc
        func = module
        try:
            for part in attr.split("."):
                func = getattr(func, part)
        except AttributeError as exc:
            raise AssertionSpecError(f"{mod_name!r} has no attribute {attr!r}", assertion=label, key="custom",
                                     value=ref) from exc
        if not callable(func):
            raise AssertionSpecError(f"{ref!r} is not callable", assertion=label, key="custom", value=ref)
        where = ref
    registered = getattr(func, "__sparsecheck_assertion__", None)
    if isinstance(registered, AssertionType):
        return registered
    return AssertionType(f"custom:{where}", func, "custom", None, False, (),
                         (inspect.getdoc(func) or "").split("\n", 1)[0])


def _validate_kwargs(kind: AssertionType, params: dict[str, Any], label: str) -> dict[str, Any]:
    """Custom functions without a params model: keys must be keyword arguments of the function."""
    out: dict[str, Any] = {}
    for key in _CUSTOM_RESERVED:
        if key not in params:
            continue
        value = params[key]
        if key == "needs_labels":
            if not isinstance(value, bool):
                raise AssertionSpecError(f"must be true or false (got {_short(value)})", assertion=label,
                                         key=key, value=value)
        else:
            try:
                PerExampleParams.model_validate({key: value})
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"]
                raise AssertionSpecError(f"{msg} (got {_short(value)})", assertion=label, key=key,
                                         value=value) from None
        out[key] = value
    rest = {k: v for k, v in params.items() if k not in _CUSTOM_RESERVED}
    try:
        sig = inspect.signature(kind.func)
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        return {**out, **rest}
    ps = list(sig.parameters.values())
    if not ps or ps[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise AssertionSpecError("the function must take the assertion data as its first argument",
                                 assertion=label, key="custom")
    named = {p.name: p for p in ps[1:] if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                      inspect.Parameter.KEYWORD_ONLY)}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ps)
    for key in rest:
        if key not in named and not var_kw:
            raise AssertionSpecError(f"unknown key: {kind.func.__name__}() takes "
                                     f"{sorted(named) or 'no parameters'}", assertion=label, key=key)
    for pname, p in named.items():
        if p.default is inspect.Parameter.empty and pname not in rest:
            raise AssertionSpecError("required key is missing (a parameter of the function)",
                                     assertion=label, key=pname)
    return {**out, **rest}


def parse_assertion(raw: Mapping[str, Any], *, index: int | None = None,
                    class_names: Sequence[str] | None = None) -> Assertion:
    """Build an :class:`Assertion` from its YAML mapping, validating every key.

    Parameters
    ----------
    raw : mapping
        ``name``, ``type`` (a registered type) or ``custom`` (``package.module:function``),
        optional ``severity`` (``error``/``warning``), ``enabled``, ``description``; every other
        key is a parameter of the type.
    index : int, optional
        Position in the ``assertions:`` list, for errors about an unnamed entry.
    class_names : list of str, optional
        When known, class names in parameters are checked against them.

    Raises
    ------
    AssertionSpecError
        naming the assertion and the key.
    """
    label = _label(raw, index)
    if not isinstance(raw, Mapping):
        raise AssertionSpecError(f"each assertion must be a mapping of keys, got {type(raw).__name__}",
                                 assertion=label)
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise AssertionSpecError(f"must be a non-empty string (got {_short(name)})", assertion=label, key="name",
                                 value=name)
    if ("type" in raw) == ("custom" in raw):
        raise AssertionSpecError("give exactly one of 'type' (a built-in or registered assertion) or 'custom' "
                                 "(package.module:function)", assertion=label, key="type")
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        raise AssertionSpecError(f"must be 'error' or 'warning' (got {_short(severity)})", assertion=label,
                                 key="severity", value=severity)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise AssertionSpecError(f"must be true or false (got {_short(enabled)})", assertion=label, key="enabled",
                                 value=enabled)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise AssertionSpecError("must be a string", assertion=label, key="description", value=description)
    params = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    if "custom" in raw:
        kind = _import_custom(raw["custom"], label)
        type_name = kind.name
    else:
        type_name = raw["type"]
        if not isinstance(type_name, str) or type_name not in _REGISTRY:
            known = sorted(_REGISTRY)
            hint = difflib.get_close_matches(str(type_name), known, n=1)
            raise AssertionSpecError(f"unknown assertion type {type_name!r}"
                                     + (f"; did you mean {hint[0]!r}?" if hint else "")
                                     + f" (types: {', '.join(known)}; or custom: package.module:function)",
                                     assertion=label, key="type", value=type_name)
        kind = _REGISTRY[type_name]
    if kind.params is not None:
        validated: Any = _validate_model(kind.params, params, label, class_names)
    else:
        validated = _validate_kwargs(kind, params, label)
    return Assertion(name=name or (kind.name if "custom" not in raw else kind.func.__name__), type=kind.name,
                     params=validated, severity=severity, enabled=enabled, description=description, kind=kind)


def parse_assertions(raws: Iterable[Mapping[str, Any]] | None, *, spurious_attributes: Sequence[str] = (),
                     class_names: Sequence[str] | None = None, chance_guard: bool = False,
                     automatic_guard: bool = False) -> list[Assertion]:
    """Parse a config's ``assertions:`` list, adding the implied ones.

    ``no-spurious-reliance`` is implied by ``spurious_attributes``; ``better-than-chance`` by
    ``chance_guard`` (a config passes True: :attr:`sparsecheck.config.Config.parsed_assertions`);
    ``no-automatic-shortcuts`` (severity ``warning``: confirmed findings on automatic image
    attributes, which no metadata named) by ``automatic_guard`` (a config passes
    ``analysis.auto_attributes and analysis.interventions``).
    Implied assertions come first, or where an entry adjusting them stands. Returns every
    assertion, disabled ones included (the engine skips those). Names must be unique.

    Examples
    --------
    >>> specs = [{"name": "no-spurious-reliance", "severity": "warning"},
    ...          {"name": "acc", "type": "accuracy", "min": 0.9}]
    >>> [(a.name, a.severity) for a in parse_assertions(specs, spurious_attributes=["site"])]
    [('no-spurious-reliance', 'warning'), ('acc', 'error')]
    >>> [a.enabled for a in parse_assertions([{"name": "no-spurious-reliance", "enabled": False}],
    ...                                        spurious_attributes=["site"])]
    [False]
    >>> [a.name for a in parse_assertions(specs, spurious_attributes=["site"], chance_guard=True)]
    ['better-than-chance', 'no-spurious-reliance', 'acc']
    """
    if raws is None:
        raws = []
    if not isinstance(raws, (list, tuple)):
        raise AssertionSpecError(f"'assertions' must be a list, got {type(raws).__name__}", assertion="assertions")
    out: list[Assertion] = []
    seen: dict[str, int] = {}
    overrides: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for i, raw in enumerate(raws):
        if (isinstance(raw, Mapping) and raw.get("name") in IMPLIED
                and "type" not in raw and "custom" not in raw):
            if raw["name"] in overrides:
                raise AssertionSpecError("declared twice", assertion=raw["name"], key="name")
            overrides[raw["name"]] = (len(out), raw)
            continue
        a = parse_assertion(raw, index=i, class_names=class_names)
        if a.name in seen:
            raise AssertionSpecError(f"duplicate name (also assertions[{seen[a.name]}]); names identify "
                                     "assertions in junit.xml and run comparisons", assertion=a.name, key="name")
        seen[a.name] = i
        out.append(a)
    implied: list[tuple[int, int, Assertion]] = []
    for rank, (name, make) in enumerate(((DEFAULT_CHANCE, lambda o: _default_chance(chance_guard, o, class_names)),
                                         (DEFAULT_RELIANCE, lambda o: _default_reliance(
                                             list(spurious_attributes), o, class_names)),
                                         (DEFAULT_AUTOMATIC, lambda o: _default_automatic(
                                             automatic_guard, o, class_names)))):
        if name in seen:  # the user's own assertion of that name replaces the implied one
            continue
        position, override = overrides.get(name, (0, None))
        default = make(override)
        if default is not None:
            implied.append((position, rank, default))
    for k, (position, _, default) in enumerate(sorted(implied, key=lambda t: t[:2])):
        out.insert(position + k, default)
    return out


def _default_chance(implied: bool, override: Mapping[str, Any] | None,
                    class_names: Sequence[str] | None) -> Assertion | None:
    if not implied and (override is None or override.get("enabled") is False):
        return None
    raw: dict[str, Any] = {"name": DEFAULT_CHANCE, "type": "better_than_chance",
                           "description": "the dense head's test accuracy is significantly above always predicting "
                                          "the most frequent class (one-sided exact binomial test)"}
    raw.update(override or {})
    return parse_assertion(raw, class_names=class_names).replace(implied=True)


def _default_automatic(implied: bool, override: Mapping[str, Any] | None,
                       class_names: Sequence[str] | None) -> Assertion | None:
    if not implied and (override is None or override.get("enabled") is False):
        return None
    raw: dict[str, Any] = {"name": DEFAULT_AUTOMATIC, "type": "no_spurious_findings", "class": "*",
                           "source": "automatic", "severity": "warning",
                           "description": "no shortcut found without metadata: no confirmed finding on an "
                                          "automatic attribute of the images or texts (the same rule and count as the "
                                          "report's)"}
    raw.update(override or {})
    return parse_assertion(raw, class_names=class_names).replace(implied=True)


def _default_reliance(spurious: list[str], override: Mapping[str, Any] | None,
                      class_names: Sequence[str] | None) -> Assertion | None:
    if not spurious and (override is None or override.get("enabled") is False):
        return None
    raw: dict[str, Any] = {"name": DEFAULT_RELIANCE, "type": "no_spurious_findings", "class": "*",
                           "attribute": spurious,
                           "description": "no spurious finding (the same rule and count as the report's findings) "
                                          "on data.spurious_attributes"}
    raw.update(override or {})
    if not raw.get("attribute"):
        raise AssertionSpecError("is implied by data.spurious_attributes, which is empty: declare the attributes "
                                 "there or give 'attribute'", assertion=DEFAULT_RELIANCE, key="attribute")
    return parse_assertion(raw, class_names=class_names).replace(implied=True)
