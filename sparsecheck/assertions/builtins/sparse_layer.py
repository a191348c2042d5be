"""Built-in assertions on the sparse decision layer: feature counts, the dense-vs-sparse gap and
agreement, reliance on spurious attributes, their weight share, and spurious findings."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.assertions.builtins.common import ClassRef, _fmt, _list, _make, examples_frame
from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.results import AssertionResult
from sparsecheck.assertions.spec import Assertion, Params, check_class, register_assertion
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import DataError


# =========================================================================== sparse layer
def _layer_rows(data: AssertionContext) -> tuple[np.ndarray, list[int]]:
    """The sparse layer's weight matrix and, per row, the class index it scores."""
    data.require("sparse_layer")
    layer = data.sparse_layer
    weight = np.asarray(getattr(layer, "weight_"), dtype=np.float64)
    classes = getattr(layer, "classes_", None)
    idx = list(range(weight.shape[0])) if classes is None else [int(c) for c in np.asarray(classes)]
    return weight, idx


class MaxFeaturesParams(Params):
    """``max_features_per_class``: every class (or ``class``) uses at most ``max`` features."""

    max: int = Field(..., ge=0)
    class_: ClassRef = Field("*", alias="class")
    _check_class = field_validator("class_")(check_class)


@register_assertion("max_features_per_class", family="sparse", params=MaxFeaturesParams,
                    requires=("sparse_layer",))
def _max_features(data: AssertionContext, p: MaxFeaturesParams) -> AssertionResult:
    """Number of nonzero weights per class <= max."""
    weight, row_class = _layer_rows(data)
    wanted = set(data.classes(p.class_))
    counts = {c: int(np.count_nonzero(weight[r])) for r, c in enumerate(row_class) if c in wanted}
    over = {c: n for c, n in counts.items() if n > p.max}
    observed = max(counts.values(), default=0)
    per_class = {data.class_name(c): n for c, n in counts.items()}
    if over:
        msg = f"{len(over)} classes use more than {p.max} features: " + \
            _list([f"{data.class_name(c)} {n}" for c, n in sorted(over.items(), key=lambda kv: -kv[1])])
    else:
        msg = f"every class uses <= {p.max} features (most: {observed})"
    return AssertionResult.outcome(not over, observed, p.max, msg, details={"features_per_class": per_class})


class GapParams(Params):
    """``sparse_accuracy_gap``: dense accuracy minus sparse accuracy <= ``max_gap``."""

    max_gap: float = Field(..., ge=-1, le=1)


@register_assertion("sparse_accuracy_gap", family="sparse", params=GapParams, needs_labels=True,
                    requires=("sparse_predictions",))
def _sparse_gap(data: AssertionContext, p: GapParams) -> AssertionResult:
    """Dense minus sparse accuracy on the table <= max_gap."""
    dense = data.correct("dense")
    sparse = data.correct("sparse")
    gap = float(dense.mean() - sparse.mean()) if dense.size else float("nan")
    pos = np.flatnonzero(dense & ~sparse)
    examples = examples_frame(data, pos, data.confidence()[pos] if data.prob_columns or "confidence" in
                              data.table.columns else np.ones(pos.size))
    ok = bool(np.isfinite(gap) and gap <= p.max_gap)
    msg = (f"sparse accuracy {_fmt(sparse.mean())} vs dense {_fmt(dense.mean())}: gap {_fmt(gap)} "
           f"{'<=' if ok else '>'} {p.max_gap}")
    return AssertionResult.outcome(ok, gap, p.max_gap, msg, examples, int(pos.size),
                                   {"dense_accuracy": float(dense.mean()), "sparse_accuracy": float(sparse.mean())})


class AgreementParams(Params):
    """``sparse_agreement``: the sparse layer and the dense head predict the same class on >= ``min``."""

    min: float = Field(..., ge=0, le=1)
    confidence: float | None = Field(None, gt=0, lt=1)


@register_assertion("sparse_agreement", family="sparse", params=AgreementParams, requires=("sparse_predictions",))
def _sparse_agreement(data: AssertionContext, p: AgreementParams) -> AssertionResult:
    """Share of examples where sparse and dense predictions agree >= min (label-free)."""
    dense, sparse = data.predictions("dense"), data.predictions("sparse")
    agree = dense == sparse
    n, k = agree.size, int(agree.sum())
    rate = k / n if n else float("nan")
    lo, hi = (float(a[0]) for a in wilson_interval(np.array([k]), np.array([n]), p.confidence or 0.95))
    ok = bool(n and ((hi >= p.min) if p.confidence else rate >= p.min))
    pos = np.flatnonzero(~agree)
    sev = data.confidence()[pos] if data.prob_columns or "confidence" in data.table.columns else np.ones(pos.size)
    examples = examples_frame(data, pos, sev, dense=dense[pos], sparse=sparse[pos])
    msg = (f"sparse and dense agree on {_fmt(rate)} [{_fmt(lo)}, {_fmt(hi)}] of {n} examples "
           f"({'>=' if ok else '<'} {p.min})")
    return AssertionResult.outcome(ok, rate, p.min, msg, examples, int(pos.size), {"ci_low": lo, "ci_high": hi})


class _AssociationParams(Params):
    attribute: list[str] | None = None
    value: list[str] | None = None
    fdr: float = Field(ANALYSIS["fdr"], gt=0, lt=1)
    # |AUC - 0.5| >= 0.2: the feature tells the attribute's values apart at least "acceptably"
    # (AUC >= 0.7, Hosmer & Lemeshow); weaker associations are common side effects, not reliance
    min_effect: float = Field(0.2, ge=0, le=0.5)
    class_: ClassRef = Field("*", alias="class")
    _check_class = field_validator("class_")(check_class)

    @field_validator("attribute", "value", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        if isinstance(v, (str, int, float, bool)):
            return [str(v)]
        if isinstance(v, list):
            return [str(x) for x in v]
        return v


class NoRelianceParams(_AssociationParams):
    """``no_reliance``: no feature with positive weight (> ``min_weight``) for ``class`` is associated
    with ``attribute`` (optionally only ``value``): q-value < ``fdr`` and |AUC - 0.5| >= ``min_effect``."""

    attribute: list[str] = Field(...)
    min_weight: float = Field(0.0, ge=0)

    @field_validator("attribute")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one attribute")
        return v


_FA_COLUMNS = ("feature", "attribute", "value", "effect", "q_value")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _significant(data: AssertionContext, attributes: list[str], values: list[str] | None, fdr: float,
                 min_effect: float) -> pd.DataFrame:
    data.require("feature_attributes")
    fa = data.feature_attributes
    missing = [c for c in _FA_COLUMNS if c not in fa.columns]
    if missing:
        raise DataError(f"feature_attributes lacks columns {missing} (has: {list(fa.columns)})")
    have = set(fa["attribute"].astype(str))
    unknown = [a for a in attributes if a not in have]
    if unknown:
        raise DataError(f"feature_attributes has no rows for attribute(s) {unknown} "
                        f"(attributes: {sorted(have)}); reliance cannot be judged")
    attr = fa["attribute"].astype(str)
    mask = attr.isin(attributes).to_numpy().copy()
    if values:
        mask &= fa["value"].astype(str).isin(values).to_numpy()
    q = fa["q_value"].to_numpy(dtype=np.float64)
    strength = _strength(fa)
    mask &= (q < fdr) & (strength >= 2 * min_effect)
    out = fa.loc[mask, ["feature", "attribute", "value", "effect", "q_value"]].copy()
    out["strength"] = strength[mask]
    return out


def _strength(fa: pd.DataFrame) -> np.ndarray:
    """``2 |AUC - 0.5|`` for categorical rows, ``|r|`` for numeric ones (``kind == "numeric"``)."""
    eff = fa["effect"].to_numpy(dtype=np.float64)
    strength = 2 * np.abs(eff - 0.5)
    if "kind" in fa.columns:
        numeric = (fa["kind"].astype(str) == "numeric").to_numpy()
        strength = np.where(numeric, np.abs(eff), strength)
    return np.nan_to_num(strength, nan=0.0)


@register_assertion("no_reliance", family="sparse", params=NoRelianceParams,
                    requires=("sparse_layer", "feature_attributes"))
def _no_reliance(data: AssertionContext, p: NoRelianceParams) -> AssertionResult:
    """Class C does not rely on attribute A (through a positively weighted feature)."""
    weight, row_class = _layer_rows(data)
    sig = _significant(data, p.attribute, p.value, p.fdr, p.min_effect)
    # the strongest association of each (feature, attribute): one finding per class, feature, attribute
    sig = sig.assign(attribute=sig["attribute"].astype(str))
    strongest = sig.sort_values(["strength", "effect"], ascending=False).drop_duplicates(["feature", "attribute"])
    by_feature = {int(f): grp for f, grp in strongest.groupby("feature")}
    wanted = set(data.classes(p.class_))
    violations = []
    for r, c in enumerate(row_class):
        if c not in wanted:
            continue
        for j in np.flatnonzero(weight[r] > p.min_weight):
            for a in by_feature.get(int(j), pd.DataFrame()).itertuples():
                w = float(weight[r, j])
                violations.append({"class": data.class_name(c), "feature": int(j), "weight": w,
                                   "attribute": a.attribute, "value": None if _missing(a.value) else str(a.value),
                                   "effect": float(a.effect), "q_value": float(a.q_value),
                                   "score": w * float(a.strength)})
    violations.sort(key=lambda v: -v["score"])
    who = "every class" if p.class_ == "*" else f"class {data.class_name(data.class_index(p.class_))}"
    if violations:
        parts = []
        for attribute in p.attribute:  # grouped by attribute, strongest reliance first
            found = [v for v in violations if v["attribute"] == attribute]
            if not found:
                continue
            classes = list(dict.fromkeys(v["class"] for v in found))
            parts.append(f"{attribute}: {len(classes)} class{'es' if len(classes) > 1 else ''} (" + _list(
                [f"{v['class']} <- feature {v['feature']}, weight {v['weight']:.2f}, " +
                 (f"r {v['effect']:.2f}" if v["value"] is None else f"{v['value']} AUC {v['effect']:.2f}")
                 for v in found], 3) + ")")
        msg = "relies on " + " | ".join(parts)
    else:
        msg = (f"{who}: no positively weighted feature is associated with {', '.join(p.attribute)} "
               f"(q < {p.fdr}, |AUC - 0.5| >= {p.min_effect} or |r| >= {2 * p.min_effect:g})")
    relying = sorted({(v["class"], v["attribute"]) for v in violations})
    return AssertionResult.outcome(not violations, len(violations), 0, msg,
                                   details={"violations": violations[:200], "relying": [list(x) for x in relying],
                                            "n_significant_associations": int(len(sig))})


class FindingsParams(Params):
    """``no_spurious_findings``: the spurious-findings analysis (association, class-specific accuracy
    gap and ablation together) found nothing for ``class`` on ``attribute`` scoring >= ``min_score``.
    ``source``: the findings on declared attributes (``declared``), or those found from the pixels
    alone, on automatic image attributes and confirmed by intervention (``automatic``)."""

    class_: ClassRef = Field("*", alias="class")
    attribute: list[str] | None = None
    min_score: float = Field(0.0, ge=0)
    source: Literal["declared", "automatic"] = "declared"
    _check_class = field_validator("class_")(check_class)
    _listify = field_validator("attribute", mode="before")(_AssociationParams._listify.__func__)  # type: ignore[attr-defined]


def _finding_dict(f: Any) -> dict[str, Any]:
    d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
    if "class" not in d and "class_name" in d:
        d["class"] = d["class_name"]
    return d


@register_assertion("no_spurious_findings", family="sparse", params=FindingsParams, requires=("spurious_findings",))
def _no_findings(data: AssertionContext, p: FindingsParams) -> AssertionResult:
    """No significant spurious finding (see sparsecheck.analysis.spurious) for the class/attributes."""
    pool = data.automatic_findings if p.source == "automatic" else data.spurious_findings
    findings = [_finding_dict(f) for f in pool or []]
    wanted = None if p.class_ == "*" else data.class_name(data.class_index(p.class_))
    hits = [f for f in findings if f.get("significant", True) is not False
            and (wanted is None or str(f.get("class")) == wanted)
            and (not p.attribute or str(f.get("attribute")) in p.attribute)
            and float(f.get("score") or 0.0) >= p.min_score]
    hits.sort(key=lambda f: -float(f.get("score") or 0.0))
    scope = (f"class {wanted}" if wanted else "any class") + (f" on {', '.join(p.attribute)}" if p.attribute else "")
    found_from = getattr(data.modality, "found_from", "the pixels")
    noun = "shortcut" if p.source == "automatic" else "spurious finding"
    where = f" found from {found_from}" if p.source == "automatic" else ""
    kind = noun + where
    if hits:
        msg = f"{len(hits)} {noun}{'s' if len(hits) > 1 else ''}{where} for {scope}: " + _list(
            [f"{f.get('class')} <- feature {f.get('feature')} on {f.get('attribute')}={f.get('value')} (score "
             f"{float(f.get('score') or 0):.2f}" + (", confirmed by intervention" if (f.get("evidence") or {}).get(
                 "confirmed_by_intervention") else "") + ")" for f in hits], 3)
    else:
        msg = f"no {kind} for {scope} ({len(findings)} findings in all)"
    return AssertionResult.outcome(not hits, len(hits), 0, msg, details={"findings": [
        {k: f.get(k) for k in ("class", "feature", "attribute", "value", "score")} for f in hits[:50]]})


def no_spurious_findings(*, class_: ClassRef = "*", attribute: str | Sequence[str] | None = None,
                         min_score: float = 0.0, source: str = "declared", name: str | None = None,
                         severity: str = "error", description: str = "") -> Assertion:
    """The spurious-findings analysis reports nothing for ``class_`` on ``attribute`` (needs its stage);
    ``source="automatic"``: nothing found from the pixels alone."""
    return _make("no_spurious_findings", name, severity, description, **{"class": class_}, attribute=attribute,
                 min_score=min_score, source=source)


class WeightShareParams(_AssociationParams):
    """``spurious_weight_share``: features associated with ``attribute`` (default: the config's
    ``data.spurious_attributes``) carry at most ``max`` of the absolute weight of ``class``."""

    max: float = Field(..., ge=0, le=1)


@register_assertion("spurious_weight_share", family="sparse", params=WeightShareParams,
                    requires=("sparse_layer", "feature_attributes"))
def _weight_share(data: AssertionContext, p: WeightShareParams) -> AssertionResult:
    """Share of |weight| on features associated with spurious attributes <= max."""
    attributes = p.attribute or list(data.spurious_attributes)
    if not attributes:
        raise DataError("no attributes: give 'attribute' or declare data.spurious_attributes")
    weight, row_class = _layer_rows(data)
    sig = _significant(data, attributes, p.value, p.fdr, p.min_effect)
    flagged = np.zeros(weight.shape[1], dtype=bool)
    flagged[np.unique(sig["feature"].to_numpy(dtype=np.int64))] = True
    wanted = set(data.classes(p.class_))
    rows = [r for r, c in enumerate(row_class) if c in wanted]
    w = np.abs(weight[rows])
    total = float(w.sum())
    share = float(w[:, flagged].sum() / total) if total > 0 else 0.0
    per_class = {data.class_name(row_class[r]): (float(np.abs(weight[r, flagged]).sum() / np.abs(weight[r]).sum())
                                                  if np.abs(weight[r]).sum() > 0 else 0.0) for r in rows}
    ok = share <= p.max
    top = sorted(per_class.items(), key=lambda kv: -kv[1])[:3]
    msg = (f"features associated with {', '.join(attributes)} carry {share:.1%} of the weight "
           f"({'<=' if ok else '>'} {p.max:.0%}); most: " + ", ".join(f"{c} {s:.0%}" for c, s in top))
    return AssertionResult.outcome(ok, share, p.max, msg, details={"per_class": per_class,
                                                                   "features": np.flatnonzero(flagged).tolist()})


def max_features_per_class(*, max: int, class_: ClassRef = "*", name: str | None = None,
                           severity: str = "error", description: str = "") -> Assertion:
    """No class (or ``class_``) uses more than ``max`` features of the sparse layer."""
    return _make("max_features_per_class", name, severity, description, max=max, **{"class": class_})


def sparse_accuracy_gap(*, max_gap: float, name: str | None = None, severity: str = "error",
                        description: str = "") -> Assertion:
    """Dense accuracy minus sparse accuracy <= ``max_gap``."""
    return _make("sparse_accuracy_gap", name, severity, description, max_gap=max_gap)


def sparse_agreement(*, min: float, confidence: float | None = None, name: str | None = None,
                     severity: str = "error", description: str = "") -> Assertion:
    """Sparse layer and dense head agree on at least ``min`` of the examples (no labels needed)."""
    return _make("sparse_agreement", name, severity, description, min=min, confidence=confidence)


def no_reliance(*, attribute: str | Sequence[str], class_: ClassRef = "*", value: str | Sequence[str] | None = None,
                fdr: float = ANALYSIS["fdr"], min_effect: float = 0.2, min_weight: float = 0.0, name: str | None = None,
                severity: str = "error", description: str = "") -> Assertion:
    """Class ``class_`` (``"*"``: every class) must not rely on ``attribute``.

    Fails when a feature with positive weight (> ``min_weight``) for the class is significantly
    associated with the attribute in ``feature_attributes``: q-value < ``fdr`` and
    |effect - 0.5| >= ``min_effect`` (effect is an AUC; 0.5 means no association; for a numeric
    attribute the effect is a correlation r and |r| >= 2 * ``min_effect`` counts).

    Examples
    --------
    >>> no_reliance(class_="seven", attribute="corner_mark").scope
    'class seven; attribute corner_mark'
    """
    return _make("no_reliance", name, severity, description, attribute=attribute, value=value,
                 **{"class": class_}, fdr=fdr, min_effect=min_effect, min_weight=min_weight)


def spurious_weight_share(*, max: float, attribute: str | Sequence[str] | None = None, class_: ClassRef = "*",
                          fdr: float = ANALYSIS["fdr"], min_effect: float = 0.2, name: str | None = None,
                          severity: str = "error", description: str = "") -> Assertion:
    """Features associated with spurious attributes carry at most ``max`` of the absolute weight."""
    return _make("spurious_weight_share", name, severity, description, max=max, attribute=attribute,
                 **{"class": class_}, fdr=fdr, min_effect=min_effect)
