"""Declarative model assertions: the pre-deployment gate and the monitoring alarm.

An assertion is declared in one line (YAML under ``assertions:`` or Python), run by an engine over
a prediction table plus whatever the run knows (sparse layer, feature associations, model), and
reported as a result with a status, the observed value, the threshold, a message and the failing
examples worst first.

Examples
--------
>>> import pandas as pd
>>> from sparsecheck.assertions import Assertion, run_assertions
>>> table = pd.DataFrame({"id": ["a", "b", "c"], "label": [0, 1, 1], "prediction": [0, 1, 0],
...                       "confidence": [0.9, 0.6, 0.8], "prob_0": [0.9, 0.4, 0.8], "prob_1": [0.1, 0.6, 0.2]})
>>> suite = run_assertions([Assertion.accuracy(min=0.5), Assertion.prediction_schema()], table)
>>> suite.status(), [r.status for r in suite]
('pass', ['pass', 'pass'])
"""

from sparsecheck.assertions.spec import (
    DEFAULT_AUTOMATIC,
    DEFAULT_CHANCE,
    DEFAULT_RELIANCE,
    Assertion,
    AssertionType,
    Params,
    PerExampleParams,
    parse_assertion,
    parse_assertions,
    register_assertion,
    registered_types,
)
from sparsecheck.assertions.results import AssertionResult, Outcome, SuiteResult, render_table
from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.builtins import (
    accuracy,
    better_than_chance,
    ece,
    macro_f1,
    max_features_per_class,
    no_reliance,
    no_spurious_findings,
    precision,
    prediction_schema,
    recall,
    sparse_accuracy_gap,
    sparse_agreement,
    spurious_weight_share,
)
from sparsecheck.assertions.model_assertions import consistency, flicker, invariance, per_example_outcome
from sparsecheck.assertions.tables import ColumnCheck, prediction_table_schema, validate_prediction_table
from sparsecheck.assertions.engine import run_assertion, run_assertions, run_on_table

__all__ = [
    "Assertion",
    "AssertionType",
    "AssertionContext",
    "AssertionResult",
    "SuiteResult",
    "Outcome",
    "Params",
    "PerExampleParams",
    "DEFAULT_RELIANCE",
    "DEFAULT_CHANCE",
    "DEFAULT_AUTOMATIC",
    "register_assertion",
    "registered_types",
    "parse_assertion",
    "parse_assertions",
    "run_assertions",
    "run_assertion",
    "run_on_table",
    "render_table",
    "per_example_outcome",
    "ColumnCheck",
    "prediction_table_schema",
    "validate_prediction_table",
    "accuracy",
    "recall",
    "precision",
    "macro_f1",
    "ece",
    "better_than_chance",
    "max_features_per_class",
    "sparse_accuracy_gap",
    "sparse_agreement",
    "no_reliance",
    "spurious_weight_share",
    "no_spurious_findings",
    "prediction_schema",
    "consistency",
    "flicker",
    "invariance",
]
