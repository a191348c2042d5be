"""The built-in ``prediction_schema`` assertion: the prediction table passes its pandera schema."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pydantic import Field, model_validator

from sparsecheck.assertions.builtins.common import _list, _make, examples_frame
from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.results import AssertionResult
from sparsecheck.assertions.spec import Assertion, Params, register_assertion
from sparsecheck.assertions.tables import CheckName, ColumnCheck, prediction_table_schema, validate_prediction_table
from sparsecheck.errors import ParameterError


# =========================================================================== prediction table
class CheckSpec(Params):
    """One user check: ``{column: confidence, check: greater_than, value: 0.2}``."""

    column: str
    check: CheckName
    value: Any = None
    nullable: bool | None = None

    @model_validator(mode="after")
    def _builds(self) -> "CheckSpec":
        try:
            ColumnCheck(self.column, self.check, self.value, self.nullable).to_pandera()
        except ParameterError as exc:
            raise ValueError(str(exc)) from exc
        except Exception as exc:  # pandera's own argument errors
            raise ValueError(f"{self.check}({self.value!r}) is not a valid check: {exc}") from exc
        return self


class SchemaParams(Params):
    """``prediction_schema``: the prediction table passes a pandera schema (built-in checks and
    ``checks``); fails when more than ``max_failing`` rows fail."""

    checks: list[CheckSpec] = Field(default_factory=list)
    probabilities: bool = True
    unique_ids: bool = True
    tolerance: float = Field(1e-4, gt=0, lt=1)
    max_failing: int = Field(0, ge=0)


@register_assertion("prediction_schema", family="table", params=SchemaParams)
def _prediction_schema(data: AssertionContext, p: SchemaParams) -> AssertionResult:
    """Validate the prediction table with pandera (lazy: every failure collected)."""
    probs = data.prob_columns
    schema = prediction_table_schema(
        max(data.n_classes, 1), has_labels=data.has_labels, sparse="sparse_prediction" in data.table.columns,
        probabilities=p.probabilities and bool(probs), unique_ids=p.unique_ids, tolerance=p.tolerance,
        checks=[ColumnCheck(c.column, c.check, c.value, c.nullable) for c in p.checks])
    result = validate_prediction_table(data.table, schema, prob_columns=probs)
    n_rows = int(result.failing_rows.size)
    ok = result.valid or (not result.table_errors and n_rows <= p.max_failing)
    summary = [f"{r.column} {r.check}: {r.n_failures} rows" for r in result.summary.itertuples()]
    msg = ("every row passes the schema" + (f" ({len(schema.columns)} columns checked)" if result.valid else "")
           if result.valid else f"{n_rows} rows fail the schema: " + _list(result.table_errors + summary))
    examples = examples_frame(data, result.failing_rows, result.failures_per_row.astype(np.float64))
    return AssertionResult.outcome(bool(ok), n_rows, p.max_failing, msg, examples, n_rows,
                                   {"failures": result.summary.to_dict("records")[:50],
                                    "table_errors": result.table_errors})


def prediction_schema(*, checks: Sequence[dict[str, Any]] = (), probabilities: bool = True, unique_ids: bool = True,
                      tolerance: float = 1e-4, max_failing: int = 0, name: str | None = None,
                      severity: str = "error", description: str = "") -> Assertion:
    """The prediction table passes pandera validation: unique ids, known labels and predictions,
    probabilities in [0, 1] summing to 1, plus ``checks`` (dicts with column, check, value).

    Examples
    --------
    >>> a = prediction_schema(checks=[{"column": "confidence", "check": "greater_than", "value": 0.2}])
    >>> a.param_dict["checks"][0]["check"]
    'greater_than'
    """
    return _make("prediction_schema", name, severity, description, checks=list(checks),
                 probabilities=probabilities, unique_ids=unique_ids, tolerance=tolerance, max_failing=max_failing)
