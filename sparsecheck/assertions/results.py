"""What running assertions gives back: an :class:`AssertionResult` per assertion (the one
outcome type, from the assertion function to results.json) and :class:`SuiteResult` (all of them).

An assertion function returns ``Outcome(passed, observed, threshold, message, examples, n_failing,
details)``: :data:`Outcome` is :meth:`AssertionResult.outcome`, under the name custom assertions
have always used, and builds an :class:`AssertionResult` that the engine completes.

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
>>> AssertionResult.from_dict(d) == r
True
>>> suite = SuiteResult([r])
>>> suite.status(), suite.exit_code(), suite.counts()
('fail', 1, {'pass': 0, 'fail': 1, 'error': 0})
>>> mine = Outcome(True, observed=0.93, threshold=0.9, message="accuracy 0.930 >= 0.900")
>>> type(mine).__name__, mine.status, mine.passed
('AssertionResult', 'pass', True)
"""

from __future__ import annotations

import io
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from sparsecheck.reports import format as fmt
from sparsecheck.result_sections import EXAMPLES_IN_JSON, AssertionResult
from sparsecheck.results import is_failing

__all__ = ["Outcome", "AssertionResult", "SuiteResult", "render_table", "STATUSES", "SEVERITIES",
           "EXAMPLES_IN_JSON"]

STATUSES: tuple[str, ...] = typing.get_args(AssertionResult.model_fields["status"].annotation)
SEVERITIES: tuple[str, ...] = typing.get_args(AssertionResult.model_fields["severity"].annotation)

#: What an assertion function returns, by the name custom assertions have always used:
#: ``Outcome(passed, observed=None, threshold=None, message="", examples=None, n_failing=None,
#: details=None)`` builds an :class:`AssertionResult` (see :meth:`AssertionResult.outcome`).
Outcome = AssertionResult.outcome


@dataclass
class SuiteResult:
    """All assertion results of one run, in declaration order.

    Examples
    --------
    >>> s = SuiteResult([AssertionResult(name="a", status="pass"),
    ...                  AssertionResult(name="b", status="fail", severity="warning")])
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
        return [r for r in self.results if is_failing(r, fail_on)]  # type: ignore[arg-type]

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


_MARK = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}


def render_table(results: Iterable[AssertionResult | Mapping[str, Any]], *, width: int = 120) -> str:
    """A plain-text table of assertion results (a rich Table rendered without colour).

    Accepts :class:`AssertionResult` objects or their records (as in results.json).

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

    rows = [r if isinstance(r, AssertionResult) else AssertionResult.from_dict(r) for r in results]
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    table = Table(title=None, show_lines=False, expand=False)
    for col, kw in (("status", {"no_wrap": True}), ("name", {"overflow": "fold"}), ("severity", {"no_wrap": True}),
                    ("observed", {"no_wrap": True}), ("threshold", {"overflow": "fold"}),
                    ("message", {"overflow": "fold", "ratio": 1})):
        table.add_column(col, **kw)
    for r in rows:
        # Text, not markup: a message's "[zero, one, ...]" is text, not a rich style tag
        table.add_row(*map(Text, (_MARK[r.status], r.name, r.severity, fmt.value(r.observed), fmt.value(r.threshold),
                                  r.message)))
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, no_color=True,
                      legacy_windows=False, emoji=False)
    console.print(f"Assertions: {counts['pass']} pass, {counts['fail']} fail, {counts['error']} error")
    console.print(table)
    return buf.getvalue().rstrip("\n")
