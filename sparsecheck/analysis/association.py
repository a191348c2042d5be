"""How each feature of the sparse layer associates with each metadata value.

For every used feature × every categorical attribute value, the effect is the AUC of the feature's
activation separating examples with that value from the rest (0.5: no association, 1: the value
always scores higher), with a two-sided Mann–Whitney p-value; for numeric attributes it is the
point-biserial (Pearson) correlation. Benjamini–Hochberg runs across all tests at once.

With ``strata`` (the interpretation stage passes the class labels) every comparison is made
*within* a stratum and pooled: the AUC becomes the probability that, within the same class, an
example with the value out-scores one without it (the pooled Mann–Whitney U of van Elteren's
stratified test, with its variance). That keeps what a feature is *for* — the classes it
separates — from masking or faking an association with metadata whose frequency differs between
classes. Numeric attributes are then correlated after removing the stratum means of both sides.

Ranks are computed once per feature (per stratum), not once per value: ``m`` attribute values
cost one ``O(n log n)`` ranking of each feature plus ``m`` masked sums.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> meta = pd.DataFrame({"snow": rng.choice(["yes", "no"], 400), "site": rng.choice(["a", "b"], 400)})
>>> acts = rng.normal(size=(400, 2))
>>> acts[:, 1] += 2.0 * (meta["snow"] == "yes")          # feature 1 fires on snow
>>> table = feature_associations(acts, meta, features=[10, 11])
>>> top = table.iloc[0]
>>> int(top.feature), top.attribute, top.value, bool(top.effect > 0.85), bool(top.q_value < 1e-10)
(11, 'snow', 'yes', True, True)
>>> list(table.columns[:6])
['feature', 'attribute', 'value', 'effect', 'p_value', 'q_value']
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from sparsecheck.analysis.auto_attributes import is_auto
from sparsecheck.analysis.stats import benjamini_hochberg, point_biserial
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["ASSOCIATION_COLUMNS", "feature_associations", "auc_effects", "top_associations",
           "strongest_significant", "association_records"]

#: the tidy table's leading columns (results.json ``feature_attributes`` contract)
ASSOCIATION_COLUMNS = ["feature", "attribute", "value", "effect", "p_value", "q_value"]
_EXTRA_COLUMNS = ["kind", "n", "mean_with", "mean_without", "auc_marginal", "strength", "attribute_q"]


#: bytes of float64 activations the association tests take at a time (a block of columns)
_BLOCK_BYTES = 1 << 25


def auc_effects(activations: np.ndarray, masks: np.ndarray,
                strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and two-sided Mann–Whitney p-values of every column against every mask.

    The vectorised form of :func:`sparsecheck.analysis.stats.auc_effect` (identical results
    without ``strata``): each column of ``activations`` is ranked once.

    Parameters
    ----------
    activations : ndarray (n, F)
    masks : ndarray (m, n) bool
        One group per row; the rest of the rows is the comparison group.
    strata : ndarray (n,), optional
        Compare only within strata and pool (stratified Mann–Whitney); strata where a group or
        its complement is empty do not contribute.

    Returns
    -------
    auc, p_value : ndarray (m, F)
        NaN where a group or its complement is empty (in every stratum).

    Examples
    --------
    >>> from sparsecheck.analysis.stats import auc_effect
    >>> v = np.array([[0.1], [0.4], [0.35], [0.8], [0.8]])
    >>> m = np.array([[False, True, False, True, True]])
    >>> auc, p = auc_effects(v, m)
    >>> np.allclose([auc[0, 0], p[0, 0]], auc_effect(v[:, 0], m[0]))
    True
    """
    A = np.asarray(activations, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    M = np.asarray(masks, dtype=bool)
    if M.ndim == 1:
        M = M[None]
    if M.shape[1] != A.shape[0]:
        raise DataError(f"masks have {M.shape[1]} rows, activations {A.shape[0]}")
    groups = [np.arange(A.shape[0])] if strata is None else \
        [np.flatnonzero(s) for s in _stratum_masks(np.asarray(strata), A.shape[0])]
    m, F = M.shape[0], A.shape[1]
    U = np.zeros((m, F))
    mean_u = np.zeros((m, 1))
    var_u = np.zeros((m, F))
    for rows in groups:
        n = rows.size
        if n < 2:
            continue
        sub = A[rows]
        ranks = _st.rankdata(sub, axis=0)                       # once per feature
        tie = _tie_terms(sub) / (n * (n - 1))                   # (F,)
        Ms = M[:, rows]
        n1 = Ms.sum(axis=1).astype(np.float64)[:, None]         # (m, 1)
        n0 = n - n1
        ok = (n1 > 0) & (n0 > 0)
        u = Ms.astype(np.float64) @ ranks - n1 * (n1 + 1) / 2.0
        U += np.where(ok, u, 0.0)
        mean_u += np.where(ok, n1 * n0 / 2.0, 0.0)
        var_u += np.where(ok, n1 * n0 / 12.0 * ((n + 1) - tie[None, :]), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = U / (2.0 * mean_u)
        z = (U - mean_u) / np.sqrt(var_u)
    p = 2.0 * _st.norm.sf(np.abs(z))
    p = np.where(var_u > 0, p, 1.0)                             # constant activations: no evidence
    empty = np.broadcast_to(mean_u == 0, auc.shape)
    return np.where(empty, np.nan, auc), np.where(empty, np.nan, p)


def _tie_terms(X: np.ndarray) -> np.ndarray:
    """Σ (t³ - t) over groups of tied values, per column."""
    S = np.sort(X, axis=0)
    n, F = S.shape
    out = np.zeros(F)
    if n < 2:
        return out
    same = S[1:] == S[:-1]
    for j in np.flatnonzero(same.any(axis=0)):                  # only columns that have ties
        edges = np.flatnonzero(np.diff(np.r_[False, same[:, j], False].astype(np.int8)))
        t = (edges[1::2] - edges[0::2] + 1).astype(np.float64)
        out[j] = (t ** 3 - t).sum()
    return out


def _stratum_masks(strata: np.ndarray, n: int) -> list[np.ndarray]:
    if strata.shape != (n,):
        raise DataError(f"strata must have shape ({n},), got {strata.shape}")
    codes = pd.factorize(pd.Series(strata), use_na_sentinel=True)[0]
    return [codes == c for c in range(codes.max() + 1)] if codes.size else []


def feature_associations(
    activations: np.ndarray,
    metadata: pd.DataFrame,
    *,
    features: Sequence[int] | None = None,
    attributes: Sequence[str] | None = None,
    strata: np.ndarray | None = None,
    categorical: Sequence[str] = (),
    min_count: int = 5,
    max_values: int = 50,
) -> pd.DataFrame:
    """Association of every feature with every metadata value, as one tidy table.

    Parameters
    ----------
    activations : ndarray (n, F)
        Feature activations, one column per feature (e.g. the used features of the test split).
    metadata : DataFrame
        ``n`` rows in the same order; one column per attribute (an ``id`` column is ignored).
    features : sequence of int, optional
        Feature ids of the columns (default ``0..F-1``).
    attributes : sequence of str, optional
        Columns to test (default every column but ``id``).
    strata : ndarray (n,), optional
        Compare within strata (e.g. class labels) and pool; see the module docstring.
    categorical : sequence of str
        Numeric columns to treat as categories (codes such as ``scanner: 1, 2, 3``). Other
        numeric columns get a point-biserial correlation; everything else is categorical.
    min_count : int
        A value is tested only when it and its complement each have at least this many examples.
    max_values : int
        At most this many (most frequent) values per attribute are tested.

    Returns
    -------
    DataFrame
        Columns ``feature, attribute, value, effect, p_value, q_value`` then ``kind``
        (``"categorical"``: effect is an AUC; ``"numeric"``: a correlation, value None), ``n``
        (examples with the value), ``mean_with``, ``mean_without`` (mean activation),
        ``auc_marginal`` (AUC ignoring strata), ``strength`` (``2|AUC - 0.5|`` or ``|r|``) and
        ``attribute_q`` (see below). Sorted by ``strength`` (largest first), then ``q_value``.

        ``q_value`` is Benjamini–Hochberg across all tests (of every feature and attribute); the
        two values of a binary attribute are one test and count once. ``attribute_q`` screens whole
        attributes: Simes' combination of each attribute's p-values, Benjamini–Hochberg across
        attributes. With many true associations, BH admits a few chance hits of a harmless
        attribute (it controls the false *rate*); requiring ``attribute_q < fdr`` as well keeps an
        attribute unrelated to every feature from being flagged more often than ``fdr``.
    """
    A = np.asarray(activations)
    if A.ndim != 2:
        raise DataError(f"activations must be 2-D (examples × features), got shape {A.shape}")
    n, F = A.shape
    if len(metadata) != n:
        raise DataError(f"metadata has {len(metadata)} rows but activations have {n}")
    feature_ids = np.arange(F) if features is None else np.asarray(features, dtype=np.int64)
    if feature_ids.shape != (F,):
        raise ParameterError(f"The 'features' parameter of feature_associations must name the {F} columns. "
                             f"Got {len(feature_ids)} ids instead.", parameter="features")
    if int(min_count) < 1:
        raise ParameterError(f"The 'min_count' parameter of feature_associations must be an int >= 1. "
                             f"Got {min_count!r} instead.", parameter="min_count")
    attrs = [c for c in metadata.columns if c != "id"] if attributes is None else list(attributes)
    missing = sorted(set(attrs) - set(metadata.columns))
    if missing:
        raise DataError(f"no metadata column {missing} (columns: {list(metadata.columns)})")
    strata_arr = None if strata is None else np.asarray(strata)
    if strata_arr is not None and strata_arr.shape != (n,):
        raise DataError(f"strata must have shape ({n},), got {strata_arr.shape}")

    # columns in blocks of about _BLOCK_BYTES in float64: the tests' temporaries (ranks, copies of
    # the rows with a value) stay bounded however many features there are (1000 classes x 2048
    # features x 10,000 test rows held 1.6 GB at once before)
    per_block = max(1, _BLOCK_BYTES // (8 * max(n, 1)))
    tests = [_attribute_test(metadata[attr].reset_index(drop=True), attr, attr in set(categorical), int(min_count),
                             int(max_values)) for attr in attrs]
    by_attr: dict[str, list[pd.DataFrame]] = {attr: [] for attr in attrs}
    for lo in range(0, F, per_block):
        Ab = np.asarray(A[:, lo:lo + per_block], dtype=np.float64)
        if not np.isfinite(Ab).all():
            raise DataError("activations contain NaN or infinite values")
        ids = feature_ids[lo:lo + per_block]
        for attr, (present, numeric, values) in zip(attrs, tests):
            if numeric:
                part = _numeric(Ab, values, present, ids, attr, strata_arr)
            elif values is None:
                continue  # no value with enough examples on both sides
            else:
                part = _categorical(Ab, values, present, ids, attr, strata_arr)
            if len(part):
                part["_order"] = part["_slot"] * F + lo + np.tile(np.arange(len(ids)), len(part) // len(ids))
                by_attr[attr].append(part)
    parts = [pd.concat(p, ignore_index=True).sort_values("_order", kind="stable") for p in by_attr.values() if p]
    table = pd.concat(parts, ignore_index=True).drop(columns=["_order", "_slot"]) if parts \
        else pd.DataFrame(columns=["_hypothesis"] + ASSOCIATION_COLUMNS + _EXTRA_COLUMNS)
    table = table[np.isfinite(table["effect"].to_numpy(dtype=np.float64))].reset_index(drop=True)
    _adjust(table)
    table = _by_strength(table, ["q_value"])
    logger.info("feature associations: %d features × %d attributes → %d tests, %d with q < 0.05",
                F, len(attrs), len(table), int((table["q_value"] < 0.05).sum()))
    return table[ASSOCIATION_COLUMNS + _EXTRA_COLUMNS].astype(
        {"feature": "int64", "effect": "float64", "p_value": "float64", "q_value": "float64", "n": "int64"})


def _adjust(table: pd.DataFrame) -> None:
    """q-values (BH over distinct hypotheses) and the attribute-level screen, in place.

    The two values of a binary attribute are one hypothesis (value vs complement): they share a
    test and count once, so a real binary association does not loosen every other threshold.
    ``attribute_q``: Simes' combination of each attribute's distinct p-values, BH across attributes.
    Automatic image attributes (``auto:*``) are a family of their own: their many strong
    associations must not loosen the control over the user's metadata (BH adapts to the number of
    discoveries in its family).
    """
    if table.empty:
        table["q_value"] = pd.Series(dtype=np.float64)
        table["attribute_q"] = pd.Series(dtype=np.float64)
        table.drop(columns="_hypothesis", inplace=True, errors="ignore")
        return
    hyp = table["_hypothesis"].to_numpy()
    first = ~pd.Series(hyp).duplicated().to_numpy()
    p = table["p_value"].to_numpy(dtype=np.float64)
    attrs = table["attribute"].to_numpy()
    automatic = np.array([is_auto(a) for a in attrs], dtype=bool)
    lookup: dict[Any, float] = {}
    attr_q: dict[Any, float] = {}
    for family in (~automatic, automatic):
        rows = first & family
        if not rows.any():
            continue
        lookup.update(zip(hyp[rows], benjamini_hochberg(p[rows])))
        names = list(dict.fromkeys(attrs[rows]))
        simes = np.array([_simes(p[rows & (attrs == a)]) for a in names])
        attr_q.update(zip(names, benjamini_hochberg(simes)))
    table["q_value"] = [lookup[h] for h in hyp]
    table["attribute_q"] = [attr_q[a] for a in attrs]
    table.drop(columns="_hypothesis", inplace=True)


def _simes(p: np.ndarray) -> float:
    p = np.sort(p[np.isfinite(p)])
    if p.size == 0:
        return float("nan")
    return float(min(1.0, (p * p.size / np.arange(1, p.size + 1)).min()))


def _attribute_test(col: pd.Series, attr: str, as_categories: bool, min_count: int, max_values: int
                    ) -> tuple[np.ndarray, bool, Any]:
    """What the tests of one attribute need from the metadata, once for every block of columns:
    ``(present, numeric, values)``; ``values`` is the float column (numeric), or the string labels
    of the present rows and the values to test (categorical), or None when no value qualifies."""
    present = col.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) and not as_categories:
        return present, True, col.to_numpy(dtype=np.float64)
    labels = col[present].astype(str)
    counts = labels.value_counts()
    n_present = int(present.sum())
    keep = counts[(counts >= min_count) & (n_present - counts >= min_count)]
    if len(keep) > max_values:
        logger.info("attribute %r has %d values; testing the %d most frequent", attr, len(keep), max_values)
        keep = keep.iloc[:max_values]
    return present, False, (None if keep.empty else (labels.to_numpy(), keep))


def _categorical(A: np.ndarray, values: tuple[np.ndarray, pd.Series], present: np.ndarray, feature_ids: np.ndarray,
                 attr: str, strata: np.ndarray | None) -> pd.DataFrame:
    labels, keep = values
    n_present = int(present.sum())
    sub = A[present]
    masks = np.stack([labels == v for v in keep.index])                    # (m, n_present)
    s = None if strata is None else strata[present]
    auc, p = auc_effects(sub, masks, s)
    marginal = auc if s is None else auc_effects(sub, masks)[0]
    n_with = masks.sum(axis=1)
    sums = masks.astype(np.float64) @ sub                                   # (m, F)
    total = sub.sum(axis=0)
    mean_with = sums / n_with[:, None]
    mean_without = (total - sums) / (n_present - n_with)[:, None]
    m, F = auc.shape
    # a binary attribute's two values are the same test (value vs complement): one hypothesis
    binary = m == 2 and int(n_with.sum()) == n_present
    value_index = np.repeat(np.arange(m) if not binary else np.zeros(m, dtype=np.int64), F)
    return pd.DataFrame({
        "_hypothesis": [f"{attr}\0{v}\0{f}" for v, f in zip(value_index, np.tile(feature_ids, m))],
        "feature": np.tile(feature_ids, m), "attribute": attr,
        "value": np.repeat(keep.index.to_numpy(dtype=object), F), "effect": auc.ravel(),
        "p_value": p.ravel(), "kind": "categorical", "n": np.repeat(n_with, F),
        "mean_with": mean_with.ravel(), "mean_without": mean_without.ravel(),
        "auc_marginal": marginal.ravel(), "strength": 2.0 * np.abs(auc.ravel() - 0.5),
        "_slot": np.repeat(np.arange(m), F)})


def _numeric(A: np.ndarray, values: np.ndarray, present: np.ndarray, feature_ids: np.ndarray, attr: str,
             strata: np.ndarray | None) -> pd.DataFrame:
    ok = present & np.isfinite(values)
    sub, x = A[ok], values[ok]
    if strata is not None:  # partial correlation given the stratum: remove stratum means of both
        codes = pd.factorize(pd.Series(strata[ok]))[0]
        counts = np.bincount(codes).astype(np.float64)
        x = x - (np.bincount(codes, weights=x) / counts)[codes]
        means = np.stack([np.bincount(codes, weights=sub[:, j]) for j in range(sub.shape[1])], axis=1) \
            / counts[:, None]
        sub = sub - means[codes]
    rows = []
    for j, fid in enumerate(feature_ids):
        r, p = point_biserial(sub[:, j], x)
        rows.append((f"{attr}\0numeric\0{fid}", int(fid), attr, None, r, p, "numeric", int(ok.sum()),
                     float("nan"), float("nan"), float("nan"), abs(r)))
    out = pd.DataFrame(rows, columns=["_hypothesis", "feature", "attribute", "value", "effect", "p_value", "kind",
                                      "n", "mean_with", "mean_without", "auc_marginal", "strength"])
    out["_slot"] = 0
    return out


def top_associations(table: pd.DataFrame, feature: int, k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` strongest associations of one feature: ``[{attribute, value, effect, q_value}]``.

    Strongest means largest ``|effect - 0.5|`` for AUCs (``|r|`` for correlations). The two
    values of a binary attribute are one test: only the value the feature fires on is listed.
    """
    if table is None or table.empty:
        return []
    part = _by_strength(table[table["feature"] == int(feature)])
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, float]] = set()
    for r in part.itertuples():
        mirror = (str(r.attribute), round(float(r.strength), 9))
        if r.kind == "categorical" and mirror in seen and _binary(part, str(r.attribute)):
            continue
        seen.add(mirror)
        out.append({"attribute": str(r.attribute), "value": None if r.value is None else str(r.value),
                    "effect": float(r.effect), "q_value": float(r.q_value)})
        if len(out) == int(k):
            break
    return out


def strongest_significant(table: pd.DataFrame, *, fdr: float, per_feature: int | None) -> pd.DataFrame:
    """The associations a reader is shown: ``q_value <= fdr``, the ``per_feature`` strongest of each
    feature (None: all), strongest first.

    This is what results.json lists under ``feature_attributes``; the whole table is the run's
    ``feature_attributes.parquet``. Its size is bounded by the used features, whatever the number
    of metadata values. As in :func:`top_associations`, the two values of a binary attribute are
    one test: only the value the feature fires on is kept.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> meta = pd.DataFrame({"snow": rng.choice(["yes", "no"], 400), "site": rng.choice(list("abc"), 400)})
    >>> acts = rng.normal(size=(400, 2))
    >>> acts[:, 1] += 2.0 * (meta["snow"] == "yes")
    >>> table = feature_associations(acts, meta, features=[10, 11])
    >>> kept = strongest_significant(table, fdr=0.05, per_feature=5)
    >>> len(table), kept[["feature", "attribute", "value"]].values.tolist()
    (10, [[11, 'snow', 'yes']])
    """
    if table is None or table.empty:
        return pd.DataFrame(columns=ASSOCIATION_COLUMNS + _EXTRA_COLUMNS) if table is None else table.iloc[:0]
    key = [table["feature"], table["attribute"].astype(str)]
    effect = table["effect"].astype(np.float64)
    size = effect.groupby(key).transform("size")
    total = effect.groupby(key).transform("sum")
    binary = table["kind"].eq("categorical") & (size == 2) & ((total - 1.0).abs() < 1e-9)
    # the mirror of a binary attribute: the value the feature does not fire on (one of two at AUC 0.5)
    mirror = binary & ((effect < 0.5) | ((effect == 0.5) & table.duplicated(["feature", "attribute"])))
    kept = table[(table["q_value"] <= float(fdr)) & ~mirror]
    kept = _by_strength(kept, ["q_value"])
    if per_feature is not None:
        kept = kept.groupby("feature", sort=False).head(int(per_feature)).reset_index(drop=True)
    return kept


def association_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """``table``'s rows as JSON-ready records (numpy scalars made plain, NaN made None)."""
    records = table.to_dict("records")
    for r in records:
        for key, value in r.items():
            if isinstance(value, np.generic):
                value = r[key] = value.item()
            if isinstance(value, float) and not np.isfinite(value):
                r[key] = None
    return records


def _binary(part: pd.DataFrame, attribute: str) -> bool:
    """Two values that are each other's complement: AUCs add up to 1 and the p-values agree."""
    rows = part[part["attribute"] == attribute]
    if len(rows) != 2:
        return False
    e, p = rows["effect"].to_numpy(dtype=np.float64), rows["p_value"].to_numpy(dtype=np.float64)
    return bool(abs(e.sum() - 1.0) < 1e-9 and np.isclose(p[0], p[1], rtol=1e-9, atol=0.0))


def _by_strength(table: pd.DataFrame, then: Sequence[str] = ()) -> pd.DataFrame:
    """Strongest first; the two (equally strong) sides of a binary attribute: the firing side first."""
    key = table.assign(_s=table["strength"].round(9))  # 1 - AUC differs from AUC in the last bits
    cols = ["_s", *then, "effect"]
    key = key.sort_values(cols, ascending=[False, *[True] * len(then), False], kind="stable")
    return key.drop(columns="_s").reset_index(drop=True)
