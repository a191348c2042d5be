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
logic and its result types; at ~700 lines it is one concept (five kinds of change and how each
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
from typing import Any, Sequence

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
from sparsecheck.results import is_failing
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
def compare_results(results_a: dict[str, Any], results_b: dict[str, Any],
                    activations_a: RunActivations | None = None, activations_b: RunActivations | None = None,
                    *, run_a: str = "A", run_b: str = "B", min_correlation: float = DEFAULT_MIN_CORRELATION,
                    slice_fdr: float = DEFAULT_SLICE_FDR, features_a: FeatureSample | None = None,
                    features_b: FeatureSample | None = None) -> RunComparison:
    """Compare two runs' ``results.json`` contents (and their activations, to match features).

    Parameters
    ----------
    results_a, results_b : dict
        The two runs' results (schema of DESIGN.md); sections a run lacks are not compared, and a
        note says so.
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
    """
    if not (isinstance(slice_fdr, (int, float)) and 0 < slice_fdr < 1):
        raise ParameterError(f"The 'slice_fdr' parameter must be a float in (0, 1). Got {slice_fdr!r} instead.",
                             parameter="slice_fdr")
    for name, res in (("results_a", results_a), ("results_b", results_b)):
        if not isinstance(res, dict):
            raise DataError(f"{name} must be a results.json mapping, got {type(res).__name__}")
    notes: list[str] = []
    regressions: list[str] = []
    status_a, status_b = results_a.get("status"), results_b.get("status")
    if status_a == "pass" and status_b == "fail":
        regressions.append("status went from pass to fail")

    assertions = _compare_assertions(results_a, results_b, notes)
    for a in assertions:
        if a.is_regression:
            regressions.append(f"assertion {a.name!r} ({a.severity}) newly fails"
                               + (f": observed {fmt.value(a.observed_b)}, threshold {fmt.value(a.threshold)}"
                                  if a.observed_b is not None or a.threshold is not None else "")
                               + (f" — {a.message}" if a.message else ""))
    slices = _compare_slices(results_a, results_b, slice_fdr, notes)
    for s in slices:
        if s.change == "worse":
            regressions.append(f"slice {s.label} got worse: error rate {fmt.rate(s.error_rate_a, s.ci_a, s.size_a)} "
                               f"→ {fmt.rate(s.error_rate_b, s.ci_b, s.size_b)}")
        elif s.is_regression:
            regressions.append(f"new significant slice {s.label}: error rate "
                               f"{fmt.rate(s.error_rate_b, s.ci_b, s.size_b)}, q={fmt.value(s.q_value_b)}")

    matching = _matching(results_a, results_b, activations_a, activations_b, min_correlation, notes)
    spurious = _compare_spurious(results_a, results_b, matching, notes)
    for s in spurious:
        if s.is_regression:
            regressions.append(f"new spurious finding: class {s.class_name} relies on feature {s.feature_b} "
                               f"associated with {s.attribute}={s.value}"
                               + (f" (score {s.score_b:.3g})" if s.score_b is not None else ""))
    metrics = _compare_metrics(results_a, results_b)
    features = _compare_features(results_a, results_b, matching, notes)
    test_data = _compare_test_data(results_a, results_b, notes)
    representation = compare_representations(features_a, features_b, activations_a, activations_b, notes=notes)
    comparison = RunComparison(run_a, run_b, status_a, status_b, assertions, slices, metrics, spurious,
                               features, matching, regressions, notes, representation, test_data)
    logger.info("compare %s -> %s: %d regressions", run_a, run_b, len(regressions))
    return comparison


def _section(results: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    value = results.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise DataError(f"results.json key {key!r} must be a list, got {type(value).__name__}")
    return [v for v in value if isinstance(v, dict)]


def _compare_assertions(ra: dict, rb: dict, notes: list[str]) -> list[AssertionChange]:
    la, lb = _section(ra, "assertions"), _section(rb, "assertions")
    if la is None or lb is None:
        notes.append("assertions not compared: " + ("A" if la is None else "B") + " has no assertion results")
        return []
    by_a = {str(a.get("name")): a for a in la}
    by_b = {str(b.get("name")): b for b in lb}
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
        out.append(AssertionChange(name=name, severity=str(src.get("severity", "error")),
                                   status_a=None if a is None else a.get("status"),
                                   status_b=None if b is None else b.get("status"), change=change,
                                   observed_a=None if a is None else a.get("observed"),
                                   observed_b=None if b is None else b.get("observed"),
                                   threshold=src.get("threshold"), message=str(src.get("message") or "")))
    order = {"newly_failing": 0, "fixed": 1, "added_failing": 2, "still_failing": 3, "added": 4, "removed": 5,
             "passing": 6}
    out.sort(key=lambda c: (order[c.change], c.severity != "error"))
    return out


def _slice_key(predicates: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(predicates, dict):
        raise DataError(f"a slice's 'predicates' must be a mapping attribute -> value, got {predicates!r}")
    return tuple(sorted((str(k), str(v)) for k, v in predicates.items()))


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ci(s: dict[str, Any]) -> tuple[float, float] | None:
    lo, hi = _float(s.get("ci_low")), _float(s.get("ci_high"))
    return None if lo is None or hi is None else (lo, hi)


def _compare_slices(ra: dict, rb: dict, fdr: float, notes: list[str]) -> list[SliceChange]:
    la, lb = _section(ra, "slices"), _section(rb, "slices")
    if la is None or lb is None:
        notes.append("slices not compared: " + ("A" if la is None else "B") + " has no slice results")
        return []
    by_a = {_slice_key(s.get("predicates")): s for s in la}
    breakdown_a = _error_by_value(ra)
    out: list[SliceChange] = []
    seen: set = set()
    from_breakdown = 0
    for s in lb:
        key = _slice_key(s.get("predicates"))
        seen.add(key)
        a = by_a.get(key)
        ci_b = _ci(s)
        q = _float(s.get("q_value"))
        significant = bool(s["significant"]) if "significant" in s else (q is not None and q <= fdr)
        common = dict(predicates=dict(key), size_b=s.get("size"), error_rate_b=_float(s.get("error_rate")),
                      ci_b=ci_b, q_value_b=q, significant_b=significant)
        if a is None and len(key) == 1 and key[0] in breakdown_a:
            # A did not list this one-predicate slice, but its accuracy by attribute value measured it
            a = breakdown_a[key[0]]
            from_breakdown += 1
        if a is None:
            out.append(SliceChange(change="new", **common))
            continue
        ci_a = _ci(a)
        if ci_a is None or ci_b is None:
            change = "unchanged"
        elif ci_b[0] > ci_a[1]:
            change = "worse"
        elif ci_b[1] < ci_a[0]:
            change = "better"
        else:
            change = "unchanged"
        out.append(SliceChange(change=change, size_a=a.get("size"), error_rate_a=_float(a.get("error_rate")),
                               ci_a=ci_a, **common))
    for key, a in by_a.items():
        if key not in seen:
            out.append(SliceChange(predicates=dict(key), change="gone", size_a=a.get("size"),
                                   error_rate_a=_float(a.get("error_rate")), ci_a=_ci(a)))
    if from_breakdown:
        notes.append(f"{from_breakdown} one-predicate slices listed only by B were compared with A's accuracy by "
                     "attribute value")
    if any(s.change == "new" for s in out):
        notes.append("results.json lists only the top slices: a slice shown as new may have been just below "
                     "A's cut-off")
    return out


def _error_by_value(results: dict) -> dict[tuple[str, str], dict[str, Any]]:
    """A run's accuracy by attribute value as slice records (error rate, interval on the error rate)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in _section(results, "accuracy_by_attribute") or []:
        acc, lo, hi = _float(r.get("accuracy")), _float(r.get("ci_low")), _float(r.get("ci_high"))
        if acc is None or lo is None or hi is None:
            continue
        out[(str(r.get("attribute")), str(r.get("value")))] = {
            "size": r.get("size"), "error_rate": 1.0 - acc, "ci_low": 1.0 - hi, "ci_high": 1.0 - lo}
    return out


def _spurious_key(f: dict[str, Any]) -> tuple[str, str, str]:
    return str(f.get("class")), str(f.get("attribute")), str(f.get("value"))


def _compare_spurious(ra: dict, rb: dict, matching: FeatureMatching | None, notes: list[str]) -> list[SpuriousChange]:
    la, lb = _section(ra, "spurious_findings"), _section(rb, "spurious_findings")
    if la is None or lb is None:
        notes.append("spurious findings not compared: " + ("A" if la is None else "B") + " has none recorded")
        return []
    by_a: dict[tuple[str, str, str], dict] = {}
    for f in la:  # the strongest finding per key represents it
        k = _spurious_key(f)
        if k not in by_a or (_float(f.get("score")) or 0) > (_float(by_a[k].get("score")) or 0):
            by_a[k] = f
    by_b: dict[tuple[str, str, str], dict] = {}
    for f in lb:
        k = _spurious_key(f)
        if k not in by_b or (_float(f.get("score")) or 0) > (_float(by_b[k].get("score")) or 0):
            by_b[k] = f
    out: list[SpuriousChange] = []
    for key in list(by_b) + [k for k in by_a if k not in by_b]:
        a, b = by_a.get(key), by_b.get(key)
        change = "persisting" if a is not None and b is not None else ("new" if b is not None else "resolved")
        fa = None if a is None else _int(a.get("feature"))
        fb = None if b is None else _int(b.get("feature"))
        same = None
        if change == "persisting" and matching is not None and fa is not None and fb is not None:
            m = matching.partner_of_a(fa)
            same = m is not None and m.feature_b == fb
        out.append(SpuriousChange(class_name=key[0], attribute=key[1], value=key[2], change=change,
                                  feature_a=fa, feature_b=fb,
                                  score_a=None if a is None else _float(a.get("score")),
                                  score_b=None if b is None else _float(b.get("score")),
                                  sentence=str((b or a or {}).get("sentence") or ""), same_feature=same))
    order = {"new": 0, "resolved": 1, "persisting": 2}
    out.sort(key=lambda s: order[s.change])
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _dig(results: dict, *path: str) -> Any:
    cur: Any = results
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _per_class(results: dict) -> dict[str, list[tuple[int, float | None]]] | None:
    fpc = _dig(results, "sparse_layer", "features_per_class")
    if not isinstance(fpc, dict):
        return None
    out: dict[str, list[tuple[int, float | None]]] = {}
    for cls, feats in fpc.items():
        rows = []
        for f in feats or []:
            if isinstance(f, dict):
                fid = _int(f.get("feature"))
                if fid is not None:
                    rows.append((fid, _float(f.get("weight"))))
            elif _int(f) is not None:
                rows.append((int(f), None))
        out[str(cls)] = rows
    return out


def _compare_metrics(ra: dict, rb: dict) -> list[MetricDelta]:
    out: list[MetricDelta] = []
    dense_keys = [k for k in (_dig(ra, "dense") or {}) if k in (_dig(rb, "dense") or {})] or ["test_accuracy"]
    for k in dense_keys:
        out.append(MetricDelta(f"dense {k.replace('_', ' ')}", _float(_dig(ra, "dense", k)),
                               _float(_dig(rb, "dense", k))))
    for key, label in (("dense_accuracy", "sparse layer: dense accuracy"),
                       ("sparse_accuracy", "sparse layer: sparse accuracy"),
                       ("sparsity", "sparsity (% zero weights)")):
        out.append(MetricDelta(label, _float(_dig(ra, "sparse_layer", key)), _float(_dig(rb, "sparse_layer", key))))
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
    acc_a = {(str(r.get("attribute")), str(r.get("value"))): _float(r.get("accuracy"))
             for r in _section(ra, "accuracy_by_attribute") or []}
    acc_b = {(str(r.get("attribute")), str(r.get("value"))): _float(r.get("accuracy"))
             for r in _section(rb, "accuracy_by_attribute") or []}
    for key in _ordered_union(list(acc_a), list(acc_b)):
        out.append(MetricDelta(f"accuracy | {key[0]}={key[1]}", acc_a.get(key), acc_b.get(key)))
    return [m for m in out if m.a is not None or m.b is not None]


def _ordered_union(a: Sequence, b: Sequence) -> list:
    seen = dict.fromkeys(a)
    seen.update(dict.fromkeys(b))
    return list(seen)


def _matching(ra: dict, rb: dict, acts_a: RunActivations | None, acts_b: RunActivations | None,
              min_correlation: float, notes: list[str]) -> FeatureMatching | None:
    pa, pb = _per_class(ra), _per_class(rb)
    fp_a, fp_b = _dig(ra, "model", "fingerprint"), _dig(rb, "model", "fingerprint")
    layer_a, layer_b = _dig(ra, "model", "feature_layer"), _dig(rb, "model", "feature_layer")
    if fp_a is not None and fp_a == fp_b and layer_a == layer_b and pa is not None and pb is not None:
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


def _compare_features(ra: dict, rb: dict, matching: FeatureMatching | None,
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


def _compare_test_data(ra: dict, rb: dict, notes: list[str]) -> EvaluationDataCheck:
    """Same test data in both runs? Different data is a warning: every comparison above is then
    between different examples (a logged warning and a note, not a regression)."""
    da, db = _dig(ra, "data", "test", "digest"), _dig(rb, "data", "test", "digest")
    if da is None or db is None:
        missing = " and ".join(r for r, d in (("A", da), ("B", db)) if d is None)
        return EvaluationDataCheck(None, da, db, f"not compared: {missing} records no test-data digest "
                                                 "(a run logged before sparsecheck recorded one)")
    if da == db:
        return EvaluationDataCheck(True, da, db, f"the same in both runs (digest {da})")

    def where(r: dict, digest: str) -> str:
        n, source = _dig(r, "data", "test", "n"), _dig(r, "data", "test", "source")
        return f"digest {digest}" + (f", {n} examples" if n is not None else "") + (f" from {source}" if source else "")

    message = (f"different (A: {where(ra, da)}; B: {where(rb, db)}): slices, metrics and CKA compare "
               "different examples")
    notes.append(f"the runs were evaluated on different test data: {message}")
    logger.warning("compare %s -> %s: the runs were evaluated on different test data: %s",
                   _dig(ra, "mlflow", "run_id") or "A", _dig(rb, "mlflow", "run_id") or "B", message)
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
