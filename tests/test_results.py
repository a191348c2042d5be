"""The typed results contract: the shipped JSON Schema, reading old and new files, one gate rule."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sparsecheck.errors import DataError
from sparsecheck.results import (
    SCHEMA_PATH,
    AssertionResult,
    SCHEMA_VERSION,
    DenseSummary,
    FeatureCardRecord,
    ModelRecord,
    RunResults,
    SparseLayerSummary,
    gate_status,
)
from tests.conftest import require

try:
    import jsonschema
except ImportError:  # pragma: no cover - a test extra
    jsonschema = None

RUN = {
    "status": "fail", "schema_version": SCHEMA_VERSION, "sparsecheck_version": "0.1.0",
    "model": {"source": "m.pt2", "kind": "export", "feature_layer": "fc:input"},
    "sparse_layer": {"dense_accuracy": 0.8, "sparse_accuracy": 0.76,
                     "features_per_class": {"seven": [{"feature": 44, "weight": 0.79}]},
                     "path": [{"lambda": 0.5, "nnz": 0, "val_accuracy": 0.1},
                              {"lambda": 0.05, "nnz": 12, "val_accuracy": 0.75}]},
    "feature_attributes": [{"feature": 44, "attribute": "corner_mark", "value": "yes", "effect": 1.0,
                            "p_value": 1e-200, "q_value": 1e-199, "kind": "categorical"}],
    "spurious_findings": [{"class": "seven", "feature": 44, "attribute": "corner_mark", "value": "yes",
                           "score": 0.9, "evidence": {"auc": 1.0}, "sentence": "class 'seven' relies on ..."}],
    "slices": [{"predicates": {"background": "light"}, "size": 150, "error_rate": 0.88, "ci_low": 0.82,
                "ci_high": 0.92, "p_value": 1e-180, "q_value": 1e-178}],
    "assertions": [{"name": "no-spurious-reliance", "status": "fail", "severity": "error", "observed": 1,
                    "threshold": 0, "message": "1 finding"},
                   {"name": "seven-recall", "status": "pass", "severity": "warning"}],
    "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment_id": "1", "run_id": "abc"},
    "timings": {"load": 0.1},
}


def test_the_shipped_schema_is_the_models_schema():
    shipped = json.loads(SCHEMA_PATH.read_text())
    assert shipped == RunResults.json_schema(), "regenerate it: python -m sparsecheck.results"
    assert set(shipped["required"]) == {"status"} and "spurious_findings" in shipped["properties"]


def test_a_run_round_trips_and_validates_against_the_shipped_schema(tmp_path):
    results = RunResults.from_dict(RUN)
    assert results.spurious_findings[0].class_ == "seven" and results.sparse_layer.path[1].lambda_ == 0.05
    assert results.gate() == "fail" and [a.name for a in results.failing()] == ["no-spurious-reliance"]
    assert results.to_dict()["timings"] == {"load": 0.1}  # sections outside the contract are kept
    results.to_json(tmp_path / "results.json")
    again = RunResults.from_json(tmp_path / "results.json")
    assert again.to_dict() == results.to_dict()
    require(jsonschema is not None, "the jsonschema package (pip install -e '.[test]')")
    jsonschema.validate(json.loads((tmp_path / "results.json").read_text()), json.loads(SCHEMA_PATH.read_text()))


def test_the_previous_unversioned_format_loads_and_bad_files_are_refused_with_the_reason(tmp_path):
    old = copy.deepcopy(RUN)
    del old["schema_version"]
    assert RunResults.from_dict(old).schema_version == SCHEMA_VERSION
    broken = copy.deepcopy(old)
    del broken["slices"][0]["size"]
    with pytest.raises(DataError, match=r"before schema_version 1.0\): slices.0.size: Field required"):
        RunResults.from_dict(broken, source="results.json of run abc")
    newer = dict(RUN, schema_version="2.0")
    with pytest.raises(DataError, match="schema_version 2.0 was written by a newer sparsecheck"):
        RunResults.from_dict(newer)
    lying = dict(RUN, status="pass")  # the gate rule says fail
    with pytest.raises(DataError, match="status 'pass' disagrees with its assertions"):
        RunResults.from_dict(lying)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="cannot read results"):
        RunResults.from_json(tmp_path / "bad.json")


def test_one_gate_rule_for_records_and_typed_results():
    warn = [{"name": "w", "status": "fail", "severity": "warning"}]
    crash = [{"name": "c", "status": "error"}]  # no severity: error
    assert gate_status(warn) == "pass" and gate_status(warn, "warning") == "fail"
    assert gate_status(crash) == "fail"
    assert RunResults.from_dict({"status": "pass", "assertions": warn}).gate("warning") == "fail"


def test_a_pipeline_run_writes_a_results_json_of_the_contract(tmp_path):
    from sparsecheck.config import parse_config
    from sparsecheck.pipeline import run_pipeline
    from tests.helpers import write_project

    raw = write_project(tmp_path)
    raw["analysis"] = {"explain": False}
    ctx = run_pipeline(parse_config(raw, base_dir=tmp_path), tmp_path / "out", device="cpu")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and list(data)[:2] == ["status", "schema_version"]
    assert RunResults.from_json(tmp_path / "out" / "results.json").status == ctx.results["status"]
    # the context held the typed sections as the stages set them; results.json is their dict
    run = ctx.run_results
    assert isinstance(run.model, ModelRecord) and run.model.fingerprint and run.model.feature_layer
    assert isinstance(run.dense, DenseSummary) and isinstance(run.sparse_layer, SparseLayerSummary)
    assert all(isinstance(c, FeatureCardRecord) for c in run.feature_cards) and run.feature_cards
    assert ctx.results == data and run.features["train"].n == run.data["train"].n
    require(jsonschema is not None, "the jsonschema package (pip install -e '.[test]')")
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))


def test_the_association_table_pointer_is_a_path_beside_the_results_file():
    pointer = {"path": "feature_attributes.parquet", "format": "parquet", "rows": 3,
               "columns": ["feature", "attribute", "value", "effect", "p_value", "q_value"],
               "listed": {"fdr": 0.05, "per_feature": 5, "rows": 1}}
    results = RunResults.from_dict(dict(RUN, feature_attributes_table=pointer))
    assert results.feature_attributes_table.rows == 3 and results.to_dict()["feature_attributes_table"] == pointer
    require(jsonschema is not None, "the jsonschema package (pip install -e '.[test]')")
    jsonschema.validate(results.to_dict(), json.loads(SCHEMA_PATH.read_text()))
    for bad in ("../elsewhere.parquet", "/tmp/t.parquet", "https://example.com/t.parquet", ""):
        with pytest.raises(DataError, match="feature_attributes_table.path: .*relative to the results file"):
            RunResults.from_dict(dict(RUN, feature_attributes_table={**pointer, "path": bad}))
    with pytest.raises(DataError, match="feature_attributes_table.rows"):
        RunResults.from_dict(dict(RUN, feature_attributes_table={**pointer, "rows": -1}))


#: a results.json written by sparsecheck before 1.3 (the demo, trimmed to two items per list)
OLD_1_2 = Path(__file__).parent / "data" / "results-1.2.json"


def test_a_1_2_file_written_before_the_sections_were_typed_loads_and_keeps_its_content():
    data = json.loads(OLD_1_2.read_text())
    old = RunResults.from_json(OLD_1_2)
    assert old.schema_version == "1.2" and old.status == "fail"
    assert old.model.fingerprint == data["model"]["fingerprint"]  # what monitor, compare and MLflow tags read
    assert old.features["train"].n == data["features"]["train"]["n"] and old.timings == data["timings"]
    assert old.feature_cards[0].feature == data["feature_cards"][0]["feature"]
    assert old.spurious_analysis.attributes == ["corner_mark"] and old.forward_passes["extract"] == 7000
    assert old.to_dict() == data and list(old.to_dict()) == list(data)  # nothing added, lost or moved
    require(jsonschema is not None, "the jsonschema package (pip install -e '.[test]')")
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))


def test_an_old_files_assertions_load_as_the_engines_results():
    data = json.loads(OLD_1_2.read_text())
    old = RunResults.from_json(OLD_1_2)
    chance = old.assertions[0]
    assert isinstance(chance, AssertionResult) and chance.type == "better_than_chance" and chance.needs_labels
    assert chance.failing_examples.empty and chance.details["n"] == data["assertions"][0]["details"]["n"]
    assert [a.to_dict() for a in old.assertions] == data["assertions"]
    # a record of the unversioned format: what the contract named then, and a message left empty
    bare = RunResults.from_dict({"status": "fail", "assertions": [
        {"name": "acc", "status": "fail", "message": None, "failing_examples": [{"id": "a", "severity": 1.0}]}]})
    acc = bare.assertions[0]
    assert (acc.severity, acc.message, acc.family, acc.n_failing, acc.failing_examples["id"].tolist()) == (
        "error", "", "custom", 1, ["a"])
    assert bare.gate() == "fail" and bare.to_dict()["assertions"] == [acc.to_dict()]


def test_older_1_x_files_load_with_their_version():
    for version in ("1.0", "1.1", "1.2"):
        old = RunResults.from_dict(dict(RUN, schema_version=version))
        assert old.schema_version == version and old.to_dict()["schema_version"] == version
    unversioned = {k: v for k, v in RUN.items() if k != "schema_version"}
    assert "schema_version" not in RunResults.from_dict(unversioned).to_dict()  # not claimed for it


def test_a_section_is_validated_when_a_stage_sets_it():
    results = RunResults(status="pass")
    results.dense = {"test_accuracy": 0.9}  # type: ignore[assignment]
    assert isinstance(results.dense, DenseSummary)
    with pytest.raises(ValueError, match="slices"):
        results.slices = [{"predicates": {}}]  # type: ignore[list-item]  # no size
    results.record_skip("LIME", "no model")
    assert results.to_dict() == {"status": "pass", "dense": {"test_accuracy": 0.9},
                                 "skipped": [{"what": "LIME", "reason": "no model"}]}


def test_ctx_results_is_a_read_only_view_of_the_typed_results():
    from sparsecheck.pipeline.context import RunContext

    ctx = RunContext(config=None, class_names=[], splits={})  # type: ignore[arg-type]
    ctx.skip("LIME", "no model")
    assert ctx.results == {"status": "pass", "skipped": [{"what": "LIME", "reason": "no model"}]}
    assert json.loads(json.dumps(ctx.results)) == ctx.results
    with pytest.raises(TypeError, match=r"set the typed section instead"):
        ctx.results["sparse_layer"] = {}  # would be lost: refused
    with pytest.raises(TypeError):
        ctx.results.update(timings={})
