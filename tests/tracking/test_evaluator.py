"""``mlflow.models.evaluate(..., evaluators=["sparsecheck"])`` against a real ``mlflow server``: the
evaluator is found through its entry point, runs the gate on a logged PyTorch image model, and its
metrics, artifacts and verdict land in the evaluation's run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import mlflow
import numpy as np
import pytest

from sparsecheck.errors import ConfigError
from tests.helpers import make_learned_net, register_model, write_registry_project

NAME = "sc-evaluated"


@pytest.fixture
def fluent_server(mlflow_server: Any) -> Iterator[str]:
    """The fluent API pointed at the server for the test (mlflow.models.evaluate only uses it)."""
    import os

    import mlflow.tracking.fluent as fluent

    previous = mlflow.get_tracking_uri(), fluent._active_experiment_id, os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(mlflow_server.uri)
    try:
        yield mlflow_server.uri
    finally:
        # set_experiment's choice is process-wide, and goes into MLFLOW_EXPERIMENT_ID for subprocesses
        mlflow.set_tracking_uri(previous[0])
        fluent._active_experiment_id = previous[1]
        if previous[2] is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = previous[2]


def test_the_evaluator_is_registered_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    import mlflow.models.evaluation  # noqa: F401 - registers the entry points on import
    from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry

    from sparsecheck.tracking.evaluator import SparsecheckEvaluator

    names = {e.name: e.value for e in entry_points(group="mlflow.model_evaluator")}
    assert names.get("sparsecheck") == "sparsecheck.tracking.evaluator:SparsecheckEvaluator"
    assert isinstance(_model_evaluation_registry.get_evaluator("sparsecheck"), SparsecheckEvaluator)


def test_evaluate_runs_the_gate_and_logs_it_into_the_evaluation_run(fluent_server: str, tmp_path: Path) -> None:
    config = write_registry_project(tmp_path, experiment="sc-evaluate", tracking_uri=fluent_server,
                                    assertions=[{"name": "accuracy at least 0.5", "type": "accuracy", "min": 0.5}])
    version = register_model(fluent_server, NAME, make_learned_net(seed=0))
    with np.load(tmp_path / "test.npz") as z:
        x, y, ids = z["x"], z["y"], z["id"]
    mlflow.set_experiment("sc-evaluate")
    result = mlflow.models.evaluate(
        f"models:/{NAME}/{version}", data=x.reshape(len(x), -1), targets=y, model_type="classifier",
        evaluators=["sparsecheck"],
        evaluator_config={"sparsecheck": {"config": str(config), "ids": ids, "model": f"models:/{NAME}/{version}",
                                          "device": "cpu", "out": str(tmp_path / "out")}})
    client = mlflow.MlflowClient(fluent_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"  # MLflow closed its run after the evaluator logged into it
    assert run.data.tags["sparsecheck.status"] == "pass" and run.data.tags["sparsecheck.kind"] == "run"
    assert result.metrics["sparsecheck_pass"] == 1.0 and result.metrics["assertions_failing"] == 0.0
    assert run.data.metrics["sparse_accuracy"] == result.metrics["sparse_accuracy"]
    assert run.data.params["mlflow.tracking_uri"] == fluent_server
    logged = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"report.html", "results.json", "junit.xml", "sparse_layer"} <= logged
    saved = json.loads(Path(client.download_artifacts(result.run_id, "results.json", str(tmp_path))).read_text())
    assert saved["mlflow"]["run_id"] == result.run_id and saved["status"] == "pass"
    assert saved["data"]["test"]["n"] == len(x) and saved["mlflow_model"]["version"] == str(version)
    assert result.artifacts["results.json"].content["mlflow"]["run_id"] == result.run_id
    # the verdict on the registered version, as `sparsecheck run --model models:/NAME/VERSION` writes it
    tags = client.get_model_version(NAME, version).tags
    assert tags["sparsecheck.status"] == "pass" and tags["sparsecheck.run_id"] == result.run_id
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_missing_config_is_named(fluent_server: str, tmp_path: Path) -> None:
    version = register_model(fluent_server, NAME, make_learned_net(seed=1))
    with pytest.raises(ConfigError, match=r"evaluator_config\['config'\]: required key is missing"):
        mlflow.models.evaluate(f"models:/{NAME}/{version}", data=np.zeros((3, 64), np.uint8),
                               targets=np.zeros(3, int), model_type="classifier", evaluators="sparsecheck",
                               evaluator_config={})
