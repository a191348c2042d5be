"""What a run logs to MLflow besides params, metrics and files: its data splits as dataset inputs,
and its sparse layer as ``mlflow.pytorch`` models that load back into working classifiers.

Runs are logged through the real ``write_outputs`` to a real ``mlflow server`` and read back with
MLflow's own client and loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparsecheck.models import Model
from sparsecheck.pipeline import write_outputs

REGISTERED = "sparsecheck-tests-sparse"


def _results(ctx: Any) -> dict[str, Any]:
    return json.loads((Path(ctx.out_dir) / "results.json").read_text())


def _load(uri: str, tracking_uri: str) -> Any:
    import mlflow.pytorch

    from sparsecheck.tracking.store import _global_tracking_uri

    with _global_tracking_uri(tracking_uri):
        return mlflow.pytorch.load_model(uri)


def test_splits_are_dataset_inputs_and_the_sparse_layer_loads_back(run_ctx: Any, mlflow_server: Any) -> None:
    from mlflow import MlflowClient

    cfg = run_ctx.config.mlflow
    cfg.tracking_uri, cfg.log_sparse_model, cfg.register_sparse_model = mlflow_server.uri, True, REGISTERED
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    write_outputs(run_ctx)
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before  # MLflow's global URI was borrowed, not kept
    results = _results(run_ctx)
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(results["mlflow"]["run_id"])

    # datasets: one input per split, context-tagged, digest = the split's content digest
    inputs = {tag.value: i.dataset for i in run.inputs.dataset_inputs for tag in i.tags
              if tag.key == "mlflow.data.context"}
    assert set(inputs) == {"training", "validation", "testing"}
    test = inputs["testing"]
    assert test.name == "test" and test.digest == results["data"]["test"]["digest"]
    assert test.digest == run_ctx.datasets["test"].digest() and len(test.digest) == 16
    assert json.loads(test.source) == {"uri": str(Path(run_ctx.datasets["test"].source).resolve())}
    profile = json.loads(test.profile)
    labels = run_ctx.splits["test"].labels
    assert profile["num_examples"] == len(labels) and profile["split"] == "test"
    assert profile["class_counts"] == {run_ctx.class_names[k]: int(n) for k, n in enumerate(np.bincount(labels))}
    assert json.loads(test.schema)["mlflow_tensorspec"]["features"]
    assert inputs["training"].digest != test.digest

    # the sparse layer as two models linked to the run; both reproduce sparsecheck's sparse layer
    record = results["sparse_model"]
    assert {m.model_id for m in run.outputs.model_outputs} == {record["classifier"]["model_id"],
                                                                record["head"]["model_id"]}
    layer, view = run_ctx.sparse_layer, run_ctx.splits["test"]
    features = np.asarray(view.features)
    head = _load(record["head"]["model_uri"], mlflow_server.uri)
    with torch.no_grad():
        logits = head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(logits, layer.decision_function(features), rtol=1e-5, atol=1e-5)
    classifier = _load(record["classifier"]["model_uri"], mlflow_server.uri)
    x = run_ctx.input_spec.transform(run_ctx.datasets["test"].images, device="cpu")
    with torch.no_grad():
        predicted = layer.classes_[classifier(x).numpy().argmax(axis=1)]  # a batch size it was not logged with
    assert len(predicted) == len(labels) > 2 and np.array_equal(predicted, layer.predict(features))
    info = client.get_logged_model(record["classifier"]["model_id"])
    assert info.source_run_id == run.info.run_id and info.name == "sparse_classifier"
    # registered: the classifier is the new version
    version = client.get_model_version(REGISTERED, record["registered"]["version"])
    assert version.run_id == run.info.run_id and record["registered"]["name"] == REGISTERED
    assert record["classifier"]["model_id"] in version.source
    assert not results.get("skipped")
    page = (Path(run_ctx.out_dir) / "report.html").read_text()  # the report names both
    assert f'id="model-classifier">{record["classifier"]["model_uri"]}<' in page and test.digest in page


def test_a_torchscript_body_logs_the_head_alone(run_ctx: Any, mlflow_cwd: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """TorchScript cannot be re-exported with torch.export: the head is logged, the reason recorded.
    A stale ``MLFLOW_EXPERIMENT_ID`` (mlflow.set_experiment leaves it for subprocesses, naming an
    experiment of another store) does not get in the way: the models are logged into the run."""
    from tests.helpers import make_tiny_net

    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "424242")

    uri = f"sqlite:///{mlflow_cwd / 'mlflow.db'}"
    run_ctx.config.mlflow.tracking_uri, run_ctx.config.mlflow.log_sparse_model = uri, True
    run_ctx.model = Model(torch.jit.script(make_tiny_net()), "torchscript", "model.pt")
    write_outputs(run_ctx)
    results = _results(run_ctx)
    record = results["sparse_model"]
    assert record["classifier"] is None and record["head"]["model_uri"].startswith("models:/m-")
    assert record["registered"] is None
    [skip] = [s for s in results["skipped"] if "sparse classifier" in s["what"]]
    assert "TorchScript" in skip["reason"]
    head = _load(record["head"]["model_uri"], uri)
    features = np.asarray(run_ctx.splits["test"].features)
    with torch.no_grad():
        assert np.array_equal(head(torch.from_numpy(features)).numpy().argmax(1),
                              run_ctx.sparse_layer.decision_function(features).argmax(1))


def test_the_same_data_has_the_same_digest_whatever_the_geometry(tmp_path: Path) -> None:
    from sparsecheck.data import load_dataset
    from sparsecheck.data.images import ImageGeometry
    from tests.helpers import write_npz

    write_npz(tmp_path / "a.npz", 20, seed=3)
    a, b = load_dataset(tmp_path / "a.npz"), load_dataset(tmp_path / "a.npz", geometry=ImageGeometry(size=(4, 4)))
    assert a.digest() == b.digest() and a.fingerprint() != b.fingerprint()  # the cache key keeps the geometry
    write_npz(tmp_path / "c.npz", 20, seed=4)
    assert load_dataset(tmp_path / "c.npz").digest() != a.digest()
