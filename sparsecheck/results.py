"""What a run found, and the one rule that turns it into a verdict.

The gate rule lives here and nowhere else: a run fails when an assertion at or above the chosen
severity (``error`` by default) has status ``fail`` or ``error`` — an assertion that raised counts
as failing, because a gate must not pass on a crash. ``results.json``, the report, JUnit, MLflow
tags, ``compare`` and ``monitor`` all ask :func:`gate_status` / :func:`failing_assertions`.

Examples
--------
>>> checks = [{"name": "acc", "status": "pass", "severity": "error"},
...           {"name": "recall", "status": "fail", "severity": "warning"}]
>>> gate_status(checks), gate_status(checks, fail_on="warning")
('pass', 'fail')
>>> [a["name"] for a in failing_assertions(checks, fail_on="warning")]
['recall']
"""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping

__all__ = ["SEVERITY_RANK", "FAILING_STATUSES", "is_failing", "failing_assertions", "gate_status"]

#: assertion severities, lowest first
SEVERITY_RANK = {"warning": 0, "error": 1}
#: statuses that count against the gate (``error``: the assertion itself raised)
FAILING_STATUSES = ("fail", "error")

FailOn = Literal["error", "warning"]


def _get(assertion: Any, key: str, default: Any = None) -> Any:
    if isinstance(assertion, Mapping):
        return assertion.get(key, default)
    return getattr(assertion, key, default)


def is_failing(assertion: Any, fail_on: FailOn = "error") -> bool:
    """True when ``assertion`` (a results.json record or an AssertionResult) fails the gate."""
    if fail_on not in SEVERITY_RANK:
        raise ValueError(f"fail_on must be one of {sorted(SEVERITY_RANK)}, got {fail_on!r}")
    severity = _get(assertion, "severity") or "error"
    return (_get(assertion, "status") in FAILING_STATUSES
            and SEVERITY_RANK.get(severity, SEVERITY_RANK["error"]) >= SEVERITY_RANK[fail_on])


def failing_assertions(assertions: Iterable[Any] | None, fail_on: FailOn = "error") -> list[Any]:
    """The assertions that fail the gate at ``fail_on`` severity, in their order."""
    return [a for a in assertions or [] if is_failing(a, fail_on)]


def gate_status(assertions: Iterable[Any] | None, fail_on: FailOn = "error") -> str:
    """``"fail"`` when any assertion fails the gate, else ``"pass"``."""
    return "fail" if failing_assertions(assertions, fail_on) else "pass"
