"""The MLflow store: resolving the tracking URI, checking it is reachable, opening (and
prefetching) the client, and keeping MLflow's own logging out of the user's output."""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sparsecheck._runtime import one_line as _one_line
from sparsecheck.errors import ConfigError, TrackingError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

#: the embedded default store, in the working directory
DEFAULT_DB = "mlflow.db"
_HEALTH_TIMEOUT_S = 5.0
#: attempts to reach a tracking server before giving up (the environment variable overrides it)
ATTEMPTS_ENV, DEFAULT_ATTEMPTS, MAX_ATTEMPTS = "SPARSECHECK_TRACKING_ATTEMPTS", 3, 10
#: seconds before the first retry, doubled before each next one, at most MAX_BACKOFF_S each
BACKOFF_ENV, DEFAULT_BACKOFF_S, MAX_BACKOFF_S = "SPARSECHECK_TRACKING_BACKOFF_S", 2.0, 30.0


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


def retry_policy() -> tuple[int, float]:
    """``(attempts, first backoff in seconds)`` for reaching a tracking server.

    ``$SPARSECHECK_TRACKING_ATTEMPTS`` (default 3, at most 10) and
    ``$SPARSECHECK_TRACKING_BACKOFF_S`` (default 2; doubled before each next retry, at most 30 s
    per wait): with the defaults an unreachable server costs about 6 s of waiting (2 + 4) before
    the command gives up, and at most 4.5 minutes whatever the settings.

    Raises
    ------
    ConfigError
        naming the variable, for a value that is not a number in range.
    """
    def read(name: str, default: float, kind: type, low: float, high: float) -> Any:
        raw = os.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or not (low <= value <= high):
            raise ConfigError(f"must be a{'n integer' if kind is int else ' number'} in [{low:g}, {high:g}]",
                              key=f"${name}", value=raw)
        return value

    return (read(ATTEMPTS_ENV, DEFAULT_ATTEMPTS, int, 1, MAX_ATTEMPTS),
            read(BACKOFF_ENV, DEFAULT_BACKOFF_S, float, 0.0, MAX_BACKOFF_S))


def _check_reachable(uri: str, timeout: float = _HEALTH_TIMEOUT_S) -> None:
    """Fail fast on a tracking server that is not there (MLflow itself retries for minutes).

    A server that does not answer is tried again a few times with a growing wait
    (:func:`retry_policy`), each retry logged; then TrackingError names the URI, the attempts and
    the last reason.
    """
    if urllib.parse.urlparse(uri).scheme not in ("http", "https"):
        return
    attempts, backoff = retry_policy()
    shown = _redact(uri)
    start = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:
            return  # it answered: reachable, whatever it thinks of /health
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(exc, ValueError) or attempt == attempts:  # a malformed URI does not heal
                tried = f" after {attempt} attempts over {time.monotonic() - start:.0f} s" if attempt > 1 else ""
                raise TrackingError(f"cannot reach the MLflow tracking server at {shown}{tried}: {reason}") from exc
            wait = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
            logger.warning("MLflow tracking server at %s did not answer (attempt %d of %d: %s); retrying in %.1f s",
                           shown, attempt, attempts, reason, wait)
            time.sleep(wait)
        else:
            if attempt > 1:
                logger.info("MLflow tracking server at %s answered on attempt %d", shown, attempt)
            return


# --------------------------------------------------------------------------- quiet MLflow


@contextlib.contextmanager
def mlflow_errors(uri: str, doing: str = "query") -> Iterator[None]:
    """Inside the block, an MLflow error becomes a :class:`~sparsecheck.errors.TrackingError`:
    ``cannot <doing> MLflow at <uri>: <message>`` (the one place that wrapping is written)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise TrackingError(f"cannot {doing} MLflow at {uri}: {exc.message}") from exc


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


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's global tracking URI for the block (for the few MLflow calls that read
    nothing else, such as ``mlflow.pytorch.log_model``), then restore what was there before.

    MLflow's own ``set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI`` (and unsets it when
    restoring an unset URI), so the variable is restored here as it was, not as MLflow leaves it.
    ``$MLFLOW_EXPERIMENT_ID`` (which ``mlflow.set_experiment`` sets for subprocesses, and which may
    name an experiment of another store) is hidden for the block: the calls here name their run.
    """
    from mlflow.tracking._tracking_service import utils

    saved_uri, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    saved_experiment = os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    utils.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
        if saved_experiment is not None:
            os.environ["MLFLOW_EXPERIMENT_ID"] = saved_experiment


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
