"""Every MLflow tag name sparsecheck sets or searches by, stated once.

Runs of every kind carry :data:`TAG_VERSION`, :data:`TAG_KIND` (one of
:data:`sparsecheck.tracking.run_logging.KINDS`) and :data:`TAG_STATUS`; the rest belong to one
kind of run or one step (the model a run checked, the verdict on a registered model version, the
liveness of a running run, a monitoring run's reference and batch, a selection's pool).
"""

from __future__ import annotations

__all__ = [
    "TAG_VERSION", "TAG_KIND", "TAG_STATUS", "TAG_PARAMS_DROPPED", "TAG_MODEL_FINGERPRINT",
    "TAG_MODEL_URI", "TAG_MODEL_NAME", "TAG_MODEL_VERSION", "TAG_MODEL_RUN_ID", "TAG_MODEL_ID",
    "TAG_RUN_ID", "TAG_CHECKED_AT", "TAG_FAILED_ASSERTIONS", "TAG_SPURIOUS_FINDINGS",
    "TAG_HEARTBEAT", "TAG_CLOSED", "TAG_REFERENCE", "TAG_FINGERPRINT", "TAG_ALERT", "TAG_POOL",
    "TAG_SOURCE", "TAG_SPLIT",
]

# every run
TAG_VERSION = "sparsecheck.version"
TAG_KIND = "sparsecheck.kind"
TAG_STATUS = "sparsecheck.status"
TAG_PARAMS_DROPPED = "sparsecheck.params_dropped"
TAG_MODEL_FINGERPRINT = "sparsecheck.model_fingerprint"
#: which model a run checked (shared with the MLflow data logging)
TAG_MODEL_URI = "sparsecheck.model_uri"
TAG_MODEL_NAME = "sparsecheck.model_name"
TAG_MODEL_VERSION = "sparsecheck.model_version"
TAG_MODEL_RUN_ID = "sparsecheck.model_run_id"
TAG_MODEL_ID = "sparsecheck.model_id"
#: the verdict a run leaves on the registered model version it checked
TAG_RUN_ID = "sparsecheck.run_id"
TAG_CHECKED_AT = "sparsecheck.checked_at"
TAG_FAILED_ASSERTIONS = "sparsecheck.failed_assertions"
TAG_SPURIOUS_FINDINGS = "sparsecheck.spurious_findings"
#: liveness of a running run (:mod:`sparsecheck.tracking.liveness`)
TAG_HEARTBEAT = "sparsecheck.heartbeat"
TAG_CLOSED = "sparsecheck.closed"
#: a monitoring run: its reference run, its batch, its alert
TAG_REFERENCE = "sparsecheck.reference_run"
TAG_FINGERPRINT = "sparsecheck.batch_fingerprint"
TAG_ALERT = "sparsecheck.alert"
#: a selection's pool
TAG_POOL = "sparsecheck.pool_fingerprint"
#: an MLflow dataset input: where it came from and which split it is
TAG_SOURCE = "sparsecheck.source"
TAG_SPLIT = "sparsecheck.split"
