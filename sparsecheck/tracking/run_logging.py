"""Logging one sparsecheck run to MLflow: what becomes params, metrics, tags and artifacts, and
the :class:`MlflowRun` that creates, fills and terminates the run (see :mod:`sparsecheck.tracking`)."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from sparsecheck._runtime import ACTIVITY
from sparsecheck._version import __version__
from sparsecheck.errors import Interrupted, ParameterError, TrackingError
from sparsecheck.results import MlflowModelRecord, ModelRecord, RunResults
from sparsecheck.tracking.datasets import dataset_inputs
from sparsecheck.tracking.liveness import TAG_HEARTBEAT, Heartbeat, close_abandoned_runs, heartbeat_value
from sparsecheck.tracking.registry import ModelOrigin, link_model_input
from sparsecheck.tracking.sparse_model import log_sparse_models
from sparsecheck.tracking.store import (
    _await_prefetch,
    _check_reachable,
    _client,
    _one_line,
    _quiet,
    _redact,
    _sqlite_path,
    resolve_tracking_uri,
)
from sparsecheck.tracking.outputs import RESULTS_FILE, _output_artifacts
from sparsecheck.tracking.tags import TAG_KIND, TAG_MODEL_FINGERPRINT, TAG_PARAMS_DROPPED, TAG_STATUS, TAG_VERSION

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from sparsecheck.config import Config, MlflowConfig
    from sparsecheck.pipeline.context import RunContext

logger = logging.getLogger(__name__)

KINDS = ("run", "monitor", "select", "weak-labels")
#: slices whose error rate becomes a metric (``slice_1_error_rate`` is the best slice)
TOP_SLICE_METRICS = 5
_PARAM_LENGTH_FALLBACK = 500  # MLflow < 2.? allowed 500 characters per param value
_KEY_LENGTH = 250
_BATCH_PARAMS = 100  # MLflow: at most 100 params + tags per log_batch request
#: the most params a run logs from its config (a usual config flattens to about 90); the rest are counted
#: in ``sparsecheck.params_dropped``, so a user's huge ``factory_kwargs`` never reaches MLflow whole
MAX_PARAMS = 300
_FREE_SECTIONS = ("model.factory_kwargs.", "mlflow.tags.", "data.interventions.")
#: the most user tags (``mlflow.tags``) a run sets, and the longest tag value
MAX_USER_TAGS = 100
_TAG_LENGTH = 5000
_BATCH_METRICS = 1000


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TrackingInfo:
    """Where a sparsecheck run lives in MLflow; ``results.json`` records it as ``mlflow``.

    Attributes
    ----------
    tracking_uri : str
        Resolved URI (local SQLite paths absolute, credentials removed).
    experiment_id, run_id : str
    experiment_name : str
    """

    tracking_uri: str
    experiment_id: str
    run_id: str
    experiment_name: str = ""

    @property
    def ui_url(self) -> str | None:
        """Link to the run in the MLflow UI, for http(s) tracking servers; None otherwise."""
        if urllib.parse.urlparse(self.tracking_uri).scheme not in ("http", "https"):
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def to_dict(self) -> dict[str, Any]:
        """``{tracking_uri, experiment_id, run_id, experiment_name, ui_url}``."""
        return {"tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id,
                "run_id": self.run_id, "experiment_name": self.experiment_name, "ui_url": self.ui_url}


@dataclass
class LoggedRun:
    """What :meth:`MlflowRun.log_outputs` sent to MLflow."""

    info: TrackingInfo
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # artifact paths (files and folders)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mlflow": self.info.to_dict(), "n_params": len(self.params), "metrics": dict(self.metrics),
                "artifacts": list(self.artifacts), "seconds": round(self.seconds, 3)}


# --------------------------------------------------------------------------- what gets logged


def params_from_config(config: "Config", *, max_length: int | None = None,
                       max_params: int = MAX_PARAMS) -> dict[str, str]:
    """The config flattened for MLflow params (:meth:`Config.to_flat_dict`), made loggable.

    Values longer than MLflow allows (6000 characters in MLflow 3) are cut and end in
    ``"...[N chars]"`` with N the full length; keys lose characters MLflow rejects. At most
    ``max_params`` params are kept, the free-form sections (``model.factory_kwargs``,
    ``mlflow.tags``, ``data.interventions``) last; when there are more,
    ``sparsecheck.params_dropped`` says how many were left out.

    Examples
    --------
    >>> from sparsecheck.config import Config
    >>> cfg = Config.model_validate({"model": {"path": "m.pt2"},
    ...                              "data": {"train": "a.npz", "test": "b.npz",
    ...                                       "class_names": [f"class {i}" for i in range(2000)]}})
    >>> params = params_from_config(cfg, max_length=100)
    >>> params["sparse.alpha"], len(params["data.class_names"]), params["data.class_names"][-16:]
    ('0.99', 100, '...[26890 chars]')
    """
    limit = max_length or _max_param_length()
    flat = config.to_flat_dict()
    # the sections the user fills freely go last, so they are the ones left out past max_params
    free = [k for k in flat if k.startswith(_FREE_SECTIONS)]
    flat = {**{k: v for k, v in flat.items() if not k.startswith(_FREE_SECTIONS)}, **{k: flat[k] for k in free}}
    out: dict[str, str] = {}
    for key, value in flat.items():
        if len(out) == max_params - 1 and len(flat) > max_params:
            out[TAG_PARAMS_DROPPED] = str(len(flat) - len(out))
            break
        out[re.sub(r"[^\w.\-/ :]", "_", key)[:_KEY_LENGTH]] = _cut(value, limit)
    return out


def _cut(value: str, limit: int) -> str:
    """``value``, or its start ending in ``"...[N chars]"`` when it is longer than ``limit``."""
    if len(value) <= limit:
        return value
    tail = f"...[{len(value)} chars]"
    return value[: limit - len(tail)] + tail


def _max_param_length() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:  # pragma: no cover - layout of old MLflow versions
        return _PARAM_LENGTH_FALLBACK
    return int(MAX_PARAM_VAL_LENGTH)


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
        return float(value)
    return None


def metrics_from_results(results: RunResults | Mapping[str, Any], *,
                         top_slices: int = TOP_SLICE_METRICS) -> dict[str, float]:
    """The headline figures of a run's results as MLflow metrics (missing figures are left out).

    ``results`` is the run's :class:`~sparsecheck.results.RunResults`, or a results.json mapping
    (read as :meth:`~sparsecheck.results.RunResults.from_dict` reads it).

    ``dense_<split>_accuracy``; ``dense_accuracy`` and ``sparse_accuracy`` (test split);
    ``sparsity``, ``mean_features_per_class``, ``max_features_per_class``, ``n_used_features``,
    ``selected_lambda``; ``slice_<i>_error_rate`` for the ``top_slices`` best slices,
    ``n_slices``, ``n_significant_slices``; ``assertions_total|passed|failed|errored`` and
    ``assertions_failing`` (failures that fail the run); ``n_spurious_findings`` (declared attributes),
    ``n_automatic_findings`` (found from the pixels), ``n_feature_cards``; ``time_<stage>_s`` per pipeline stage.
    """
    run = results if isinstance(results, RunResults) else RunResults.from_dict(results)
    metrics: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            metrics[name] = number

    dense = run.dense.model_dump(exclude_unset=True) if run.dense is not None else {}  # one accuracy per split
    for key, value in dense.items():
        put(f"dense_{key}", value)
    layer = run.sparse_layer
    put("dense_accuracy", layer.dense_accuracy if layer is not None and layer.dense_accuracy is not None
        else dense.get("test_accuracy"))
    for key in ("sparse_accuracy", "sparsity", "mean_features_per_class", "max_features_per_class",
                "n_used_features", "selected_lambda"):
        put(key, getattr(layer, key, None))
    for i, item in enumerate(run.slices[:top_slices], start=1):
        put(f"slice_{i}_error_rate", item.error_rate)
    put("n_slices", len(run.slices))
    put("n_significant_slices", sum(bool(s.significant) for s in run.slices))
    statuses = [a.status for a in run.assertions]
    put("assertions_total", len(statuses))
    put("assertions_passed", statuses.count("pass"))
    put("assertions_failed", statuses.count("fail"))
    put("assertions_errored", statuses.count("error"))
    put("assertions_failing", len(run.failing()))
    put("n_spurious_findings", len(run.spurious_findings))
    put("n_automatic_findings", len(run.automatic_findings))
    put("n_feature_cards", len(run.feature_cards))
    for stage, seconds in run.timings.items():
        put("time_" + re.sub(r"\W", "_", str(stage)) + "_s", seconds)
    return metrics


def _checked_model(results: RunResults | Mapping[str, Any] | None) -> tuple[ModelRecord | None,
                                                                             MlflowModelRecord | None]:
    """The ``model`` and ``mlflow_model`` sections of a run's results, typed; a mapping holds just
    those two (how ``monitor`` and ``select`` name the model they checked)."""
    if isinstance(results, RunResults):
        return results.model, results.mlflow_model
    model, origin = (results or {}).get("model"), (results or {}).get("mlflow_model")
    return (None if model is None else ModelRecord.model_validate(model),
            None if origin is None else MlflowModelRecord.model_validate(origin))


def _model_id(results: RunResults | Mapping[str, Any] | None) -> str | None:
    """The MLflow 3 logged model the run's model was loaded from, if any."""
    origin = _checked_model(results)[1]
    return None if origin is None else origin.model_id


def _tags(results: RunResults | Mapping[str, Any] | None, kind: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    tags = {TAG_VERSION: __version__, TAG_KIND: kind}
    model, origin = _checked_model(results)
    if model is not None and model.fingerprint:
        tags[TAG_MODEL_FINGERPRINT] = str(model.fingerprint)
    if origin is not None:  # the model's registry name, version, run, id
        tags.update(ModelOrigin.from_dict(origin.model_dump()).run_tags())
    user = list((extra or {}).items())
    if len(user) > MAX_USER_TAGS:
        logger.warning("mlflow.tags has %d tags; the first %d are set", len(user), MAX_USER_TAGS)
    tags.update({_cut(str(k), _KEY_LENGTH): _cut(str(v), _TAG_LENGTH) for k, v in user[:MAX_USER_TAGS]})
    return tags


# --------------------------------------------------------------------------- the run


class MlflowRun:
    """An MLflow run created for one sparsecheck run; use :func:`start_run` to create it.

    As a context manager it renews the run's heartbeat (:mod:`.liveness`) while the block runs and
    terminates the run on exit: FINISHED with the ``sparsecheck.status`` tag when the block
    completes, KILLED when it is interrupted (SIGINT, SIGTERM), FAILED when it raises.
    ``run_status`` is the status it was terminated with (None while it is open).
    """

    def __init__(self, client: "MlflowClient", info: TrackingInfo, *, kind: str = "run") -> None:
        self.client = client
        self.info = info
        self.kind = kind
        self.status: str | None = None  # sparsecheck status (pass/fail), set by log_outputs
        self.ended = False
        self.run_status: str | None = None
        self._heartbeat: Heartbeat | None = None

    def __repr__(self) -> str:
        return f"MlflowRun(run_id={self.info.run_id!r}, tracking_uri={self.info.tracking_uri!r})"

    def __enter__(self) -> "MlflowRun":
        if self._heartbeat is None and not self.ended:
            self._heartbeat = Heartbeat(self.client, self.info.run_id).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        with contextlib.suppress(Exception):  # MLflow may be what failed; keep the original error
            self.end("KILLED" if issubclass(exc_type, (KeyboardInterrupt, Interrupted)) else "FAILED")

    def log_outputs(self, ctx: "RunContext") -> LoggedRun:
        """Log the config as params, the results as metrics, and the output files as artifacts.

        ``results.json`` is logged from ``ctx.run_results`` (its ``mlflow.status`` saying what the run
        is about to become), not from the output directory: the local file is written only after
        the run is terminated (:func:`sparsecheck.pipeline.write_outputs`). Sets :attr:`status`
        from its ``status``.

        Raises
        ------
        TrackingError
            MLflow refused or could not be reached.
        """
        from mlflow.entities import Metric, Param

        start = time.perf_counter()
        run_id = self.info.run_id
        params = params_from_config(ctx.config)
        metrics = metrics_from_results(ctx.run_results)
        now = int(time.time() * 1000)
        artifacts: list[str] = []
        out = Path(ctx.out_dir).resolve()
        try:
            with _quiet():
                param_items = [Param(k, v) for k, v in params.items()]
                metric_items = [Metric(k, v, now, 0) for k, v in metrics.items()]
                # one request for a usual config; MLflow caps a batch at 100 params
                while param_items or metric_items:
                    self.client.log_batch(run_id, params=param_items[:_BATCH_PARAMS],
                                          metrics=metric_items[:_BATCH_METRICS])
                    param_items, metric_items = param_items[_BATCH_PARAMS:], metric_items[_BATCH_METRICS:]
                for path in _output_artifacts(ctx):
                    dest = path.parent.relative_to(out).as_posix()
                    dest = None if dest == "." else dest
                    if path.is_dir():
                        self.client.log_artifacts(run_id, str(path), artifact_path=_join(dest, path.name))
                    else:
                        self.client.log_artifact(run_id, str(path), artifact_path=dest)
                    artifacts.append(_join(dest, path.name) + ("/" if path.is_dir() else ""))
                with tempfile.TemporaryDirectory(prefix="sparsecheck-results-") as tmp:
                    ctx.run_results.to_json(Path(tmp) / RESULTS_FILE)
                    self.client.log_artifact(run_id, str(Path(tmp) / RESULTS_FILE))
                artifacts.append(RESULTS_FILE)
        except Exception as exc:
            raise TrackingError(f"logging run {run_id} to MLflow at {self.info.tracking_uri} failed: "
                                f"{_one_line(exc)}") from exc
        self.status = str(ctx.run_results.status)
        logged = LoggedRun(self.info, params, metrics, artifacts, time.perf_counter() - start)
        logger.info("logged run %s to MLflow (%s): %d params, %d metrics, %d artifacts in %.1f s",
                    run_id, self.info.tracking_uri, len(params), len(metrics), len(artifacts), logged.seconds)
        return logged

    def log_inputs(self, ctx: "RunContext") -> list[str]:
        """Log the run's data splits as MLflow dataset inputs (see :mod:`.datasets`); return their names.

        Raises
        ------
        TrackingError
            MLflow refused or could not be reached.
        """
        splits = {s: d for s in ("train", "val", "test")
                  if (d := ctx.datasets.get(s) or ctx.precomputed.get(s)) is not None}
        if not splits:
            return []
        try:
            with _quiet():
                inputs = dataset_inputs(splits, ctx.class_names)
                self.client.log_inputs(self.info.run_id, datasets=inputs)
        except Exception as exc:
            raise TrackingError(f"logging the datasets of run {self.info.run_id} to MLflow at "
                                f"{self.info.tracking_uri} failed: {_one_line(exc)}") from exc
        return [i.dataset.name for i in inputs]

    def log_sparse_model(self, ctx: "RunContext") -> dict[str, Any] | None:
        """Log the sparse layer as MLflow models (see :mod:`.sparse_model`) when
        ``mlflow.log_sparse_model`` is on; return what ``results["sparse_model"]`` records."""
        if not ctx.config.mlflow.log_sparse_model:
            return None
        return log_sparse_models(ctx, self)

    def discard(self) -> None:
        """Delete the run (it ends here; leaving the ``with`` block then does nothing): for a run that
        turned out to duplicate another one, such as the loser of a monitoring claim.

        Raises
        ------
        TrackingError
            MLflow refused or could not be reached.
        """
        self._stop_heartbeat()
        try:
            with _quiet():
                self.client.set_terminated(self.info.run_id, status="KILLED")
                self.client.delete_run(self.info.run_id)
        except Exception as exc:
            raise TrackingError(f"deleting run {self.info.run_id} at {self.info.tracking_uri} failed: "
                                f"{_one_line(exc)}") from exc
        self.ended = True

    def _stop_heartbeat(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()

    def tag_status(self) -> None:
        """Tag ``sparsecheck.status`` (the gate's pass or fail) without terminating the run: for a run
        that belongs to someone else (:func:`attach_run`), such as ``mlflow.models.evaluate``'s."""
        try:
            with _quiet():
                self.client.set_tag(self.info.run_id, TAG_STATUS, self.status or "unknown")
        except Exception as exc:
            raise TrackingError(f"tagging run {self.info.run_id} at {self.info.tracking_uri} failed: "
                                f"{_one_line(exc)}") from exc

    def end(self, run_status: str = "FINISHED") -> None:
        """Tag ``sparsecheck.status`` and terminate the run (FINISHED, FAILED or KILLED). Idempotent."""
        if self.ended:
            return
        self._stop_heartbeat()
        tag = (self.status or "unknown") if run_status == "FINISHED" else "error"
        try:
            with _quiet():
                self.client.set_tag(self.info.run_id, TAG_STATUS, tag)
                self.client.set_terminated(self.info.run_id, status=run_status)
        except Exception as exc:
            raise TrackingError(f"terminating run {self.info.run_id} at {self.info.tracking_uri} failed: "
                                f"{_one_line(exc)}") from exc
        self.ended = True
        self.run_status = run_status
        if ACTIVITY.mlflow_run == self.info.run_id:
            ACTIVITY.mlflow_status = run_status
        if self.info.ui_url:
            logger.info("MLflow run: %s", self.info.ui_url)


def _join(parent: str | None, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Local SQLite stores keep artifacts in ``mlruns/`` beside the database, whatever the cwd."""
    db = _sqlite_path(uri)
    if db is None:
        return None  # servers and other stores choose (a server proxies mlflow-artifacts:/)
    slug = re.sub(r"[^\w.-]+", "_", experiment).strip("._") or "experiment"
    return (db.parent / "mlruns" / slug).as_uri()


def attach_run(config: "MlflowConfig", run_id: str, *, kind: str = "run",
               results: RunResults | Mapping[str, Any] | None = None) -> MlflowRun:
    """An :class:`MlflowRun` for an existing run that someone else opened and will close (the run of
    ``mlflow.models.evaluate``), with sparsecheck's tags set on it as :func:`start_run` would.

    Raises
    ------
    TrackingError
        The store cannot be reached, or has no such run.
    """
    uri = resolve_tracking_uri(config.tracking_uri)
    shown = _redact(uri)
    _check_reachable(uri)
    try:
        with _quiet():
            client = _client(uri)
            run = client.get_run(run_id)
            experiment = client.get_experiment(run.info.experiment_id)
            for key, value in _tags(results, kind, config.tags).items():
                client.set_tag(run_id, key, value)
            link_model_input(client, run_id, _model_id(results))
    except Exception as exc:
        raise TrackingError(f"cannot log to run {run_id} at the MLflow store {shown}: {_one_line(exc)}") from exc
    info = TrackingInfo(shown, str(run.info.experiment_id), run_id, experiment.name)
    return MlflowRun(client, info, kind=kind)


def start_run(config: "MlflowConfig", *, kind: str = "run", results: RunResults | Mapping[str, Any] | None = None,
              tracking_uri: str | None = None) -> MlflowRun:
    """Create the MLflow run of a sparsecheck run (the experiment too, if missing).

    Parameters
    ----------
    config : MlflowConfig
        ``experiment``, ``run_name``, ``tags`` and ``tracking_uri`` are used.
    kind : {"run", "monitor", "select", "weak-labels"}
        Recorded as the ``sparsecheck.kind`` tag.
    results : RunResults or mapping, optional
        The run's results so far; ``model.fingerprint`` becomes a tag, and a model loaded from
        MLflow (``mlflow_model``) becomes the ``sparsecheck.model_*`` tags and, in MLflow 3, a
        model input of the run.
    tracking_uri : str, optional
        Overrides ``config.tracking_uri`` (see :func:`resolve_tracking_uri`).

    Before the run is created, the experiment's RUNNING runs whose process is gone are closed as
    KILLED (:func:`~.liveness.close_abandoned_runs`); the new run carries its own heartbeat tag.

    Raises
    ------
    TrackingError
        The store cannot be reached or refuses (one line naming the URI).
    """
    if kind not in KINDS:
        raise ParameterError(f"The 'kind' parameter of start_run must be one of {KINDS}. Got {kind!r} instead.",
                             parameter="kind")
    uri = resolve_tracking_uri(tracking_uri or config.tracking_uri)
    shown = _redact(uri)
    _check_reachable(uri)
    _await_prefetch(uri)
    try:
        with _quiet():
            client = _client(uri)
            experiment = client.get_experiment_by_name(config.experiment)
            if experiment is None:
                try:
                    experiment_id = client.create_experiment(
                        config.experiment, artifact_location=_artifact_location(uri, config.experiment))
                except Exception as exc:  # created meanwhile by a concurrent run?
                    experiment = client.get_experiment_by_name(config.experiment)
                    if experiment is None:
                        raise exc
                    experiment_id = experiment.experiment_id
            elif experiment.lifecycle_stage == "deleted":
                raise TrackingError(f"MLflow experiment {config.experiment!r} at {shown} is deleted; "
                                    "restore it or set mlflow.experiment to another name", user_input=True)
            else:
                experiment_id = experiment.experiment_id
                close_abandoned_runs(client, experiment_id)  # RUNNING runs whose process is gone
            run = client.create_run(experiment_id, run_name=config.run_name,
                                    tags={**_tags(results, kind, config.tags), TAG_HEARTBEAT: heartbeat_value()})
            link_model_input(client, run.info.run_id, _model_id(results))
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot log to the MLflow store {shown}: {_one_line(exc)}") from exc
    info = TrackingInfo(shown, str(experiment_id), run.info.run_id, config.experiment)
    logger.debug("created MLflow run %s in experiment %s at %s", info.run_id, info.experiment_id, shown)
    ACTIVITY.mlflow_run, ACTIVITY.mlflow_status = info.run_id, None
    return MlflowRun(client, info, kind=kind)
