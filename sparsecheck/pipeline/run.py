"""Running the pipeline behind ``sparsecheck run`` and ``sparsecheck demo``, and writing its outputs.

:func:`run_pipeline` runs the stages (:data:`~sparsecheck.pipeline.stages.STAGES`) in order over
one :class:`~sparsecheck.pipeline.context.RunContext`, then :func:`write_outputs`.

Outputs go to ``out_dir``: ``results.json`` is written last and atomically, so a directory with a
``results.json`` holds a finished run; an interrupted run leaves none.

Examples
--------
>>> from sparsecheck.pipeline import run_pipeline            # doctest: +SKIP
>>> ctx = run_pipeline(load_config("config.yaml"), "out/")    # doctest: +SKIP
>>> ctx.run_results.status                                    # doctest: +SKIP
'pass'
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any

from sparsecheck._runtime import count_forward, doing, resolve_device
from sparsecheck._version import __version__
from sparsecheck.config import Config
from sparsecheck.errors import TrackingError
from sparsecheck.outputs import atomic_write, claim_out_dir, remove_outputs
from sparsecheck.pipeline.context import RunContext
from sparsecheck.pipeline.intervene import CUE_DIR
from sparsecheck.pipeline.stages import STAGES, Stage
from sparsecheck.reports.html import write_report
from sparsecheck.results import FEATURE_ATTRIBUTES_FILE, SCHEMA_VERSION, MlflowRecord, RunResults, TableArtifactRecord
from sparsecheck.tracking.registry import record_verdict
from sparsecheck.tracking.outputs import ACTIVATIONS_FILE, TEST_FEATURES_FILE, write_activations, write_test_features
from sparsecheck.tracking.run_logging import attach_run, start_run
from sparsecheck.tracking.store import prefetch

logger = logging.getLogger(__name__)

__all__ = ["run_pipeline", "write_outputs", "write_feature_attributes", "prepare_out_dir", "exit_code_for",
           "record_model_verdict"]


# --------------------------------------------------------------------------- output directory
#: what a run writes into its output directory, in the order an earlier run's are removed (results.json
#: first: without it the directory no longer claims to hold a finished run)
RUN_OUTPUTS = ("results.json", "report.html", "junit.xml", "activations.npz", "test_features.npz",
               FEATURE_ATTRIBUTES_FILE, "sparse_path.png", "features", "sparse_layer", CUE_DIR)


def prepare_out_dir(out_dir: str | Path, *, force: bool = False, also: tuple[str, ...] = ()) -> Path:
    """Create ``out_dir`` or take over one that sparsecheck wrote before.

    A non-empty directory that sparsecheck did not create is refused unless ``force``, and even
    then an output name already there that sparsecheck did not write (a user's ``features/``) is
    refused: we never overwrite or remove a user's files (:func:`~sparsecheck.outputs.claim_out_dir`).
    The previous run's outputs (:data:`RUN_OUTPUTS`, and ``also``: the demo's ``data``) are removed,
    ``results.json`` first, so an interrupted run does not leave an old, complete-looking result.
    """
    out = claim_out_dir(out_dir, force=force, note=f"written by sparsecheck {__version__}",
                        outputs=RUN_OUTPUTS + tuple(also))
    remove_outputs(out, RUN_OUTPUTS)
    return out


def exit_code_for(ctx: RunContext, fail_on: str = "error") -> int:
    """1 when the gate fails at ``fail_on`` severity (see :mod:`sparsecheck.results`), else 0."""
    return 1 if ctx.run_results.gate(fail_on) == "fail" else 0  # type: ignore[arg-type]


#: sections results.json always holds (empty when no stage set them)
ALWAYS = ("sparse_layer", "feature_attributes", "spurious_findings", "slices", "assertions")


def write_outputs(ctx: RunContext, *, kind: str = "run", attach_to: str | None = None) -> None:
    """Write the outputs into the output directory and log the run to MLflow, in this order.

    1. Create the MLflow run (unless ``mlflow.enabled`` is false), or with ``attach_to`` log into
       that existing run, which its owner closes (the run of ``mlflow.models.evaluate``; its
       results.json then records ``mlflow.status: RUNNING``): its id goes into the report and
       results.json. Log the data splits as its dataset inputs and the sparse layer as its models
       (``mlflow.log_sparse_model``): their URIs, and a classifier that could not be logged (under
       ``skipped``), go into results.json.
    2. ``activations.npz``, ``test_features.npz``, ``feature_attributes.parquet`` (the whole
       association table, ``ctx.feature_attributes``; results.json points to it), ``report.html``.
    3. Log params, metrics and artifacts (results.json among them); tag ``sparsecheck.status``;
       terminate the run FINISHED, or FAILED if logging failed, or KILLED when interrupted.
    4. ``results.json``, last and atomically, recording the MLflow run's final status
       (``mlflow.status``): a results.json is only there once its run is closed, so a file that
       looks finished is finished. An interrupted run leaves none.

    An unreachable MLflow does not cost the local outputs: they are written, then TrackingError
    (exit code 3) is raised naming the URI. ``kind`` ("run" or "monitor") becomes the
    ``sparsecheck.kind`` tag.
    """
    if ctx.out_dir is None:
        return
    out = Path(ctx.out_dir)
    results = ctx.run_results
    for section in ALWAYS:
        if not results.recorded(section):
            setattr(results, section, getattr(results, section))  # its empty value, now recorded
    results.mlflow = None
    results.status = results.gate()  # type: ignore[assignment]
    results.schema_version = SCHEMA_VERSION
    tracking_error, run = None, None
    owned = attach_to is None  # an attached run is its owner's to close
    if attach_to is not None:
        run = attach_run(ctx.config.mlflow, attach_to, kind=kind, results=results)
    elif ctx.config.mlflow.enabled:
        try:
            with doing("creating the MLflow run"):
                run = start_run(ctx.config.mlflow, kind=kind, results=results)
        except TrackingError as exc:
            tracking_error = exc
            logger.warning("%s; writing the local outputs anyway", exc)
    if run is not None:  # FINISHED is what an owned run becomes if all goes well
        results.mlflow = MlflowRecord.model_validate({**run.info.to_dict(),
                                                      "status": "FINISHED" if owned else "RUNNING"})
    if run is not None and owned:
        run.__enter__()  # its heartbeat beats until it is closed
    try:
        if run is not None:
            try:
                with doing("logging the inputs to MLflow"):
                    run.log_inputs(ctx)
                    results.sparse_model = run.log_sparse_model(ctx)  # validated into a SparseModelRecord
            except TrackingError as exc:  # MLflow broke after creating the run: the local outputs still count
                tracking_error = exc
                logger.warning("%s; writing the local outputs anyway", exc)
        with doing("writing the outputs"):
            write_feature_attributes(ctx, out / FEATURE_ATTRIBUTES_FILE)
            if run is not None and tracking_error is not None:
                results.mlflow.status = "FAILED"  # type: ignore[union-attr]
            # a run never writes a results.json that its own readers (compare, monitor) would refuse
            ctx.run_results = RunResults.from_dict(results.to_dict(), source="this run's results")
            write_activations(ctx, out / ACTIVATIONS_FILE)
            write_test_features(ctx, out / TEST_FEATURES_FILE)
            write_report(ctx, out / "report.html")
        if run is not None and tracking_error is None:
            try:
                with doing("logging the run to MLflow"):
                    run.log_outputs(ctx)
                    if not owned:
                        run.tag_status()
            except TrackingError as exc:
                tracking_error = exc
    except BaseException as exc:  # KILLED when interrupted, else FAILED; no results.json
        if run is not None and owned:
            run.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if run is not None and owned:
        with doing("closing the MLflow run"):
            try:
                run.end("FINISHED" if tracking_error is None else "FAILED")
            except TrackingError as exc:  # it stays RUNNING: the next run in its experiment closes it
                tracking_error = tracking_error or exc
        ctx.run_results.mlflow.status = run.run_status or "RUNNING"  # type: ignore[union-attr]
    with doing("writing results.json"):
        ctx.run_results.to_json(out / "results.json")
    ctx.artifacts["results.json"] = str(out / "results.json")
    if tracking_error is not None:
        raise tracking_error


def write_feature_attributes(ctx: RunContext, path: str | Path) -> Path | None:
    """Write the whole association table (``ctx.feature_attributes``) to ``path`` as Parquet,
    atomically, and point the ``feature_attributes_table`` section to it.

    results.json lists only the significant associations (the ``feature_attributes`` section); the
    table grows with the used features × the metadata values (11.9 MB of JSON at 1,000 classes ×
    2,048 features). Without a table (the interpretation stage did not run), a file an earlier run
    left at ``path`` is removed and None is returned.
    """
    path = Path(path)
    table = ctx.feature_attributes
    if table is None:  # the section stays unset: results.json has no pointer
        path.unlink(missing_ok=True)
        return None
    with atomic_write(path, "wb") as fh:
        table.reset_index(drop=True).to_parquet(fh, index=False)
    ctx.artifacts[path.name] = str(path)
    acfg = ctx.config.analysis
    listed = ctx.run_results.feature_attributes
    ctx.run_results.feature_attributes_table = TableArtifactRecord(
        path=path.name, format="parquet", rows=int(len(table)), columns=[str(c) for c in table.columns],
        listed={"fdr": float(acfg.fdr), "per_feature": acfg.associations_per_feature, "rows": len(listed)})
    logger.info("association table: %d rows in %s, %d listed in results.json", len(table), path.name, len(listed))
    return path


def record_model_verdict(ctx: RunContext, fail_on: str = "error") -> Any:
    """Write the gate's verdict on the registered model version the run checked (and on its MLflow 3
    logged model), and move ``mlflow.promote_alias`` onto the version when the gate passes.

    Runs after the outputs are written and the MLflow run is FINISHED, so that a failure here
    (exit 3) costs neither. Does nothing for a model that does not come from MLflow, or a run
    that was not logged. Returns the :class:`~sparsecheck.tracking.registry.Verdict` or None.
    """
    origin = getattr(ctx.model, "origin", None)
    if origin is None:
        return None
    results = ctx.run_results
    logged = results.mlflow
    if not logged:
        logger.info("the run was not logged to MLflow: no verdict written on %s", origin.label)
        return None
    try:
        return record_verdict(origin, status=results.gate(fail_on),  # type: ignore[arg-type]
                              run_id=str(logged.run_id),
                              failed_assertions=len(results.failing(fail_on)),  # type: ignore[arg-type]
                              spurious_findings=len(results.spurious_findings),
                              promote_alias=ctx.config.mlflow.promote_alias)
    except TrackingError as exc:
        raise TrackingError(f"{exc}; the check itself finished ({results.status}): its outputs are in "
                            f"{ctx.out_dir} and MLflow run {logged.run_id}") from exc


def run_pipeline(config: Config, out_dir: str | Path | None = None, *, device: str = "auto",
                 tracking_uri: str | None = None, force: bool = False,
                 stages: list[Stage] | None = None, fail_on: str = "error",
                 mlflow_run_id: str | None = None) -> RunContext:
    """Run every stage on ``config`` and write the outputs into ``out_dir``.

    Parameters
    ----------
    config : Config
        A validated configuration (:func:`sparsecheck.config.load_config`).
    out_dir : path, optional
        Receives results.json, report.html, junit.xml and the sparse layer. None writes nothing.
    device : "auto", "cpu" or "cuda"
    tracking_uri : str, optional
        MLflow tracking URI overriding the config and ``MLFLOW_TRACKING_URI``.
    force : bool
        Allow writing into a non-empty directory that sparsecheck did not create.
    fail_on : "error" or "warning"
        The gate's severity for the verdict written on a registered model version
        (:func:`record_model_verdict`).
    mlflow_run_id : str, optional
        Log into this existing MLflow run (which its owner closes) instead of creating one: the run
        of ``mlflow.models.evaluate`` (:mod:`sparsecheck.tracking.evaluator`).

    Returns
    -------
    RunContext
        with ``run_results`` holding what results.json holds (``results``: the same as a dict).
    """
    dev = resolve_device(device)
    ctx = RunContext(config=config, class_names=[], splits={}, device=str(dev))
    if tracking_uri is not None:
        config.mlflow.tracking_uri = tracking_uri
    config.check_promotion()  # before any work: an alias needs a registered version to move onto
    if out_dir is not None:
        ctx.out_dir = prepare_out_dir(out_dir, force=force)
        if config.mlflow.enabled:  # import MLflow and open its store while the model runs
            prefetch(config.mlflow.tracking_uri)
    ctx.run_results.sparsecheck_version = __version__
    ctx.run_results.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx.run_results.device = str(dev)
    timings: dict[str, float] = {}
    forward: dict[str, int] = {}
    for stage in stages if stages is not None else STAGES:
        start = time.perf_counter()
        name = stage.__name__.removesuffix("_stage")
        with doing(f"the {name} stage"), count_forward() as images:
            stage(ctx)
        timings[name] = round(time.perf_counter() - start, 3)
        if images[0]:
            forward[name] = images[0]
    ctx.run_results.timings = timings
    ctx.run_results.forward_passes = forward
    ctx.run_results.status = ctx.run_results.gate()  # type: ignore[assignment]
    write_outputs(ctx, attach_to=mlflow_run_id)
    with doing("writing the verdict on the model version"):
        ctx.verdict = record_model_verdict(ctx, fail_on)
    return ctx
