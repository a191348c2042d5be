"""What running an assertion gives back: :class:`Outcome` (from an assertion function),
:class:`AssertionResult` (one assertion, as reported) and :class:`SuiteResult` (all of them).

Statuses are ``pass``, ``fail`` (the assertion ran and did not hold) and ``error`` (it raised, or
what it needs was missing). Severities are ``error`` (fails the run) and ``warning`` (reported
only, unless ``--fail-on warning``).

Examples
--------
>>> r = AssertionResult(name="accuracy", status="fail", severity="error", observed=0.71,
...                     threshold=0.8, message="accuracy 0.710 < 0.800")
>>> d = r.to_dict()
>>> d["name"], d["status"], d["observed"], d["failing_examples"]
('accuracy', 'fail', 0.71, [])
>>> suite = SuiteResult([r])
>>> suite.status(), suite.exit_code(), suite.counts()
('fail', 1, {'pass': 0, 'fail': 1, 'error': 0})
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal, Mapping

import numpy as np
import pandas as pd

from sparsecheck.results import is_failing

__all__ = ["Outcome", "AssertionResult", "SuiteResult", "render_table", "STATUSES", "SEVERITIES",
           "EXAMPLES_IN_JSON"]

STATUSES = ("pass", "fail", "error")
SEVERITIES = ("error", "warning")
#: failing examples kept per assertion in results.json (the full list stays in memory)
EXAMPLES_IN_JSON = 20

Status = Literal["pass", "fail", "error"]


def _empty_examples() -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(dtype=str), "severity": pd.Series(dtype=np.float64)})


@dataclass
class Outcome:
    """What an assertion function returns: did it hold, what was seen, which examples failed.

    Parameters
    ----------
    passed : bool
    observed : float, int or str, optional
        The measured value (the worst slice's accuracy, the number of failing examples, ...).
    threshold : float, int or str, optional
        What ``observed`` was compared with.
    message : str
        One line a person can act on; name the slice, class or feature at fault.
    examples : DataFrame, optional
        Failing examples: an ``id`` column, a ``severity`` column (higher is worse) and any
        context columns. Order does not matter; results sort by severity.
    n_failing : int, optional
        How many examples failed when ``examples`` was cut short (default ``len(examples)``).
    details : dict
        JSON-ready extras (e.g. the per-slice table).
    """

    passed: bool
    observed: Any = None
    threshold: Any = None
    message: str = ""
    examples: pd.DataFrame | None = None
    n_failing: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class AssertionResult:
    """The result of one assertion, as reported in results.json, junit.xml and on the terminal.

    Attributes
    ----------
    name, status, severity, family, type : str
    observed, threshold : number, str or None
    message : str
    failing_examples : DataFrame
        Columns ``id``, ``severity`` (+ context), worst first; at most the engine's
        ``max_examples`` rows (``n_failing`` counts them all).
    n_failing : int
    needs_labels : bool
    details : dict
    seconds : float
    error : str or None
        The traceback when the status is ``error`` (the message holds ``"Type: message"``).
    scope, description : str
        What the assertion looks at, in words, and the user's description.
    """

    name: str
    status: Status
    severity: str = "error"
    observed: Any = None
    threshold: Any = None
    message: str = ""
    family: str = "custom"
    type: str = "custom"
    failing_examples: pd.DataFrame = field(default_factory=_empty_examples)
    n_failing: int = 0
    needs_labels: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    scope: str = ""
    description: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def fails_run(self, fail_on: str = "error") -> bool:
        """True when this result fails a run gated at ``fail_on`` severity (the rule:
        :func:`sparsecheck.results.is_failing`; errors count as failures)."""
        return is_failing(self, fail_on)  # type: ignore[arg-type]

    def to_dict(self, max_examples: int | None = EXAMPLES_IN_JSON) -> dict[str, Any]:
        """JSON-ready dict: name, status, severity, observed, threshold, message, family, type,
        n_failing, failing_examples (top ``max_examples``), needs_labels, seconds, error, details."""
        ex = self.failing_examples
        if max_examples is not None:
            ex = ex.head(max_examples)
        return {
            "name": self.name, "status": self.status, "severity": self.severity,
            "observed": _plain(self.observed), "threshold": _plain(self.threshold),
            "message": self.message, "family": self.family, "type": self.type, "scope": self.scope,
            "n_failing": int(self.n_failing),
            "failing_examples": [{k: _plain(v) for k, v in row.items()} for row in ex.to_dict("records")],
            "needs_labels": bool(self.needs_labels), "seconds": round(float(self.seconds), 4),
            "error": self.error, "description": self.description, "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AssertionResult":
        """Rebuild a result from :meth:`to_dict` output (e.g. read back from results.json)."""
        ex = pd.DataFrame(list(d.get("failing_examples") or []))
        if ex.empty:
            ex = _empty_examples()
        return cls(name=d["name"], status=d["status"], severity=d.get("severity", "error"),
                   observed=d.get("observed"), threshold=d.get("threshold"), message=d.get("message", ""),
                   family=d.get("family", "custom"), type=d.get("type", "custom"), failing_examples=ex,
                   n_failing=int(d.get("n_failing") or len(ex)), needs_labels=bool(d.get("needs_labels")),
                   details=dict(d.get("details") or {}), seconds=float(d.get("seconds") or 0.0),
                   error=d.get("error"), scope=d.get("scope", ""), description=d.get("description", ""))


@dataclass
class SuiteResult:
    """All assertion results of one run, in declaration order.

    Examples
    --------
    >>> s = SuiteResult([AssertionResult("a", "pass"), AssertionResult("b", "fail", severity="warning")])
    >>> s.status(), s.status("warning"), [r.name for r in s.failed]
    ('pass', 'fail', ['b'])
    >>> s["b"].severity
    'warning'
    """

    results: list[AssertionResult] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[dict[str, Any]] = field(default_factory=list)  # [{name, missing}] (skip_unavailable)

    def __iter__(self) -> Iterator[AssertionResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, name: str | int) -> AssertionResult:
        if isinstance(name, int):
            return self.results[name]
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def failed(self) -> list[AssertionResult]:
        """Results with status ``fail`` (any severity)."""
        return [r for r in self.results if r.status == "fail"]

    @property
    def errored(self) -> list[AssertionResult]:
        """Results with status ``error`` (the assertion raised or lacked its inputs)."""
        return [r for r in self.results if r.status == "error"]

    def failing(self, fail_on: str = "error") -> list[AssertionResult]:
        """Results that fail a run gated at ``fail_on`` severity."""
        return [r for r in self.results if r.fails_run(fail_on)]

    def status(self, fail_on: str = "error") -> str:
        """``"fail"`` when an assertion at or above ``fail_on`` severity did not pass, else ``"pass"``."""
        return "fail" if self.failing(fail_on) else "pass"

    def exit_code(self, fail_on: str = "error") -> int:
        """1 when :meth:`status` is ``"fail"``, else 0 (the CLI's contract)."""
        return 1 if self.failing(fail_on) else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    def to_dicts(self, max_examples: int | None = EXAMPLES_IN_JSON) -> list[dict[str, Any]]:
        """What results.json holds under ``assertions``."""
        return [r.to_dict(max_examples) for r in self.results]

    def to_dict(self, max_examples: int | None = EXAMPLES_IN_JSON) -> dict[str, Any]:
        return {"status": self.status(), "counts": self.counts(), "seconds": round(self.seconds, 4),
                "assertions": self.to_dicts(max_examples), "skipped": list(self.skipped)}

    def to_frame(self) -> pd.DataFrame:
        """One row per assertion: name, status, severity, family, observed, threshold, n_failing, message."""
        cols = ["name", "status", "severity", "family", "type", "observed", "threshold", "n_failing",
                "seconds", "message"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.results], columns=cols)

    def render(self, width: int = 120) -> str:
        """The terminal table (see :func:`render_table`)."""
        return render_table(self.results, width=width)


def _plain(v: Any) -> Any:
    """numpy scalars to Python, non-finite floats to None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: Any) -> str:
    v = _plain(v)
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


_MARK = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}


def render_table(results: Iterable[AssertionResult | Mapping[str, Any]], *, width: int = 120) -> str:
    """A plain-text table of assertion results (a rich Table rendered without colour).

    Accepts :class:`AssertionResult` objects or their ``to_dict()`` form (as in results.json).

    Examples
    --------
    >>> print(render_table([{"name": "acc", "status": "pass", "severity": "error", "observed": 0.91,
    ...                      "threshold": 0.8, "message": "accuracy 0.910 >= 0.800"}], width=70))
    ... # doctest: +NORMALIZE_WHITESPACE
    Assertions: 1 pass, 0 fail, 0 error
    ┏━━━━━━━━┳━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓
    ┃ status ┃ name ┃ severity ┃ observed ┃ threshold ┃ message          ┃
    ┡━━━━━━━━╇━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩
    │ PASS   │ acc  │ error    │ 0.91     │ 0.8       │ accuracy 0.910   │
    │        │      │          │          │           │ >= 0.800         │
    └────────┴──────┴──────────┴──────────┴───────────┴──────────────────┘
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = [r.to_dict(0) if isinstance(r, AssertionResult) else dict(r) for r in results]
    counts = {s: sum(r.get("status") == s for r in rows) for s in STATUSES}
    table = Table(title=None, show_lines=False, expand=False)
    for col, kw in (("status", {"no_wrap": True}), ("name", {"overflow": "fold"}), ("severity", {"no_wrap": True}),
                    ("observed", {"no_wrap": True}), ("threshold", {"overflow": "fold"}),
                    ("message", {"overflow": "fold", "ratio": 1})):
        table.add_column(col, **kw)
    for r in rows:
        status = r.get("status", "error")
        # Text, not markup: a message's "[zero, one, ...]" is text, not a rich style tag
        table.add_row(*map(Text, (_MARK.get(status, status.upper()), str(r.get("name", "")),
                                  str(r.get("severity", "")), _fmt(r.get("observed")), _fmt(r.get("threshold")),
                                  str(r.get("message", "")))))
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, no_color=True,
                      legacy_windows=False, emoji=False)
    console.print(f"Assertions: {counts['pass']} pass, {counts['fail']} fail, {counts['error']} error")
    console.print(table)
    return buf.getvalue().rstrip("\n")
