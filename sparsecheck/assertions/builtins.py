"""Built-in assertions: metric thresholds, sparse-layer checks, the prediction-table schema.

Each built-in is registered under its YAML ``type`` and has a constructor (also reachable as
``Assertion.<type>``, like pandera's ``Check.greater_than``):

=========================  ========  ======================================================
type                       family    holds when
=========================  ========  ======================================================
accuracy, recall,          metric    the metric is >= ``min`` (and, per slice ``by``, no
precision, macro_f1                  more than ``max_drop`` below the overall value)
ece                        metric    expected calibration error <= ``max`` (per slice: no more
                                     than ``max_increase`` above overall)
max_features_per_class     sparse    no class uses more than ``max`` features
sparse_accuracy_gap        sparse    dense accuracy - sparse accuracy <= ``max_gap``
sparse_agreement           sparse    sparse and dense predictions agree on >= ``min`` of examples
no_reliance                sparse    no feature with positive weight for ``class`` is significantly
                                     associated with ``attribute``
spurious_weight_share      sparse    features associated with spurious attributes carry <= ``max``
                                     of the total absolute weight
no_spurious_findings       sparse    the spurious-findings analysis reports nothing for ``class``
prediction_schema          table     the prediction table passes its pandera schema
=========================  ========  ======================================================

Every computation is vectorised (``bincount`` over integer group codes), so a million-row table
takes milliseconds per assertion.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from sparsecheck.assertions import run_assertions
>>> rng = np.random.default_rng(0)
>>> table = pd.DataFrame({"id": [f"x{i}" for i in range(400)], "label": rng.integers(0, 2, 400),
...                       "site": rng.choice(["a", "b"], 400)})
>>> table["prediction"] = np.where((table.site == "b") & (rng.random(400) < 0.5), 1 - table.label, table.label)
>>> suite = run_assertions([accuracy(min=0.7), accuracy(name="by-site", by=["site"], max_drop=0.1)], table)
>>> [(r.name, r.status) for r in suite]
[('accuracy', 'pass'), ('by-site', 'fail')]
>>> suite["by-site"].message
'1 of 2 slices below 0.625 (overall 0.725 - 0.1): site=b 0.466 [0.399, 0.534] n=206'
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.results import Outcome
from sparsecheck.assertions.spec import Assertion, Params, check_class, register_assertion
from sparsecheck.assertions.tables import CheckName, ColumnCheck
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "accuracy", "recall", "precision", "macro_f1", "ece",
    "max_features_per_class", "sparse_accuracy_gap", "sparse_agreement", "no_reliance", "spurious_weight_share",
    "no_spurious_findings", "prediction_schema", "examples_frame",
]

Head = Literal["dense", "sparse"]
ClassRef = str | int


# =========================================================================== helpers
def examples_frame(data: AssertionContext, positions: np.ndarray, severity: np.ndarray,
                   **extra: np.ndarray) -> pd.DataFrame:
    """Failing examples as a DataFrame (id, severity, extra columns), worst first, cut to
    ``data.max_examples`` rows (argpartition, so a million failing rows cost little)."""
    positions = np.asarray(positions, dtype=np.int64)
    severity = np.asarray(severity, dtype=np.float64)
    limit = data.max_examples
    if limit is not None and positions.size > limit:
        keep = np.argpartition(-severity, limit - 1)[:limit]
        positions, severity = positions[keep], severity[keep]
        extra = {k: np.asarray(v)[keep] for k, v in extra.items()}
    order = np.lexsort((positions, -severity))
    frame = pd.DataFrame({"id": data.ids[positions[order]], "severity": severity[order]})
    for k, v in extra.items():
        frame[k] = np.asarray(v)[order]
    return frame


def _fmt(v: float) -> str:
    return "nan" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _list(msgs: list[str], n: int = 4) -> str:
    return "; ".join(msgs[:n]) + (f"; ... ({len(msgs) - n} more)" if len(msgs) > n else "")


# =========================================================================== metric thresholds
_METRIC_LABEL = {"accuracy": "accuracy", "recall": "recall", "precision": "precision", "macro_f1": "macro-F1",
                 "ece": "ECE"}
_PROPORTIONS = ("accuracy", "recall", "precision")


class _SliceParams(Params):
    by: list[str | list[str]] | None = None
    min_support: int = Field(30, ge=1)
    head: Head = "dense"

    @field_validator("by", mode="before")
    @classmethod
    def _by_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v]
        if isinstance(v, (list, tuple)) and not v:
            raise ValueError("give at least one attribute")
        return v


class AccuracyParams(_SliceParams):
    """``accuracy``: overall or per slice (``by``), with ``min`` and/or ``max_drop``; with
    ``confidence`` a group fails only when its whole Wilson interval is below the floor."""

    min: float | None = Field(None, ge=0, le=1)
    max_drop: float | None = Field(None, ge=0, le=1)
    confidence: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _thresholds(self) -> "AccuracyParams":
        if self.min is None and self.max_drop is None:
            raise ValueError("give a threshold: 'min' (an absolute floor) and/or 'max_drop' (per slice, "
                             "below the overall value)")
        if self.max_drop is not None and not self.by:
            raise ValueError("'max_drop' compares slices with the overall value: give 'by' too")
        return self


class ClassMetricParams(AccuracyParams):
    """``recall`` and ``precision``: of one class (name or index) or of each class (``class: "*"``)."""

    class_: ClassRef = Field("*", alias="class")
    _check_class = field_validator("class_")(check_class)


class MacroF1Params(AccuracyParams):
    """``macro_f1``: like accuracy, without intervals (not a proportion)."""

    @model_validator(mode="after")
    def _no_confidence(self) -> "MacroF1Params":
        if self.confidence is not None:
            raise ValueError("'confidence' needs a proportion (accuracy, recall, precision); "
                             "macro-F1 has no binomial interval")
        return self


class ECEParams(_SliceParams):
    """``ece``: expected calibration error of the dense head's confidence, ``n_bins`` equal-width bins."""

    max: float | None = Field(None, ge=0, le=1)
    max_increase: float | None = Field(None, ge=0, le=1)
    n_bins: int = Field(15, ge=1, le=1000)

    @model_validator(mode="after")
    def _thresholds(self) -> "ECEParams":
        if self.max is None and self.max_increase is None:
            raise ValueError("give a threshold: 'max' and/or 'max_increase' (per slice, above the overall value)")
        if self.max_increase is not None and not self.by:
            raise ValueError("'max_increase' compares slices with the overall value: give 'by' too")
        if self.head == "sparse":
            raise ValueError("ECE needs probabilities; the prediction table has them for the dense head only")
        return self


def _group_stats(metric: str, g: np.ndarray, G: int, y: np.ndarray, pred: np.ndarray, correct: np.ndarray,
                 K: int, conf: np.ndarray | None, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (rows) and class (columns for recall/precision; one column otherwise): the
    metric's value, its successes and its trials (successes are NaN for non-proportions)."""
    size = np.bincount(g, minlength=G).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            k = np.bincount(g, weights=correct, minlength=G)
            return (k / size)[:, None], k[:, None], size[:, None]
        if metric in ("recall", "precision"):
            code = g * K + (y if metric == "recall" else pred)
            n = np.bincount(code, minlength=G * K).reshape(G, K).astype(np.float64)
            k = np.bincount(code, weights=correct, minlength=G * K).reshape(G, K)
            return k / n, k, n
        nan = np.full((G, 1), np.nan)
        if metric == "macro_f1":
            tp = np.bincount(g * K + y, weights=correct, minlength=G * K).reshape(G, K)
            sy = np.bincount(g * K + y, minlength=G * K).reshape(G, K)
            sp = np.bincount(g * K + pred, minlength=G * K).reshape(G, K)
            denom = (sy + sp).astype(np.float64)
            f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
            present = (denom > 0).sum(axis=1)  # sklearn averages over classes in y_true or y_pred
            value = np.where(present > 0, f1.sum(axis=1) / np.maximum(present, 1), np.nan)
            return value[:, None], nan, size[:, None]
        # ece: sum over equal-width bins of |accuracy - confidence| weighted by the bin's share
        conf = np.zeros(g.shape) if conf is None else conf
        b = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
        code = g * n_bins + b
        s_conf = np.bincount(code, weights=conf, minlength=G * n_bins).reshape(G, n_bins)
        s_corr = np.bincount(code, weights=correct, minlength=G * n_bins).reshape(G, n_bins)
        return (np.abs(s_corr - s_conf).sum(axis=1) / size)[:, None], nan, size[:, None]


def _evaluate_metric(metric: str, data: AssertionContext, p: Any) -> Outcome:
    """Shared engine of the metric assertions: group stats, floors, intervals, message, examples."""
    label = _METRIC_LABEL[metric]
    higher = metric != "ece"
    y, pred = data.labels(), data.predictions(p.head)
    K = max(data.n_classes, 1)
    valid = (y >= 0) & (y < K) & (pred >= 0) & (pred < K)
    conf_all = data.confidence() if (metric == "ece" or p.head == "dense") and _has_confidence(data) else None
    if metric == "ece":
        if conf_all is None:
            data.confidence()  # raises, naming what is missing
        valid &= np.isfinite(conf_all)
    n_invalid = int((~valid).sum())
    rows = np.flatnonzero(valid) if n_invalid else np.arange(y.shape[0])
    yv, pv = (y[rows], pred[rows]) if n_invalid else (y, pred)
    correct = (yv == pv).astype(np.float64)
    conf = None if conf_all is None else conf_all[rows]
    confidence = getattr(p, "confidence", None)
    classes = data.classes(p.class_) if metric in ("recall", "precision") else [None]
    sel = np.asarray([0 if c is None else c for c in classes])
    limit = p.min if higher else p.max
    relative = p.max_drop if higher else p.max_increase
    n_bins = getattr(p, "n_bins", 15)

    def stats(g: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        value, k, n = _group_stats(metric, g, G, yv, pv, correct, K, conf, n_bins)
        return value[:, sel], k[:, sel], n[:, sel]

    overall, _, _ = stats(np.zeros(yv.shape[0], dtype=np.int64), 1)
    groups: list[tuple[str | None, list[str], np.ndarray | None, int]] = []
    if not p.by:
        groups.append((None, ["overall"], np.zeros(yv.shape[0], dtype=np.int64), 1))
    for entry in p.by or []:
        attrs = [entry] if isinstance(entry, str) else list(entry)
        codes, values = data.codes(attrs)
        names = [f"{attrs[0]}={v}" for v in values] if len(attrs) == 1 else [str(v) for v in values]
        groups.append((" x ".join(attrs), names, codes[rows] if n_invalid else codes, p.min_support))
    records: list[dict[str, Any]] = []
    for attribute, names, codes, support in groups:
        value, k, n = stats(codes, len(names))
        if metric in _PROPORTIONS:
            lo, hi = wilson_interval(k, n, confidence or 0.95)
        else:
            lo = hi = np.full(value.shape, np.nan)
        for ci, c in enumerate(classes):
            ref = float(overall[0, ci])
            floor = limit
            if relative is not None and attribute is not None and np.isfinite(ref):
                rel = ref - relative if higher else ref + relative
                floor = rel if floor is None else (max(floor, rel) if higher else min(floor, rel))
            for gi, gname in enumerate(names):
                v = float(value[gi, ci])
                evaluated = bool(n[gi, ci] >= support and np.isfinite(v) and floor is not None)
                if not evaluated:
                    ok = True
                elif higher:
                    ok = bool(hi[gi, ci] >= floor) if confidence else v >= floor
                else:
                    ok = v <= floor
                records.append({"slice": gname, "attribute": attribute, "group": gi,
                                "class": None if c is None else data.class_name(c), "class_index": c,
                                "n": int(n[gi, ci]), "value": v, "ci_low": float(lo[gi, ci]),
                                "ci_high": float(hi[gi, ci]), "overall": ref, "floor": floor,
                                "evaluated": evaluated, "passed": ok})
    frame = pd.DataFrame(records)
    ev = frame[frame["evaluated"]]
    failing = ev[~ev["passed"]]
    n_skipped = int((~frame["evaluated"]).sum())
    unit = "slices" if p.by else ("classes" if len(classes) > 1 else "")

    sign = "-" if higher else "+"
    bound = "min" if higher else "max"
    if relative is None:
        threshold: Any = limit
        floor_text = _fmt(limit)
    elif len(classes) == 1:
        threshold = float(ev["floor"].iloc[0]) if len(ev) else None
        floor_text = f"{_fmt(threshold)} (overall {_fmt(float(overall[0, 0]))} {sign} {relative}" + \
            (f", {bound} {limit})" if limit is not None else ")")
        if threshold is None:
            floor_text = f"overall {sign} {relative}"
    else:
        threshold = f"overall {sign} {relative}" + (f", {bound} {limit}" if limit is not None else "")
        floor_text = f"each class's overall {sign} {relative}" + (f" ({bound} {limit})" if limit is not None else "")

    def describe(r: Any) -> str:
        who = r.slice if r["class"] is None else (r["class"] if r.slice == "overall" else f"{r['class']} in {r.slice}")
        ci = f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if metric in _PROPORTIONS else ""
        return f"{who} {_fmt(r.value)}{ci} n={r.n}"

    if len(ev) == 0:
        passed, observed = False, None
        message = f"nothing to evaluate: every group is under min_support {getattr(p, 'min_support', 1)} or empty"
    else:
        worst = ev.loc[ev["value"].idxmin() if higher else ev["value"].idxmax()]
        observed = float(worst["value"])
        passed = failing.empty
        side = ("below" if higher else "above")
        conf_text = f", whole {confidence:.0%} interval {side}" if confidence else ""
        if not passed:
            margin = (failing["value"] - failing["floor"]) * (1 if higher else -1)
            listed = [describe(r) for _, r in failing.assign(m=margin).sort_values("m").iterrows()]
            if unit:
                message = f"{len(failing)} of {len(ev)} {unit} {side} {floor_text}{conf_text}: " + _list(listed)
            else:
                message = f"{label} {side} {floor_text}{conf_text}: " + _list(listed)
        elif unit:
            message = f"{label} {'>=' if higher else '<='} {floor_text} in all {len(ev)} {unit}; worst {describe(worst)}"
        else:
            message = f"{label} {describe(worst).removeprefix('overall ')} {'>=' if higher else '<='} {floor_text}"
    if n_skipped and p.by:
        message += f"; {n_skipped} groups under min_support {p.min_support} not judged"
    if n_invalid:
        message += f"; {n_invalid} rows with a label or prediction outside 0..{K - 1} ignored"

    examples, n_fail_ex = None, 0
    if not failing.empty:  # the errors inside failing groups, most confident first
        wrong = correct == 0
        mask = np.zeros(yv.shape[0], dtype=bool)
        where = np.empty(yv.shape[0], dtype=object)
        codes_of = {attribute: codes for attribute, _, codes, _ in groups}
        for _, r in failing.iterrows():
            in_group = codes_of[r["attribute"]] == r["group"]
            if metric in ("recall", "precision"):
                in_group &= (yv if metric == "recall" else pv) == int(r["class_index"])
            new = in_group & wrong & ~mask
            where[new] = r.slice if r["class"] is None else f"{r['class']} in {r.slice}"
            mask |= new
        pos = np.flatnonzero(mask)
        n_fail_ex = int(pos.size)
        sev = conf[pos] if conf is not None else np.ones(pos.size)
        examples = examples_frame(data, rows[pos], sev, group=where[pos])
    details = {"metric": metric, "head": p.head, "overall": {("all" if c is None else data.class_name(c)):
                                                             float(overall[0, i]) for i, c in enumerate(classes)},
               "groups": frame.drop(columns=["group", "class_index"]).to_dict("records")[:500],
               "n_not_judged": n_skipped}
    return Outcome(bool(passed), observed, threshold, message, examples, n_fail_ex, details)


def _metric_inputs(p: Any) -> tuple[str, ...]:
    """What a metric assertion needs besides labels: the sparse head's predictions, the columns of ``by``."""
    need = ["sparse_predictions"] if getattr(p, "head", "dense") == "sparse" else []
    for group in getattr(p, "by", None) or []:
        need += [f"column:{a}" for a in ([group] if isinstance(group, str) else group)]
    return tuple(need)


def _has_confidence(data: AssertionContext) -> bool:
    return "confidence" in data.table.columns or bool(data.prob_columns)


@register_assertion("accuracy", family="metric", params=AccuracyParams, needs_labels=True,
                    requires=_metric_inputs)
def _accuracy(data: AssertionContext, p: AccuracyParams) -> Outcome:
    """Accuracy overall or per slice."""
    return _evaluate_metric("accuracy", data, p)


@register_assertion("recall", family="metric", params=ClassMetricParams, needs_labels=True,
                    requires=_metric_inputs)
def _recall(data: AssertionContext, p: ClassMetricParams) -> Outcome:
    """Per-class recall (``class: *`` for every class), overall or per slice."""
    return _evaluate_metric("recall", data, p)


@register_assertion("precision", family="metric", params=ClassMetricParams, needs_labels=True,
                    requires=_metric_inputs)
def _precision(data: AssertionContext, p: ClassMetricParams) -> Outcome:
    """Per-class precision, overall or per slice."""
    return _evaluate_metric("precision", data, p)


@register_assertion("macro_f1", family="metric", params=MacroF1Params, needs_labels=True,
                    requires=_metric_inputs)
def _macro_f1(data: AssertionContext, p: MacroF1Params) -> Outcome:
    """Macro-averaged F1 over the classes present, overall or per slice."""
    return _evaluate_metric("macro_f1", data, p)


@register_assertion("ece", family="metric", params=ECEParams, needs_labels=True, requires=_metric_inputs)
def _ece(data: AssertionContext, p: ECEParams) -> Outcome:
    """Expected calibration error (equal-width confidence bins), overall or per slice."""
    return _evaluate_metric("ece", data, p)


# --------------------------------------------------------------------------- constructors
def _make(type_: str, name: str | None, severity: str, description: str, **params: Any) -> Assertion:
    return Assertion.of(type_, name=name, severity=severity, description=description,
                        **{k: v for k, v in params.items() if v is not None})


def accuracy(*, min: float | None = None, max_drop: float | None = None,
             by: Sequence[str | Sequence[str]] | None = None, min_support: int = 30,
             confidence: float | None = None, head: Head = "dense", name: str | None = None,
             severity: str = "error", description: str = "") -> Assertion:
    """Accuracy >= ``min``; with ``by``, every slice (each attribute's values; a nested list is an
    intersection) >= ``min`` and no more than ``max_drop`` below overall. With ``confidence``
    (e.g. 0.95) a slice fails only when its whole Wilson interval is below the floor.

    Examples
    --------
    >>> accuracy(by=["background"], max_drop=0.1, confidence=0.95).scope
    'slices by background'
    """
    return _make("accuracy", name, severity, description, min=min, max_drop=max_drop,
                 by=None if by is None else [list(b) if not isinstance(b, str) else b for b in by],
                 min_support=min_support, confidence=confidence, head=head)


def recall(*, class_: ClassRef = "*", min: float | None = None, max_drop: float | None = None,
           by: Sequence[str | Sequence[str]] | None = None, min_support: int = 30,
           confidence: float | None = None, head: Head = "dense", name: str | None = None,
           severity: str = "error", description: str = "") -> Assertion:
    """Recall of ``class_`` (a name, an index, or ``"*"`` for each class) >= ``min`` / within
    ``max_drop`` of that class's overall recall in every slice."""
    return _make("recall", name, severity, description, **{"class": class_}, min=min, max_drop=max_drop,
                 by=None if by is None else [list(b) if not isinstance(b, str) else b for b in by],
                 min_support=min_support, confidence=confidence, head=head)


def precision(*, class_: ClassRef = "*", min: float | None = None, max_drop: float | None = None,
              by: Sequence[str | Sequence[str]] | None = None, min_support: int = 30,
              confidence: float | None = None, head: Head = "dense", name: str | None = None,
              severity: str = "error", description: str = "") -> Assertion:
    """Precision of ``class_`` (or of each class) >= ``min`` / within ``max_drop`` of overall per slice."""
    return _make("precision", name, severity, description, **{"class": class_}, min=min, max_drop=max_drop,
                 by=None if by is None else [list(b) if not isinstance(b, str) else b for b in by],
                 min_support=min_support, confidence=confidence, head=head)


def macro_f1(*, min: float | None = None, max_drop: float | None = None,
             by: Sequence[str | Sequence[str]] | None = None, min_support: int = 30, head: Head = "dense",
             name: str | None = None, severity: str = "error", description: str = "") -> Assertion:
    """Macro-F1 >= ``min`` / within ``max_drop`` of overall per slice."""
    return _make("macro_f1", name, severity, description, min=min, max_drop=max_drop,
                 by=None if by is None else [list(b) if not isinstance(b, str) else b for b in by],
                 min_support=min_support, head=head)


def ece(*, max: float | None = None, max_increase: float | None = None,
        by: Sequence[str | Sequence[str]] | None = None, min_support: int = 30, n_bins: int = 15,
        name: str | None = None, severity: str = "error", description: str = "") -> Assertion:
    """Expected calibration error <= ``max`` / no more than ``max_increase`` above overall per slice."""
    return _make("ece", name, severity, description, max=max, max_increase=max_increase,
                 by=None if by is None else [list(b) if not isinstance(b, str) else b for b in by],
                 min_support=min_support, n_bins=n_bins)


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
def _max_features(data: AssertionContext, p: MaxFeaturesParams) -> Outcome:
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
    return Outcome(not over, observed, p.max, msg, details={"features_per_class": per_class})


class GapParams(Params):
    """``sparse_accuracy_gap``: dense accuracy minus sparse accuracy <= ``max_gap``."""

    max_gap: float = Field(..., ge=-1, le=1)


@register_assertion("sparse_accuracy_gap", family="sparse", params=GapParams, needs_labels=True,
                    requires=("sparse_predictions",))
def _sparse_gap(data: AssertionContext, p: GapParams) -> Outcome:
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
    return Outcome(ok, gap, p.max_gap, msg, examples, int(pos.size),
                   {"dense_accuracy": float(dense.mean()), "sparse_accuracy": float(sparse.mean())})


class AgreementParams(Params):
    """``sparse_agreement``: the sparse layer and the dense head predict the same class on >= ``min``."""

    min: float = Field(..., ge=0, le=1)
    confidence: float | None = Field(None, gt=0, lt=1)


@register_assertion("sparse_agreement", family="sparse", params=AgreementParams, requires=("sparse_predictions",))
def _sparse_agreement(data: AssertionContext, p: AgreementParams) -> Outcome:
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
    return Outcome(ok, rate, p.min, msg, examples, int(pos.size), {"ci_low": lo, "ci_high": hi})


class _AssociationParams(Params):
    attribute: list[str] | None = None
    value: list[str] | None = None
    fdr: float = Field(0.05, gt=0, lt=1)
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
def _no_reliance(data: AssertionContext, p: NoRelianceParams) -> Outcome:
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
    return Outcome(not violations, len(violations), 0, msg,
                   details={"violations": violations[:200], "relying": [list(x) for x in relying],
                            "n_significant_associations": int(len(sig))})


class FindingsParams(Params):
    """``no_spurious_findings``: the spurious-findings analysis (association, class-specific accuracy
    gap and ablation together) found nothing for ``class`` on ``attribute`` scoring >= ``min_score``."""

    class_: ClassRef = Field("*", alias="class")
    attribute: list[str] | None = None
    min_score: float = Field(0.0, ge=0)
    _check_class = field_validator("class_")(check_class)
    _listify = field_validator("attribute", mode="before")(_AssociationParams._listify.__func__)  # type: ignore[attr-defined]


def _finding_dict(f: Any) -> dict[str, Any]:
    d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
    if "class" not in d and "class_name" in d:
        d["class"] = d["class_name"]
    return d


@register_assertion("no_spurious_findings", family="sparse", params=FindingsParams, requires=("spurious_findings",))
def _no_findings(data: AssertionContext, p: FindingsParams) -> Outcome:
    """No significant spurious finding (see sparsecheck.analysis.spurious) for the class/attributes."""
    findings = [_finding_dict(f) for f in data.spurious_findings]
    wanted = None if p.class_ == "*" else data.class_name(data.class_index(p.class_))
    hits = [f for f in findings if f.get("significant", True) is not False
            and (wanted is None or str(f.get("class")) == wanted)
            and (not p.attribute or str(f.get("attribute")) in p.attribute)
            and float(f.get("score") or 0.0) >= p.min_score]
    hits.sort(key=lambda f: -float(f.get("score") or 0.0))
    scope = (f"class {wanted}" if wanted else "any class") + (f" on {', '.join(p.attribute)}" if p.attribute else "")
    if hits:
        msg = f"{len(hits)} spurious finding{'s' if len(hits) > 1 else ''} for {scope}: " + _list(
            [f.get("sentence") or f"{f.get('class')} <- feature {f.get('feature')} ({f.get('attribute')}="
             f"{f.get('value')}, score {float(f.get('score') or 0):.2f})" for f in hits], 2)
    else:
        msg = f"no spurious finding for {scope} ({len(findings)} findings in all)"
    return Outcome(not hits, len(hits), 0, msg, details={"findings": [
        {k: f.get(k) for k in ("class", "feature", "attribute", "value", "score")} for f in hits[:50]]})


def no_spurious_findings(*, class_: ClassRef = "*", attribute: str | Sequence[str] | None = None,
                         min_score: float = 0.0, name: str | None = None, severity: str = "error",
                         description: str = "") -> Assertion:
    """The spurious-findings analysis reports nothing for ``class_`` on ``attribute`` (needs its stage)."""
    return _make("no_spurious_findings", name, severity, description, **{"class": class_}, attribute=attribute,
                 min_score=min_score)


class WeightShareParams(_AssociationParams):
    """``spurious_weight_share``: features associated with ``attribute`` (default: the config's
    ``data.spurious_attributes``) carry at most ``max`` of the absolute weight of ``class``."""

    max: float = Field(..., ge=0, le=1)


@register_assertion("spurious_weight_share", family="sparse", params=WeightShareParams,
                    requires=("sparse_layer", "feature_attributes"))
def _weight_share(data: AssertionContext, p: WeightShareParams) -> Outcome:
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
    return Outcome(ok, share, p.max, msg, details={"per_class": per_class,
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
                fdr: float = 0.05, min_effect: float = 0.2, min_weight: float = 0.0, name: str | None = None,
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
                          fdr: float = 0.05, min_effect: float = 0.2, name: str | None = None,
                          severity: str = "error", description: str = "") -> Assertion:
    """Features associated with spurious attributes carry at most ``max`` of the absolute weight."""
    return _make("spurious_weight_share", name, severity, description, max=max, attribute=attribute,
                 **{"class": class_}, fdr=fdr, min_effect=min_effect)


# =========================================================================== prediction table
class CheckSpec(Params):
    """One user check: ``{column: confidence, check: greater_than, value: 0.2}``."""

    column: str
    check: CheckName
    value: Any = None
    nullable: bool | None = None

    @model_validator(mode="after")
    def _builds(self) -> "CheckSpec":
        try:
            ColumnCheck(self.column, self.check, self.value, self.nullable).to_pandera()
        except ParameterError as exc:
            raise ValueError(str(exc)) from exc
        except Exception as exc:  # pandera's own argument errors
            raise ValueError(f"{self.check}({self.value!r}) is not a valid check: {exc}") from exc
        return self


class SchemaParams(Params):
    """``prediction_schema``: the prediction table passes a pandera schema (built-in checks and
    ``checks``); fails when more than ``max_failing`` rows fail."""

    checks: list[CheckSpec] = Field(default_factory=list)
    probabilities: bool = True
    unique_ids: bool = True
    tolerance: float = Field(1e-4, gt=0, lt=1)
    max_failing: int = Field(0, ge=0)


@register_assertion("prediction_schema", family="table", params=SchemaParams)
def _prediction_schema(data: AssertionContext, p: SchemaParams) -> Outcome:
    """Validate the prediction table with pandera (lazy: every failure collected)."""
    from sparsecheck.assertions.tables import prediction_table_schema, validate_prediction_table

    probs = data.prob_columns
    schema = prediction_table_schema(
        max(data.n_classes, 1), has_labels=data.has_labels, sparse="sparse_prediction" in data.table.columns,
        probabilities=p.probabilities and bool(probs), unique_ids=p.unique_ids, tolerance=p.tolerance,
        checks=[ColumnCheck(c.column, c.check, c.value, c.nullable) for c in p.checks])
    result = validate_prediction_table(data.table, schema, prob_columns=probs)
    n_rows = int(result.failing_rows.size)
    ok = result.valid or (not result.table_errors and n_rows <= p.max_failing)
    summary = [f"{r.column} {r.check}: {r.n_failures} rows" for r in result.summary.itertuples()]
    msg = ("every row passes the schema" + (f" ({len(schema.columns)} columns checked)" if result.valid else "")
           if result.valid else f"{n_rows} rows fail the schema: " + _list(result.table_errors + summary))
    examples = examples_frame(data, result.failing_rows, result.failures_per_row.astype(np.float64))
    return Outcome(bool(ok), n_rows, p.max_failing, msg, examples, n_rows,
                   {"failures": result.summary.to_dict("records")[:50], "table_errors": result.table_errors})


def prediction_schema(*, checks: Sequence[dict[str, Any]] = (), probabilities: bool = True, unique_ids: bool = True,
                      tolerance: float = 1e-4, max_failing: int = 0, name: str | None = None,
                      severity: str = "error", description: str = "") -> Assertion:
    """The prediction table passes pandera validation: unique ids, known labels and predictions,
    probabilities in [0, 1] summing to 1, plus ``checks`` (dicts with column, check, value).

    Examples
    --------
    >>> a = prediction_schema(checks=[{"column": "confidence", "check": "greater_than", "value": 0.2}])
    >>> a.param_dict["checks"][0]["check"]
    'greater_than'
    """
    return _make("prediction_schema", name, severity, description, checks=list(checks),
                 probabilities=probabilities, unique_ids=unique_ids, tolerance=tolerance, max_failing=max_failing)


_CONSTRUCTORS = {"accuracy": accuracy, "recall": recall, "precision": precision, "macro_f1": macro_f1, "ece": ece,
                 "max_features_per_class": max_features_per_class, "sparse_accuracy_gap": sparse_accuracy_gap,
                 "sparse_agreement": sparse_agreement, "no_reliance": no_reliance,
                 "spurious_weight_share": spurious_weight_share, "prediction_schema": prediction_schema,
                 "no_spurious_findings": no_spurious_findings}
# pandera's pattern: built-in constructors hang off the class (Check.greater_than); Assertion.accuracy(...)
for _name, _fn in _CONSTRUCTORS.items():
    setattr(Assertion, _name, staticmethod(_fn))
