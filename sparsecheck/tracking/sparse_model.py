"""The sparse decision layer as MLflow models (the ``mlflow.pytorch`` flavour), in the run's MLflow run.

Two models are logged, each with a signature and an input example:

* ``sparse_classifier``: the model's body with the sparse layer as its head
  (:class:`~sparsecheck.sparse.classifier.SparseClassifier`): model input (float32
  ``N×C×H×W``, after ``model.input``'s scaling and normalisation) → logits over the layer's
  classes;
* ``sparse_head``: the sparse layer alone: deep features (float32 ``N×D``, raw, as extracted) →
  logits.

Both are saved in ``torch.export``'s pt2 format (MLflow 3's default for PyTorch), which
``mlflow.pytorch.load_model(uri)`` loads without unpickling code, and without sparsecheck or the
model's own code installed. A body that cannot be exported (TorchScript, a model with
data-dependent control flow) costs only the classifier: the head is logged alone and the reason
is recorded under the run's ``skipped`` list. MLflow 3 keeps models as *logged models*
(``models:/m-…``) linked to the run as its outputs; ``results.json`` records their URIs under
``sparse_model``. ``mlflow.register_sparse_model: NAME`` also registers the classifier (the head
when there is no classifier) as a new version of the registered model ``NAME``.

Requirements are given (``torch``), not inferred: MLflow's inference loads the model in a
subprocess, about ten seconds per model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sparsecheck._runtime import exception_reason
from sparsecheck._version import __version__
from sparsecheck.errors import TrackingError
from sparsecheck.sparse.classifier import build_sparse_classifier
from sparsecheck.tracking.store import _global_tracking_uri, _one_line, _quiet

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.pipeline.context import RunContext
    from sparsecheck.tracking.run_logging import MlflowRun

logger = logging.getLogger(__name__)

__all__ = ["CLASSIFIER_NAME", "HEAD_NAME", "log_sparse_models"]

CLASSIFIER_NAME = "sparse_classifier"
HEAD_NAME = "sparse_head"
#: examples in each model's input example (at least 2, so the exported batch size stays dynamic)
EXAMPLE_ROWS = 2


def _pip_requirements() -> list[str]:
    return [f"torch=={torch.__version__.split('+')[0]}"]


def _rows(n: int) -> np.ndarray:
    """``EXAMPLE_ROWS`` row indices of a split with ``n`` rows (repeating a lone row)."""
    return np.arange(EXAMPLE_ROWS) % max(n, 1)


def _log(module: torch.nn.Module, example: np.ndarray, name: str, run: "MlflowRun", metadata: dict[str, Any],
         registered_name: str | None) -> dict[str, Any]:
    import mlflow.pytorch
    from mlflow.models import infer_signature

    module = module.to("cpu")
    with torch.no_grad():
        output = module(torch.from_numpy(example)).numpy()
    before = _output_models(run)
    printed = io.StringIO()
    try:
        # MLflow's model logging reads the global URI; registration prints to stderr
        with _global_tracking_uri(run.client.tracking_uri), contextlib.redirect_stderr(printed):
            info = mlflow.pytorch.log_model(
                module, name=name, run_id=run.info.run_id, signature=infer_signature(example, output),
                input_example=example, pip_requirements=_pip_requirements(), metadata=metadata,
                serialization_format="pt2", registered_model_name=registered_name, validate_serving_input=False)
    except Exception:
        # MLflow creates the logged model (and links it to the run) before exporting: a failed
        # export would leave an empty model in the run's outputs
        for model_id in _output_models(run) - before:
            with contextlib.suppress(Exception):
                run.client.delete_logged_model(model_id)
        raise
    finally:
        for line in printed.getvalue().splitlines():
            logger.debug("mlflow: %s", line)
    record: dict[str, Any] = {"name": name, "model_uri": info.model_uri, "model_id": info.model_id}
    version = getattr(info, "registered_model_version", None)
    if registered_name and version is not None:
        record["registered"] = {"name": registered_name, "version": str(version)}
    return record


def _output_models(run: "MlflowRun") -> set[str]:
    outputs = run.client.get_run(run.info.run_id).outputs
    return {m.model_id for m in (outputs.model_outputs if outputs is not None else [])}


def log_sparse_models(ctx: "RunContext", run: "MlflowRun") -> dict[str, Any] | None:
    """Log the sparse classifier (body + sparse head) and the sparse head to ``run``.

    Returns what ``results["sparse_model"]`` records: ``{"classifier": {name, model_uri,
    model_id} or None, "head": {...}, "registered": {name, version} or None, "seconds"}``; None
    when there is no sparse layer or test split. A classifier that cannot be built or exported is
    recorded with :meth:`RunContext.skip` and the head is still logged.

    Raises
    ------
    TrackingError
        MLflow refused the head (the classifier's failure is a skip, not an error).
    """
    layer, view = ctx.sparse_layer, ctx.splits.get("test")
    if layer is None or view is None:
        return None
    start = time.perf_counter()
    register = ctx.config.mlflow.register_sparse_model
    names = [ctx.class_names[int(c)] if int(c) < len(ctx.class_names) else str(c) for c in layer.classes_]
    metadata = {"sparsecheck_version": __version__, "classes": [int(c) for c in layer.classes_],
                "class_names": names, "feature_layer": ctx.feature_layer,
                "used_features": [int(f) for f in layer.used_features()]}
    out: dict[str, Any] = {"classifier": None, "head": None, "registered": None}
    classifier_example = None
    why_not = f"the run has no model or test {ctx.modality.noun}s to build it from"
    dataset = ctx.datasets.get("test")
    if dataset is not None and ctx.model is not None and ctx.input_spec is not None:
        example = ctx.input_spec.transform(dataset.batch(_rows(len(dataset))), device="cpu")
        if isinstance(example, Mapping):  # named token tensors: the pytorch flavour's example is one array
            why_not = (f"a {ctx.modality.noun} model takes named tensors ({', '.join(example)}), which the "
                       f"mlflow.pytorch flavour cannot take as its input example; the sparse head is logged alone")
        else:
            classifier_example = example.numpy()
    head_example = np.ascontiguousarray(np.asarray(view.features)[_rows(len(view))], dtype=np.float32)
    with _quiet():
        if classifier_example is None:
            ctx.skip("sparse classifier model (body + sparse head) in MLflow", why_not)
        else:
            model = ctx.model
            device = next((p.device for p in model.module.parameters()), torch.device("cpu"))
            try:
                classifier = build_sparse_classifier(model, layer, ctx.feature_layer)
                out["classifier"] = _log(classifier, classifier_example, CLASSIFIER_NAME, run,
                                         {**metadata, "input": f"model input: {ctx.input_spec!r}"}, register)
            except Exception as exc:  # optional: the head alone still carries the sparse layer
                ctx.skip("sparse classifier model (body + sparse head) in MLflow", exception_reason(exc))
            finally:
                if model.program is None and device.type != "cpu":
                    model.module.to(device)
        head_register = register if out["classifier"] is None else None
        try:
            out["head"] = _log(layer.to_module().eval(), head_example, HEAD_NAME, run,
                               {**metadata, "input": f"raw deep features at {ctx.feature_layer}"}, head_register)
        except Exception as exc:
            raise TrackingError(f"logging the sparse head to MLflow run {run.info.run_id} at "
                                f"{run.info.tracking_uri} failed: {_one_line(exc)}") from exc
    for part in ("classifier", "head"):
        if out[part] is not None and "registered" in out[part]:
            out["registered"] = out[part].pop("registered")
    out["seconds"] = round(time.perf_counter() - start, 3)
    logger.info("logged the sparse layer as MLflow model%s %s in %.1f s",
                "s" if out["classifier"] else "",
                " and ".join(m["model_uri"] for m in (out["classifier"], out["head"]) if m), out["seconds"])
    return out
