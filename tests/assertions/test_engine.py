"""The engine: every assertion runs, crashes are reported not raised, label filtering for monitoring,
results that fit the pipeline's exit-code logic and results.json."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from sparsecheck.outputs import jsonable
from sparsecheck.assertions import (
    Assertion,
    AssertionResult,
    Outcome,
    SuiteResult,
    render_table,
    run_assertions,
    run_on_table,
)
from sparsecheck.errors import ParameterError
from sparsecheck.results import failing_assertions
from tests.assertions._data import planted_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return planted_table(n=800)


def boom(data):
    raise ZeroDivisionError("the custom check divided by zero")


def test_every_assertion_runs_and_a_crash_is_an_error_result(table):
    suite = run_assertions([Assertion.accuracy(min=0.99, name="first-fails"),
                            Assertion.custom(boom, name="crashes"),
                            Assertion.accuracy(min=0.1, name="still-runs")], table)
    assert [(r.name, r.status) for r in suite] == [("first-fails", "fail"), ("crashes", "error"),
                                                   ("still-runs", "pass")]
    crash = suite["crashes"]
    assert crash.message == "ZeroDivisionError: the custom check divided by zero"
    assert "Traceback" in crash.error and "boom" in crash.error


def test_needs_labels_filter_and_unlabeled_batches(table):
    specs = [Assertion.accuracy(min=0.5), Assertion.sparse_agreement(min=0.5), Assertion.prediction_schema()]
    unlabeled = table.drop(columns=["label", "correct", "sparse_correct"])
    assert [r.name for r in run_assertions(specs, unlabeled, needs_labels=False)] == ["sparse_agreement",
                                                                                      "prediction_schema"]
    assert [r.name for r in run_assertions(specs, table, needs_labels=True)] == ["accuracy"]
    everything = run_assertions(specs, unlabeled)
    assert everything["accuracy"].status == "error" and "label" in everything["accuracy"].message


def test_run_on_table_skips_what_a_bare_table_cannot_give(table):
    specs = [{"name": "acc", "type": "accuracy", "min": 0.5},
             {"name": "features", "type": "max_features_per_class", "max": 5},
             {"name": "no-seven", "type": "no_reliance", "class": "*", "attribute": "site"}]
    suite = run_on_table(specs, table)
    assert [r.name for r in suite] == ["acc"]
    assert {s["name"]: s["missing"] for s in suite.skipped} == {"features": ["sparse_layer"],
                                                              "no-seven": ["sparse_layer", "feature_attributes"]}
    gate = run_on_table(specs, table, skip_unavailable=False)
    assert [r.status for r in gate] == ["pass", "error", "error"] and gate.exit_code() == 1
    implied = run_on_table([], table, spurious_attributes=["site"], skip_unavailable=False)
    assert [r.name for r in implied] == ["no-spurious-reliance"]


def test_statuses_and_exit_codes_agree_with_the_pipeline(table):
    suite = run_assertions([Assertion.accuracy(min=0.99, name="warn", severity="warning"),
                            Assertion.accuracy(min=0.1, name="ok")], table)
    results = {"assertions": suite.to_dicts()}
    assert suite.status() == "pass" and suite.exit_code() == 0 and failing_assertions(results["assertions"]) == []
    assert suite.status("warning") == "fail" and suite.exit_code("warning") == 1
    assert [a["name"] for a in failing_assertions(results["assertions"], "warning")] == ["warn"]
    suite = run_assertions([Assertion.custom(boom, name="crash")], table)
    assert suite.exit_code() == 1 and [a["name"] for a in failing_assertions(suite.to_dicts())] == ["crash"]


def test_results_serialise_to_json_with_the_contract_keys(table):
    suite = run_assertions([Assertion.accuracy(by=["group"], max_drop=0.05, name="slices"),
                            Assertion.custom(boom, name="crash")], table)
    records = json.loads(json.dumps(jsonable(suite.to_dicts()), allow_nan=False))
    for rec in records:
        assert {"name", "status", "severity", "observed", "threshold", "message", "family",
                "failing_examples", "n_failing"} <= set(rec)
    slices = records[0]
    assert slices["family"] == "metric" and slices["status"] == "fail"
    assert len(slices["failing_examples"]) == 20 < slices["n_failing"]
    assert set(slices["failing_examples"][0]) >= {"id", "severity"}
    back = AssertionResult.from_dict(slices)
    assert (back.name, back.status, back.n_failing) == ("slices", "fail", slices["n_failing"])
    frame = suite.to_frame()
    assert frame["status"].tolist() == ["fail", "error"]


def test_outcome_and_bool_returns_and_bad_returns(table):
    def exact(data):
        return Outcome(True, observed=1.0, threshold=1.0, message="all good")

    def nothing(data):
        return None

    suite = run_assertions([Assertion.custom(exact), Assertion.custom(lambda d: False, name="no"),
                            Assertion.custom(nothing)], table)
    assert [r.status for r in suite] == ["pass", "fail", "error"]
    assert suite[0].message == "all good" and "returned NoneType" in suite[2].message
    with pytest.raises(ParameterError, match="max_examples"):
        run_assertions([], table, max_examples=0)


def test_terminal_table_names_every_assertion(table):
    suite = run_assertions([Assertion.accuracy(min=0.99, name="too-strict"), Assertion.accuracy(min=0.1, name="lenient"),
                            Assertion.custom(boom, name="crashes")], table)
    text = render_table(suite, width=100)
    assert text.splitlines()[0] == "Assertions: 1 pass, 1 fail, 1 error"
    for name, status in (("too-strict", "FAIL"), ("lenient", "PASS"), ("crashes", "ERROR")):
        line = next(ln for ln in text.splitlines() if name in ln)
        assert status in line
    assert render_table(suite.to_dicts(), width=100) == text
    assert max(len(ln) for ln in text.splitlines()) <= 100


def test_suite_result_accessors():
    s = SuiteResult([AssertionResult(name="a", status="pass"),
                     AssertionResult(name="b", status="error", severity="warning")])
    assert s.counts() == {"pass": 1, "fail": 0, "error": 1}
    assert [r.name for r in s.errored] == ["b"] and s.status() == "pass" and s.status("warning") == "fail"
    with pytest.raises(KeyError):
        s["c"]
    assert np.isclose(s.to_dict()["seconds"], 0.0)


def test_a_custom_assertion_returning_outcome_runs_end_to_end(tmp_path, monkeypatch):
    """``Outcome(passed=..., ...)``, as users' assertions have always returned it, goes through a
    whole run: the engine completes it, results.json and junit.xml report it, and it reads back
    as the same AssertionResult."""
    import textwrap
    import xml.etree.ElementTree as ET

    from sparsecheck.config import parse_config
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.results import RunResults
    from tests.helpers import QUICK_ANALYSIS, write_project

    (tmp_path / "outcome_checks.py").write_text(textwrap.dedent('''
        import pandas as pd
        from sparsecheck.assertions import Outcome

        def few_unsure(data, *, floor):
            unsure = data.table[data.table["confidence"] < floor]
            examples = pd.DataFrame({"id": unsure["id"], "severity": floor - unsure["confidence"],
                                     "prediction": unsure["prediction"]})
            return Outcome(passed=unsure.empty, observed=len(unsure), threshold=0,
                           message=f"{len(unsure)} predictions below {floor}", examples=examples,
                           details={"floor": floor})
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "outcome_checks", raising=False)
    raw = write_project(tmp_path)
    raw["analysis"] = dict(QUICK_ANALYSIS)
    raw["assertions"] = [{"name": "few-unsure", "custom": "outcome_checks:few_unsure", "floor": 2.0,
                          "severity": "warning"}]
    ctx = run_pipeline(parse_config(raw, base_dir=tmp_path), tmp_path / "out", device="cpu")

    result = ctx.assertion_results["few-unsure"]  # the engine's, with every failing example
    assert isinstance(result, AssertionResult)
    n = len(ctx.splits["test"].ids)  # every confidence is below 2
    assert len(result.failing_examples) == n and list(result.failing_examples.columns) == ["id", "severity",
                                                                                            "prediction"]
    assert (result.status, result.severity, result.family, result.observed, result.n_failing) == (
        "fail", "warning", "custom", n, n)
    severity = result.failing_examples["severity"].tolist()
    assert severity == sorted(severity, reverse=True) and result.details == {"floor": 2.0}
    assert ctx.results["status"] == "pass"  # a warning does not fail the gate

    written = json.loads((tmp_path / "out" / "results.json").read_text())
    record = next(a for a in written["assertions"] if a["name"] == "few-unsure")
    assert record == result.to_dict() and len(record["failing_examples"]) == min(n, 20)
    for typed in (ctx.run_results, RunResults.from_json(tmp_path / "out" / "results.json")):  # as written
        assert next(a for a in typed.assertions if a.name == "few-unsure") == AssertionResult.from_dict(record)
    case = next(c for c in ET.parse(tmp_path / "out" / "junit.xml").iter("testcase") if c.get("name") == "few-unsure")
    assert case.find("failure").get("message") == f"[warning] {n} predictions below 2.0"
