"""sparsecheck as an MLflow evaluator: ``mlflow.models.evaluate(..., evaluators=["sparsecheck"])``.

Installing sparsecheck registers :class:`SparsecheckEvaluator` under MLflow's
``mlflow.model_evaluator`` entry point, so MLflow finds it by name::

    import mlflow

    result = mlflow.models.evaluate(
        "models:/digits/3",                       # a PyTorch image classifier logged with mlflow.pytorch
        data=x_test.reshape(len(x_test), -1),     # the test images, one flattened uint8 image per row
        targets=y_test,
        model_type="classifier",
        evaluators=["sparsecheck"],
        evaluator_config={"sparsecheck": {"config": "config.yaml", "ids": ids_test}},
    )
    result.metrics["assertions_failing"], mlflow.get_run(result.run_id).data.tags["sparsecheck.status"]

The gate runs as ``sparsecheck run config.yaml --model URI`` would, with the evaluated data as the
test split, and logs into the evaluation's run: the same params, metrics, artifacts
(``report.html``, ``results.json``, ...) and the ``sparsecheck.status`` tag (pass or fail); a
registered model version gets its verdict as well. MLflow closes the run when ``evaluate`` returns.

``evaluator_config`` (nested under ``"sparsecheck"`` when ``evaluators`` is a list, as MLflow
wants; flat with ``evaluators="sparsecheck"``):

=================  ==========================================================================
``config``         the sparsecheck YAML config (required): model input, training and validation
                   splits, metadata, assertions, analysis settings
``ids``            the test examples' ids, in the data's order (needed with ``data.metadata``;
                   default: ``evaluate/0``, ``evaluate/1``, ...)
``image_shape``    the shape of one image (default: the config's training images')
``model``          the model URI to check (default: the evaluated model's logged-model id, else
                   ``runs:/RUN/PATH``); give ``models:/NAME/VERSION`` to write the verdict on the
                   version
``out``            where the local outputs go (default: a temporary folder, removed afterwards)
``fail_on``        ``error`` (default) or ``warning``
``device``         ``auto`` (default), ``cpu`` or ``cuda``
``trust_pickle``   as ``--trust-pickle``
=================  ==========================================================================

Every metric and artifact is logged to the run; :meth:`SparsecheckEvaluator.evaluate` returns them
as an :class:`mlflow.models.EvaluationResult` whose ``metrics`` also hold ``sparsecheck_pass``
(1.0 when the gate passes at ``fail_on``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from mlflow.models.evaluation import ModelEvaluator

from sparsecheck.config import load_config
from sparsecheck.data import load_dataset
from sparsecheck.errors import ConfigError, DataError
from sparsecheck.pipeline import exit_code_for, run_pipeline
from sparsecheck.tracking.run_logging import metrics_from_results

logger = logging.getLogger(__name__)

__all__ = ["SparsecheckEvaluator", "EVALUATOR_NAME", "CONFIG_KEYS"]

#: the name MLflow knows the evaluator by (``evaluators=["sparsecheck"]``)
EVALUATOR_NAME = "sparsecheck"
CONFIG_KEYS = ("config", "ids", "image_shape", "model", "out", "fail_on", "device", "trust_pickle")


class SparsecheckEvaluator(ModelEvaluator):
    """The sparsecheck gate as an MLflow ``ModelEvaluator`` (see the module docstring)."""

    name = EVALUATOR_NAME

    @classmethod
    def can_evaluate(cls, *, model_type: str, evaluator_config: Mapping[str, Any], **kwargs: Any) -> bool:
        """Image classifiers: ``model_type="classifier"``."""
        return model_type == "classifier"

    def evaluate(self, *, model_type: str, dataset: Any, run_id: str, evaluator_config: Mapping[str, Any],
                 model: Any = None, **kwargs: Any) -> Any:
        """Run the gate on ``model`` with ``dataset`` as the test split; log into ``run_id``."""
        from mlflow.models.evaluation import EvaluationResult
        from mlflow.models.evaluation.artifacts import JsonEvaluationArtifact, TextEvaluationArtifact

        ctx, artifact_uri = evaluate_gate(dataset.features_data, dataset.labels_data, model=model, run_id=run_id,
                                          evaluator_config=dict(evaluator_config or {}))
        metrics = metrics_from_results(ctx.run_results)
        metrics["sparsecheck_pass"] = float(exit_code_for(ctx, str(evaluator_config.get("fail_on", "error"))) == 0)
        artifacts = {"results.json": JsonEvaluationArtifact(uri=f"{artifact_uri}/results.json", content=ctx.results),
                     "report.html": TextEvaluationArtifact(uri=f"{artifact_uri}/report.html")}
        return EvaluationResult(metrics=metrics, artifacts=artifacts, run_id=run_id)


def evaluate_gate(features: Any, labels: Any, *, model: Any, run_id: str,
                  evaluator_config: dict[str, Any]) -> tuple[Any, str]:
    """The work behind :meth:`SparsecheckEvaluator.evaluate`; returns the ``RunContext`` and the
    run's artifact URI.

    Raises
    ------
    ConfigError
        naming the ``evaluator_config`` key that is missing or wrong.
    """
    import mlflow


    unknown = sorted(set(evaluator_config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; known: {list(CONFIG_KEYS)}", key="evaluator_config")
    if "config" not in evaluator_config:
        raise ConfigError("required key is missing: the sparsecheck YAML config to run",
                          key="evaluator_config['config']")
    cfg = load_config(evaluator_config["config"])
    uri = evaluator_config.get("model") or _model_uri(model)
    cfg.use_model_uri(str(uri), key="evaluator_config['model']")
    if evaluator_config.get("trust_pickle"):
        cfg.model.trust_pickle = True
    cfg.mlflow.enabled = True
    cfg.mlflow.tracking_uri = mlflow.get_tracking_uri()  # the evaluation's run lives there
    tmp = Path(tempfile.mkdtemp(prefix="sparsecheck-evaluate-"))
    try:
        cfg.data.test = _write_test_split(tmp / "evaluate.npz", features, labels, cfg, evaluator_config)
        out = Path(evaluator_config["out"]) if evaluator_config.get("out") else tmp / "out"
        ctx = run_pipeline(cfg, out, device=str(evaluator_config.get("device", "auto")),
                           fail_on=str(evaluator_config.get("fail_on", "error")), mlflow_run_id=run_id)
        artifact_uri = str(mlflow.MlflowClient(cfg.mlflow.tracking_uri).get_run(run_id).info.artifact_uri)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("sparsecheck gate on %s: %s (MLflow run %s)", uri, ctx.run_results.status, run_id)
    return ctx, artifact_uri


def _model_uri(model: Any) -> str:
    """An MLflow URI of the evaluated pyfunc model: its logged model id, else ``runs:/RUN/PATH``."""
    model_id = getattr(model, "model_id", None)
    if model_id:
        return f"models:/{model_id}"
    meta = getattr(model, "metadata", None)
    if meta is not None and getattr(meta, "run_id", None) and getattr(meta, "artifact_path", None):
        return f"runs:/{meta.run_id}/{meta.artifact_path}"
    raise ConfigError("the evaluated model has no MLflow URI sparsecheck can load (no logged model id, no run); "
                      "give it as evaluator_config['model'] (models:/NAME/VERSION, runs:/RUN_ID/PATH)",
                      key="evaluator_config['model']")


def _write_test_split(path: Path, features: Any, labels: Any, cfg: Any, evaluator_config: dict[str, Any]) -> Path:
    """The evaluated data as the test split's ``.npz``: uint8 images, labels and ids."""
    x = np.asarray(features)
    if x.ndim == 2:
        shape = evaluator_config.get("image_shape")
        if shape is None:
            if cfg.data.train is None:
                raise ConfigError("required key is missing: the shape of one image (the config names no training "
                                  "split to take it from)", key="evaluator_config['image_shape']")
            shape = load_dataset(cfg.data.train).image_shape
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != x.shape[1]:
            raise DataError(f"the evaluated data has {x.shape[1]} columns, and an image of shape {shape} has "
                            f"{int(np.prod(shape))}: give evaluator_config['image_shape']", path="data")
        x = x.reshape(len(x), *shape)
    if x.dtype != np.uint8:
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 255 or not np.all(np.equal(np.mod(x, 1), 0))):
            raise DataError("the evaluated data must be 8-bit images (integers 0-255), as the config's "
                            "model.input expects them", path="data")
        x = x.astype(np.uint8)
    y = None if labels is None else np.asarray(labels).astype(np.int64)
    ids = evaluator_config.get("ids")
    if ids is None and cfg.data.metadata is not None:
        raise ConfigError("required key is missing: the test examples' ids in the data's order, to join "
                          f"data.metadata ({cfg.data.metadata.name})", key="evaluator_config['ids']")
    ids = (np.array([f"evaluate/{i}" for i in range(len(x))]) if ids is None
           else np.asarray([str(i) for i in ids]))
    if len(ids) != len(x):
        raise ConfigError(f"{len(ids)} ids for {len(x)} rows of data", key="evaluator_config['ids']")
    arrays = {"x": x, "id": ids, **({"y": y} if y is not None else {})}
    np.savez(path, **arrays)
    return path
