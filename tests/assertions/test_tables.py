"""The prediction table's pandera schema: what it rejects, and how failures become example ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsecheck.assertions import (
    Assertion,
    AssertionContext,
    ColumnCheck,
    prediction_table_schema,
    run_assertions,
    validate_prediction_table,
)
from sparsecheck.errors import ParameterError
from tests.assertions._data import planted_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return planted_table(n=500)


def check(table, **kw):
    return run_assertions([Assertion.prediction_schema(**kw)], table)[0]


def test_a_well_formed_table_passes(table):
    r = check(table)
    assert r.status == "pass" and r.observed == 0 and r.failing_examples.empty


@pytest.mark.parametrize("breakage, column", [
    (lambda t: t.loc[3, "prob_1"] * 0 + 1.7, "prob_1"),       # out of [0, 1] (and the sum breaks)
    (lambda t: np.nan, "prob_2"),                             # NaN
    (lambda t: 9, "label"),                                   # unknown label
    (lambda t: -1, "prediction"),                             # unknown prediction
    (lambda t: 1.2, "confidence"),                            # confidence > 1
    (lambda t: "ex00000", "id"),                              # duplicate id (row 0 has it)
])
def test_each_broken_cell_is_reported_with_its_example(table, breakage, column):
    t = table.copy()
    t[column] = t[column].astype(object) if column in ("label", "prediction") else t[column]
    t.loc[3, column] = breakage(t)
    r = check(t)
    assert r.status == "fail"
    assert "ex00003" in set(r.failing_examples["id"]) or column == "id"
    if column == "id":
        assert r.n_failing >= 1
    assert column in r.message


def test_probabilities_must_sum_to_one(table):
    t = table.copy()
    t.loc[7, ["prob_0", "prob_1"]] = [0.0, 0.0]  # each in range, the row sum is not 1
    r = check(t)
    assert r.status == "fail" and r.failing_examples["id"].tolist() == ["ex00007"]
    assert "sum(prob_k)" in r.message
    assert check(t, tolerance=0.99).status == "pass"


def test_user_checks_and_max_failing(table):
    floor = float(np.sort(table.confidence)[4])  # 4 rows below it
    spec = [{"column": "confidence", "check": "greater_than_or_equal_to", "value": floor}]
    r = check(table, checks=spec)
    low = set(table[table.confidence < floor].id)
    assert r.status == "fail" and set(r.failing_examples["id"]) == low and r.observed == 4
    assert check(table, checks=spec, max_failing=4).status == "pass"
    r = check(table, checks=[{"column": "site", "check": "isin", "value": ["north", "south"]}])
    assert set(r.failing_examples["id"]) == set(table[table.site == "east"].id)
    missing = check(table, checks=[{"column": "scanner", "check": "isin", "value": ["x"]}])
    assert missing.status == "fail" and "scanner" in missing.message


def test_severity_counts_the_failed_checks_of_a_row(table):
    t = table.copy()
    t.loc[10, "confidence"] = 2.0
    t.loc[11, ["confidence", "prob_0"]] = [2.0, 5.0]
    r = check(t)
    sev = dict(zip(r.failing_examples["id"], r.failing_examples["severity"]))
    assert sev["ex00011"] > sev["ex00010"] >= 1
    assert r.failing_examples["id"].iloc[0] == "ex00011"


def test_unlabeled_tables_skip_the_label_checks(table):
    t = table.drop(columns=["label", "correct", "sparse_correct"])
    data = AssertionContext(t)
    assert run_assertions([Assertion.prediction_schema()], data, needs_labels=False)[0].status == "pass"


def test_schema_object_and_checks():
    schema = prediction_table_schema(3, checks=[ColumnCheck("confidence", "greater_than", 0.5)])
    assert {"id", "label", "prediction", "confidence", "prob_0", "prob_2", "sum(prob_k)"} <= set(schema.columns)
    t = pd.DataFrame({"id": ["a", "b"], "label": [0, 2], "prediction": [0, 1], "confidence": [0.9, 0.4],
                      "prob_0": [0.9, 0.3], "prob_1": [0.05, 0.4], "prob_2": [0.05, 0.3]})
    v = validate_prediction_table(t, schema)
    assert not v.valid and v.failing_rows.tolist() == [1] and v.failures_per_row.tolist() == [1]
    with pytest.raises(ParameterError, match="'check' parameter"):
        ColumnCheck("confidence", "eval", "1").to_pandera()
    with pytest.raises(ParameterError, match="n_classes"):
        prediction_table_schema(0)
