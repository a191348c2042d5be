"""Spurious-feature findings: which class relies on a sparse feature that tracks an attribute it must not use.

"Class wolf relies on feature 1042 (weight 0.81), which fires on background=snow (AUC 0.97);
wolves are recognised 96% of the time with snow, 41% without." Such a sentence is made of three
pieces of evidence, each measured here for every class ``c``, every feature ``f`` the class uses
with a positive weight, and every value ``v`` of every attribute ``a`` the feature fires on:

(a) **association** — the feature's AUC for separating the examples with ``a = v`` from the others
    and its Benjamini–Hochberg q-value, read from the feature × metadata association table
    (:func:`sparsecheck.analysis.association.feature_associations`; the pipeline compares
    within classes, so that a value frequent in one class does not fake an association). A
    feature with a positive weight that fires on ``v`` pushes examples with ``v`` towards ``c``;
    so does one with a negative weight that goes quiet on ``v`` (with two classes, each class's
    features are the other's negative weights). ``AUC`` below is that of the direction that
    helps the class, and ``strength = 2 * AUC - 1``.
(b) **ablation** — the feature's weight for class ``c`` is set to zero (``weight_[c, f] = 0``,
    the other classes' weights untouched: the question is what *this* class gets from the
    feature; zeroing a standardised feature's weight is replacing the feature by its training
    mean). The drop of the sparse layer's probability of ``c`` on the class's examples is
    averaged over those with ``v`` and over those without; ``ablation_gap = drop_with -
    drop_without`` is how much more the feature does for the class *with* the value. The drop in
    probability, not in recall, decides: deep features are distributed, and removing one of
    several features that carry a cue seldom flips an argmax although it clearly weakens the
    class (the recalls after ablation are in the evidence too).
(c) **class-specific accuracy gap** — the model's (dense head's) recall of ``c`` with ``v`` minus
    without, ``gap``, tested with a one-sided Fisher exact test on the class's correct counts.
    An attribute value that makes *every* class harder (a rare, shifted subgroup) is a slice, not
    a reliance of one class, so the gap is compared with the same gap on the other classes'
    examples: ``class_specific_gap = gap - others_gap`` (a difference in differences), with a
    one-sided z-test. A shortcut shows up as both: the cue's class gains (``gap > 0``) while the
    other classes lose (their examples with the cue are taken for ``c``: ``others_gap < 0``).

The score ranks the findings::

    score = (2 * AUC - 1) * min(class_specific_gap, ablation_gap)        (0 when negative)

it is large only when the feature tracks the value, the class does better with the value than
the other classes do, *and* the feature is what carries that advantage. A candidate is
*associated* when its association has ``q_value <= fdr`` and ``AUC >= min_auc``, its
``ablation_gap > 0``, and at least ``min_group`` examples of the class have the value and as many
do not. An associated candidate is a **finding** when either

* the observational evidence holds: gap ``q <= fdr`` (Fisher's p-values, Benjamini–Hochberg over
  the (class, attribute, value) groups tested), class-specific gap ``q <= fdr`` (its z-test, same
  family), ``class_specific_gap >= min_gap`` and ``ablation_gap >= min_ablation``; or
* an intervention (``intervene``) confirms it: the model itself, with the cue put on or taken off,
  answers the question the observations can only suggest, whatever their power.

Every associated candidate is tested by intervention when ``intervene`` is given, the strongest
first; with ``require_intervention`` (automatic attributes) only a confirmed one is a finding.

Attributes declared in ``data.spurious_attributes`` give *spurious findings*; the other metadata
attributes are scanned with the same rule and reported separately, as *associations to review*
(``results["associations_to_review"]``): a class leaning on a feature tied to ``hospital`` may be
fine or not, a person has to look.

Every measurement is made on one split (the test split in the pipeline): there the attributes are
as they will be met, whereas on the training data a shortcut is, by construction, confounded with
the class.

Examples
--------
A toy classic case: class 1 ("wolf") is recognised by feature 0, which fires on snow; feature 1
is the honest one.

>>> import numpy as np, pandas as pd
>>> from types import SimpleNamespace
>>> rng = np.random.default_rng(0)
>>> n = 2000
>>> y = rng.integers(0, 2, n)
>>> snow = rng.random(n) < 0.5
>>> X = np.c_[snow + rng.normal(0, 0.3, n), y + rng.normal(0, 1.5, n)]
>>> layer = SimpleNamespace(weight_=np.array([[0.0, -0.5], [1.5, 0.5]]), bias_=np.array([0.6, -0.6]),
...                         mean_=np.zeros(2), std_=np.ones(2), classes_=np.array([0, 1]))
>>> pred = (X @ layer.weight_.T + layer.bias_).argmax(1)
>>> meta = pd.DataFrame({"background": np.where(snow, "snow", "grass")})
>>> assoc = pd.DataFrame({"feature": [0, 0], "attribute": ["background"] * 2, "value": ["snow", "grass"],
...                       "effect": [0.99, 0.01], "p_value": [1e-300] * 2, "q_value": [1e-300] * 2})
>>> result = find_spurious_features(layer, X, y, pred, meta, assoc, ["background"],
...                                 class_names=["husky", "wolf"])
>>> best = result.findings[0]
>>> best.class_name, best.feature, best.attribute, best.value
('wolf', 0, 'background', 'snow')
>>> print(best.sentence)
class 'wolf' relies on feature 0 (weight 1.50), which fires on background=snow (AUC 0.99); 'wolf'
examples are recognised 80% of the time with background=snow, 43% without (other classes: 39% vs
77%); without feature 0, the sparse layer's probability of 'wolf' falls by 25 points with
background=snow and stays within a point without
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats as _st

from sparsecheck.analysis.breakdown import encode_categories
from sparsecheck.analysis.feature_modes import is_feature_mode
from sparsecheck.analysis.stats import benjamini_hochberg, fisher_exact_pvalue, softmax
from sparsecheck.constraints import Constraint, Interval, validate
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import DataError, ParameterError
from sparsecheck.analysis.spurious_findings import SpuriousAnalysis, SpuriousFinding
from sparsecheck.outputs import native
from sparsecheck.reports import format as fmt

__all__ = ["SpuriousFinding", "SpuriousAnalysis", "find_spurious_features"]

logger = logging.getLogger(__name__)

#: columns the association table must have (of the tidy ``feature_attributes`` contract)
_REQUIRED_ASSOCIATION_COLUMNS = ("feature", "attribute", "value", "effect", "q_value")
#: most associations-to-review kept in results.json
MAX_REVIEW = 50
_CANDIDATE_COLUMNS = [
    "class", "class_name", "feature", "attribute", "value", "weight", "auc", "assoc_p_value", "assoc_q_value",
    "n_with", "n_without", "recall_with", "recall_without", "gap", "others_accuracy_with",
    "others_accuracy_without", "others_gap", "class_specific_gap", "gap_p_value", "gap_q_value",
    "class_specific_gap_p_value", "class_specific_gap_q_value", "sparse_recall_with", "sparse_recall_without",
    "ablated_recall_with", "ablated_recall_without", "ablation_drop_with", "ablation_drop_without",
    "ablation_gap", "train_share_in_class", "train_share_others", "score", "significant",
    "confirmed_by_intervention",
]


# ----------------------------------------------------------------------------- result types


# ----------------------------------------------------------------------------- the analysis


#: what :func:`find_spurious_features`' thresholds accept, stated once: its checks, their messages
#: and the config's ``analysis.spurious_min_*`` limits come from here
PARAMETER_CONSTRAINTS: dict[str, list[Constraint]] = {
    "fdr": [Interval(Real, 0, 1, "neither")],
    "min_auc": [Interval(Real, 0.5, 1, "both")],
    "min_gap": [Interval(Real, 0, 1, "both")],
    "min_ablation": [Interval(Real, 0, 1, "both")],
    "min_group": [Interval(Integral, 1, None, "left")],
    "min_enrichment": [None, Interval(Real, 0, 1, "both")],
}


def _check_params(fdr: Any, min_auc: Any, min_gap: Any, min_ablation: Any, min_group: Any) -> None:
    validate(PARAMETER_CONSTRAINTS, {"fdr": fdr, "min_auc": min_auc, "min_gap": min_gap,
                                     "min_ablation": min_ablation, "min_group": min_group}, "find_spurious_features")


def _association_lookup(associations: pd.DataFrame,
                        attributes: Sequence[str]) -> dict[tuple[int, str, str], tuple[float, float, float]]:
    """(feature, attribute, value) -> (AUC, p, q) for the categorical rows of ``attributes``."""
    if not isinstance(associations, pd.DataFrame):
        raise DataError(f"the association table must be a pandas DataFrame, got {type(associations).__name__}")
    missing = [c for c in _REQUIRED_ASSOCIATION_COLUMNS if c not in associations.columns]
    if missing:
        raise DataError(f"the association table lacks column(s) {missing}; it has {list(associations.columns)}")
    part = associations[associations["attribute"].astype(str).isin([str(a) for a in attributes])]
    if "kind" in part.columns:  # numeric attributes carry a correlation, not an AUC: not scanned
        part = part[part["kind"] != "numeric"]
    part = part[part["value"].notna()]
    p = part["p_value"].to_numpy(dtype=np.float64) if "p_value" in part.columns else np.full(len(part), np.nan)
    return {(int(f), str(a), str(v)): (float(e), float(pv), float(q))
            for f, a, v, e, pv, q in zip(part["feature"], part["attribute"], part["value"],
                                         part["effect"].to_numpy(dtype=np.float64), p,
                                         part["q_value"].to_numpy(dtype=np.float64))}


def _rate(k: float, n: float) -> float:
    return k / n if n > 0 else float("nan")


def _did_pvalue(k: np.ndarray, n: np.ndarray) -> float:
    """One-sided z-test that (k0/n0 - k1/n1) - (k2/n2 - k3/n3) > 0, with add-one smoothing of each
    rate's variance (Agresti–Caffo) so that rates of 0 or 1 do not give a zero variance."""
    if (n[:2] <= 0).any():
        return float("nan")
    rate = np.where(n > 0, k / np.maximum(n, 1), 0.0)
    d = (rate[0] - rate[1]) - (rate[2] - rate[3] if (n[2:] > 0).all() else 0.0)
    smooth = (k + 1.0) / (n + 2.0)
    var = np.where(n > 0, smooth * (1 - smooth) / (n + 2.0), 0.0)
    return float(_st.norm.sf(d / np.sqrt(var.sum())))


def find_spurious_features(
    layer: Any,
    features: Any,
    labels: Any,
    predictions: Any,
    metadata: pd.DataFrame,
    associations: pd.DataFrame,
    attributes: Sequence[str],
    *,
    class_names: Sequence[str] | None = None,
    fdr: float = ANALYSIS["fdr"],
    min_auc: float = ANALYSIS["spurious_min_auc"],
    min_gap: float = ANALYSIS["spurious_min_gap"],
    min_ablation: float = ANALYSIS["spurious_min_ablation"],
    min_group: int = ANALYSIS["spurious_min_group"],
    intervene: Callable[[Any, str, str], Any] | None = None,
    require_intervention: bool = False,
    max_share: float | None = None,
    prevalence: Mapping[tuple[Any, str, str], tuple[float, float]] | None = None,
    min_enrichment: float | None = None,
) -> SpuriousAnalysis:
    """Find the classes that rely on a sparse feature tied to a value of one of ``attributes``.

    See the module docstring for the measurements, the score and the decision rule.

    Parameters
    ----------
    layer : SparseDecisionLayer
        A fitted sparse layer (``weight_``, ``bias_``, ``mean_``, ``std_``, ``classes_``); only
        these attributes are used, so any object holding them will do.
    features : array of float, shape (n, d)
        Deep features of the examples (may be a memory map; only the used columns are read).
    labels : array, shape (n,)
        True labels (values of ``layer.classes_``).
    predictions : array, shape (n,)
        The model's own (dense head's) predictions; the accuracy gaps are the model's.
    metadata : DataFrame
        One row per example, in the same order, with a column per attribute.
    associations : DataFrame
        The tidy feature × metadata association table (``feature``, ``attribute``, ``value``,
        ``effect`` = AUC, ``q_value``, optionally ``p_value``), as
        :func:`~sparsecheck.analysis.association.feature_associations` returns it. Measured on the same examples, ideally.
    attributes : list of str
        Attributes to scan (columns of ``metadata``).
    class_names : list of str, optional
        Names of the classes indexed by label value (``class_names[label]``); default the labels.
    fdr : float, default 0.05
        False discovery rate for the association and the two gap tests.
    min_auc : float, default 0.6
        Smallest AUC for a feature to count as firing on a value.
    min_gap : float, default 0.1
        Smallest class-specific accuracy gap (a fraction: 0.1 is 10 points).
    min_ablation : float, default 0.05
        Smallest ablation gap (in probability: 0.05 is 5 points).
    min_group : int, default 10
        Fewest examples of the class with the value, and without it.
    intervene : callable ``(class_label, attribute, value) -> InterventionResult or None``, optional
        Measures the cue by intervention (:func:`sparsecheck.analysis.interventions.measure_intervention`):
        called once per (class, attribute, value) whose feature passes the association and ablation
        tests. A confirmed intervention makes the candidate a finding even when the accuracy-gap
        tests lack the power (few examples carry the value); its numbers join the evidence.
    require_intervention : bool, default False
        A finding needs a confirmed intervention (used for automatic attributes, whose
        associations alone also catch harmless image properties such as a frame).
    max_share : float, optional
        Values held by more than this share of the examples are not scanned (used for automatic
        attributes, at 0.5: a value most images have — no mark, no band — is the absence of a cue,
        and a class relying on it is the other side of a finding on the cue).
    prevalence : mapping (class label, attribute, value) → (share in the class, share in the others), optional
        How often each value comes with each class *in the training data*
        (:func:`training_prevalence`); it joins the evidence (``train_share_in_class``,
        ``train_share_others``).
    min_enrichment : float, optional
        With ``prevalence``: a candidate whose value is not more frequent in its class's training
        images than in the others' by at least this much is not a finding (used for automatic
        attributes: a model learns a shortcut only from a property the training data ties to the
        class; a property every class has in training, such as how dark some images are, moves
        predictions for other reasons).

    Returns
    -------
    SpuriousAnalysis
    """
    _check_params(fdr, min_auc, min_gap, min_ablation, min_group)
    for name in ("weight_", "bias_", "mean_", "std_", "classes_"):
        if not hasattr(layer, name):
            raise ParameterError(f"The 'layer' parameter of find_spurious_features must be a fitted sparse "
                                 f"layer; it has no attribute {name!r}.", parameter="layer")
    weight = np.asarray(layer.weight_, dtype=np.float64)
    classes = np.asarray(layer.classes_)
    if getattr(features, "ndim", None) != 2:
        features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != weight.shape[1]:
        raise DataError(f"features must have shape (n, {weight.shape[1]}), got {tuple(features.shape)}")
    n = features.shape[0]
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != (n,) or predictions.shape != (n,) or len(metadata) != n:
        raise DataError(f"features has {n} rows but labels has shape {labels.shape}, predictions "
                        f"{predictions.shape} and metadata {len(metadata)} rows")
    attributes = [str(a) for a in attributes]
    absent = [a for a in attributes if a not in metadata.columns]
    if absent:
        raise DataError(f"metadata has no column {absent[0]!r}; it has {list(map(str, metadata.columns))}")
    lookup = _association_lookup(associations, attributes)
    params = {"fdr": float(fdr), "min_auc": float(min_auc), "min_gap": float(min_gap),
              "min_ablation": float(min_ablation), "min_group": int(min_group)}

    def name_of(label: Any) -> str:
        if class_names is not None:
            try:
                return str(class_names[int(label)])
            except (IndexError, TypeError, ValueError) as exc:
                raise ParameterError(f"The 'class_names' parameter of find_spurious_features has no name for "
                                     f"class {label!r} ({len(class_names)} names).", parameter="class_names") from exc
        return str(label)

    # the sparse layer's scores, once, from the columns it reads; an ablation changes one column
    nonzero = np.flatnonzero((weight != 0).any(axis=0))
    mean = np.asarray(layer.mean_, dtype=np.float64)[nonzero]
    std = np.asarray(layer.std_, dtype=np.float64)[nonzero]
    z = (np.asarray(features[:, nonzero], dtype=np.float64) - mean) / std
    scores = z @ weight[:, nonzero].T + np.asarray(layer.bias_, dtype=np.float64)
    sparse_correct = classes[scores.argmax(axis=1)] == labels
    dense_correct = predictions == labels
    column_of = {int(f): j for j, f in enumerate(nonzero)}

    encoded = {a: encode_categories(metadata[a]) for a in attributes}
    shares = {a: np.bincount(codes[codes >= 0], minlength=len(values)) / max(len(codes), 1)
              for a, (codes, values) in encoded.items()}
    groups: dict[tuple[int, str, int], dict[str, Any]] = {}  # (class row, attribute, value code) -> stats
    rows: list[dict[str, Any]] = []
    for c_row, label in enumerate(classes):
        in_c = labels == label
        used = np.flatnonzero(weight[c_row] != 0)
        if not in_c.any() or used.size == 0:
            continue
        for f in used:
            w = float(weight[c_row, f])
            ablated = scores.copy()
            ablated[:, c_row] -= w * z[:, column_of[int(f)]]
            ablated_correct = classes[ablated.argmax(axis=1)] == labels
            prob_drop = softmax(scores[in_c])[:, c_row] - softmax(ablated[in_c])[:, c_row]
            for a in attributes:
                codes, values = encoded[a]
                for code, value in enumerate(values):
                    if max_share is not None and shares[a][code] > max_share:
                        continue
                    assoc = lookup.get((int(f), a, str(value)))
                    # the value helps the class when the feature fires more on it and the weight is
                    # positive, or fires less on it and the weight is negative (a class that relies on a
                    # feature staying quiet: each of two classes is the other's negative weights)
                    if assoc is None or not np.isfinite(assoc[0]) or (assoc[0] - 0.5) * w <= 0:
                        continue
                    has = codes == code
                    key = (c_row, a, code)
                    if key not in groups:
                        groups[key] = _group_stats(in_c, has, dense_correct, sparse_correct)
                    g = groups[key]
                    cw, cwo = in_c & has, in_c & ~has
                    ab_w = _rate(ablated_correct[cw].sum(), g["n_with"])
                    ab_wo = _rate(ablated_correct[cwo].sum(), g["n_without"])
                    has_c = has[in_c]
                    drop_w = float(prob_drop[has_c].mean()) if has_c.any() else float("nan")
                    drop_wo = float(prob_drop[~has_c].mean()) if (~has_c).any() else float("nan")
                    auc, p_assoc, q_assoc = assoc
                    rows.append({"class": native(label), "class_name": name_of(label), "feature": int(f),
                                 "attribute": a, "value": str(value), "weight": w,
                                 "auc": auc if w > 0 else 1.0 - auc,
                                 "assoc_p_value": p_assoc, "assoc_q_value": q_assoc, "_group": key,
                                 **g,
                                 "ablated_recall_with": ab_w, "ablated_recall_without": ab_wo,
                                 "ablation_drop_with": drop_w, "ablation_drop_without": drop_wo,
                                 "ablation_gap": drop_w - drop_wo})
    if not rows:
        logger.info("spurious features: no used feature is associated with %s the way its weight needs", attributes)
        return SpuriousAnalysis([], pd.DataFrame({c: [] for c in _CANDIDATE_COLUMNS}), attributes, params)

    cand = pd.DataFrame(rows)
    train = [prevalence.get((r_c, r_a, r_v), (np.nan, np.nan)) if prevalence is not None else (np.nan, np.nan)
             for r_c, r_a, r_v in zip(cand["class"], cand["attribute"].astype(str), cand["value"].astype(str))]
    cand["train_share_in_class"] = [t[0] for t in train]
    cand["train_share_others"] = [t[1] for t in train]
    # BH over the (class, attribute, value) groups tested, not over the candidates: a group's gap
    # is one hypothesis whatever the number of features that point at it
    keys = list(dict.fromkeys(cand["_group"]))
    gap_q = dict(zip(keys, benjamini_hochberg(np.array([groups[k]["gap_p_value"] for k in keys]))))
    did_q = dict(zip(keys, benjamini_hochberg(np.array([groups[k]["class_specific_gap_p_value"] for k in keys]))))
    cand["gap_q_value"] = cand["_group"].map(gap_q).astype(float)
    cand["class_specific_gap_q_value"] = cand["_group"].map(did_q).astype(float)
    strength = 2.0 * cand["auc"] - 1.0
    harm = np.minimum(cand["class_specific_gap"], cand["ablation_gap"])
    cand["score"] = (strength * harm).clip(lower=0.0).fillna(0.0)
    # associated: the feature tracks the value, on enough examples, and helps the class more with it
    associated = ((cand["assoc_q_value"] <= fdr) & (cand["auc"] >= min_auc) & (cand["ablation_gap"] > 0)
                  & (cand["n_with"] >= min_group) & (cand["n_without"] >= min_group))
    if prevalence is not None and min_enrichment is not None:
        enriched = (cand["train_share_in_class"] - cand["train_share_others"]) >= float(min_enrichment)
        associated &= enriched.fillna(False)
    tied = associated & (cand["ablation_gap"] >= min_ablation)
    gap = ((cand["gap_q_value"] <= fdr) & (cand["class_specific_gap_q_value"] <= fdr)
           & (cand["class_specific_gap"] >= min_gap))
    measured: dict[tuple[Any, str, str], Any] = {}
    if intervene is not None:  # the model itself is asked, strongest suspicion first
        for r in cand.loc[associated].sort_values("score", ascending=False)[["class", "attribute", "value"]] \
                .to_dict("records"):
            key = (r["class"], str(r["attribute"]), str(r["value"]))
            if key not in measured:
                measured[key] = intervene(*key)
    keys_of = list(zip(cand["class"], cand["attribute"].astype(str), cand["value"].astype(str)))
    cand["confirmed_by_intervention"] = [bool(getattr(measured.get(k), "confirmed", False)) for k in keys_of]
    # observational evidence needs the ablation to matter by min_ablation; a confirmed intervention,
    # which asks the model itself, stands in for both the gap test and that size
    confirmed = associated & cand["confirmed_by_intervention"]
    cand["significant"] = confirmed if require_intervention else ((tied & gap) | confirmed)
    # a feature that fires on the value before one that stays low on it (of two classes, the mirror)
    cand["_fires"] = cand["weight"] > 0
    cand = cand.drop(columns="_group").sort_values(["significant", "_fires", "score", "auc"], ascending=False,
                                                     kind="stable").reset_index(drop=True)
    cand = cand[_CANDIDATE_COLUMNS]
    # one finding per shortcut: the (class, attribute, value) groups, each led by its best feature
    groups: dict[tuple[Any, str, str], list[dict[str, Any]]] = {}
    for r in cand[cand["significant"]].to_dict("records"):
        groups.setdefault((r["class"], str(r["attribute"]), str(r["value"])), []).append(r)
    findings = [_finding(rows, measured.get(key)) for key, rows in groups.items()]
    logger.info("spurious features: %d candidates over %s, %d findings", len(cand), attributes, len(findings))
    return SpuriousAnalysis(findings, cand, attributes, params)


def _group_stats(in_c: np.ndarray, has: np.ndarray, dense_correct: np.ndarray,
                 sparse_correct: np.ndarray) -> dict[str, Any]:
    """Counts and rates of one (class, attribute value) group: the class with and without the value,
    the other classes with and without it."""
    masks = [in_c & has, in_c & ~has, ~in_c & has, ~in_c & ~has]
    n = np.array([m.sum() for m in masks], dtype=np.float64)
    k = np.array([dense_correct[m].sum() for m in masks], dtype=np.float64)
    ks = np.array([sparse_correct[m].sum() for m in masks[:2]], dtype=np.float64)
    r = [_rate(k[i], n[i]) for i in range(4)]
    others_gap = r[2] - r[3] if n[2] > 0 and n[3] > 0 else 0.0
    gap = r[0] - r[1]
    p_gap = fisher_exact_pvalue(k[:1], n[:1], k[1:2], n[1:2], alternative="greater")[0]
    return {"n_with": int(n[0]), "n_without": int(n[1]), "recall_with": r[0], "recall_without": r[1], "gap": gap,
            "others_accuracy_with": r[2], "others_accuracy_without": r[3], "others_gap": others_gap,
            "class_specific_gap": gap - others_gap, "gap_p_value": float(p_gap),
            "class_specific_gap_p_value": _did_pvalue(k, n),
            "sparse_recall_with": _rate(ks[0], n[0]), "sparse_recall_without": _rate(ks[1], n[1])}


def _change(drop: float) -> str:
    return fmt.change(drop)


def _pct(x: float) -> str:
    return fmt.percent(x, 0)


def _finding(rows: list[dict[str, Any]], intervention: Any = None) -> SpuriousFinding:
    """The finding of one shortcut from its significant candidates (best score first)."""
    d = rows[0]
    others = [int(r["feature"]) for r in rows[1:]]
    evidence_keys = [c for c in _CANDIDATE_COLUMNS if c not in
                     ("class", "class_name", "feature", "attribute", "value", "score", "significant",
                      "confirmed_by_intervention")]
    evidence: dict[str, Any] = {}
    for k in evidence_keys:
        v = d[k]
        key = {"assoc_p_value": "p_value", "assoc_q_value": "q_value"}.get(k, k)
        evidence[key] = int(v) if k in ("n_with", "n_without") else float(v)
    evidence["confirmed_by_intervention"] = bool(d.get("confirmed_by_intervention", False))
    if intervention is not None:
        evidence["intervention"] = intervention.to_dict()
    av = f"{d['attribute']}={d['value']}"
    also = ""
    if others:
        also = (f" (and feature{'s' if len(others) > 1 else ''} {', '.join(map(str, others[:5]))}"
                f"{', ...' if len(others) > 5 else ''}, which carry the same)")
    fires = (f"which fires on {av} (AUC {d['auc']:.2f})" if d["weight"] > 0 else
             f"which stays low on {av} (AUC {d['auc']:.2f} for being lower with it)")
    if is_feature_mode(d["attribute"]):  # the value is the feature's own high mode: say what that means
        fires = (f"which fires in two modes ({av}: the images of its high mode), and what those images share "
                 f"was learned from them")
    relies = f"feature {d['feature']}" if d["weight"] > 0 else f"feature {d['feature']} staying low"
    sentence = (f"class '{d['class_name']}' relies on {relies} (weight {d['weight']:.2f}){also}, {fires}; "
                f"'{d['class_name']}' examples are recognised "
                f"{_pct(d['recall_with'])} of the time with {av}, {_pct(d['recall_without'])} without "
                f"(other classes: {_pct(d['others_accuracy_with'])} vs {_pct(d['others_accuracy_without'])}); "
                f"without feature {d['feature']}, the sparse layer's probability of '{d['class_name']}' "
                f"{_change(d['ablation_drop_with'])} with {av} and {_change(d['ablation_drop_without'])} without")
    share_c, share_o = d.get("train_share_in_class"), d.get("train_share_others")
    if share_c is not None and share_o is not None and np.isfinite(share_c) and np.isfinite(share_o):
        sentence += (f"; in training, {_pct(share_c)} of '{d['class_name']}' examples have {av}, "
                     f"{_pct(share_o)} of the others")
    if intervention is not None and getattr(intervention, "confirmed", False):
        sentence += f"; confirmed by intervention: {intervention.describe()}"
    return SpuriousFinding(class_name=str(d["class_name"]), feature=int(d["feature"]), attribute=str(d["attribute"]),
                           value=str(d["value"]), score=float(d["score"]), significant=bool(d["significant"]),
                           evidence=evidence, sentence=sentence, class_label=d["class"],
                           features=[int(d["feature"]), *others])
