"""The assertion engine: runs every assertion over an :class:`AssertionContext` and collects results.

Every assertion runs, even when an earlier one failed; one that raises (or lacks what it needs) is
reported with status ``error`` and its exception, and the run goes on. The engine works on a bare
prediction table as well as on a whole pipeline run, so the monitoring job can run the label-free
assertions on a new, unlabeled batch (``needs_labels=False``).

Examples
--------
>>> import pandas as pd
>>> from sparsecheck.assertions import Assertion
>>> table = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 1, 0], "prediction": [0, 1, 0, 0],
...                       "confidence": [0.9, 0.8, 0.7, 0.6]})
>>> suite = run_assertions([Assertion.accuracy(min=0.9), Assertion.accuracy(name="acc-70", min=0.7),
...                         Assertion.no_reliance(class_="*", attribute="site")], table)
>>> [(r.name, r.status) for r in suite]
[('accuracy', 'fail'), ('acc-70', 'pass'), ('no_reliance', 'error')]
>>> suite["no_reliance"].message
'DataError: needs the sparse decision layer (set by the sparse stage), which this run does not have'
>>> [r.name for r in run_assertions([Assertion.accuracy(min=0.9)], table.drop(columns="label"),
...                                 needs_labels=False)]
[]
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.model_assertions import per_example_outcome
from sparsecheck.assertions.results import AssertionResult, SuiteResult
from sparsecheck.assertions.spec import Assertion, PerExampleParams, parse_assertion, parse_assertions
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["run_assertions", "run_assertion", "run_on_table"]


def run_assertions(assertions: Iterable[Assertion | Mapping[str, Any]], data: AssertionContext | pd.DataFrame, *,
                   needs_labels: bool | None = None, max_examples: int | None = 1000,
                   skip_unavailable: bool = False, **extras: Any) -> SuiteResult:
    """Run ``assertions`` over ``data`` and return every result, in order.

    Parameters
    ----------
    assertions : iterable of Assertion (or YAML-style dicts)
        Disabled ones are skipped.
    data : AssertionContext or DataFrame
        A bare prediction table is wrapped with ``extras`` (``class_names``, ``sparse_layer``,
        ``feature_attributes``, ``spurious_attributes``, ``model``, ``dataset``, ``input_spec``).
    needs_labels : bool, optional
        ``False`` runs only the assertions that need no labels (monitoring an unlabeled batch);
        ``True`` only those that do; None (default) all of them.
    max_examples : int or None
        Failing examples kept per result, worst first (results.json keeps the top 20).
    skip_unavailable : bool
        Leave out (instead of reporting as ``error``) assertions whose inputs this context lacks
        (sparse layer, feature associations, model, labels); they are listed in
        ``SuiteResult.skipped``. A gate keeps the default: missing evidence must not pass.

    Returns
    -------
    SuiteResult
    """
    if isinstance(data, pd.DataFrame):
        data = AssertionContext(data, **extras)
    elif extras:
        raise ParameterError(f"extras {sorted(extras)} go with a bare table; set them on the AssertionContext",
                             parameter="extras")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ParameterError(f"The 'max_examples' parameter must be an int >= 1 or None. Got {max_examples!r} "
                             "instead.", parameter="max_examples")
    data.max_examples = max_examples
    start = time.perf_counter()
    results, skipped = [], []
    for i, a in enumerate(assertions):
        if isinstance(a, Mapping):
            a = parse_assertion(a, index=i, class_names=data.class_names)
        if not a.enabled or (needs_labels is not None and a.needs_labels != needs_labels):
            continue
        if skip_unavailable:
            lacking = data.missing(*(("labels",) if a.needs_labels else ()), *a.requires)
            if lacking:
                skipped.append({"name": a.name, "missing": lacking})
                logger.info("assertion %r skipped: no %s here", a.name, ", ".join(lacking))
                continue
        results.append(run_assertion(a, data))
    suite = SuiteResult(results, time.perf_counter() - start, skipped)
    counts = suite.counts()
    logger.info("assertions: %d pass, %d fail, %d error (%.2fs)", counts["pass"], counts["fail"], counts["error"],
                suite.seconds)
    return suite


def run_assertion(assertion: Assertion, data: AssertionContext) -> AssertionResult:
    """Run one assertion; never raises for a failing or crashing assertion (status ``error``)."""
    start = time.perf_counter()
    base = dict(name=assertion.name, severity=assertion.severity, family=assertion.family,
                type=assertion.type, needs_labels=assertion.needs_labels, scope=assertion.scope,
                description=assertion.description)
    try:
        if assertion.needs_labels and not data.has_labels:
            raise DataError("needs labels, but the prediction table has no 'label' column "
                            "(run it only on labeled data, or filter with needs_labels=False)")
        data.require(*assertion.requires)
        result = _to_result(assertion.evaluate(data), assertion, data)
    except Exception as exc:  # every assertion runs: one that raises is reported, and the run goes on
        seconds = time.perf_counter() - start
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        logger.warning("assertion %r could not run: %s", assertion.name, text)
        logger.debug("assertion %r traceback", assertion.name, exc_info=True)
        return AssertionResult(status="error", threshold=assertion.threshold, message=text, seconds=seconds,
                               error="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:],
                               **base)
    seconds = time.perf_counter() - start
    log = logger.info if result.passed or assertion.severity == "warning" else logger.warning
    log("assertion %r %s: %s", assertion.name, result.status, result.message)
    return result.model_copy(update=dict(
        failing_examples=_sorted_examples(result.failing_examples, data.max_examples), seconds=seconds,
        threshold=result.threshold if result.threshold is not None else assertion.threshold, **base))


def run_on_table(specs: Iterable[Assertion | Mapping[str, Any]], table: pd.DataFrame, *,
                 needs_labels: bool | None = None, spurious_attributes: Iterable[str] = (),
                 class_names: list[str] | None = None, skip_unavailable: bool = True,
                 max_examples: int | None = 1000, **extras: Any) -> SuiteResult:
    """Run YAML-style specs (a config's ``assertions:``) on a bare prediction table.

    For monitoring: a new batch's table, with or without labels (``needs_labels=False`` runs only
    label-free assertions). Assertions needing what the table cannot give (sparse layer, feature
    associations, model) are skipped and listed in ``SuiteResult.skipped`` unless
    ``skip_unavailable=False``. The implied ``no-spurious-reliance`` is added only when
    ``spurious_attributes`` is given.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"id": ["a", "b"], "prediction": [0, 1], "confidence": [0.9, 0.3]})
    >>> specs = [{"name": "acc", "type": "accuracy", "min": 0.9},
    ...          {"name": "confident", "type": "prediction_schema", "probabilities": False,
    ...           "checks": [{"column": "confidence", "check": "greater_than", "value": 0.5}]},
    ...          {"name": "agree", "type": "sparse_agreement", "min": 0.9}]
    >>> suite = run_on_table(specs, table, needs_labels=False)
    >>> [(r.name, r.status, r.failing_examples["id"].tolist()) for r in suite], suite.skipped
    ([('confident', 'fail', ['b'])], [{'name': 'agree', 'missing': ['sparse_predictions']}])
    """
    specs = list(specs)
    if all(isinstance(s, Mapping) for s in specs):
        assertions = parse_assertions(specs, spurious_attributes=list(spurious_attributes), class_names=class_names)
    else:
        assertions = [s if isinstance(s, Assertion) else parse_assertion(s, index=i, class_names=class_names)
                      for i, s in enumerate(specs)]
    data = AssertionContext(table, class_names=class_names, spurious_attributes=list(spurious_attributes), **extras)
    return run_assertions(assertions, data, needs_labels=needs_labels, max_examples=max_examples,
                          skip_unavailable=skip_unavailable)


def _sorted_examples(frame: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    if len(frame) == 0:
        return frame
    if "id" not in frame.columns or "severity" not in frame.columns:
        raise DataError(f"failing examples need 'id' and 'severity' columns (got {list(frame.columns)})")
    out = frame.sort_values("severity", ascending=False, kind="stable")
    return (out.head(limit) if limit is not None else out).reset_index(drop=True)


def _to_result(value: Any, assertion: Assertion, data: AssertionContext) -> AssertionResult:
    """What an assertion function may return: an AssertionResult (``Outcome(...)``), a bool, or
    per-example severities."""
    if isinstance(value, AssertionResult):
        return value
    if isinstance(value, (bool, np.bool_)):
        return AssertionResult.outcome(bool(value), bool(value), True, f"{assertion.name} returned {bool(value)}")
    if isinstance(value, (np.ndarray, pd.Series, list, tuple)):
        params = assertion.params if isinstance(assertion.params, PerExampleParams) else PerExampleParams(
            **{k: v for k, v in (assertion.param_dict or {}).items()
               if k in ("severity_threshold", "max_failing", "max_failing_rate")})
        return per_example_outcome(data, value, params)
    raise DataError(f"the assertion function returned {type(value).__name__}; return Outcome(...), a bool, "
                    "or per-example severities (an array or a Series indexed by id)")
