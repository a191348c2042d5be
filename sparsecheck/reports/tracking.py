"""MLflow as the system of record: every ``sparsecheck run`` (and monitoring batch) is one MLflow run.

A run holds the config as params, the headline figures as metrics (dense and sparse accuracy,
sparsity, features per class, error rates of the top slices, assertion counts), tags
(``sparsecheck.status``, ``sparsecheck.version``, ``sparsecheck.model_fingerprint``,
``sparsecheck.kind``) and the outputs as artifacts: ``report.html``, ``results.json``,
``junit.xml``, ``activations.npz``, ``sparse_layer/`` and ``features/``.

The order matters because ``results.json`` names its own MLflow run and is itself an artifact::

    run = start_run(config.mlflow)          # 1. create the run (its id is now known)
    with run:                               #    FAILED (KILLED on Ctrl-C) if anything raises
        ...write report.html, results.json  # 2. local outputs, carrying run.info
        run.log_outputs(ctx)                # 3. params, metrics, artifacts
    # 4. on leaving the block: tag sparsecheck.status, terminate FINISHED

Where runs go: ``tracking_uri`` when given (``--tracking-uri`` or ``mlflow.tracking_uri`` in the
config), else ``$MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in the working
directory, whose artifacts go to ``mlruns/`` beside it; ``mlflow ui --backend-store-uri
sqlite:///mlflow.db`` in that directory shows them. Everything talks to MLflow through an explicit
:class:`mlflow.MlflowClient`; no global MLflow state (tracking URI, active run) is touched.

MLflow and alembic log on INFO and print run links to stdout; that is kept out of the user's
output for the duration of each call here (unless this module's logger is at DEBUG).

Examples
--------
>>> resolve_tracking_uri("http://127.0.0.1:5000/")
'http://127.0.0.1:5000'
>>> metrics_from_results({"dense": {"test_accuracy": 0.8},
...                       "slices": [{"error_rate": 0.6}], "assertions": [{"status": "pass"}]})
{'dense_test_accuracy': 0.8, 'dense_accuracy': 0.8, 'slice_1_error_rate': 0.6, 'n_slices': 1.0, 'n_significant_slices': 0.0, 'assertions_total': 1.0, 'assertions_passed': 1.0, 'assertions_failed': 0.0, 'assertions_errored': 0.0, 'assertions_failing': 0.0, 'n_spurious_findings': 0.0, 'n_feature_cards': 0.0}
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from sparsecheck._runtime import atomic_write
from sparsecheck._version import __version__
from sparsecheck.errors import ParameterError, TrackingError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from sparsecheck.config import Config, MlflowConfig
    from sparsecheck.context import RunContext

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIVATIONS_FILE",
    "DEFAULT_DB",
    "TrackingInfo",
    "LoggedRun",
    "MlflowRun",
    "resolve_tracking_uri",
    "start_run",
    "prefetch",
    "params_from_config",
    "metrics_from_results",
    "write_activations",
    "load_run_results",
    "download_run_artifact",
]

#: the embedded default store, in the working directory
DEFAULT_DB = "mlflow.db"
#: activations of the used sparse features on the test split (see :func:`write_activations`)
ACTIVATIONS_FILE = "activations.npz"
#: output files and folders logged as artifacts when present (besides ``ctx.artifacts``)
OUTPUT_ARTIFACTS = ("report.html", "results.json", "junit.xml", ACTIVATIONS_FILE, "sparse_layer", "features")
KINDS = ("run", "monitor")
#: slices whose error rate becomes a metric (``slice_1_error_rate`` is the best slice)
TOP_SLICE_METRICS = 5
_PARAM_LENGTH_FALLBACK = 500  # MLflow < 2.? allowed 500 characters per param value
_KEY_LENGTH = 250
_BATCH_PARAMS = 100  # MLflow: at most 100 params + tags per log_batch request
_BATCH_METRICS = 1000
_HEALTH_TIMEOUT_S = 5.0


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


# --------------------------------------------------------------------------- tracking URI


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    Local SQLite paths are made absolute (against the working directory), so ``results.json``
    still points at the store when read from elsewhere.

    Examples
    --------
    >>> resolve_tracking_uri("sqlite:////data/runs/mlflow.db")
    'sqlite:////data/runs/mlflow.db'
    >>> resolve_tracking_uri("https://mlflow.example.com/")
    'https://mlflow.example.com'
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    uri = uri.strip()
    db = _sqlite_path(uri)
    if db is not None:
        query = uri.partition("?")[2]
        return f"sqlite:///{db.as_posix()}" + (f"?{query}" if query else "")
    if urllib.parse.urlparse(uri).scheme in ("http", "https"):
        return uri.rstrip("/")
    return uri


def _sqlite_path(uri: str) -> Path | None:
    """Absolute path of a local SQLite store URI; None for other URIs and in-memory databases."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///"):].partition("?")[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw).expanduser().resolve() if not raw.startswith("/") else Path(raw)


def _redact(uri: str) -> str:
    """``https://user:secret@host`` → ``https://host``: never write credentials into outputs."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri


def _check_reachable(uri: str, timeout: float = _HEALTH_TIMEOUT_S) -> None:
    """Fail fast on a tracking server that is not there (MLflow itself retries for minutes)."""
    if urllib.parse.urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered: reachable, whatever it thinks of /health
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"cannot reach the MLflow tracking server at {_redact(uri)}: {reason}") from exc


# --------------------------------------------------------------------------- quiet MLflow


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """Raise the ``mlflow`` and ``alembic`` loggers to WARNING for the duration (they log schema
    migrations and more on INFO), then restore them. Leaves them alone at DEBUG verbosity."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    _import_mlflow()  # mlflow configures its loggers on import: do that before adjusting them
    saved: dict[str, int] = {}
    for name in ("mlflow", "alembic"):
        log = logging.getLogger(name)
        saved[name] = log.level
        if log.getEffectiveLevel() < logging.WARNING:
            log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep MLflow's and alembic's INFO lines, warnings and stdout prints out of the user's output."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as printed:
        warnings.simplefilter("ignore")
        try:
            with _quiet_loggers():
                yield
        finally:
            for line in printed.getvalue().splitlines():
                logger.debug("mlflow: %s", line)


_prefetch_lock = threading.Lock()
_prefetch_threads: dict[str, threading.Thread] = {}


def prefetch(tracking_uri: str | None = None) -> None:
    """Import MLflow and open the tracking store in a background thread; return at once.

    Importing MLflow 3 and its SQLAlchemy models takes seconds, and a new SQLite store first
    runs MLflow's schema migrations (seconds more). A pipeline calls this when it starts, so that
    work overlaps feature extraction and fitting instead of adding to the end of the run;
    :func:`start_run` waits for it before touching the store. Errors are ignored here: the real
    call reports them. Calling it again for the same URI does nothing.
    """
    uri = resolve_tracking_uri(tracking_uri)
    with _prefetch_lock:
        if uri in _prefetch_threads:
            return
        thread = threading.Thread(target=_warm_up, args=(uri,), name="sparsecheck-mlflow-prefetch", daemon=True)
        _prefetch_threads[uri] = thread
    thread.start()


def _warm_up(uri: str) -> None:
    try:
        _import_mlflow()
        if _sqlite_path(uri) is not None:
            with _quiet_loggers():  # no warnings.catch_warnings here: it is not thread-safe
                _client(uri)  # creates (and migrates) the store; MLflow caches it per URI
    except Exception as exc:  # reported by the real call
        logger.debug("MLflow prefetch for %s failed: %s", _redact(uri), exc)


def _await_prefetch(uri: str, timeout: float = 600.0) -> None:
    with _prefetch_lock:
        thread = _prefetch_threads.get(uri)
    if thread is not None and thread.is_alive():
        thread.join(timeout)


def _import_mlflow() -> Any:
    import mlflow  # noqa: F401  (heavy: imported only when logging is on)

    return mlflow


def _client(uri: str) -> "MlflowClient":
    from mlflow import MlflowClient

    db = _sqlite_path(uri)
    if db is not None:
        _ensure_sqlite_store(db)
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as exc:
        if db is not None:
            raise _broken_store(db, exc) from exc
        raise


_creating: set[Path] = set()  # half-made stores of this process, removed at exit whatever happens
_creating_lock = threading.Lock()


def _ensure_sqlite_store(db: Path) -> None:
    """Create a new SQLite store whole, or not at all.

    MLflow builds a new store by running dozens of schema migrations in place; a process that
    stops part-way (bad input found meanwhile, Ctrl-C) leaves a store no later run can open. So
    the store is built under a temporary name beside the target and linked into place only once
    complete (``os.link`` never replaces a store another process finished first).
    """
    if db.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}-{threading.get_ident()}.creating")
    with _creating_lock:
        if not _creating:
            atexit.register(_remove_half_made)
        _creating.add(tmp)
    try:
        with _quiet_loggers():
            store = SqlAlchemyStore(f"sqlite:///{tmp}", (db.parent / "mlruns").as_uri())
        store.engine.dispose()
        try:
            os.link(tmp, db)
        except FileExistsError:  # another process finished its store first: use that one
            pass
        logger.debug("created the MLflow store %s", db)
    finally:
        tmp.unlink(missing_ok=True)
        with _creating_lock:
            _creating.discard(tmp)


def _remove_half_made() -> None:
    for tmp in list(_creating):
        for path in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(OSError):
                path.unlink()


def _broken_store(db: Path, exc: BaseException) -> TrackingError:
    """Explain a SQLite store MLflow cannot open, with the command that repairs it."""
    full, text = str(exc), _one_line(exc)[:160]
    uri = f"sqlite:///{db}"
    if any(k in full for k in ("already exists", "no such table", "no such column")):
        return TrackingError(
            f"the MLflow store {db} is half-made (an earlier run stopped while creating it); if it holds no "
            f"runs you need, move it aside (mv {db} {db}.broken) and run again; otherwise repair it with "
            f"`mlflow db upgrade {uri}` (MLflow said: {text})")
    if "out-of-date database schema" in full or "Can't locate revision" in full:
        return TrackingError(f"the MLflow store {db} has a schema this MLflow cannot use ({text}); upgrade it "
                             f"with `mlflow db upgrade {uri}` (take a backup first)")
    return TrackingError(f"cannot open the MLflow store {db}: {text}")


def _not_found(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST" or "RESOURCE_DOES_NOT_EXIST" in str(exc)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- what gets logged


def params_from_config(config: "Config", *, max_length: int | None = None) -> dict[str, str]:
    """The config flattened for MLflow params (:meth:`Config.to_flat_dict`), made loggable.

    Values longer than MLflow allows (6000 characters in MLflow 3) are cut and end in
    ``"...[N chars]"`` with N the full length; keys lose characters MLflow rejects.

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
    out: dict[str, str] = {}
    for key, value in config.to_flat_dict().items():
        key = re.sub(r"[^\w.\-/ :]", "_", key)[:_KEY_LENGTH]
        if len(value) > limit:
            tail = f"...[{len(value)} chars]"
            value = value[: limit - len(tail)] + tail
        out[key] = value
    return out


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


def metrics_from_results(results: Mapping[str, Any], *, top_slices: int = TOP_SLICE_METRICS) -> dict[str, float]:
    """The headline figures of a results dict as MLflow metrics (missing figures are left out).

    ``dense_<split>_accuracy``; ``dense_accuracy`` and ``sparse_accuracy`` (test split);
    ``sparsity``, ``mean_features_per_class``, ``max_features_per_class``, ``n_used_features``,
    ``selected_lambda``; ``slice_<i>_error_rate`` for the ``top_slices`` best slices,
    ``n_slices``, ``n_significant_slices``; ``assertions_total|passed|failed|errored`` and
    ``assertions_failing`` (failures that fail the run); ``n_spurious_findings``,
    ``n_feature_cards``; ``time_<stage>_s`` per pipeline stage.
    """
    from sparsecheck.results import failing_assertions

    metrics: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            metrics[name] = number

    dense = results.get("dense") or {}
    for key, value in dense.items():
        put(f"dense_{key}", value)
    layer = results.get("sparse_layer") or {}
    put("dense_accuracy", layer.get("dense_accuracy", dense.get("test_accuracy")))
    for key in ("sparse_accuracy", "sparsity", "mean_features_per_class", "max_features_per_class",
                "n_used_features", "selected_lambda"):
        put(key, layer.get(key))
    slices = list(results.get("slices") or [])
    for i, item in enumerate(slices[:top_slices], start=1):
        put(f"slice_{i}_error_rate", (item or {}).get("error_rate"))
    put("n_slices", len(slices))
    put("n_significant_slices", sum(bool((s or {}).get("significant")) for s in slices))
    assertions = list(results.get("assertions") or [])
    statuses = [str((a or {}).get("status", "")) for a in assertions]
    put("assertions_total", len(assertions))
    put("assertions_passed", statuses.count("pass"))
    put("assertions_failed", statuses.count("fail"))
    put("assertions_errored", statuses.count("error"))
    put("assertions_failing", len(failing_assertions(results.get("assertions"))))
    put("n_spurious_findings", len(results.get("spurious_findings") or []))
    put("n_feature_cards", len(results.get("feature_cards") or []))
    for stage, seconds in (results.get("timings") or {}).items():
        put("time_" + re.sub(r"\W", "_", str(stage)) + "_s", seconds)
    return metrics


def _tags(results: Mapping[str, Any], kind: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    tags = {"sparsecheck.version": __version__, "sparsecheck.kind": kind}
    fingerprint = (results.get("model") or {}).get("fingerprint")
    if fingerprint:
        tags["sparsecheck.model_fingerprint"] = str(fingerprint)
    tags.update({str(k): str(v) for k, v in (extra or {}).items()})
    return tags


def write_activations(ctx: "RunContext", path: str | Path) -> Path | None:
    """Write the used sparse features' activations on the test split to ``path`` (``.npz``).

    The file holds ``ids`` (str, n), ``feature_ids`` (int64, k: the features the sparse layer
    uses, sorted), ``activations`` (float32, n × k: raw deep features, not standardised) and
    ``labels`` (int64, n) when the split is labelled. The compare and monitor commands match
    features across runs and measure drift with it.

    Without a sparse layer or a test split there is nothing to write: a file left at ``path`` by
    an earlier run in the same output directory is removed (it would be logged as this run's) and
    None is returned.
    """
    path = Path(path)
    layer = ctx.sparse_layer
    view = ctx.splits.get("test")
    if layer is None or view is None:
        path.unlink(missing_ok=True)
        return None
    used = np.asarray(layer.used_features(), dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(view.ids).astype(str),
        "feature_ids": used,
        "activations": np.ascontiguousarray(np.asarray(view.features)[:, used], dtype=np.float32),
    }
    if view.labels is not None:
        arrays["labels"] = np.asarray(view.labels, dtype=np.int64)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
    ctx.artifacts[path.name] = str(path)
    return path


def _output_artifacts(ctx: "RunContext") -> list[Path]:
    """Files and folders under the output directory that belong to this run."""
    out = Path(ctx.out_dir)
    results = ctx.results
    wanted: list[Path] = []
    for name in OUTPUT_ARTIFACTS:
        if name == "sparse_layer" and ctx.sparse_layer is None:
            continue  # a folder from an earlier run in the same --out is not this run's
        if name == "features" and not results.get("feature_cards"):
            continue
        if name == ACTIVATIONS_FILE and ctx.sparse_layer is None:
            continue
        wanted.append(out / name)
    wanted.extend(Path(p) for p in ctx.artifacts.values())
    seen: set[Path] = set()
    found: list[Path] = []
    root = out.resolve()
    for path in wanted:
        resolved = path.resolve()
        if resolved in seen or not resolved.exists() or not resolved.is_relative_to(root) or resolved == root:
            continue
        if any(parent in seen for parent in resolved.parents):
            continue  # already inside a logged folder
        seen.add(resolved)
        found.append(resolved)
    return found


# --------------------------------------------------------------------------- the run


class MlflowRun:
    """An MLflow run created for one sparsecheck run; use :func:`start_run` to create it.

    As a context manager it terminates the run on exit: FINISHED with the ``sparsecheck.status``
    tag when the block completes, FAILED (KILLED on KeyboardInterrupt) when it raises.
    """

    def __init__(self, client: "MlflowClient", info: TrackingInfo, *, kind: str = "run") -> None:
        self.client = client
        self.info = info
        self.kind = kind
        self.status: str | None = None  # sparsecheck status (pass/fail), set by log_outputs
        self.ended = False

    def __repr__(self) -> str:
        return f"MlflowRun(run_id={self.info.run_id!r}, tracking_uri={self.info.tracking_uri!r})"

    def __enter__(self) -> "MlflowRun":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        with contextlib.suppress(Exception):  # MLflow may be what failed; keep the original error
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    def log_outputs(self, ctx: "RunContext") -> LoggedRun:
        """Log the config as params, the results as metrics, and the output files as artifacts.

        Call after ``results.json`` is written (it is one of the artifacts). Sets :attr:`status`
        from ``ctx.results["status"]``.

        Raises
        ------
        TrackingError
            MLflow refused or could not be reached.
        """
        from mlflow.entities import Metric, Param

        start = time.perf_counter()
        run_id = self.info.run_id
        params = params_from_config(ctx.config)
        metrics = metrics_from_results(ctx.results)
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
        except Exception as exc:
            raise TrackingError(f"logging run {run_id} to MLflow at {self.info.tracking_uri} failed: "
                                f"{_one_line(exc)}") from exc
        self.status = str(ctx.results.get("status", "unknown"))
        logged = LoggedRun(self.info, params, metrics, artifacts, time.perf_counter() - start)
        logger.info("logged run %s to MLflow (%s): %d params, %d metrics, %d artifacts in %.1f s",
                    run_id, self.info.tracking_uri, len(params), len(metrics), len(artifacts), logged.seconds)
        return logged

    def end(self, run_status: str = "FINISHED") -> None:
        """Tag ``sparsecheck.status`` and terminate the run (FINISHED, FAILED or KILLED). Idempotent."""
        if self.ended:
            return
        tag = (self.status or "unknown") if run_status == "FINISHED" else "error"
        try:
            with _quiet():
                self.client.set_tag(self.info.run_id, "sparsecheck.status", tag)
                self.client.set_terminated(self.info.run_id, status=run_status)
        except Exception as exc:
            raise TrackingError(f"terminating run {self.info.run_id} at {self.info.tracking_uri} failed: "
                                f"{_one_line(exc)}") from exc
        self.ended = True
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


def start_run(config: "MlflowConfig", *, kind: str = "run", results: Mapping[str, Any] | None = None,
              tracking_uri: str | None = None) -> MlflowRun:
    """Create the MLflow run of a sparsecheck run (the experiment too, if missing).

    Parameters
    ----------
    config : MlflowConfig
        ``experiment``, ``run_name``, ``tags`` and ``tracking_uri`` are used.
    kind : {"run", "monitor"}
        Recorded as the ``sparsecheck.kind`` tag.
    results : mapping, optional
        The run's results so far; ``model.fingerprint`` becomes a tag.
    tracking_uri : str, optional
        Overrides ``config.tracking_uri`` (see :func:`resolve_tracking_uri`).

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
            run = client.create_run(experiment_id, run_name=config.run_name,
                                    tags=_tags(results or {}, kind, config.tags))
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot log to the MLflow store {shown}: {_one_line(exc)}") from exc
    info = TrackingInfo(shown, str(experiment_id), run.info.run_id, config.experiment)
    logger.debug("created MLflow run %s in experiment %s at %s", info.run_id, info.experiment_id, shown)
    return MlflowRun(client, info, kind=kind)


# --------------------------------------------------------------------------- reading runs back


def download_run_artifact(run_id: str, path: str, tracking_uri: str | None = None,
                          dst_dir: str | Path | None = None) -> Path:
    """Download the artifact ``path`` (a file or folder) of MLflow run ``run_id``; return its local path.

    Parameters
    ----------
    run_id : str
    path : str
        Artifact path inside the run, e.g. ``"results.json"`` or ``"sparse_layer"``.
    tracking_uri : str, optional
        See :func:`resolve_tracking_uri`.
    dst_dir : path, optional
        Existing directory to download into; default a new temporary directory (the caller removes it).

    Raises
    ------
    TrackingError
        MLflow is unreachable, the run does not exist, or it has no such artifact.
    """
    uri = resolve_tracking_uri(tracking_uri)
    shown = _redact(uri)
    _check_reachable(uri)
    if dst_dir is None:
        dst = Path(tempfile.mkdtemp(prefix="sparsecheck-artifact-"))
    else:
        dst = Path(dst_dir)
        if not dst.is_dir():
            raise TrackingError(f"download directory {dst} does not exist")
    try:
        with _quiet():
            client = _client(uri)
            try:
                client.get_run(run_id)
            except Exception as exc:
                if _not_found(exc):
                    raise TrackingError(f"MLflow run {run_id!r} not found at {shown}", user_input=True) from exc
                raise
            try:
                local = client.download_artifacts(run_id, path, dst_path=str(dst))
            except Exception as exc:
                raise TrackingError(f"MLflow run {run_id} at {shown} has no artifact {path!r} "
                                    f"({_one_line(exc)})", user_input=True) from exc
    except TrackingError:
        if dst_dir is None:
            shutil.rmtree(dst, ignore_errors=True)
        raise
    except Exception as exc:
        if dst_dir is None:
            shutil.rmtree(dst, ignore_errors=True)
        raise TrackingError(f"cannot read run {run_id!r} from the MLflow store {shown}: {_one_line(exc)}") from exc
    local_path = Path(local)
    if not local_path.exists():
        raise TrackingError(f"MLflow run {run_id} at {shown} has no artifact {path!r}", user_input=True)
    return local_path


def load_run_results(run_id: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The ``results.json`` of MLflow run ``run_id``, as a dict.

    Raises
    ------
    TrackingError
        MLflow is unreachable, the run does not exist or holds no ``results.json`` that
        :meth:`sparsecheck.results.RunResults.from_dict` accepts.
    """
    with tempfile.TemporaryDirectory(prefix="sparsecheck-results-") as tmp:
        local = download_run_artifact(run_id, "results.json", tracking_uri, dst_dir=tmp)
        try:
            data = json.loads(local.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TrackingError(f"results.json of MLflow run {run_id} is not valid JSON: {exc}") from exc
    from sparsecheck.errors import DataError
    from sparsecheck.results import RunResults

    try:  # this contract or the previous one; anything else is refused with the reason
        RunResults.from_dict(data, source=f"results.json of MLflow run {run_id}")
    except DataError as exc:
        raise TrackingError(str(exc), user_input=True) from exc
    return data
