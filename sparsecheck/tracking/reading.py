"""Reading runs back from MLflow: a run's ``results.json`` and its other artifacts."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sparsecheck.errors import DataError, TrackingError
from sparsecheck.results import RunResults, load_feature_attributes
from sparsecheck.tracking.store import (
    _check_reachable,
    _client,
    _not_found,
    _one_line,
    _quiet,
    _redact,
    resolve_tracking_uri,
)

logger = logging.getLogger(__name__)

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


def load_run_results(run_id: str, tracking_uri: str | None = None) -> RunResults:
    """The ``results.json`` of MLflow run ``run_id``, typed (:meth:`RunResults.from_dict`).

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
    try:  # this contract or the previous one; anything else is refused with the reason
        return RunResults.from_dict(data, source=f"results.json of MLflow run {run_id}")
    except DataError as exc:
        raise TrackingError(str(exc), user_input=True) from exc


def load_run_feature_attributes(run_id: str, tracking_uri: str | None = None) -> Any:
    """The whole feature × metadata-value association table of MLflow run ``run_id``, a DataFrame.

    Downloads the run's ``results.json`` and the table it points to (``feature_attributes.parquet``,
    :func:`sparsecheck.results.load_feature_attributes`); a run logged before results.json 1.1
    holds the whole table inline.

    Raises
    ------
    TrackingError
        MLflow is unreachable, the run does not exist, or its results or table cannot be read.
    """
    with tempfile.TemporaryDirectory(prefix="sparsecheck-results-") as tmp:
        local = download_run_artifact(run_id, "results.json", tracking_uri, dst_dir=tmp)
        try:
            pointer = RunResults.from_json(local).feature_attributes_table
            if pointer is not None:
                download_run_artifact(run_id, pointer.path, tracking_uri, dst_dir=tmp)
            return load_feature_attributes(local)
        except DataError as exc:
            raise TrackingError(f"MLflow run {run_id}: {exc}", user_input=True) from exc
