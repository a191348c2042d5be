"""Champion vs challenger: compare two model versions through their sparsecheck runs.

``sparsecheck compare models:/digits@champion models:/digits@challenger`` resolves each side to
its registered model version (:func:`~sparsecheck.tracking.registry.resolve_model_uri`),
then to the latest finished sparsecheck run that checked it
(:func:`~sparsecheck.tracking.registry.find_check_run`: the version's
``sparsecheck.run_id`` tag, else a search of runs tagged with the version). A side with no check
is an error naming the version and the command that checks it — or, given ``--run-missing
CONFIG``, it is checked first by the same pipeline call ``sparsecheck run`` makes, with the
version as the model. Then the runs are compared as any two runs are
(:func:`~sparsecheck.reports.compare.compare_runs`), and the comparison names the versions.

Run ids are accepted on either side too, as they are by :func:`~sparsecheck.reports.compare.compare_runs`.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsecheck.errors import ConfigError, TrackingError
from sparsecheck.pipeline import run_pipeline
from sparsecheck.reports.compare import compare_runs
from sparsecheck.tracking.registry import ModelOrigin, find_check_run, is_model_uri, resolve_model_uri
from sparsecheck.tracking.store import resolve_tracking_uri

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config
    from sparsecheck.reports.compare import RunComparison

logger = logging.getLogger(__name__)

__all__ = ["CompareTarget", "resolve_target", "compare_targets"]


@dataclass
class CompareTarget:
    """One side of a comparison: what was given, the run that holds its check, and its model version.

    ``checked_now`` is True when the check was run for this comparison (``--run-missing``).
    """

    given: str
    run_id: str
    origin: ModelOrigin | None = None
    checked_now: bool = False

    def to_dict(self) -> dict[str, Any]:
        """What ``compare.json`` records as ``model_a`` / ``model_b``: ``given``, ``label``, the
        version (``name``, ``version``, ``alias``, ``model_run_id`` that logged it, ``model_id``),
        ``run_id`` (the check) and ``checked_now``."""
        out: dict[str, Any] = {"given": self.given}
        if self.origin is not None:
            origin = self.origin.to_dict()
            origin["model_run_id"] = origin.pop("run_id")
            out.update({"label": self.origin.label, **origin})
        out.update({"run_id": self.run_id, "checked_now": self.checked_now})
        return out


def _pinned(origin: ModelOrigin) -> str:
    """The URI of exactly this version (an alias may move while the check runs)."""
    return f"models:/{origin.name}/{origin.version}" if origin.registered else origin.uri


def resolve_target(target: str, *, tracking_uri: str | None = None, run_missing: "Config | None" = None,
                   out_dir: str | Path | None = None, device: str = "auto", force: bool = False) -> CompareTarget:
    """Resolve a run id or model URI to the run holding its check (running the check if asked).

    Parameters
    ----------
    target : str
        An MLflow run id, or ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-...``,
        ``runs:/RUN_ID/PATH``.
    tracking_uri : str, optional
        See :func:`~sparsecheck.tracking.resolve_tracking_uri`.
    run_missing : Config, optional
        Check a model version that has no check yet with this config (its model source replaced
        by the version); without it such a version is an error.
    out_dir : path, optional
        Where that check writes its outputs (a temporary folder, removed after, when None: the
        run's outputs are in MLflow either way).
    device, force
        As for ``sparsecheck run``.

    Raises
    ------
    TrackingError
        exit 2 when the model version has no check and ``run_missing`` is None (the message gives
        the command that checks it); exit 3 when MLflow cannot be reached.
    """
    if not is_model_uri(target):
        return CompareTarget(target, target)
    uri = resolve_tracking_uri(tracking_uri)
    origin = resolve_model_uri(target, uri)
    run_id = find_check_run(origin)
    if run_id is not None:
        logger.info("%s is %s, checked by run %s", target, origin.label, run_id)
        return CompareTarget(target, run_id, origin)
    command = (f"sparsecheck run CONFIG.yaml --model {shlex.quote(_pinned(origin))} "
               f"--tracking-uri {shlex.quote(origin.tracking_uri)}")
    if run_missing is None:
        raise TrackingError(f"{target} is {origin.label}, which has no finished sparsecheck check at {origin.tracking_uri}; "
                            f"check it with `{command}`, or pass --run-missing CONFIG.yaml", user_input=True)
    return CompareTarget(target, _run_check(origin, run_missing, uri, out_dir, device, force), origin, checked_now=True)


def _run_check(origin: ModelOrigin, config: "Config", uri: str, out_dir: str | Path | None, device: str,
               force: bool) -> str:
    """Run the pipeline on ``origin`` as ``sparsecheck run CONFIG --model URI`` does; return its run id."""
    if not config.mlflow.enabled:
        raise ConfigError("--run-missing needs a config that logs to MLflow (the comparison reads the check "
                          "back from there)", key="mlflow.enabled", value=False)
    cfg = config.model_copy(deep=True)
    cfg.use_model_uri(_pinned(origin), key="--run-missing")
    cfg.mlflow.promote_alias = None  # a comparison promotes nothing
    slug = f"{origin.name}-v{origin.version}" if origin.registered else (origin.model_id or origin.run_id or "model")
    tmp = None
    if out_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="sparsecheck-check-"))
        out = tmp / "out"
    else:
        out = Path(out_dir) / f"check-{slug}"
    logger.info("%s has no sparsecheck check yet: running it (outputs in %s)", origin.label, out)
    try:
        ctx = run_pipeline(cfg, out, device=device, tracking_uri=uri, force=force)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    logged = ctx.run_results.mlflow
    if logged is None:  # the check ran with MLflow off: there is no run to compare
        raise TrackingError(f"{origin.label} was checked, but the check was not logged to MLflow "
                            f"(mlflow.enabled is false): there is no run to compare")
    logger.info("%s checked by run %s: %s", origin.label, logged.run_id, ctx.run_results.status)
    return str(logged.run_id)


def compare_targets(target_a: str, target_b: str, *, tracking_uri: str | None = None,
                    run_missing: "Config | None" = None, out_dir: str | Path | None = None, device: str = "auto",
                    force: bool = False, **compare_options: Any) -> "RunComparison":
    """Compare B against A, each a run id or a model URI (see :func:`resolve_target`).

    ``compare_options`` go to :func:`~sparsecheck.reports.compare.compare_runs`
    (``min_correlation``, ``slice_fdr``). The comparison's ``model_a`` / ``model_b`` name the
    model versions and the runs that checked them.
    """
    if tracking_uri is None and run_missing is not None:
        tracking_uri = run_missing.mlflow.tracking_uri
    uri = resolve_tracking_uri(tracking_uri)
    a = resolve_target(target_a, tracking_uri=uri, run_missing=run_missing, out_dir=out_dir, device=device,
                       force=force)
    b = resolve_target(target_b, tracking_uri=uri, run_missing=run_missing, out_dir=out_dir, device=device,
                       force=force)
    comparison = compare_runs(a.run_id, b.run_id, tracking_uri=uri, **compare_options)
    comparison.model_a = a.to_dict() if a.origin is not None else None
    comparison.model_b = b.to_dict() if b.origin is not None else None
    return comparison
