"""Built-in metric assertions: accuracy, recall, precision, macro-F1 and ECE, overall or per slice, and
better-than-chance (the guard every config implies)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from sparsecheck.analysis.chance import MAX_P_VALUE, chance_test, diagnose_class_order
from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.assertions.builtins.common import ClassRef, Head, _fmt, _list, _make, examples_frame
from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.results import AssertionResult
from sparsecheck.assertions.spec import Assertion, Params, check_class, register_assertion


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


def _evaluate_metric(metric: str, data: AssertionContext, p: Any) -> AssertionResult:
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
    return AssertionResult.outcome(bool(passed), observed, threshold, message, examples, n_fail_ex, details)


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
def _accuracy(data: AssertionContext, p: AccuracyParams) -> AssertionResult:
    """Accuracy overall or per slice."""
    return _evaluate_metric("accuracy", data, p)


@register_assertion("recall", family="metric", params=ClassMetricParams, needs_labels=True,
                    requires=_metric_inputs)
def _recall(data: AssertionContext, p: ClassMetricParams) -> AssertionResult:
    """Per-class recall (``class: *`` for every class), overall or per slice."""
    return _evaluate_metric("recall", data, p)


@register_assertion("precision", family="metric", params=ClassMetricParams, needs_labels=True,
                    requires=_metric_inputs)
def _precision(data: AssertionContext, p: ClassMetricParams) -> AssertionResult:
    """Per-class precision, overall or per slice."""
    return _evaluate_metric("precision", data, p)


@register_assertion("macro_f1", family="metric", params=MacroF1Params, needs_labels=True,
                    requires=_metric_inputs)
def _macro_f1(data: AssertionContext, p: MacroF1Params) -> AssertionResult:
    """Macro-averaged F1 over the classes present, overall or per slice."""
    return _evaluate_metric("macro_f1", data, p)


@register_assertion("ece", family="metric", params=ECEParams, needs_labels=True, requires=_metric_inputs)
def _ece(data: AssertionContext, p: ECEParams) -> AssertionResult:
    """Expected calibration error (equal-width confidence bins), overall or per slice."""
    return _evaluate_metric("ece", data, p)


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


# =========================================================================== better than chance
class ChanceParams(Params):
    """``better_than_chance``: accuracy significantly above the majority-class rate (one-sided exact
    binomial test, p < ``max_p_value``)."""

    max_p_value: float = Field(MAX_P_VALUE, gt=0, lt=1)
    head: Head = "dense"


@register_assertion("better_than_chance", family="metric", params=ChanceParams, needs_labels=True,
                    requires=_metric_inputs)
def _better_than_chance(data: AssertionContext, p: ChanceParams) -> AssertionResult:
    """Accuracy significantly above always predicting the most frequent class; names a class-order mix-up."""
    y, pred = data.labels(), data.predictions(p.head)
    test = chance_test(y, pred, max_p_value=p.max_p_value)
    config = getattr(data.run, "config", None)  # a pipeline run: were the class names given or derived?
    order = diagnose_class_order(y, pred, data.class_names or [str(k) for k in range(max(data.n_classes, 1))],
                                 names_set=config is None or config.data.class_names is not None)
    majority = data.class_name(test.majority_class)
    if test.n == 0:
        message = "nothing to evaluate: the prediction table is empty"
    elif test.min_accuracy is None and test.chance_rate >= 1.0:
        message = (f"the labels hold one class ({majority!r}, n={test.n}): always predicting it is right every "
                   "time, so no model can be shown to beat chance here; test on several classes")
    else:
        verdict = "is above" if test.passed else "is not significantly above"
        needed = ("no accuracy would be significant on so few examples" if test.min_accuracy is None
                  else f"{_fmt(test.min_accuracy)} needed")
        message = (f"accuracy {_fmt(test.accuracy)} {verdict} chance {_fmt(test.chance_rate)} (always predicting "
                   f"{majority!r}; {'p < 1e-300' if test.p_value < 1e-300 else f'p = {test.p_value:.2g}'} "
                   f"{'<' if test.passed else '>='} {p.max_p_value:g}, "
                   f"n={test.n}; {needed})")
    if order is not None:
        message += "; " + order.sentence()
    wrong = np.flatnonzero(y != pred)
    examples = None
    if not test.passed:  # the errors, most confident first
        sev = data.confidence()[wrong] if p.head == "dense" and _has_confidence(data) else np.ones(wrong.size)
        examples = examples_frame(data, wrong, sev, label=y[wrong], prediction=pred[wrong])
    details = {"head": p.head, **test.to_dict(), "majority_class": majority,
               "class_order": None if order is None else order.to_dict()}
    return AssertionResult.outcome(test.passed, None if test.n == 0 else test.accuracy, test.min_accuracy, message,
                                   examples, 0 if test.passed else int(wrong.size), details)


def better_than_chance(*, max_p_value: float = MAX_P_VALUE, head: Head = "dense", name: str | None = None,
                       severity: str = "error", description: str = "") -> Assertion:
    """Accuracy significantly above the majority-class rate (one-sided exact binomial test,
    p < ``max_p_value``); a config implies it as ``better-than-chance`` (see
    :func:`~sparsecheck.assertions.spec.parse_assertions`). When the predictions match the labels
    under a reordering of the classes, the message names that order.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sparsecheck.assertions import run_assertions
    >>> y = np.repeat([0, 1, 2], 30)
    >>> table = pd.DataFrame({"id": np.arange(90).astype(str), "label": y, "prediction": (y + 1) % 3})
    >>> r = run_assertions([better_than_chance()], table, class_names=["cat", "dog", "wolf"])[0]
    >>> r.status, r.observed, "a matching order would be [wolf, cat, dog]" in r.message
    ('fail', 0.0, True)
    >>> r.details["class_order"]["order"]
    ['wolf', 'cat', 'dog']
    """
    return _make("better_than_chance", name, severity, description, max_p_value=max_p_value, head=head)
