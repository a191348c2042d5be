"""A pandera schema for the per-example prediction table, and lazy validation into failing rows.

:func:`prediction_table_schema` says what a valid prediction table is: unique non-null ids, known
labels and predictions, probabilities in [0, 1] that sum to 1, a confidence in [0, 1], plus any
user checks (``{column: confidence, check: greater_than, value: 0.2}``). Only pandera's
vectorised built-in checks are allowed, so a million rows validate in well under a second.
:func:`validate_prediction_table` runs it lazily (every failure collected) and turns pandera's
``failure_cases`` into per-row counts: the failing example ids.

The schema is a plain :class:`pandera.DataFrameSchema`, so the same object validates a table on
pandera's other backends.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"id": ["a", "b"], "label": [0, 3], "prediction": [0, 1],
...                       "confidence": [0.9, 0.6], "prob_0": [0.9, 0.4], "prob_1": [0.1, 0.6]})
>>> check = validate_prediction_table(table, prediction_table_schema(2))
>>> check.valid, check.failing_rows.tolist(), check.summary["check"].tolist()
(False, [1], ['isin([0, 1])'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from sparsecheck.errors import ParameterError
from sparsecheck.outputs import native

__all__ = ["ColumnCheck", "prediction_table_schema", "validate_prediction_table", "TableValidation",
           "ALLOWED_CHECKS", "PROB_SUM_COLUMN"]

#: pandera built-in checks allowed in specs (all vectorised over a column)
ALLOWED_CHECKS = ("greater_than", "greater_than_or_equal_to", "less_than", "less_than_or_equal_to",
                  "in_range", "isin", "notin", "equal_to", "not_equal_to", "str_matches", "str_contains",
                  "str_startswith", "str_endswith", "str_length")
#: helper column holding the row sum of the prob_<k> columns while validating
PROB_SUM_COLUMN = "sum(prob_k)"
CheckName = Literal["greater_than", "greater_than_or_equal_to", "less_than", "less_than_or_equal_to",
                    "in_range", "isin", "notin", "equal_to", "not_equal_to", "str_matches", "str_contains",
                    "str_startswith", "str_endswith", "str_length"]


def _pa() -> Any:
    try:
        import pandera.pandas as pa
    except ImportError:  # pandera < 0.24
        import pandera as pa  # type: ignore[no-redef]
    return pa


@dataclass(frozen=True)
class ColumnCheck:
    """A user check on one column: a pandera built-in by name with its value.

    ``in_range`` and ``str_length`` take ``value: [min, max]``; ``isin``/``notin`` a list; the
    others one value. ``nullable: false`` also rejects missing values.

    Examples
    --------
    >>> ColumnCheck("confidence", "greater_than", 0.2).to_pandera()
    <Check greater_than: greater_than(0.2)>
    """

    column: str
    check: str
    value: Any = None
    nullable: bool | None = None

    def to_pandera(self) -> Any:
        pa = _pa()
        if self.check not in ALLOWED_CHECKS:
            raise ParameterError(f"The 'check' parameter must be one of {', '.join(ALLOWED_CHECKS)}. "
                                 f"Got {self.check!r} instead.", parameter="check")
        fn = getattr(pa.Check, self.check)
        v = self.value
        if self.check in ("in_range", "str_length"):
            if isinstance(v, Mapping):
                return fn(**v)
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise ParameterError(f"The 'value' parameter of {self.check} must be [min, max]. Got {v!r} instead.",
                                     parameter="value")
            return fn(*v)
        if self.check in ("isin", "notin"):
            if not isinstance(v, (list, tuple)):
                raise ParameterError(f"The 'value' parameter of {self.check} must be a list. Got {v!r} instead.",
                                     parameter="value")
            return fn(list(v))
        if v is None or isinstance(v, (list, dict)):
            raise ParameterError(f"The 'value' parameter of {self.check} must be one value. Got {v!r} instead.",
                                 parameter="value")
        return fn(v)


def prediction_table_schema(n_classes: int, *, has_labels: bool = True, sparse: bool = False,
                            probabilities: bool = True, unique_ids: bool = True, tolerance: float = 1e-4,
                            checks: Iterable[ColumnCheck] = ()) -> Any:
    """The pandera schema of a prediction table with ``n_classes`` classes.

    Parameters
    ----------
    n_classes : int
    has_labels : bool
        Check a ``label`` column (unlabeled monitoring batches have none).
    sparse : bool
        Check a ``sparse_prediction`` column.
    probabilities : bool
        Check ``prob_0 .. prob_{n-1}`` in [0, 1] and summing to 1 within ``tolerance`` (validated
        on a helper column named :data:`PROB_SUM_COLUMN`, see :func:`validate_prediction_table`).
    unique_ids : bool
    checks : iterable of ColumnCheck
        User checks, added to the column's checks (the column is created if it is not a standard one).

    Returns
    -------
    pandera.DataFrameSchema
        Not strict: metadata columns are allowed.
    """
    pa = _pa()
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ParameterError(f"The 'n_classes' parameter must be an int >= 1. Got {n_classes!r} instead.",
                             parameter="n_classes")
    known = list(range(int(n_classes)))
    cols: dict[str, dict[str, Any]] = {"id": {"checks": [], "nullable": False, "unique": unique_ids}}
    if has_labels:
        cols["label"] = {"checks": [pa.Check.isin(known)], "nullable": False}
    cols["prediction"] = {"checks": [pa.Check.isin(known)], "nullable": False}
    if sparse:
        cols["sparse_prediction"] = {"checks": [pa.Check.isin(known)], "nullable": False}
    cols["confidence"] = {"checks": [pa.Check.in_range(0.0, 1.0)], "nullable": False}
    if probabilities:
        for k in known:
            cols[f"prob_{k}"] = {"checks": [pa.Check.in_range(0.0, 1.0)], "nullable": False}
        cols[PROB_SUM_COLUMN] = {"checks": [pa.Check.in_range(1.0 - tolerance, 1.0 + tolerance)],
                                 "nullable": False}
    for c in checks:
        spec = cols.setdefault(c.column, {"checks": [], "nullable": True})
        spec["checks"].append(c.to_pandera())
        if c.nullable is not None:
            spec["nullable"] = c.nullable
    columns = {name: pa.Column(checks=spec["checks"], nullable=spec["nullable"], unique=spec.get("unique", False),
                               required=True, coerce=False)
               for name, spec in cols.items()}
    return pa.DataFrameSchema(columns, strict=False, name="prediction_table")


@dataclass
class TableValidation:
    """Result of :func:`validate_prediction_table`.

    Attributes
    ----------
    valid : bool
    failure_cases : DataFrame
        pandera's lazy failure cases (schema_context, column, check, check_number, failure_case, index).
    failing_rows : ndarray of int
        Positions (0-based rows of the validated table) with at least one failure, sorted.
    failures_per_row : ndarray of int
        Number of failed checks at each of ``failing_rows``.
    summary : DataFrame
        One row per (column, check): column, check, n_failures, examples (a few failure cases).
    table_errors : list of str
        Failures not tied to a row (a required column missing, ...).
    """

    valid: bool
    failure_cases: pd.DataFrame
    failing_rows: np.ndarray
    failures_per_row: np.ndarray
    summary: pd.DataFrame
    table_errors: list[str]


def validate_prediction_table(table: pd.DataFrame, schema: Any, *, prob_columns: Sequence[str] | None = None
                              ) -> TableValidation:
    """Validate ``table`` lazily against ``schema``; row positions refer to ``table``'s rows.

    Only the schema's columns are copied; the helper probability-sum column is added when the
    schema has one.
    """
    pa = _pa()
    wanted = [c for c in schema.columns if c in table.columns]
    frame = table[wanted].reset_index(drop=True)  # copy-on-write: no data copied
    if PROB_SUM_COLUMN in schema.columns:
        probs = list(prob_columns) if prob_columns is not None else \
            [c for c in schema.columns if c.startswith("prob_") and c in table.columns]
        if probs:
            frame[PROB_SUM_COLUMN] = table[probs].to_numpy(dtype=np.float64).sum(axis=1)
    try:
        schema.validate(frame, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases.copy()
    except pa.errors.SchemaError as exc:  # pragma: no cover - lazy mode collects into SchemaErrors
        fc = pd.DataFrame([{"schema_context": "DataFrameSchema", "column": getattr(exc, "column_name", None),
                            "check": str(exc.check), "check_number": None, "failure_case": str(exc),
                            "index": None}])
    else:
        empty = np.zeros(0, dtype=np.int64)
        return TableValidation(True, pd.DataFrame(columns=["schema_context", "column", "check", "check_number",
                                                           "failure_case", "index"]),
                               empty, empty, pd.DataFrame(columns=["column", "check", "n_failures", "examples"]), [])
    index = pd.to_numeric(fc["index"], errors="coerce")
    has_row = index.notna().to_numpy()
    rows = index[has_row].astype(np.int64).to_numpy()
    failing_rows, per_row = np.unique(rows, return_counts=True) if rows.size else (rows, rows)
    table_errors = [f"{r.column}: {r.check} ({r.failure_case})" for r in fc[~has_row].itertuples()]
    fc["check"] = fc["check"].astype(str)
    fc["column"] = fc["column"].astype(str)
    summary = (fc.groupby(["column", "check"], sort=False)
               .agg(n_failures=("check", "size"),
                    examples=("failure_case", lambda s: [native(v) for v in s.head(3)]))
               .reset_index())
    return TableValidation(False, fc, failing_rows, per_row, summary, table_errors)


