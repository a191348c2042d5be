"""The pipeline behind ``sparsecheck run`` and ``sparsecheck demo``.

Stages run in order over one :class:`~sparsecheck.context.RunContext`: load, extract, dense
evaluation, sparse layer, interpretation, slices and spurious findings, assertions, outputs.
Each stage reads what the earlier ones left in the context and adds its part.

Outputs go to ``out_dir``: ``results.json`` is written last and atomically, so a directory with a
``results.json`` holds a finished run; an interrupted run leaves none.

Examples
--------
>>> from sparsecheck.pipeline import run_pipeline            # doctest: +SKIP
>>> ctx = run_pipeline(load_config("config.yaml"), "out/")    # doctest: +SKIP
>>> ctx.results["status"]                                      # doctest: +SKIP
'pass'
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sparsecheck._runtime import claim_out_dir, resolve_device, torch_threads, write_json_atomic
from sparsecheck._version import __version__
from sparsecheck.analysis.breakdown import accuracy_by_attribute
from sparsecheck.analysis.interpret import interpret_stage
from sparsecheck.analysis.slices import slices_stage
from sparsecheck.analysis.spurious import spurious_stage
from sparsecheck.assertions import assertions_stage
from sparsecheck.config import Config
from sparsecheck.context import RunContext, SplitView
from sparsecheck.data import SKIPPED_EXAMPLES, ImageDataset, load_dataset, load_metadata
from sparsecheck.errors import ConfigError, DataError
from sparsecheck.results import SCHEMA_VERSION, gate_status
from sparsecheck.sparse.features import extract_features

logger = logging.getLogger(__name__)

__all__ = ["run_pipeline", "prepare_out_dir", "exit_code_for", "Stage", "STAGES"]

# below this many feature values (rows × features) the CPU path solver runs on one thread
SMALL_CPU_PROBLEM = 4_000_000
Stage = Callable[[RunContext], None]


# --------------------------------------------------------------------------- output directory
def prepare_out_dir(out_dir: str | Path, *, force: bool = False) -> Path:
    """Create ``out_dir`` or take over one that sparsecheck wrote before.

    A non-empty directory that sparsecheck did not create is refused unless ``force`` — we never
    overwrite a user's files without being asked. The previous ``results.json`` is removed first,
    so an interrupted run does not leave an old, complete-looking result behind.
    """
    out = claim_out_dir(out_dir, force=force, note=f"written by sparsecheck {__version__}")
    # results.json first: without it the directory no longer claims to hold a finished run
    for name in ("results.json", "report.html", "junit.xml", "activations.npz", "sparse_path.png"):
        (out / name).unlink(missing_ok=True)
    for name in ("features", "sparse_layer"):
        shutil.rmtree(out / name, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- stages
def load_stage(ctx: RunContext) -> None:
    """Load the datasets, metadata and model named in the config; check they fit together.

    The input geometry (``model.input.size``, or ``resize`` + ``crop``) goes to the datasets, which
    apply it to each image as it is loaded; ``ctx.input_spec`` is the rest of the spec.
    """
    cfg = ctx.config
    class_names = cfg.data.class_names
    # the model first: without model.input its weights say how images become input (torchvision)
    ctx.model = cfg.model.load()
    spec = cfg.model.input_spec(ctx.model)
    datasets: dict[str, ImageDataset] = {}
    for split in ("train", "val", "test"):
        path = getattr(cfg.data, split)
        if path is None:
            continue
        try:
            datasets[split] = load_dataset(path, name=split, class_names=class_names, geometry=spec.geometry,
                                           skip_unreadable=cfg.data.skip_unreadable,
                                           num_workers=cfg.features.num_workers)
        except DataError as exc:
            raise DataError(f"data.{split}: {exc}") from exc
        if datasets[split].labels is None:
            raise DataError(f"data.{split}: {path} has no labels ('y' or a 'label' column)")
    if len({d.channels for d in datasets.values()}) > 1:  # an all-grey folder next to colour ones
        datasets = {s: d if d.in_memory else d.with_channels(3) for s, d in datasets.items()}
    shapes = {s: d.image_shape for s, d in datasets.items()}
    if len({sh[:2] for sh in shapes.values()}) > 1:
        raise DataError(f"image shapes differ between splits: {shapes}; set model.input.size, or "
                        f"model.input.resize with model.input.crop")
    if len({sh[2] for sh in shapes.values()}) > 1 and spec.channels is None:
        raise DataError(f"image channels differ between splits: {shapes}; set model.input.channels")
    n_classes = max(int(d.labels.max()) for d in datasets.values()) + 1  # type: ignore[union-attr]
    if class_names is None:
        class_names = datasets["train"].class_names or [str(i) for i in range(n_classes)]
    elif n_classes > len(class_names):
        raise ConfigError(f"{len(class_names)} names but labels go up to {n_classes - 1}",
                          key="data.class_names")
    ctx.class_names = list(class_names)
    ctx.datasets = datasets
    ctx.input_spec = spec.without_geometry()
    ctx.results["model"] = {"source": ctx.model.source, "kind": ctx.model.kind,
                            "fingerprint": ctx.model.fingerprint()}
    ctx.results["data"] = {s: {"source": d.source, "n": len(d), "image_shape": list(d.image_shape)}
                           for s, d in datasets.items()}
    if cfg.data.skip_unreadable:
        for s, d in datasets.items():
            ctx.results["data"][s]["skipped_unreadable"] = {
                "count": len(d.skipped_unreadable),
                "examples": [f"{f}: {why}" for f, why in d.skipped_unreadable[:SKIPPED_EXAMPLES]]}


def extract_stage(ctx: RunContext) -> None:
    """Extract deep features and logits of every split (cached on disk)."""
    cfg = ctx.config
    assert ctx.model is not None
    for split, ds in ctx.datasets.items():
        fs = extract_features(ctx.model, ds, ctx.input_spec, layer=cfg.model.feature_layer,
                              batch_size=cfg.features.batch_size, device=ctx.device,
                              num_workers=cfg.features.num_workers, precision=cfg.features.precision,
                              cache_dir=cfg.features.cache_dir, desc=split)
        if fs.logits.shape[1] < len(ctx.class_names):
            raise DataError(f"the model has {fs.logits.shape[1]} outputs but there are "
                            f"{len(ctx.class_names)} classes")
        meta = _metadata_for(ctx, ds)
        ctx.splits[split] = SplitView(split, ds.ids, ds.labels, fs.features, fs.logits, meta)
        ctx.feature_layer = fs.layer
        ctx.results.setdefault("features", {})[split] = {
            "n": len(fs), "dim": int(fs.features.shape[1]), "from_cache": fs.from_cache,
            "seconds": round(fs.seconds, 3)}
    ctx.results["model"]["feature_layer"] = ctx.feature_layer


def _metadata_for(ctx: RunContext, ds: ImageDataset):
    """The split's metadata: ``data.metadata``, a manifest's own columns, or both joined on id.

    When both name the same column, ``data.metadata`` wins (logged as a warning).
    """
    import pandas as pd

    path = ctx.config.data.metadata
    own = ds.metadata
    if path is None:
        return own.copy() if own is not None else pd.DataFrame({"id": ds.ids})
    try:
        table = load_metadata(path, ds.ids, id_column=ctx.config.data.id_column)
    except DataError as exc:
        raise DataError(f"data.metadata ({ds.name} split): {exc}") from exc
    if own is None:
        return table
    clash = [c for c in own.columns if c != "id" and c in table.columns]
    if clash:
        logger.warning("%s split: columns %s are both in the manifest and in data.metadata; using "
                       "data.metadata's", ds.name, clash)
    extra = [c for c in own.columns if c != "id" and c not in table.columns]
    return pd.concat([table.reset_index(drop=True), own[extra].reset_index(drop=True)], axis=1)


def dense_stage(ctx: RunContext) -> None:
    """Accuracy of the model's own head, overall and by every metadata value."""
    dense: dict[str, Any] = {}
    for split, view in ctx.splits.items():
        dense[f"{split}_accuracy"] = float(np.mean(view.dense_predictions == view.labels))
    ctx.results["dense"] = dense
    table = ctx.prediction_table("test")
    attrs = [a for a in ctx.attributes]
    if attrs:
        ctx.results["accuracy_by_attribute"] = accuracy_by_attribute(table, attrs).to_dict("records")
    else:
        ctx.results["accuracy_by_attribute"] = []
    unknown = sorted(set(ctx.config.data.spurious_attributes) - set(attrs))
    if unknown:
        raise ConfigError(f"not a metadata column (columns: {attrs})", key="data.spurious_attributes",
                          value=unknown)
    logger.info("dense head: test accuracy %.3f", dense.get("test_accuracy", float("nan")))


def sparse_stage(ctx: RunContext) -> None:
    """Fit the sparse decision layer on train features (validation split for selection).

    Writes ``results["sparse_layer"]`` (dense vs sparse accuracy, features per class, the path),
    saves the layer under ``out_dir/sparse_layer`` and the path plot as ``sparse_path.png``.
    """
    from sparsecheck.sparse import SparseDecisionLayer

    sc = ctx.config.sparse
    layer = SparseDecisionLayer(alpha=sc.alpha, n_lambdas=sc.n_lambdas, lambda_min_ratio=sc.lambda_min_ratio,
                                tolerance=sc.tolerance, features_per_class=sc.features_per_class,
                                solver=sc.solver, max_epochs=sc.max_epochs, tol=sc.tol, device=ctx.device,
                                random_state=sc.random_state)
    train, val = ctx.splits["train"], ctx.splits.get("val")
    n, d = train.features.shape
    small = ctx.device == "cpu" and n * d <= SMALL_CPU_PROBLEM
    with torch_threads(1 if small else None):
        layer.fit(train.features, train.labels,
                  None if val is None else val.features, None if val is None else val.labels)
    ctx.sparse_layer = layer
    test = ctx.splits["test"]
    sparse_pred = layer.predict(np.asarray(test.features))
    dense_pred = test.dense_predictions
    names = [ctx.class_names[int(c)] for c in layer.classes_]
    summary = layer.to_dict(names)
    ctx.results["sparse_layer"] = {
        "dense_accuracy": float(np.mean(dense_pred == test.labels)),
        "sparse_accuracy": float(np.mean(sparse_pred == test.labels)),
        "agreement": float(np.mean(sparse_pred == dense_pred)),
        **summary,
    }
    if ctx.out_dir is not None:
        out = Path(ctx.out_dir)
        layer.save(out / "sparse_layer", overwrite=True)
        layer.plot_path(out / "sparse_path.png")
        ctx.artifacts["sparse_layer"] = str(out / "sparse_layer")
        ctx.artifacts["sparse_path.png"] = str(out / "sparse_path.png")
    r = ctx.results["sparse_layer"]
    logger.info("sparse layer: %.1f features/class on average (max %d), test accuracy %.3f vs dense %.3f",
                r["mean_features_per_class"], r["max_features_per_class"], r["sparse_accuracy"],
                r["dense_accuracy"])


STAGES: list[Stage] = [load_stage, extract_stage, dense_stage, sparse_stage, interpret_stage, slices_stage,
                       spurious_stage, assertions_stage]


def exit_code_for(ctx: RunContext, fail_on: str = "error") -> int:
    """1 when the gate fails at ``fail_on`` severity (see :mod:`sparsecheck.results`), else 0."""
    return 1 if gate_status(ctx.results.get("assertions"), fail_on) == "fail" else 0  # type: ignore[arg-type]


def _status(ctx: RunContext) -> str:
    return gate_status(ctx.results.get("assertions"))


def write_outputs(ctx: RunContext, *, kind: str = "run") -> None:
    """Write the outputs into the output directory and log the run to MLflow, in this order.

    1. Create the MLflow run (unless ``mlflow.enabled`` is false): its id goes into the report
       and results.json, which are themselves artifacts of that run.
    2. ``activations.npz``, ``report.html``, then ``results.json`` (last, atomically).
    3. Log params, metrics and artifacts; tag ``sparsecheck.status``; terminate the run FINISHED,
       or FAILED if anything above raised.

    An unreachable MLflow does not cost the local outputs: they are written, then TrackingError
    (exit code 2) is raised naming the URI. ``kind`` ("run" or "monitor") becomes the
    ``sparsecheck.kind`` tag.
    """
    import contextlib

    from sparsecheck.errors import TrackingError
    from sparsecheck.reports.html import write_report
    from sparsecheck.reports.tracking import ACTIVATIONS_FILE, start_run, write_activations

    if ctx.out_dir is None:
        return
    out = Path(ctx.out_dir)
    results = ctx.results
    results.setdefault("sparse_layer", None)
    results.setdefault("feature_attributes", [])
    results.setdefault("spurious_findings", [])
    results.setdefault("slices", [])
    results.setdefault("assertions", [])
    results["mlflow"] = None
    results["status"] = _status(ctx)
    results["schema_version"] = SCHEMA_VERSION
    run, tracking_error = None, None
    if ctx.config.mlflow.enabled:
        try:
            run = start_run(ctx.config.mlflow, kind=kind, results=results)
            results["mlflow"] = run.info.to_dict()
        except TrackingError as exc:
            tracking_error = exc
            logger.warning("%s; writing the local outputs anyway", exc)
    with run if run is not None else contextlib.nullcontext():
        write_activations(ctx, out / ACTIVATIONS_FILE)
        write_report(ctx, out / "report.html")
        write_json_atomic(out / "results.json", _checked(results))
        ctx.artifacts["results.json"] = str(out / "results.json")
        if run is not None:
            run.log_outputs(ctx)
    if tracking_error is not None:
        raise tracking_error


def _checked(results: dict[str, Any]) -> dict[str, Any]:
    """results.json's content, in contract order, checked against the typed contract first: a run
    never writes a results.json that its own readers (compare, monitor) would refuse."""
    from sparsecheck._runtime import jsonable
    from sparsecheck.results import RunResults

    plain = jsonable(_ordered(results))
    RunResults.from_dict(plain, source="this run's results")
    return plain


def _ordered(results: dict[str, Any]) -> dict[str, Any]:
    first = ["status", "schema_version", "sparsecheck_version", "created", "model", "data", "features", "dense",
             "accuracy_by_attribute", "sparse_layer", "feature_attributes", "spurious_findings",
             "slices", "assertions", "mlflow"]
    return {**{k: results[k] for k in first if k in results},
            **{k: v for k, v in results.items() if k not in first}}


def run_pipeline(config: Config, out_dir: str | Path | None = None, *, device: str = "auto",
                 tracking_uri: str | None = None, force: bool = False,
                 stages: list[Stage] | None = None) -> RunContext:
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

    Returns
    -------
    RunContext
        with ``results`` holding what results.json holds.
    """
    dev = resolve_device(device)
    ctx = RunContext(config=config, class_names=[], splits={}, device=str(dev))
    if tracking_uri is not None:
        config.mlflow.tracking_uri = tracking_uri
    if out_dir is not None:
        ctx.out_dir = prepare_out_dir(out_dir, force=force)
        if config.mlflow.enabled:  # import MLflow and open its store while the model runs
            from sparsecheck.reports.tracking import prefetch

            prefetch(config.mlflow.tracking_uri)
    ctx.results.update({"sparsecheck_version": __version__,
                        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "device": str(dev)})
    timings: dict[str, float] = {}
    for stage in stages if stages is not None else STAGES:
        start = time.perf_counter()
        stage(ctx)
        timings[stage.__name__.removesuffix("_stage")] = round(time.perf_counter() - start, 3)
    ctx.results["timings"] = timings
    write_outputs(ctx)
    return ctx
