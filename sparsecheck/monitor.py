"""Scheduled monitoring: score a new batch against a reference run and log one MLflow run per batch.

``sparsecheck monitor CONFIG --batch new.npz`` (from cron or Airflow):

1. loads the model and settings from CONFIG and the batch (``.npz`` with ``x``, optional ``y``
   and ``id``; labels are optional; or precomputed features, :mod:`sparsecheck.data.precomputed`,
   which need no model), and fingerprints the batch;
2. finds the reference run — ``--reference RUN_ID``, else for an MLflow model (``--model`` /
   ``model.uri``) the latest check of that model version, else the latest FINISHED run with tag
   ``sparsecheck.kind = run`` in the config's experiment — and stops early when this batch was
   already scored against it (same fingerprint, same reference; ``--force`` scores it again);
3. extracts the batch's deep features, loads the reference's sparse layer (``sparse_layer/``),
   its test-split activations of the used features (``activations.npz``) and ``results.json``;
4. scores drift (:mod:`sparsecheck.analysis.drift`): KS + PSI per used sparse feature,
   Benjamini–Hochberg over features, a feature drifts when ``q < alpha`` and ``PSI >= 0.1``; and
   the mix of sparse-layer predicted classes (chi-square + PSI over classes);
5. runs the config's assertions that need no labels (all of them when the batch has labels);
6. logs one MLflow run in the experiment ``<experiment>-monitor`` tagged
   ``sparsecheck.kind = monitor``, ``sparsecheck.reference_run`` and
   ``sparsecheck.batch_fingerprint``, with drift metrics, a ``monitor.json`` artifact and the
   batch as its dataset input (context ``monitoring``); ``--out DIR`` also writes
   ``monitor.html`` and ``monitor.json`` there;
7. with ``correct=True`` (``--correct``), applies the consistency and flicker assertions'
   corrections to the batch's predictions (:func:`sparsecheck.weak_labels.batch_corrections`) and
   logs them as ``corrected_predictions.csv``, which ``--out`` also receives.

The command exits 1 on an alert: a drifted feature, a drifted class mix, or a failing
error-severity assertion.

**One run per batch, also when two jobs start together.** The run is created (RUNNING) before the
batch is scored, tagged with the batch fingerprint and reference: that is its *claim*. Right
after creating it, and again after scoring, the job lists the claims on the same batch and
reference (FINISHED runs, and RUNNING ones younger than :data:`CLAIM_STALE_S`): the first
(FINISHED before RUNNING, then the earliest start, then the run id) wins. A job whose run is not
the first deletes its run and waits for the winner's verdict (at most :data:`CLAIM_WAIT_S`),
which it reports as its own. The second look catches a claim whose request reached the server
late. It works the same against a local SQLite store and a remote ``mlflow server``.

Why one module of ~800 lines: it is one job read top to bottom (reference, scoring, the job and its claim,
its MLflow run), and :meth:`MonitorReport.summary` is being rewritten with the report; the drift
statistics it calls live in :mod:`sparsecheck.analysis.drift`.

Examples
--------
>>> from sparsecheck.monitor import monitor_batch                        # doctest: +SKIP
>>> run = monitor_batch(load_config("config.yaml"), "batches/2024-06-01.npz")  # doctest: +SKIP
>>> run.alert, run.report.feature_drift.drifted_features                # doctest: +SKIP
(True, [17])
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sparsecheck._runtime import ACTIVITY, resolve_device
from sparsecheck._version import __version__
from sparsecheck.assertions import DEFAULT_CHANCE, AssertionContext, run_assertions
from sparsecheck.data import ImageDataset, load_dataset
from sparsecheck.data.precomputed import PrecomputedFeatures, is_features, load_features
from sparsecheck.defaults import DRIFT_ALPHA, DRIFT_BINS, DRIFT_PSI_THRESHOLD
from sparsecheck.errors import ConfigError, DataError, TrackingError
from sparsecheck.features.extraction import extract_features
from sparsecheck.modalities import get_modality
from sparsecheck.outputs import atomic_write, claim_out_dir, remove_outputs, write_csv, write_json_atomic
from sparsecheck.pipeline.batch import batch_metadata
from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.reports.monitor_render import to_html
from sparsecheck.results import AssertionResult, failing_assertions
from sparsecheck.tracking.datasets import dataset_inputs
from sparsecheck.tracking.reading import download_run_artifact
from sparsecheck.tracking.registry import find_check_run, resolve_model_uri
from sparsecheck.tracking.run_logging import start_run
from sparsecheck.tracking.store import _check_reachable, mlflow_errors, resolve_tracking_uri
from sparsecheck.weak_labels import CORRECTIONS_FILE, batch_corrections
from sparsecheck.monitor_reference import (
    MonitorReference,
    MonitorReport,
    _client,
    find_reference_run,
    load_reference,
    score_batch,
)
from sparsecheck.tracking.tags import TAG_ALERT, TAG_FINGERPRINT, TAG_KIND, TAG_REFERENCE

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config
    from sparsecheck.data import ImageDataset
    from sparsecheck.data.precomputed import PrecomputedFeatures
    from sparsecheck.models import Model

logger = logging.getLogger(__name__)

__all__ = [
    "TAG_KIND",
    "TAG_REFERENCE",
    "TAG_FINGERPRINT",
    "TAG_ALERT",
    "MonitorReference",
    "MonitorReport",
    "MonitorRun",
    "find_reference_run",
    "load_reference",
    "score_batch",
    "monitor_batch",
    "monitor_experiment_name",
    "prepare_monitor_out_dir",
    "write_monitor_outputs",
]

#: per-feature KS/PSI metrics are logged for this many most-shifted features
TOP_FEATURES_LOGGED = 10
#: a RUNNING monitoring run older than this (seconds) no longer claims its batch: its job is presumed dead
CLAIM_STALE_S = 6 * 3600
#: how long (seconds) a job that lost the claim on a batch waits for the winner's verdict
CLAIM_WAIT_S = 900.0
_POLL_S = 1.0
#: what ``--out`` receives
MONITOR_OUTPUTS = ("monitor.json", "monitor.html")


def monitor_experiment_name(experiment: str) -> str:
    """The experiment monitoring runs go to: ``<experiment>-monitor``."""
    return f"{experiment}-monitor"


# --------------------------------------------------------------------------- reference
# --------------------------------------------------------------------------- the job
@dataclass
class MonitorRun:
    """The outcome of :func:`monitor_batch`: the MLflow run that covers the batch.

    Attributes
    ----------
    run_id, experiment_id : str
        The monitoring run (new, or the existing one when ``reused``).
    reference_run : str
    batch_fingerprint : str
    alert : bool
    reused : bool
        True when an earlier run, or a concurrent job that claimed the batch first, covers this
        batch and reference (this job logged nothing).
    report : MonitorReport or None
        None when ``reused``.
    tracking_uri : str
    """

    run_id: str
    experiment_id: str
    reference_run: str
    batch_fingerprint: str
    alert: bool
    reused: bool
    report: MonitorReport | None
    tracking_uri: str

    @property
    def exit_code(self) -> int:
        """1 on an alert, else 0."""
        return 1 if self.alert else 0

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id, "reference_run": self.reference_run,
                "batch_fingerprint": self.batch_fingerprint, "alert": self.alert, "reused": self.reused,
                "tracking_uri": self.tracking_uri,
                "report": None if self.report is None else self.report.to_dict()}


def monitor_batch(config: "Config", batch: "str | Path | ImageDataset", *,
                  reference: "str | MonitorReference | None" = None, tracking_uri: str | None = None,
                  metadata: str | Path | None = None, force: bool = False, alpha: float = DRIFT_ALPHA,
                  psi_threshold: float = DRIFT_PSI_THRESHOLD, bins: int = DRIFT_BINS, device: str = "auto",
                  model: "Model | None" = None, wait_s: float = CLAIM_WAIT_S, correct: bool = False) -> MonitorRun:
    """Score one batch against a reference run and log it as one MLflow monitoring run.

    Parameters
    ----------
    config : Config
        The run configuration: model, input spec, feature layer, class names, metadata,
        assertions, experiment.
    batch : path, ImageDataset or PrecomputedFeatures
        ``.npz`` (``x``, optional ``y`` and ``id``) or ImageFolder directory, or a dataset; or
        precomputed features at the reference's layer (a features directory, ``.npz`` with
        ``features``, Parquet), which need no model.
    reference : str or MonitorReference, optional
        Reference run id (or an already loaded reference). Default: for ``model.uri``, the latest
        check of that model version; else the latest FINISHED run of kind ``run`` in
        ``config.mlflow.experiment``.
    tracking_uri : str, optional
        Default ``config.mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
        ``sqlite:///mlflow.db``. Monitoring always talks to MLflow (``mlflow.enabled`` is for
        ``sparsecheck run``).
    metadata : path, optional
        CSV/Parquet metadata of the batch (keyed by id). Default: the config's metadata table
        when it covers the batch's ids, else none.
    force : bool
        Score and log again even when a run already covers this batch and reference (no claim
        is made either: a forced job always logs its own run).
    alpha, psi_threshold, bins
        The drift rule.
    device : str
        Where the model runs.
    model : Model, optional
        An already loaded model (else loaded from the config).
    wait_s : float
        How long to wait for the verdict of a concurrent job that claimed the same batch first.
    correct : bool
        Also correct the batch's predictions with the consistency and flicker assertions
        (``report.corrections``, logged as ``corrected_predictions.csv``).

    Returns
    -------
    MonitorRun

    Raises
    ------
    TrackingError
        MLflow unreachable (after :func:`~sparsecheck.tracking.store.retry_policy`'s
        retries), no reference run, a reference without the needed artifacts, or a concurrent job
        that claimed the batch and failed or did not finish within ``wait_s``.
    ConfigError, DataError
        bad config or batch, or a model that is not the reference's.
    """
    uri = resolve_tracking_uri(tracking_uri or config.mlflow.tracking_uri)
    modality = get_modality(config.data.modality)
    geometry = config.model.input.to_spec().geometry  # applied per image, before the fingerprint
    ds: Any
    ACTIVITY.step = "loading the batch"
    try:
        if isinstance(batch, (ImageDataset, PrecomputedFeatures)):
            ds = batch if isinstance(batch, PrecomputedFeatures) else load_dataset(batch, geometry=geometry)
        elif not isinstance(batch, (str, Path)):  # a split of the config's modality, in memory
            ds = batch
        elif is_features(batch):
            ds = load_features(batch, name=Path(batch).stem)
        else:  # read by the config's modality (images: with the geometry applied per image)
            ds = modality.load_split(batch, name=Path(batch).stem, config=config, transform=config.model.input.to_spec(),
                                     class_names=config.data.class_names)
    except DataError as exc:
        raise DataError(f"--batch: {exc}") from exc
    fingerprint = ds.fingerprint()
    ACTIVITY.step = "finding the reference run"
    _check_reachable(uri)  # bounded retries, then fail in seconds, not after MLflow's minutes of retries
    if isinstance(reference, MonitorReference):
        ref_id = reference.run_id
    else:
        ref_id = reference or _model_check(config, uri) or find_reference_run(config.mlflow.experiment, uri)
    client = _client(uri)
    exp_id = _find_experiment(client, monitor_experiment_name(config.mlflow.experiment), uri)
    existing = _existing_run(client, exp_id, fingerprint, ref_id, uri)
    if existing is not None and not force:
        return _covered(existing, ref_id, fingerprint, uri, ds.source)

    ref = reference if isinstance(reference, MonitorReference) else load_reference(ref_id, uri)
    mlflow_cfg = config.mlflow.model_copy(update={
        "experiment": monitor_experiment_name(config.mlflow.experiment),
        "tags": {**config.mlflow.tags, TAG_REFERENCE: ref_id, TAG_FINGERPRINT: fingerprint},
        "run_name": f"monitor-{ds.name}-{fingerprint[:8]}"})
    if model is None and not isinstance(ds, PrecomputedFeatures):
        ACTIVITY.step = "loading the model"
        model = config.model.load(tracking_uri=uri)
    origin = getattr(model, "origin", None)
    # the model fingerprint becomes a tag; an MLflow model its sparsecheck.model_* tags and input link
    model_info = {"model": ref.checked_model.model_dump(exclude_unset=True),
                  "mlflow_model": None if origin is None else origin.to_dict()}
    # FAILED (never taken as covering the batch) if anything below raises
    with start_run(mlflow_cfg, kind="monitor", results=model_info, tracking_uri=uri) as run:
        claim = _Claim(run, fingerprint, ref_id)
        winner = None if force else claim.winner()
        if winner is None:
            ACTIVITY.step = "scoring the batch"
            report = _score(config, ds, ref, model=model, metadata=metadata, alpha=alpha,
                            psi_threshold=psi_threshold, bins=bins, device=device, correct=correct)
            winner = None if force else claim.winner()  # a claim whose request reached the server late
        if winner is not None:
            run.discard()
            logger.info("batch %s (fingerprint %s) against reference %s is claimed by run %s; waiting for its "
                        "verdict", ds.source, fingerprint, ref_id, winner)
            return claim.await_winner(winner, wait_s, ds.source)
        ACTIVITY.step = "logging the batch to MLflow"
        _log_results(run, report, ds, config, {"alpha": alpha, "psi_threshold": psi_threshold, "bins": bins})
    logger.info("monitoring run %s logged (alert: %s)", run.info.run_id, report.alert)
    return MonitorRun(run.info.run_id, run.info.experiment_id, ref_id, fingerprint, report.alert, False, report, uri)


def _covered(existing: Any, ref_id: str, fingerprint: str, uri: str, source: str) -> MonitorRun:
    alert = existing.data.tags.get(TAG_ALERT) == "true"
    logger.info("batch %s (fingerprint %s) against reference %s is already covered by run %s (alert: %s)",
                source, fingerprint, ref_id, existing.info.run_id, alert)
    return MonitorRun(existing.info.run_id, str(existing.info.experiment_id), ref_id, fingerprint, alert, True,
                      None, uri)


class _Claim:
    """The claims of monitoring runs on one batch and reference (see the module docstring)."""

    def __init__(self, run: Any, fingerprint: str, ref_id: str) -> None:
        self.run = run
        self.fingerprint = fingerprint
        self.ref_id = ref_id
        self.uri = run.info.tracking_uri

    def claims(self) -> list[Any]:
        """Live claims, first (the winner) first: FINISHED runs, then RUNNING ones not yet stale."""
        query = (f"tags.`{TAG_FINGERPRINT}` = '{_quote(self.fingerprint)}' and "
                 f"tags.`{TAG_REFERENCE}` = '{_quote(self.ref_id)}' and tags.`{TAG_KIND}` = 'monitor'")
        with mlflow_errors(self.uri):
            runs = self.run.client.search_runs([self.run.info.experiment_id], filter_string=query, max_results=500)
        now = time.time() * 1000
        live = [r for r in runs if r.info.status == "FINISHED"
                or (r.info.status == "RUNNING" and now - (r.info.start_time or 0) < CLAIM_STALE_S * 1000)]
        return sorted(live, key=lambda r: (r.info.status != "FINISHED", r.info.start_time or 0, r.info.run_id))

    def winner(self) -> str | None:
        """The id of the run that covers the batch when it is not this job's run, else None."""
        claims = self.claims()
        first = claims[0].info.run_id if claims else self.run.info.run_id
        return None if first == self.run.info.run_id else first

    def await_winner(self, winner: str, wait_s: float, source: str) -> MonitorRun:
        """Wait until the winning claim finishes (following it if it gives way to another); report it."""
        deadline = time.monotonic() + wait_s
        while True:
            claims = self.claims()
            if not claims:
                raise TrackingError(f"monitoring run {winner} that was scoring batch {source} against reference "
                                    f"{self.ref_id} did not finish (it failed or was deleted); run the command "
                                    "again")
            first = claims[0]
            winner = first.info.run_id
            if first.info.status == "FINISHED":
                return _covered(first, self.ref_id, self.fingerprint, self.uri, source)
            if time.monotonic() >= deadline:
                raise TrackingError(f"monitoring run {winner} has been scoring batch {source} against reference "
                                    f"{self.ref_id} for longer than {wait_s:.0f} s; its verdict will be in "
                                    f"MLflow at {self.uri}")
            time.sleep(_POLL_S)


def prepare_monitor_out_dir(out_dir: str | Path, *, force: bool = False) -> Path:
    """Create ``out_dir`` (or take over one that sparsecheck wrote) for ``monitor --out``.

    The same rules as ``run --out`` (:func:`sparsecheck.outputs.claim_out_dir`): a non-empty
    directory sparsecheck did not write is refused unless ``force``, and a ``monitor.json`` or
    ``monitor.html`` there that sparsecheck did not write is refused either way. An earlier batch's
    ``monitor.json`` and ``monitor.html`` are removed first, so an interrupted job leaves none.
    """
    outputs = (*MONITOR_OUTPUTS, CORRECTIONS_FILE)  # monitor.json first: it marks a finished batch
    out = claim_out_dir(out_dir, force=force, note=f"written by sparsecheck monitor {__version__}",
                        outputs=outputs)
    remove_outputs(out, outputs)
    return out


def write_monitor_outputs(result: MonitorRun, out_dir: str | Path) -> dict[str, Path]:
    """Write ``monitor.html`` then ``monitor.json`` (last, both atomically) into ``out_dir``.

    ``monitor.json`` is the batch's report (:meth:`MonitorReport.to_dict`) with ``mlflow``: the
    run that covers the batch (``reused`` when an earlier or concurrent job scored it; its report
    is then read from that run's ``monitor.json`` artifact). Call :func:`prepare_monitor_out_dir`
    first.
    """
    out = Path(out_dir)
    if result.report is not None:
        report = result.report.to_dict()
        if result.report.corrections is not None:
            write_csv(result.report.corrections, out / CORRECTIONS_FILE, force=True)
    else:
        with tempfile.TemporaryDirectory(prefix="sparsecheck-monitor-") as tmp:
            path = download_run_artifact(result.run_id, "monitor.json", result.tracking_uri, dst_dir=tmp)
            report = json.loads(path.read_text(encoding="utf-8"))
            if report.get("corrections"):  # the covering run corrected the batch: its file comes along
                fixed = download_run_artifact(result.run_id, CORRECTIONS_FILE, result.tracking_uri, dst_dir=tmp)
                (out / CORRECTIONS_FILE).write_bytes(fixed.read_bytes())
    # written after the run is closed (monitor_batch returns then): a monitor.json names a FINISHED run
    doc = {**report, "mlflow": {"tracking_uri": result.tracking_uri, "experiment_id": result.experiment_id,
                                "run_id": result.run_id, "reused": result.reused, "status": "FINISHED"}}
    paths = {name: out / name for name in MONITOR_OUTPUTS}
    with atomic_write(paths["monitor.html"], "w", encoding="utf-8") as fh:
        fh.write(to_html(doc))
    write_json_atomic(paths["monitor.json"], doc)
    return paths


def _model_check(config: "Config", uri: str) -> str | None:
    """The latest check of the model version ``model.uri`` names (``--model``): the reference a
    registered model is monitored against, when no ``--reference`` is given."""
    if config.model.uri is None:
        return None
    origin = resolve_model_uri(config.model.uri, uri)
    run_id = find_check_run(origin)
    if run_id is None:
        logger.warning("%s (%s) has no sparsecheck check; the reference is the latest run of experiment %r",
                       config.model.uri, origin.label, config.mlflow.experiment)
    else:
        logger.info("reference: run %s, the latest check of %s", run_id, origin.label)
    return run_id


def _score(config: "Config", ds: "ImageDataset | PrecomputedFeatures", ref: MonitorReference, *,
           model: "Model | None", metadata: str | Path | None, alpha: float, psi_threshold: float, bins: int,
           device: str, correct: bool = False) -> MonitorReport:
    dev = resolve_device(device)
    spec = None
    ref_layer = ref.checked_model.feature_layer
    if isinstance(ds, PrecomputedFeatures):  # no model needed: the batch's meta.json says where they came from
        features, logits, layer = ds.features, ds.logits, ds.layer
        _check_same_fingerprint(ref, ds.model_fingerprint, f"--batch {ds.source} (meta.json)")
        if ds.dim != ref.layer.n_features_in_:
            raise DataError(f"--batch: features have shape {tuple(ds.features.shape)} but reference run {ref.run_id}'s "
                            f"sparse layer expects (n, {ref.layer.n_features_in_})", path=ds.source)
    else:
        spec = get_modality(config.data.modality).input_transform(config, model)
        if getattr(ds, "geometry", None) is not None:  # the dataset already brings each image to the spec's geometry
            spec = spec.without_geometry()
        _check_same_model(ref, model)
        ds = _aligned_labels(ds, config.data.class_names or getattr(model, "class_names", None))
        # no feature cache: a scheduled job sees each batch once, and re-runs are de-duplicated above
        fs = extract_features(model, ds, spec, layer=config.model.feature_layer,
                              batch_size=config.features.batch_size, device=dev,
                              num_workers=config.features.num_workers, precision=config.features.precision,
                              cache_dir=None, desc=ds.name)
        features, logits, layer = fs.features, fs.logits, fs.layer
    if ref_layer and layer and layer != ref_layer:
        raise ConfigError(f"features come from layer {layer!r} but the reference run used {ref_layer!r}",
                          key="model.feature_layer", value=config.model.feature_layer)
    n_classes = len(ref.layer.classes_)
    if ds.labels is not None and ds.labels.size and int(ds.labels.max()) >= n_classes:
        raise DataError(f"--batch: label {int(ds.labels.max())} is out of range for {n_classes} classes",
                        path=ds.source)
    class_names = config.data.class_names or getattr(model, "class_names", None) or [str(c) for c in ref.layer.classes_]
    if logits is None:  # features stored without the model's head: the reference's sparse layer stands in
        logits = ref.layer.decision_function(features)
        report_note = "the batch's features carry no logits: predictions are the reference's sparse layer's"
    else:
        report_note = ""
    report = score_batch(ref, np.asarray(features), batch=ds.source, batch_fingerprint=ds.fingerprint(),
                         labels=ds.labels, dense_logits=np.asarray(logits), class_names=class_names,
                         alpha=alpha, psi_threshold=psi_threshold, bins=bins)
    if report_note:
        report.notes.append(report_note)
    meta, note = batch_metadata(config, ds, metadata)
    if note and config.assertions:
        report.notes.append(note)
    ctx = RunContext(config=config, class_names=list(class_names), device=str(dev),
                     splits={"batch": SplitView("batch", ds.ids, ds.labels, features, logits, meta)},
                     sparse_layer=ref.layer)
    table = ctx.prediction_table("batch")
    images = None if isinstance(ds, PrecomputedFeatures) else ds
    report.assertions = _run_assertions(config, table, labelled=ds.labels is not None, notes=report.notes,
                                        class_names=list(class_names), sparse_layer=ref.layer,
                                        model=model if images is not None else None, dataset=images,
                                        input_spec=spec, device=str(dev),
                                        modality=get_modality(config.data.modality))
    for a in failing_assertions(report.assertions):
        report.alerts.append(f"assertion {a.name!r} failed: {a.message or a.observed}")
    if correct:
        report.corrections, notes = batch_corrections(config, table, class_names=list(class_names))
        report.notes += notes
    return report


def _aligned_labels(ds: Any, names: list[str] | None) -> Any:
    """A batch whose label names were read in sorted order (no ``data.class_names``) relabelled in
    the model's class order (a text model's ``id2label``)."""
    own = getattr(ds, "class_names", None)
    if ds.labels is None or not names or not own or list(own) == list(names):
        return ds
    missing = sorted(set(own) - set(names))
    if missing:
        raise DataError(f"--batch: labels {missing[:5]} are not among the model's classes {list(names)}",
                        path=ds.source)
    index = {n: i for i, n in enumerate(names)}
    ds.labels = np.array([index[own[int(v)]] for v in ds.labels], dtype=np.int64)
    ds.class_names = list(names)
    return ds


def _check_same_fingerprint(ref: MonitorReference, fingerprint: str | None, what: str) -> None:
    """Precomputed batch features must come from the reference's model, when both say which it was."""
    expected = ref.checked_model.fingerprint
    if expected and fingerprint and fingerprint != expected:
        raise DataError(f"{what}: features were extracted with model {fingerprint}, but reference run {ref.run_id} "
                        f"was fitted on model {expected}; extract the batch with the reference's model")


def _check_same_model(ref: MonitorReference, model: "Model") -> None:
    expected = ref.checked_model.fingerprint
    if expected is None:
        logger.warning("reference run %s records no model fingerprint; cannot check that the config's model "
                       "is the one it was fitted on", ref.run_id)
        return
    if model.fingerprint() != expected:
        raise ConfigError(f"the model's fingerprint {model.fingerprint()} differs from reference run "
                          f"{ref.run_id}'s ({expected}); monitor with the reference's model or pass "
                          "--reference with a run of this model", key="model", value=model.source)


def _run_assertions(config: "Config", table: pd.DataFrame, *, labelled: bool, notes: list[str],
                    **extras: Any) -> list[AssertionResult]:
    """Run the config's assertions on the batch's prediction table (only label-free ones when unlabelled).

    Assertions about the model itself (feature associations, the implied no-spurious-reliance)
    were checked by the reference run and are not repeated per batch; those lacking an input the
    batch cannot give are skipped and noted. The implied ``better-than-chance`` runs on a labelled
    batch: a model at chance on new data (a changed class order upstream, a broken preprocessing)
    is an alarm.
    """
    class_names = extras.pop("class_names", None)
    assertions = [a for a in config.parsed_assertions if not a.implied or (a.name == DEFAULT_CHANCE and labelled)]
    if not any(a.enabled for a in assertions):
        return []
    data = AssertionContext(table, class_names=class_names, **extras)
    suite = run_assertions(assertions, data, needs_labels=None if labelled else False, skip_unavailable=True)
    for skipped in suite.skipped:
        lacks = ", ".join(m.replace("column:", "metadata column ") for m in skipped.get("missing", []))
        notes.append(f"assertion {skipped.get('name')!r} skipped: the batch lacks {lacks}")
    if not labelled:
        need = [a.name for a in assertions if a.enabled and a.needs_labels]
        if need:
            notes.append(f"assertions {need} need labels and were not run (the batch has none)")
    return suite.results


# --------------------------------------------------------------------------- MLflow
def _find_experiment(client: Any, name: str, uri: str) -> str | None:
    with mlflow_errors(uri):
        exp = client.get_experiment_by_name(name)
    return None if exp is None or exp.lifecycle_stage == "deleted" else str(exp.experiment_id)


def _existing_run(client: Any, exp_id: str | None, fingerprint: str, ref_id: str, uri: str) -> Any:
    if exp_id is None:
        return None
    query = (f"tags.`{TAG_FINGERPRINT}` = '{_quote(fingerprint)}' and tags.`{TAG_REFERENCE}` = '{_quote(ref_id)}' "
             f"and tags.`{TAG_KIND}` = 'monitor' and attributes.status = 'FINISHED'")
    with mlflow_errors(uri):
        runs = client.search_runs([exp_id], filter_string=query, order_by=["attributes.start_time DESC"],
                                  max_results=1)
    return runs[0] if runs else None


def _quote(value: str) -> str:
    if "'" in value or "\\" in value:
        raise TrackingError(f"invalid run id or fingerprint {value!r}")
    return value


def _log_results(run: Any, report: MonitorReport, ds: "ImageDataset | PrecomputedFeatures", config: "Config",
                 params: dict[str, Any]) -> None:
    """Log the scored batch into its (claimed) run: metrics, params, monitor.json, the batch as the
    run's dataset input, and the alert tag; ``sparsecheck.status`` becomes alert or ok."""
    from mlflow.entities import Metric, Param


    fd, cm = report.feature_drift, report.class_mix
    values: dict[str, float] = {
        "batch_size": report.n, "n_drifted_features": len(fd.drifted_features),
        "n_features_monitored": len(fd.table), "class_mix_psi": cm.psi, "class_mix_p_value": cm.p_value,
        "max_feature_psi": float(fd.table["psi"].max()) if len(fd.table) else 0.0,
        "max_feature_ks": float(fd.table["ks_statistic"].max()) if len(fd.table) else 0.0,
        "alert": float(report.alert),
        "assertions_failed": len(failing_assertions(report.assertions)),
        **report.accuracy,
    }
    for row in fd.top(TOP_FEATURES_LOGGED).itertuples():
        values[f"ks/feature_{int(row.feature)}"] = float(row.ks_statistic)
        values[f"psi/feature_{int(row.feature)}"] = float(row.psi)
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if np.isfinite(v)]
    plist = [Param(k, str(v)) for k, v in {**params, "batch": report.batch,
                                           "reference_run": report.reference_run}.items()]
    run_id = run.info.run_id
    try:
        run.client.log_batch(run_id, metrics=metrics, params=plist)
        run.client.log_inputs(run_id, datasets=dataset_inputs({"batch": ds}, config.data.class_names))
        with tempfile.TemporaryDirectory(prefix="sparsecheck-monitor-") as tmp:
            path = Path(tmp) / "monitor.json"
            write_json_atomic(path, report.to_dict())
            run.client.log_artifact(run_id, str(path))
            if report.corrections is not None:
                run.client.log_artifact(run_id, str(write_csv(report.corrections, Path(tmp) / CORRECTIONS_FILE)))
        run.client.set_tag(run_id, TAG_ALERT, "true" if report.alert else "false")
    except Exception as exc:
        raise TrackingError(f"logging monitoring run {run_id} to {run.info.tracking_uri} failed: "
                            f"{' '.join(str(exc).split())[:300]}") from exc
    run.status = "alert" if report.alert else "ok"
