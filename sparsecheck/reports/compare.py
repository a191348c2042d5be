"""Comparing two runs: what got worse, what got fixed, and how each class's features changed.

``sparsecheck compare RUN_A RUN_B`` loads both runs' ``results.json`` (and ``activations.npz``)
from MLflow and reports, for B against A:

* **assertions** newly failing or fixed;
* **slices** whose error rate got worse beyond their intervals — slices are matched by identical
  predicates; *worse* means B's ``ci_low`` is above A's ``ci_high``; a slice only B has counts when
  it is significant (``q_value <= slice_fdr``);
* **metric deltas**: dense and sparse accuracy, sparsity, features per class, accuracy by every
  attribute value;
* **spurious findings** new or resolved, matched on class + attribute + value;
* **features per class** gained, lost and kept. Feature ids differ between models, so features are
  matched by their activations on the evaluation examples both runs share (the intersection of
  the ids in their ``activations.npz``): Pearson correlations between A's and B's used features,
  a Hungarian assignment on ``-|r|`` (one-to-one), and a pair counts as *the same feature* when
  ``|r| >= min_correlation``. Two runs of the same model (same fingerprint) match by id.
* **representation similarity**: linear CKA (:mod:`sparsecheck.analysis.representation`) between
  the two runs' whole feature layers (their ``test_features.npz``) and between their used sparse
  features (``activations.npz``), on the shared test examples;
* **test data**: whether both runs were evaluated on the same test data (the digests of their
  test splits, ``data.test.digest``). Different test data is a warning (in the output and the
  log), not a regression.

Feature matching lives in :mod:`sparsecheck.analysis.matching` (re-exported here), rendering
(Markdown, HTML) in :mod:`sparsecheck.reports.compare_render`. This module is the comparison
logic and its result types; at ~550 lines it is one concept (five kinds of change and how each
becomes a regression) and splitting it further would scatter the regression rule.

A **regression** — exit code 1 of the command — is a newly failing error-severity assertion, a
worse or new significant slice, a new spurious finding, or the status going from pass to fail.

Examples
--------
>>> a = {"status": "pass", "assertions": [{"name": "acc", "status": "pass", "severity": "error"}],
...      "spurious_findings": [], "slices": []}
>>> b = {"status": "fail", "assertions": [{"name": "acc", "status": "fail", "severity": "error",
...                                        "observed": 0.7, "threshold": 0.8}],
...      "spurious_findings": [], "slices": []}
>>> comparison = compare_results(a, b, run_a="r1", run_b="r2")
>>> comparison.has_regression, comparison.regressions[0]
(True, 'status went from pass to fail')
>>> compare_results(a, a).has_regression
False
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from sparsecheck.analysis.matching import (
    DEFAULT_MIN_CORRELATION,
    FeatureMatch,
    FeatureMatching,
    RunActivations,
    identity_matching,
    match_features,
)
from sparsecheck.analysis.representation import FeatureSample, RepresentationSimilarity, compare_representations
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import DataError, ParameterError, TrackingError
from sparsecheck.outputs import atomic_write, claim_out_dir, write_json_atomic
from sparsecheck.reports import format as fmt
from sparsecheck.results import (
    DataSplitRecord,
    ModelRecord,
    RunResults,
    SpuriousFindingRecord,
    is_failing,
)
from sparsecheck.tracking.reading import download_run_artifact, load_run_results
from sparsecheck.tracking.outputs import ACTIVATIONS_FILE, TEST_FEATURES_FILE
from sparsecheck.tracking.store import resolve_tracking_uri
from sparsecheck.reports.comparison import (
    AssertionChange,
    ClassFeature,
    ClassFeatureChange,
    EvaluationDataCheck,
    KeptFeature,
    MetricDelta,
    RunComparison,
    SliceChange,
    SpuriousChange,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RunActivations",
    "FeatureMatch",
    "FeatureMatching",
    "match_features",
    "AssertionChange",
    "SliceChange",
    "MetricDelta",
    "SpuriousChange",
    "ClassFeature",
    "KeptFeature",
    "ClassFeatureChange",
    "RunComparison",
    "compare_results",
    "compare_runs",
    "write_comparison",
    "load_run_activations",
    "load_run_test_features",
    "FeatureSample",
    "RepresentationSimilarity",
    "EvaluationDataCheck",
]

DEFAULT_SLICE_FDR = ANALYSIS["fdr"]
#: what ``compare --out`` writes
COMPARE_OUTPUTS = ("compare.json", "compare.html")



# --------------------------------------------------------------------------- comparison logic
def compare_results(results_a: RunResults | Mapping[str, Any], results_b: RunResults | Mapping[str, Any],
                    activations_a: RunActivations | None = None, activations_b: RunActivations | None = None,
                    *, run_a: str = "A", run_b: str = "B", min_correlation: float = DEFAULT_MIN_CORRELATION,
                    slice_fdr: float = DEFAULT_SLICE_FDR, features_a: FeatureSample | None = None,
                    features_b: FeatureSample | None = None) -> RunComparison:
    """Compare two runs' results (and their activations, to match features).

    Parameters
    ----------
    results_a, results_b : RunResults or mapping
        The two runs' results, typed, or as their ``results.json`` holds them (read with
        :meth:`RunResults.from_dict`); sections a run lacks are not compared, and a note says so.
    activations_a, activations_b : RunActivations, optional
        Needed to match features across different models; two runs of the same model (equal
        ``model.fingerprint``) are matched by id without them.
    run_a, run_b : str
        Names shown in the output (run ids).
    min_correlation : float
        Smallest ``|r|`` for two features to be the same feature.
    slice_fdr : float
        A slice only B has is a regression when its q-value is at most this.
    features_a, features_b : FeatureSample, optional
        The runs' whole feature layers on their test examples (``test_features.npz``), for the
        CKA between the layers; the CKA between the used features needs only the activations.

    Returns
    -------
    RunComparison

    Raises
    ------
    DataError
        a mapping that is not a results.json this sparsecheck reads, naming the key at fault.
    """
    if not (isinstance(slice_fdr, (int, float)) and 0 < slice_fdr < 1):
        raise ParameterError(f"The 'slice_fdr' parameter must be a float in (0, 1). Got {slice_fdr!r} instead.",
                             parameter="slice_fdr")
    ra, rb = _typed(results_a, "results_a"), _typed(results_b, "results_b")
    notes: list[str] = []
    regressions: list[str] = []
    if ra.status == "pass" and rb.status == "fail":
        regressions.append("status went from pass to fail")

    assertions = _compare_assertions(ra, rb, notes)
    for a in assertions:
        if a.is_regression:
            regressions.append(f"assertion {a.name!r} ({a.severity}) newly fails"
                               + (f": observed {fmt.value(a.observed_b)}, threshold {fmt.value(a.threshold)}"
                                  if a.observed_b is not None or a.threshold is not None else "")
                               + (f" — {a.message}" if a.message else ""))
    slices = _compare_slices(ra, rb, slice_fdr, notes)
    for s in slices:
        if s.change == "worse":
            regressions.append(f"slice {s.label} got worse: error rate {fmt.rate(s.error_rate_a, s.ci_a, s.size_a)} "
                               f"→ {fmt.rate(s.error_rate_b, s.ci_b, s.size_b)}")
        elif s.is_regression:
            regressions.append(f"new significant slice {s.label}: error rate "
                               f"{fmt.rate(s.error_rate_b, s.ci_b, s.size_b)}, q={fmt.value(s.q_value_b)}")

    matching = _matching(ra, rb, activations_a, activations_b, min_correlation, notes)
    spurious = _compare_spurious(ra, rb, matching, notes)
    for f in spurious:
        if f.is_regression:
            regressions.append(f"new spurious finding: class {f.class_name} relies on feature {f.feature_b} "
                               f"associated with {f.attribute}={f.value}"
                               + (f" (score {f.score_b:.3g})" if f.score_b is not None else ""))
    metrics = _compare_metrics(ra, rb)
    features = _compare_features(ra, rb, matching, notes)
    test_data = _compare_test_data(ra, rb, notes)
    representation = compare_representations(features_a, features_b, activations_a, activations_b, notes=notes)
    comparison = RunComparison(run_a, run_b, ra.status, rb.status, assertions, slices, metrics, spurious,
                               features, matching, regressions, notes, representation, test_data)
    logger.info("compare %s -> %s: %d regressions", run_a, run_b, len(regressions))
    return comparison


def _typed(results: Any, name: str) -> RunResults:
    if isinstance(results, RunResults):
        return results
    if not isinstance(results, Mapping):
        raise DataError(f"{name} must be a RunResults or a results.json mapping, got {type(results).__name__}")
    return RunResults.from_dict(results, source=name)


def _missing(ra: RunResults, rb: RunResults, section: str) -> str | None:
    """Which run (``A``, ``B``) did not record ``section``; None when both did."""
    return next((run for run, r in (("A", ra), ("B", rb)) if not r.recorded(section)), None)


def _compare_assertions(ra: RunResults, rb: RunResults, notes: list[str]) -> list[AssertionChange]:
    lacking = _missing(ra, rb, "assertions")
    if lacking:
        notes.append(f"assertions not compared: {lacking} has no assertion results")
        return []
    by_a = {a.name: a for a in ra.assertions}
    by_b = {b.name: b for b in rb.assertions}
    out: list[AssertionChange] = []
    for name in list(by_b) + [n for n in by_a if n not in by_b]:
        a, b = by_a.get(name), by_b.get(name)
        fa = a is not None and is_failing(a, "warning")  # any severity: the change, not the gate
        fb = b is not None and is_failing(b, "warning")
        if b is None:
            change = "removed"
        elif a is None:
            # a check A never ran says nothing about a change of the model; B's status tells the gate
            change = "added_failing" if fb else "added"
        elif fb:
            change = "still_failing" if fa else "newly_failing"
        else:
            change = "fixed" if fa else "passing"
        src = b if b is not None else a
        assert src is not None
        out.append(AssertionChange(name=name, severity=src.severity,
                                   status_a=None if a is None else a.status,
                                   status_b=None if b is None else b.status, change=change,
                                   observed_a=None if a is None else a.observed,
                                   observed_b=None if b is None else b.observed,
                                   threshold=src.threshold, message=src.message))
    order = {"newly_failing": 0, "fixed": 1, "added_failing": 2, "still_failing": 3, "added": 4, "removed": 5,
             "passing": 6}
    out.sort(key=lambda c: (order[c.change], c.severity != "error"))
    return out


def _slice_key(predicates: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in predicates.items()))


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ci(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


class _Rate(NamedTuple):
    """A slice's error rate as A measured it: a slice of its own, or its accuracy by attribute value."""

    size: int | None
    error_rate: float | None
    ci: tuple[float, float] | None


def _compare_slices(ra: RunResults, rb: RunResults, fdr: float, notes: list[str]) -> list[SliceChange]:
    lacking = _missing(ra, rb, "slices")
    if lacking:
        notes.append(f"slices not compared: {lacking} has no slice results")
        return []
    by_a = {_slice_key(s.predicates): _Rate(s.size, s.error_rate, _ci(s.ci_low, s.ci_high)) for s in ra.slices}
    breakdown_a = _error_by_value(ra)
    out: list[SliceChange] = []
    seen: set = set()
    from_breakdown = 0
    for s in rb.slices:
        key = _slice_key(s.predicates)
        seen.add(key)
        a = by_a.get(key)
        ci_b = _ci(s.ci_low, s.ci_high)
        significant = s.significant if s.significant is not None else (s.q_value is not None and s.q_value <= fdr)
        common = dict(predicates=dict(key), size_b=s.size, error_rate_b=s.error_rate, ci_b=ci_b,
                      q_value_b=s.q_value, significant_b=significant)
        if a is None and len(key) == 1 and key[0] in breakdown_a:
            # A did not list this one-predicate slice, but its accuracy by attribute value measured it
            a = breakdown_a[key[0]]
            from_breakdown += 1
        if a is None:
            out.append(SliceChange(change="new", **common))
            continue
        if a.ci is None or ci_b is None:
            change = "unchanged"
        elif ci_b[0] > a.ci[1]:
            change = "worse"
        elif ci_b[1] < a.ci[0]:
            change = "better"
        else:
            change = "unchanged"
        out.append(SliceChange(change=change, size_a=a.size, error_rate_a=a.error_rate, ci_a=a.ci, **common))
    for key, a in by_a.items():
        if key not in seen:
            out.append(SliceChange(predicates=dict(key), change="gone", size_a=a.size, error_rate_a=a.error_rate,
                                   ci_a=a.ci))
    if from_breakdown:
        notes.append(f"{from_breakdown} one-predicate slices listed only by B were compared with A's accuracy by "
                     "attribute value")
    if any(s.change == "new" for s in out):
        notes.append("results.json lists only the top slices: a slice shown as new may have been just below "
                     "A's cut-off")
    return out


def _error_by_value(results: RunResults) -> dict[tuple[str, str], _Rate]:
    """A run's accuracy by attribute value as error rates (the interval on the error rate)."""
    return {(str(r.attribute), str(r.value)): _Rate(r.size, 1.0 - r.accuracy, (1.0 - r.ci_high, 1.0 - r.ci_low))
            for r in results.accuracy_by_attribute
            if r.accuracy is not None and r.ci_low is not None and r.ci_high is not None}


def _strongest(findings: list[SpuriousFindingRecord]) -> dict[tuple[str, str, str], SpuriousFindingRecord]:
    """The strongest finding per class + attribute + value (it represents them)."""
    out: dict[tuple[str, str, str], SpuriousFindingRecord] = {}
    for f in findings:
        k = (str(f.class_), str(f.attribute), str(f.value))
        if k not in out or (f.score or 0) > (out[k].score or 0):
            out[k] = f
    return out


def _compare_spurious(ra: RunResults, rb: RunResults, matching: FeatureMatching | None,
                      notes: list[str]) -> list[SpuriousChange]:
    lacking = _missing(ra, rb, "spurious_findings")
    if lacking:
        notes.append(f"spurious findings not compared: {lacking} has none recorded")
        return []
    by_a, by_b = _strongest(ra.spurious_findings), _strongest(rb.spurious_findings)
    out: list[SpuriousChange] = []
    for key in list(by_b) + [k for k in by_a if k not in by_b]:
        a, b = by_a.get(key), by_b.get(key)
        change = "persisting" if a is not None and b is not None else ("new" if b is not None else "resolved")
        same = None
        if a is not None and b is not None and matching is not None:
            m = matching.partner_of_a(a.feature)
            same = m is not None and m.feature_b == b.feature
        out.append(SpuriousChange(class_name=key[0], attribute=key[1], value=key[2], change=change,
                                  feature_a=None if a is None else a.feature,
                                  feature_b=None if b is None else b.feature,
                                  score_a=None if a is None else a.score, score_b=None if b is None else b.score,
                                  sentence=(b if b is not None else a).sentence, same_feature=same))
    order = {"new": 0, "resolved": 1, "persisting": 2}
    out.sort(key=lambda f: order[f.change])
    return out


def _per_class(results: RunResults) -> dict[str, list[tuple[int, float | None]]] | None:
    layer = results.sparse_layer
    if layer is None:
        return None
    return {str(cls): [(f.feature, f.weight) for f in feats] for cls, feats in layer.features_per_class.items()}


def _compare_metrics(ra: RunResults, rb: RunResults) -> list[MetricDelta]:
    out: list[MetricDelta] = []
    # every accuracy the dense head records (one per split, and the chance rate), when both runs have it
    dense_a = {} if ra.dense is None else ra.dense.model_dump(exclude_unset=True)
    dense_b = {} if rb.dense is None else rb.dense.model_dump(exclude_unset=True)
    for k in [k for k in dense_a if k in dense_b] or ["test_accuracy"]:
        out.append(MetricDelta(f"dense {k.replace('_', ' ')}", _float(dense_a.get(k)), _float(dense_b.get(k))))
    for key, label in (("dense_accuracy", "sparse layer: dense accuracy"),
                       ("sparse_accuracy", "sparse layer: sparse accuracy"),
                       ("sparsity", "sparsity (% zero weights)")):
        out.append(MetricDelta(label, getattr(ra.sparse_layer, key, None), getattr(rb.sparse_layer, key, None)))
    pa, pb = _per_class(ra), _per_class(rb)

    def mean_fpc(p: dict | None) -> float | None:
        return None if not p else float(np.mean([len(v) for v in p.values()]))

    def used(p: dict | None) -> float | None:
        return None if p is None else float(len({f for v in p.values() for f, _ in v}))

    out.append(MetricDelta("mean features per class", mean_fpc(pa), mean_fpc(pb)))
    out.append(MetricDelta("used features", used(pa), used(pb)))
    for cls in _ordered_union(list(pa or {}), list(pb or {})):
        out.append(MetricDelta(f"features of class {cls}",
                               None if pa is None or cls not in pa else float(len(pa[cls])),
                               None if pb is None or cls not in pb else float(len(pb[cls]))))
    acc_a = {(str(r.attribute), str(r.value)): r.accuracy for r in ra.accuracy_by_attribute}
    acc_b = {(str(r.attribute), str(r.value)): r.accuracy for r in rb.accuracy_by_attribute}
    for key in _ordered_union(list(acc_a), list(acc_b)):
        out.append(MetricDelta(f"accuracy | {key[0]}={key[1]}", acc_a.get(key), acc_b.get(key)))
    return [m for m in out if m.a is not None or m.b is not None]


def _ordered_union(a: Sequence, b: Sequence) -> list:
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)


def _matching(ra: RunResults, rb: RunResults, acts_a: RunActivations | None, acts_b: RunActivations | None,
              min_correlation: float, notes: list[str]) -> FeatureMatching | None:
    pa, pb = _per_class(ra), _per_class(rb)
    model_a, model_b = ra.model or ModelRecord(), rb.model or ModelRecord()
    if (model_a.fingerprint is not None and model_a.fingerprint == model_b.fingerprint
            and model_a.feature_layer == model_b.feature_layer and pa is not None and pb is not None):
        return identity_matching((f for v in pa.values() for f, _ in v), (f for v in pb.values() for f, _ in v))
    if acts_a is None or acts_b is None:
        notes.append("features not matched across runs: " + ("A" if acts_a is None else "B")
                     + " has no activations.npz and the models differ")
        return None
    try:
        return match_features(acts_a, acts_b, min_correlation=min_correlation)
    except DataError as exc:
        notes.append(f"features not matched across runs: {exc}")
        return None


def _compare_features(ra: RunResults, rb: RunResults, matching: FeatureMatching | None,
                      notes: list[str]) -> list[ClassFeatureChange]:
    pa, pb = _per_class(ra), _per_class(rb)
    if pa is None or pb is None:
        notes.append("features per class not compared: " + ("A" if pa is None else "B") + " has no sparse layer")
        return []
    if matching is None:
        return []
    out: list[ClassFeatureChange] = []
    for cls in _ordered_union(list(pa), list(pb)):
        fa, fb = pa.get(cls, []), pb.get(cls, [])
        wb = dict(fb)
        ids_b = set(wb)
        ids_a = {f for f, _ in fa}
        kept, lost, gained = [], [], []
        for f, w in fa:
            m = matching.partner_of_a(f)
            if m is not None and m.feature_b in ids_b:
                kept.append(KeptFeature(f, m.feature_b, m.correlation, w, wb[m.feature_b]))
            else:
                lost.append(ClassFeature(f, w, matching.best_a.get(f), matching.nearest_a.get(f)))
        for f, w in fb:
            m = matching.partner_of_b(f)
            if m is None or m.feature_a not in ids_a:
                gained.append(ClassFeature(f, w, matching.best_b.get(f), matching.nearest_b.get(f)))
        out.append(ClassFeatureChange(cls, kept, lost, gained, len(fa), len(fb)))
    return out


def _compare_test_data(ra: RunResults, rb: RunResults, notes: list[str]) -> EvaluationDataCheck:
    """Same test data in both runs? Different data is a warning: every comparison above is then
    between different examples (a logged warning and a note, not a regression)."""
    test_a, test_b = (r.data.get("test") if r.data else None for r in (ra, rb))
    da, db = (None if t is None else t.digest for t in (test_a, test_b))
    if da is None or db is None:
        missing = " and ".join(r for r, d in (("A", da), ("B", db)) if d is None)
        return EvaluationDataCheck(None, da, db, f"not compared: {missing} records no test-data digest "
                                                 "(a run logged before sparsecheck recorded one)")
    if da == db:
        return EvaluationDataCheck(True, da, db, f"the same in both runs (digest {da})")

    def where(test: DataSplitRecord) -> str:
        return (f"digest {test.digest}" + (f", {test.n} examples" if test.n is not None else "")
                + (f" from {test.source}" if test.source else ""))

    message = (f"different (A: {where(test_a)}; B: {where(test_b)}): slices, metrics and CKA compare "
               "different examples")
    notes.append(f"the runs were evaluated on different test data: {message}")
    logger.warning("compare %s -> %s: the runs were evaluated on different test data: %s",
                   ra.mlflow.run_id if ra.mlflow else "A", rb.mlflow.run_id if rb.mlflow else "B", message)
    return EvaluationDataCheck(False, da, db, message)


# --------------------------------------------------------------------------- MLflow loading
def load_run_activations(run_id: str, tracking_uri: str | None = None) -> RunActivations:
    """The ``activations.npz`` artifact of an MLflow run.

    Raises
    ------
    TrackingError
        when the run does not exist or has no ``activations.npz``.
    """
    return _load_run_artifact(run_id, ACTIVATIONS_FILE, RunActivations.load, tracking_uri)


def load_run_test_features(run_id: str, tracking_uri: str | None = None) -> FeatureSample:
    """The ``test_features.npz`` artifact of an MLflow run (its feature layer on test examples).

    Raises
    ------
    TrackingError
        when the run does not exist or has no ``test_features.npz``.
    """
    return _load_run_artifact(run_id, TEST_FEATURES_FILE, FeatureSample.load, tracking_uri)


def _load_run_artifact(run_id: str, name: str, load: Any, tracking_uri: str | None) -> Any:
    """``load(path)`` of the run's artifact ``name``, downloaded into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="sparsecheck-artifact-") as tmp:
        return load(download_run_artifact(run_id, name, tracking_uri, dst_dir=tmp))


def compare_runs(run_a: str, run_b: str, *, tracking_uri: str | None = None,
                 min_correlation: float = DEFAULT_MIN_CORRELATION,
                 slice_fdr: float = DEFAULT_SLICE_FDR) -> RunComparison:
    """Load two MLflow runs (results.json, activations.npz) and compare B against A.

    Parameters
    ----------
    run_a, run_b : str
        MLflow run ids (A is the baseline).
    tracking_uri : str, optional
        See :func:`sparsecheck.tracking.resolve_tracking_uri`.
    min_correlation, slice_fdr : float
        See :func:`compare_results`.

    Raises
    ------
    TrackingError
        when a run does not exist or has no results.json.
    """
    uri = resolve_tracking_uri(tracking_uri)
    results_a = load_run_results(run_a, uri)
    results_b = load_run_results(run_b, uri)
    acts: list[RunActivations | None] = []
    feats: list[FeatureSample | None] = []
    for run in (run_a, run_b):
        try:
            acts.append(load_run_activations(run, uri))
        except TrackingError:
            logger.info("run %s has no activations.npz", run)
            acts.append(None)
        try:
            feats.append(load_run_test_features(run, uri))
        except TrackingError:
            logger.info("run %s has no test_features.npz", run)
            feats.append(None)
    return compare_results(results_a, results_b, acts[0], acts[1], run_a=run_a, run_b=run_b,
                           min_correlation=min_correlation, slice_fdr=slice_fdr, features_a=feats[0],
                           features_b=feats[1])


def write_comparison(comparison: RunComparison, out_dir: str | Path, *, force: bool = False) -> dict[str, Path]:
    """Write ``compare.json`` and ``compare.html`` into ``out_dir`` (atomically).

    A non-empty directory sparsecheck did not write is refused unless ``force``, and so is a
    ``compare.json`` or ``compare.html`` there that sparsecheck did not write; nothing else in the
    directory is touched.
    """
    out = claim_out_dir(out_dir, force=force, note="written by sparsecheck compare", outputs=COMPARE_OUTPUTS)
    paths = {name: out / name for name in COMPARE_OUTPUTS}
    write_json_atomic(paths["compare.json"], comparison.to_dict())
    with atomic_write(paths["compare.html"], "w", encoding="utf-8") as fh:
        fh.write(comparison.to_html())
    return paths
