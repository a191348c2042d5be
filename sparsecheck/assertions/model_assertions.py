"""Model assertions in the sense of Kang et al., "Model Assertions for Monitoring and Improving ML
Models" (MLSys 2020): per-example *severity* functions over inputs and outputs.

Each returns a severity per example (0 is fine, higher is worse). Examples whose severity exceeds
``severity_threshold`` fail; the assertion fails when more than ``max_failing`` of them (or a
``max_failing_rate`` share) do. Results rank the failing examples by severity: the ones to look at,
or label, first. None of them needs labels, so a monitoring job can run them on unlabeled batches.

Built-ins:

``consistency``
    Examples sharing a ``key`` (the same patient, object or scene id) must share a prediction.
    Severity: the share of the group that predicts something else (minority members score highest).
``flicker``
    Within a ``sequence`` ordered by ``time``, a prediction must not flip and flip back within
    ``window``. Severity: one minus the probability the model gave the surrounding prediction.
``invariance``
    The prediction must survive a declared transformation of the image: ``hflip``, ``brightness``
    (``magnitude``: shift in [0, 1] intensity), ``noise`` (gaussian, ``magnitude``: sigma in [0, 1]
    intensity) or ``fgsm`` (one signed-gradient step of size ``magnitude``, towards leaving the
    predicted class). Severity: the drop in probability of the original prediction; an example
    fails when the prediction changes. The model runs batched under ``torch.inference_mode`` (FGSM
    takes its gradient with respect to the pixels, through the input transform); the original
    prediction is the prediction table's own when it has probabilities.

Users add their own with :func:`~sparsecheck.assertions.spec.register_assertion` (or
``custom: package.module:function`` in YAML) by returning an array of severities.

Examples
--------
>>> import pandas as pd
>>> from sparsecheck.assertions import run_assertions
>>> table = pd.DataFrame({"id": list("abcde"), "prediction": [1, 1, 2, 0, 0],
...                       "patient": ["p1", "p1", "p1", "p2", "p2"]})
>>> r = run_assertions([consistency(key="patient")], table)[0]
>>> r.status, r.failing_examples["id"].tolist()[:1], round(float(r.failing_examples["severity"].iloc[0]), 3)
('fail', ['c'], 0.667)
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from sparsecheck._runtime import note_forward, progress
from sparsecheck.assertions.builtins.common import examples_frame
from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.results import AssertionResult
from sparsecheck.assertions.spec import Assertion, PerExampleParams, register_assertion
from sparsecheck.errors import DataError, ModelError
from sparsecheck.modalities import Perturbation, call_model, get_modality, modality_names, output_tensor
from sparsecheck.text.invariance import parse_rules

logger = logging.getLogger(__name__)

__all__ = ["consistency", "flicker", "invariance", "per_example_outcome", "TRANSFORMS"]

#: the image modality's invariance transforms (every modality's: :meth:`Modality.invariance_transforms`)
TRANSFORMS = tuple(get_modality("image").invariance_transforms())


def per_example_outcome(data: AssertionContext, severity: Any, params: PerExampleParams | None = None, *,
                        failing: np.ndarray | None = None, what: str = "examples", subject: str = "",
                        positions: np.ndarray | None = None, **extra: np.ndarray) -> AssertionResult:
    """Turn per-example severities into an :class:`~sparsecheck.assertions.AssertionResult` (the Kang
    et al. contract).

    Parameters
    ----------
    severity : array aligned with the table rows (or with ``positions``), or a Series indexed by id
    params : PerExampleParams
        ``severity_threshold``, ``max_failing``, ``max_failing_rate``.
    failing : bool array, optional
        Which examples fail, when that is not simply ``severity > severity_threshold``.
    positions : int array, optional
        Rows of the table that ``severity`` refers to (a sample); default every row.
    """
    params = params or PerExampleParams()
    if isinstance(severity, pd.Series) and not isinstance(severity.index, pd.RangeIndex):
        lookup = pd.Series(np.arange(len(data)), index=data.ids)
        where = lookup.reindex(severity.index.astype(str))
        if where.isna().any():
            bad = severity.index[where.isna().to_numpy()][:5].tolist()
            raise DataError(f"severities for unknown example ids, e.g. {bad}")
        positions = where.to_numpy(dtype=np.int64)
        severity = severity.to_numpy()
    sev = np.asarray(severity, dtype=np.float64).reshape(-1)
    positions = np.arange(len(data)) if positions is None else np.asarray(positions, dtype=np.int64)
    if sev.shape[0] != positions.shape[0]:
        raise DataError(f"got {sev.shape[0]} severities for {positions.shape[0]} examples")
    if np.isnan(sev).any():
        raise DataError(f"{int(np.isnan(sev).sum())} severities are NaN")
    fail = (sev > params.severity_threshold) if failing is None else np.asarray(failing, dtype=bool)
    n_fail, n = int(fail.sum()), int(sev.shape[0])
    rate = n_fail / n if n else 0.0
    if params.max_failing_rate is not None:
        ok, observed, threshold = rate <= params.max_failing_rate, rate, params.max_failing_rate
        verdict = f"{n_fail} of {n} {what} fail ({rate:.2%} {'<=' if ok else '>'} {params.max_failing_rate:.2%})"
    else:
        ok, observed, threshold = n_fail <= params.max_failing, n_fail, params.max_failing
        verdict = f"{n_fail} of {n} {what} fail ({'<=' if ok else '>'} {params.max_failing} allowed)"
    idx = np.flatnonzero(fail)
    examples = examples_frame(data, positions[idx], sev[idx], **{k: np.asarray(v)[idx] for k, v in extra.items()})
    worst = f"; worst: {', '.join(f'{i} ({s:.3g})' for i, s in zip(examples['id'][:3], examples['severity'][:3]))}" \
        if n_fail else ""
    return AssertionResult.outcome(bool(ok), observed, threshold, f"{subject}{verdict}{worst}", examples, n_fail,
                                   {"n_checked": n, "failing_rate": rate,
                                    "mean_severity": float(sev.mean()) if n else 0.0})


class _HeadParams(PerExampleParams):
    head: Literal["dense", "sparse"] = "dense"


def _sparse_head(p: Any) -> tuple[str, ...]:
    return ("sparse_predictions",) if p.head == "sparse" else ()


class ConsistencyParams(_HeadParams):
    """``consistency``: examples sharing ``key`` share a prediction."""

    key: str


@register_assertion("consistency", family="model", params=ConsistencyParams, requires=_sparse_head)
def _consistency(data: AssertionContext, p: ConsistencyParams) -> AssertionResult:
    """Examples with the same key must get the same prediction."""
    pred = data.predictions(p.head)
    keys = data.column(p.key)
    codes, _ = pd.factorize(pd.Series(keys), use_na_sentinel=True)
    has_key = codes >= 0
    rows = np.flatnonzero(has_key)
    c, pr = codes[rows].astype(np.int64), pred[rows]
    pair, _ = pd.factorize(c * (int(pred.max(initial=0)) + 1) + pr)
    severity = np.zeros(pred.shape[0])
    severity[rows] = 1.0 - np.bincount(pair)[pair] / np.bincount(c)[c]
    n_groups = int(c.max(initial=-1)) + 1
    bad_groups = int(np.count_nonzero(np.bincount(c[severity[rows] > 0], minlength=n_groups)))
    out = per_example_outcome(data, severity, p, what="examples", subject=f"{bad_groups} of {n_groups} {p.key} "
                              "groups disagree; ", key=keys, prediction=pred)
    out.details.update({"n_groups": n_groups, "n_inconsistent_groups": bad_groups})
    return out


class FlickerParams(_HeadParams):
    """``flicker``: within ``sequence`` ordered by ``time``, no prediction flips and flips back
    within ``window`` (same units as ``time``; a duration such as ``"2s"`` for datetime columns)."""

    sequence: str
    time: str
    window: float | str


def flicker_clock(data: AssertionContext, p: FlickerParams) -> tuple[np.ndarray, float]:
    """The ``time`` column as float and the ``window`` in the same units (nanoseconds for datetimes)."""
    t_raw = data.table[p.time] if p.time in data.table.columns else data.column(p.time)
    if pd.api.types.is_datetime64_any_dtype(t_raw):
        t = pd.to_datetime(t_raw).to_numpy().astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        return t, float(pd.Timedelta(p.window).value) if isinstance(p.window, str) else float(p.window) * 1e9
    if isinstance(p.window, str):
        raise DataError(f"window {p.window!r} is a duration but column {p.time!r} is not datetime")
    return pd.to_numeric(pd.Series(np.asarray(t_raw)), errors="raise").to_numpy(dtype=np.float64), float(p.window)


@register_assertion("flicker", family="model", params=FlickerParams, requires=_sparse_head)
def _flicker(data: AssertionContext, p: FlickerParams) -> AssertionResult:
    """A prediction that flips and flips back within a time window (Kang et al.'s flicker)."""
    pred = data.predictions(p.head)
    seq, _ = pd.factorize(pd.Series(data.column(p.sequence)), use_na_sentinel=True)
    t, window = flicker_clock(data, p)
    n = pred.shape[0]
    ok_rows = np.flatnonzero(seq >= 0)
    order = ok_rows[np.lexsort((t[ok_rows], seq[ok_rows]))]
    s, tt, pp = seq[order], t[order], pred[order]
    severity = np.zeros(n)
    neighbour = np.full(n, -1, dtype=np.int64)
    if order.size >= 3:
        new_run = np.r_[True, (s[1:] != s[:-1]) | (pp[1:] != pp[:-1])]
        start = np.flatnonzero(new_run)
        end = np.r_[start[1:] - 1, order.size - 1]
        rs, rp = s[start], pp[start]
        mid = np.arange(1, start.size - 1)
        flick = ((rs[mid - 1] == rs[mid]) & (rs[mid + 1] == rs[mid]) & (rp[mid - 1] == rp[mid + 1])
                 & (tt[start[mid + 1]] - tt[end[mid - 1]] <= window))
        bad_runs = mid[flick]
        run_of = np.cumsum(new_run) - 1
        is_bad = np.zeros(start.size, dtype=bool)
        is_bad[bad_runs] = True
        member = is_bad[run_of]
        around = np.full(start.size, -1, dtype=np.int64)
        around[bad_runs] = rp[bad_runs - 1]
        rows = order[member]
        neighbour[rows] = around[run_of[member]]
        if data.prob_columns and p.head == "dense":
            probs = data.probabilities()
            severity[rows] = 1.0 - probs[rows, neighbour[rows]]
        else:
            severity[rows] = 1.0
        severity[rows] = np.maximum(severity[rows], 1e-9)  # a flicker always fails, however unsure
    failing = neighbour >= 0
    out = per_example_outcome(data, severity, p, failing=failing, what="examples",
                              subject=f"{int(failing.sum())} flickering predictions in {p.sequence}; ",
                              sequence=data.column(p.sequence), prediction=pred,
                              around=neighbour)
    return out


class InvarianceParams(PerExampleParams):
    """``invariance``: the prediction survives ``transform`` at ``magnitude`` (see module docstring).

    ``transform`` is one of the run's modality's invariance transforms
    (:meth:`~sparsecheck.modalities.base.Modality.invariance_transforms`; images: ``hflip``,
    ``brightness``, ``noise``, ``fgsm``). ``sample`` checks a seeded random subset (None: every
    example); ``batch_size`` batches the model.
    """

    transform: str
    magnitude: float = Field(0.0, ge=-1, le=1)
    sample: int | None = Field(None, ge=1)
    batch_size: int = Field(256, ge=1)
    random_state: int = 0
    #: semantically equivalent rewrite rules for ``transform: rules`` (text): ``"FROM -> TO"`` or
    #: ``{from: ..., to: ...}``
    rules: list[Any] | None = None

    @field_validator("transform")
    @classmethod
    def _known(cls, v: str) -> str:
        known = sorted(_invariance_transforms())
        if v not in known:
            names = [repr(k) for k in known]
            raise ValueError(f"Input should be {', '.join(names[:-1])} or {names[-1]} (the invariance transforms "
                             f"of {', '.join(modality_names())}), got {v!r}")
        return v

    @model_validator(mode="after")
    def _magnitude(self) -> "InvarianceParams":
        _invariance_transforms()[self.transform].check_magnitude(self.magnitude)
        if (self.transform == "rules") != bool(self.rules):
            raise ValueError("transform: rules needs 'rules' (a list of 'FROM -> TO'), and only it takes them")
        parse_rules(self.rules)
        return self


def _invariance_transforms() -> dict[str, Any]:
    """Every registered modality's invariance transforms by name (the first modality to name one wins)."""
    out: dict[str, Any] = {}
    for name in modality_names():
        for key, transform in get_modality(name).invariance_transforms().items():
            out.setdefault(key, transform)
    return out


def _module_of(model: Any) -> Any:
    return getattr(model, "module", model)


@register_assertion("invariance", family="model", params=InvarianceParams,
                    requires=("model", "dataset", "input_spec"))
def _invariance(data: AssertionContext, p: InvarianceParams) -> AssertionResult:
    """The prediction does not change under a declared transformation of the examples."""
    import torch

    module = _module_of(data.model)
    ds, spec = data.dataset, data.input_spec
    modality = data.modality if data.modality is not None else get_modality()
    transforms = modality.invariance_transforms()
    if p.transform not in transforms:
        raise DataError(f"the {modality.name} modality has no invariance transform {p.transform!r} (it has "
                        f"{sorted(transforms)})")
    change = transforms[p.transform]
    if len(ds) != len(data):
        raise DataError(f"the dataset has {len(ds)} {modality.noun}s but the prediction table {len(data)} rows")
    n = len(ds)
    rng = np.random.default_rng(p.random_state)
    idx = np.arange(n) if p.sample is None or p.sample >= n else np.sort(rng.choice(n, p.sample, replace=False))
    try:
        device = next(module.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        device = torch.device(data.device)
    gen = torch.Generator(device="cpu").manual_seed(p.random_state)
    # the clean pass is the prediction table's own (same model, same inputs); a transform that
    # follows the gradient (FGSM) needs its own forward pass for it anyway
    table_probs = data.probabilities() if data.prob_columns and not change.uses_gradient else None
    rules = parse_rules(p.rules)
    kept = np.ones(idx.size, dtype=bool)  # the examples the transform changed (all, unless it says)
    before_p = np.empty(idx.size)
    after_p = np.empty(idx.size)
    before = np.empty(idx.size, dtype=np.int64)
    after = np.empty(idx.size, dtype=np.int64)
    for start in progress(range(0, idx.size, p.batch_size), total=-(-idx.size // p.batch_size),
                          desc=f"invariance ({p.transform})", unit="batch"):
        chunk = idx[start:start + p.batch_size]
        raw = ds.batch(chunk)
        try:
            if table_probs is not None:
                probs0 = torch.as_tensor(table_probs[chunk], dtype=torch.float32)
            else:
                note_forward(len(chunk))
                with torch.inference_mode():
                    probs0 = torch.softmax(output_tensor(call_model(module, spec.transform(raw, device=device))).float(),
                                           dim=1).cpu()
            cls0 = probs0.argmax(dim=1)
            moved = change.apply(raw, Perturbation(magnitude=p.magnitude, generator=gen, module=module,
                                                   transform=spec, device=device, predicted=cls0, rules=rules))
            if hasattr(change, "changed"):
                kept[start:start + chunk.size] = change.changed(raw, moved)
            note_forward(len(chunk))
            with torch.inference_mode():
                probs1 = torch.softmax(output_tensor(call_model(module, spec.transform(moved, device=device))).float(),
                                       dim=1).cpu()
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ModelError(f"the model failed on a {p.transform} batch: {exc}") from exc
        if probs1.shape[1] < probs0.shape[1]:
            raise ModelError(f"the model has {probs1.shape[1]} outputs but the table {probs0.shape[1]} classes")
        sl = slice(start, start + chunk.size)
        before[sl] = cls0.numpy()
        after[sl] = probs1.argmax(dim=1).numpy()
        rows = torch.arange(chunk.size)
        before_p[sl] = probs0[rows, cls0].numpy()
        after_p[sl] = probs1[rows, cls0].numpy()
    severity = np.clip(before_p - after_p, 0.0, None)
    flipped = before != after
    severity = np.where(flipped, np.maximum(severity, 1e-9), severity)
    if not kept.all():  # only the examples the transform changed are evidence
        logger.info("invariance %s: %d of %d %ss changed by the transform are checked", p.transform,
                    int(kept.sum()), idx.size, modality.noun)
        idx, severity, flipped, before, after = idx[kept], severity[kept], flipped[kept], before[kept], after[kept]
    subject = f"{p.transform}({p.magnitude:g}): " if not rules else \
        f"{len(rules)} rewrite rule{'s' if len(rules) != 1 else ''} ({'; '.join(f'{a} -> {b}' for a, b in rules[:3])}): "
    out = per_example_outcome(data, severity, p, failing=flipped, positions=idx, what="predictions",
                              subject=subject, before=before, after=after)
    out.details.update({"transform": p.transform, "magnitude": p.magnitude, "n_checked": int(idx.size),
                        "mean_probability_drop": float(severity.mean()) if idx.size else 0.0,
                        **({"rules": [f"{a} -> {b}" for a, b in rules]} if rules else {})})
    return out


# --------------------------------------------------------------------------- constructors
def consistency(*, key: str, head: str = "dense", severity_threshold: float = 0.0, max_failing: int = 0,
                max_failing_rate: float | None = None, name: str | None = None, severity: str = "error",
                description: str = "") -> Assertion:
    """Examples sharing ``key`` (a column: patient, object or scene id) must share a prediction."""
    return Assertion.of("consistency", name=name, severity=severity, description=description, key=key, head=head,
                        severity_threshold=severity_threshold, max_failing=max_failing,
                        max_failing_rate=max_failing_rate)


def flicker(*, sequence: str, time: str, window: float | str, head: str = "dense", max_failing: int = 0,
            max_failing_rate: float | None = None, name: str | None = None, severity: str = "error",
            description: str = "") -> Assertion:
    """No prediction flips and flips back within ``window`` inside one ``sequence`` ordered by ``time``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sparsecheck.assertions import run_assertions
    >>> t = pd.DataFrame({"id": list("abcdef"), "prediction": [3, 3, 5, 3, 3, 3], "track": ["t"] * 6,
    ...                   "frame": [0, 1, 2, 3, 4, 5]})
    >>> r = run_assertions([flicker(sequence="track", time="frame", window=3)], t)[0]
    >>> r.status, r.failing_examples["id"].tolist()
    ('fail', ['c'])
    """
    return Assertion.of("flicker", name=name, severity=severity, description=description, sequence=sequence,
                        time=time, window=window, head=head, max_failing=max_failing, max_failing_rate=max_failing_rate)


def invariance(*, transform: str, magnitude: float = 0.0, sample: int | None = None, batch_size: int = 256,
               random_state: int = 0, max_failing: int = 0, max_failing_rate: float | None = None,
               name: str | None = None, severity: str = "error", description: str = "") -> Assertion:
    """The prediction is unchanged under ``transform`` (hflip, brightness, noise, fgsm) of size ``magnitude``.

    Needs the model, the images and the input spec (a pipeline run has them).
    """
    return Assertion.of("invariance", name=name, severity=severity, description=description, transform=transform,
                        magnitude=magnitude, sample=sample, batch_size=batch_size, random_state=random_state,
                        max_failing=max_failing, max_failing_rate=max_failing_rate)


for _name, _fn in {"consistency": consistency, "flicker": flicker, "invariance": invariance}.items():
    setattr(Assertion, _name, staticmethod(_fn))
