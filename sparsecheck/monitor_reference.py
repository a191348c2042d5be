"""What a batch is monitored against and how it is scored: the reference run (the newest sparsecheck
run of an experiment, found in MLflow) with its activations and thresholds (:class:`MonitorReference`),
and a batch's drift, shift and assertion scores (:func:`score_batch`, :class:`MonitorReport`); the
job around them (claims, outputs, logging) is :mod:`sparsecheck.monitor`."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sparsecheck.analysis.drift import ClassMixDrift, FeatureDrift, class_mix_drift, feature_drift
from sparsecheck.defaults import DRIFT_ALPHA, DRIFT_BINS, DRIFT_PSI_THRESHOLD
from sparsecheck.errors import DataError, TrackingError
from sparsecheck.reports.compare import RunActivations
from sparsecheck.results import FAILING_STATUSES, AssertionResult, ModelRecord, RunResults, failing_assertions
from sparsecheck.sparse import SparseDecisionLayer
from sparsecheck.tracking.outputs import ACTIVATIONS_FILE
from sparsecheck.tracking.reading import download_run_artifact, load_run_results
from sparsecheck.tracking.store import mlflow_errors, resolve_tracking_uri
from sparsecheck.tracking.tags import TAG_KIND
from sparsecheck.weak_labels import CORRECTIONS_FILE

logger = logging.getLogger(__name__)


@dataclass
class MonitorReference:
    """What a reference run provides: its sparse layer, test-split activations and results.

    Attributes
    ----------
    run_id : str
    layer : SparseDecisionLayer
    activations : RunActivations
        Raw activations of the layer's used features on the reference's test split.
    results : RunResults
        The reference's results.json, typed.
    """

    run_id: str
    layer: "SparseDecisionLayer"
    activations: RunActivations
    results: RunResults

    @property
    def checked_model(self) -> ModelRecord:
        """The model the reference run checked (an empty record when its results name none)."""
        return self.results.model or ModelRecord()

    def __post_init__(self) -> None:
        used = set(int(f) for f in self.layer.used_features())
        stored = set(int(f) for f in self.activations.features)
        if not used <= stored:
            raise DataError(f"reference run {self.run_id}: activations.npz lacks used features "
                            f"{sorted(used - stored)[:10]} of the sparse layer")
        if self.activations.features.size and self.activations.features.max() >= self.layer.n_features_in_:
            raise DataError(f"reference run {self.run_id}: activations.npz names feature "
                            f"{int(self.activations.features.max())} but the layer has "
                            f"{self.layer.n_features_in_} features")

    @property
    def features(self) -> np.ndarray:
        """The monitored features: the layer's used features, sorted."""
        return np.asarray(self.layer.used_features(), dtype=np.int64)

    def reference_activations(self) -> np.ndarray:
        """Reference activations of :attr:`features`, columns in that order."""
        return self.activations.columns(self.features)

    def reference_predictions(self) -> np.ndarray:
        """Sparse-layer predicted class indices on the reference's test split.

        Computed from the stored activations alone: unused features have zero weight, so
        ``decision_function`` only needs the used ones.
        """
        f = self.features
        layer = self.layer
        z = (self.reference_activations().astype(np.float64) - layer.mean_[f]) / layer.std_[f]
        logits = z @ np.asarray(layer.weight_, dtype=np.float64)[:, f].T + layer.bias_
        return logits.argmax(axis=1)


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def find_reference_run(experiment: str, tracking_uri: str | None = None) -> str:
    """The id of the latest FINISHED ``sparsecheck run`` (tag ``sparsecheck.kind = run``) in ``experiment``.

    Raises
    ------
    TrackingError
        when the experiment does not exist or holds no finished run.
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    with mlflow_errors(uri):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise TrackingError(f"no MLflow experiment {experiment!r} at {uri}: log a reference with "
                                "`sparsecheck run CONFIG` first, or pass --reference RUN_ID")
        runs = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`{TAG_KIND}` = 'run' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise TrackingError(f"experiment {experiment!r} at {uri} holds no finished sparsecheck run "
                            "(tag sparsecheck.kind=run); run `sparsecheck run CONFIG` or pass --reference")
    return str(runs[0].info.run_id)


def load_reference(run_id: str, tracking_uri: str | None = None) -> MonitorReference:
    """Download a run's ``results.json``, ``sparse_layer/`` and ``activations.npz``.

    Raises
    ------
    TrackingError
        when the run does not exist or lacks one of those artifacts.
    """
    uri = resolve_tracking_uri(tracking_uri)
    results = load_run_results(run_id, uri)
    with tempfile.TemporaryDirectory(prefix="sparsecheck-reference-") as tmp:
        layer_dir = download_run_artifact(run_id, "sparse_layer", uri, dst_dir=tmp)
        try:
            layer = SparseDecisionLayer.load(layer_dir)
        except DataError as exc:
            raise TrackingError(f"reference run {run_id}: sparse_layer/ artifact is unusable: {exc}") from exc
        activations = RunActivations.load(download_run_artifact(run_id, ACTIVATIONS_FILE, uri, dst_dir=tmp))
    logger.info("reference run %s: %d used features, %d reference examples", run_id,
                layer.used_features().size, activations.ids.size)
    return MonitorReference(run_id, layer, activations, results)


# --------------------------------------------------------------------------- scoring
@dataclass
class MonitorReport:
    """What one batch looked like against the reference (the content of monitor.json).

    Attributes
    ----------
    batch : str
        Source of the batch (path or name).
    batch_fingerprint : str
    n : int
        Examples in the batch.
    labelled : bool
    reference_run : str
    feature_drift : FeatureDrift
    class_mix : ClassMixDrift
        Of the sparse layer's predicted classes.
    accuracy : dict
        ``dense_accuracy`` and ``sparse_accuracy`` when the batch has labels.
    assertions : list of AssertionResult
        The results of the assertions run on the batch.
    alerts : list of str
        One line per reason to alert; empty means quiet.
    notes : list of str
    corrections : DataFrame or None
        The corrected predictions (``--correct``); monitor.json names the file and counts them.
    """

    batch: str
    batch_fingerprint: str
    n: int
    labelled: bool
    reference_run: str
    feature_drift: FeatureDrift
    class_mix: ClassMixDrift
    accuracy: dict[str, float] = field(default_factory=dict)
    assertions: list[AssertionResult] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    corrections: pd.DataFrame | None = None

    @property
    def alert(self) -> bool:
        """True when the batch drifted or an error-severity assertion failed."""
        return bool(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (monitor.json)."""
        return {"alert": self.alert, "alerts": list(self.alerts), "batch": self.batch,
                "batch_fingerprint": self.batch_fingerprint, "n": self.n, "labelled": self.labelled,
                "reference_run": self.reference_run, "feature_drift": self.feature_drift.to_dict(),
                "class_mix": self.class_mix.to_dict(), "accuracy": dict(self.accuracy),
                "assertions": [a.to_dict() for a in self.assertions], "notes": list(self.notes),
                **({} if self.corrections is None else {"corrections": _corrections_summary(self.corrections)})}

    def summary(self, *, max_features: int = 8, max_notes: int = 3) -> str:
        """What the command prints: the verdict first, then the few lines that explain it.

        The first line is the verdict (``ALERT`` or ``ok``) with its reasons counted; then the
        ``max_features`` most drifted features (largest PSI first) as ``alert:`` lines, the other
        drifted features as one "and N more" line (monitor.json lists every one), the class mix,
        accuracy, assertions and the first ``max_notes`` notes. A batch with every feature drifted
        still prints about twenty lines.
        """
        fd, cm = self.feature_drift, self.class_mix
        drifted = fd.drifted_features
        gate = failing_assertions(self.assertions)
        failing = [a for a in self.assertions if a.status in FAILING_STATUSES]
        reasons = []
        if drifted:
            reasons.append(f"{len(drifted)} of {len(fd.table)} features drifted")
        if cm.drifted:
            reasons.append("predicted-class mix drifted")
        if gate:
            reasons.append(f"{len(gate)} error-severity assertion{'s' if len(gate) != 1 else ''} failed")
        if self.alert:
            head = "ALERT: " + ("; ".join(reasons) or f"{len(self.alerts)} alerts")
        else:
            n = len(self.assertions)
            checks = ("" if not n or failing else ", the one assertion passes" if n == 1
                      else f", all {n} assertions pass")
            head = f"ok: no drift{checks}"
        lines = [f"{head} — batch {self.batch} ({self.n} examples, fingerprint {self.batch_fingerprint}) "
                 f"vs reference run {self.reference_run}"]
        lines.append(f"  feature drift: {len(drifted)} of {len(fd.table)} used features drifted "
                     f"(q < {fd.alpha:g} and PSI >= {fd.psi_threshold:g})"
                     + (f"; the {min(len(drifted), max_features)} largest by PSI:" if drifted else ""))
        feature_alerts = {f"feature {f} drifted" for f in drifted}
        shown = [a for a in self.alerts if a.split(":")[0] in feature_alerts][:max_features]
        lines += [f"  alert: {a}" for a in shown]
        if len(drifted) > len(shown):
            rest = [str(f) for f in drifted[len(shown):]]
            listed = ", ".join(rest[:12]) + (", …" if len(rest) > 12 else "")
            lines.append(f"  … and {len(rest)} more drifted features ({listed}); monitor.json lists every one")
        lines += [f"  alert: {a}" for a in self.alerts if a.split(":")[0] not in feature_alerts]
        lines.append(f"  class mix: PSI {cm.psi:.3f}, chi2 p {cm.p_value:.2g} -> "
                     f"{'drifted' if cm.drifted else 'stable'}")
        if self.accuracy:
            lines.append("  accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in self.accuracy.items()))
        if self.assertions:
            lines.append(f"  assertions: {len(self.assertions) - len(failing)} pass, {len(failing)} fail "
                         f"({len(gate)} of error severity, which alert)")
        lines += [f"  note: {n}" for n in self.notes[:max_notes]]
        if len(self.notes) > max_notes:
            lines.append(f"  … and {len(self.notes) - max_notes} more notes (in monitor.json)")
        return "\n".join(lines)


def _corrections_summary(corrections: pd.DataFrame) -> dict[str, Any]:
    changed = corrections.loc[corrections["rule"] != "", "rule"]
    return {"file": CORRECTIONS_FILE, "n": len(corrections), "n_corrected": int(changed.size),
            "by_rule": {str(k): int(v) for k, v in changed.value_counts().items()}}


def score_batch(reference: MonitorReference, features: np.ndarray, *, batch: str = "batch",
                batch_fingerprint: str = "", labels: np.ndarray | None = None,
                dense_logits: np.ndarray | None = None, class_names: list[str] | None = None,
                alpha: float = DRIFT_ALPHA, psi_threshold: float = DRIFT_PSI_THRESHOLD,
                bins: int = DRIFT_BINS) -> MonitorReport:
    """Drift of a batch's deep features and sparse predictions against a reference.

    Parameters
    ----------
    reference : MonitorReference
    features : array (n, d)
        The batch's deep features at the reference layer (all d of them).
    batch, batch_fingerprint : str
        For the report.
    labels : array (n,), optional
        True labels (class indices); adds accuracies.
    dense_logits : array (n, n_classes), optional
        The model's own head on the batch (for the dense accuracy).
    class_names : list of str, optional
    alpha, psi_threshold, bins
        Drift rule (see :func:`sparsecheck.analysis.drift.feature_drift`).

    Returns
    -------
    MonitorReport
        without assertion results (:func:`monitor_batch` adds them).
    """
    layer = reference.layer
    X = np.asarray(features)
    if X.ndim != 2 or X.shape[1] != layer.n_features_in_:
        raise DataError(f"batch features have shape {X.shape}, the reference layer expects "
                        f"(n, {layer.n_features_in_})")
    used = reference.features
    fd = feature_drift(reference.reference_activations(), np.asarray(X[:, used], dtype=np.float64),
                       features=used, alpha=alpha, psi_threshold=psi_threshold, bins=bins)
    n_classes = len(layer.classes_)
    names = list(class_names) if class_names is not None and len(class_names) == n_classes \
        else [str(c) for c in layer.classes_]
    batch_pred = layer.decision_function(X).argmax(axis=1)
    ref_counts = np.bincount(reference.reference_predictions(), minlength=n_classes)
    cm = class_mix_drift(ref_counts, np.bincount(batch_pred, minlength=n_classes), class_names=names,
                         alpha=alpha, psi_threshold=psi_threshold)
    accuracy: dict[str, float] = {}
    if labels is not None:
        y = np.asarray(labels)
        accuracy["sparse_accuracy"] = float(np.mean(np.asarray(layer.classes_)[batch_pred] == y))
        if dense_logits is not None:
            accuracy["dense_accuracy"] = float(np.mean(np.asarray(dense_logits).argmax(axis=1) == y))
    alerts = []
    rows = fd.table.set_index("feature")
    for f in fd.drifted_features:
        r = rows.loc[f]
        alerts.append(f"feature {f} drifted: KS {r.ks_statistic:.3f} (q {r.q_value:.2g}), PSI {r.psi:.3f}")
    if cm.drifted:
        top = cm.shares().sort_values("difference", key=np.abs, ascending=False).iloc[0]
        alerts.append(f"predicted-class mix drifted: PSI {cm.psi:.3f} (p {cm.p_value:.2g}); largest change "
                      f"{top['class']} {top.reference_share:.1%} -> {top.batch_share:.1%}")
    return MonitorReport(batch=batch, batch_fingerprint=batch_fingerprint, n=int(X.shape[0]),
                         labelled=labels is not None, reference_run=reference.run_id, feature_drift=fd,
                         class_mix=cm, accuracy=accuracy, alerts=alerts)
