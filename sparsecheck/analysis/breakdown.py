"""Error breakdowns: accuracy and error rate by attribute value, by pairs of attributes and by
binned activation of each used sparse feature, every row with its size and a Wilson interval.

Every function returns a tidy DataFrame (one row per group) and drops groups smaller than
``min_support``. Missing attribute values (NaN, None) form their own group, labelled ``"nan"``.
Intervals are on accuracy; the interval on the error rate is ``(1 - ci_high, 1 - ci_low)``.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"correct": [True, True, False, True], "site": ["a", "a", "b", "b"]})
>>> accuracy_by_attribute(table, ["site"])[["attribute", "value", "size", "accuracy"]].to_dict("records")
[{'attribute': 'site', 'value': 'a', 'size': 2, 'accuracy': 1.0}, {'attribute': 'site', 'value': 'b', 'size': 2, 'accuracy': 0.5}]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.errors import DataError, ParameterError

__all__ = [
    "accuracy_by_attribute",
    "accuracy_by_attribute_pair",
    "accuracy_by_feature_activation",
    "bin_labels",
    "correct_array",
    "encode_categories",
    "quantile_bins",
]

logger = logging.getLogger(__name__)

MISSING_LABEL = "nan"
_METRIC_COLUMNS = ["size", "accuracy", "error_rate", "ci_low", "ci_high"]


# --------------------------------------------------------------------------- encoding helpers


def encode_categories(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the distinct values of ``values``, compared as strings.

    Values whose string forms are equal are one category; missing values (NaN, None, NA) are the
    category ``"nan"``. Categories are sorted by their string form.

    Parameters
    ----------
    values : Series or 1-d array

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Index of each row's category in ``labels``.
    labels : ndarray of str
        The categories, sorted.

    Examples
    --------
    >>> codes, labels = encode_categories(pd.Series(["b", None, "a", "b"]))
    >>> codes.tolist(), labels.tolist()
    ([1, 2, 0, 1], ['a', 'b', 'nan'])
    """
    codes, uniques = pd.factorize(pd.Series(values) if isinstance(values, np.ndarray) else values,
                                  use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if (codes < 0).any():
        names.append(MISSING_LABEL)
        codes = np.where(codes < 0, len(names) - 1, codes)
    labels, inverse = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64), labels
    return inverse[codes].astype(np.int64), labels


def quantile_bins(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin ``values`` by their quantiles into at most ``n_bins`` bins.

    Edges are the ``0, 1/n_bins, ..., 1`` quantiles of the finite values; repeated edges (ties,
    e.g. the zeros of a ReLU activation) are merged, so fewer bins may come back. Bin ``i`` is
    ``[edges[i], edges[i+1])``, the last one closed on the right.

    Parameters
    ----------
    values : array of float, shape (n,)
    n_bins : int
        Wanted number of bins, at least 1.

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Bin index of each value; ``-1`` for NaN.
    edges : ndarray of float, shape (n_edges,)
        ``codes.max() + 2 == n_edges`` when there is a finite value; empty when there is none.

    Examples
    --------
    >>> codes, edges = quantile_bins(np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, np.nan]), 4)
    >>> codes.tolist(), edges.tolist()
    ([0, 0, 0, 1, 2, 2, -1], [0.0, 0.5, 1.75, 3.0])
    """
    if not isinstance(n_bins, Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ParameterError(f"The 'n_bins' parameter of quantile_bins must be an int >= 1. "
                             f"Got {n_bins!r} instead.", parameter="n_bins")
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.full(x.shape, -1, dtype=np.int64), np.zeros(0)
    edges = np.unique(np.quantile(x[finite], np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size == 1:
        codes = np.zeros(x.shape, dtype=np.int64)
        edges = np.array([edges[0], edges[0]])
    else:
        codes = np.searchsorted(edges[1:-1], x, side="right").astype(np.int64)
    codes[~finite] = -1
    return codes, edges


def bin_labels(edges: np.ndarray) -> list[str]:
    """Readable labels of the bins given by ``edges``, with enough digits to tell them apart.

    Examples
    --------
    >>> bin_labels(np.array([0.0, 0.5, 2.0]))
    ['[0, 0.5)', '[0.5, 2]']
    """
    n = max(len(edges) - 1, 0)
    texts: list[str] = []
    for digits in (4, 6, 9, 17):  # fewest digits that keep distinct edges distinct
        texts = [f"{e:.{digits}g}" for e in edges]
        if len(set(texts)) == len(set(np.asarray(edges).tolist())):
            break
    return [f"[{texts[i]}, {texts[i + 1]}" + ("]" if i == n - 1 else ")") for i in range(n)]


# --------------------------------------------------------------------------- validation helpers


def _check_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"the {what} must be a pandas DataFrame, got {type(table).__name__}")
    for col in columns:
        if col not in table.columns:
            raise DataError(f"the {what} has no column {col!r}; it has {list(map(str, table.columns))}")


def correct_array(values: Any, *, name: str = "correct") -> np.ndarray:
    """``values`` as a boolean array, refusing missing values and anything but booleans or 0/1.

    Examples
    --------
    >>> correct_array(pd.Series([1, 0, 1])).tolist()
    [True, False, True]
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"column {name!r} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype == object or arr.dtype.kind in "iufb":
        try:
            num = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"column {name!r} must hold booleans, got values such as "
                            f"{arr[:3].tolist()}") from exc
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            first = arr[bad][0]
            first = first.item() if isinstance(first, np.generic) else first
            raise DataError(f"column {name!r} must hold booleans (True/False or 0/1); "
                            f"row {int(np.flatnonzero(bad)[0])} holds {first!r}")
        return num.astype(bool)
    raise DataError(f"column {name!r} must hold booleans, got dtype {arr.dtype}")


def _check_common(confidence: float, min_support: int, where: str) -> None:
    if not isinstance(confidence, float | int) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ParameterError(f"The 'confidence' parameter of {where} must be a float in (0, 1). "
                             f"Got {confidence!r} instead.", parameter="confidence")
    if not isinstance(min_support, Integral) or isinstance(min_support, bool) or min_support < 1:
        raise ParameterError(f"The 'min_support' parameter of {where} must be an int >= 1. "
                             f"Got {min_support!r} instead.", parameter="min_support")


def _metrics(hits: np.ndarray, sizes: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """size, accuracy, error_rate, ci_low, ci_high for groups with ``sizes > 0``."""
    low, high = wilson_interval(hits, sizes, confidence)
    acc = hits / sizes
    return {"size": sizes.astype(np.int64), "accuracy": acc, "error_rate": 1.0 - acc,
            "ci_low": low, "ci_high": high}


# --------------------------------------------------------------------------- breakdowns


def accuracy_by_attribute(
    table: pd.DataFrame,
    attributes: list[str],
    *,
    correct_column: str = "correct",
    confidence: float = 0.95,
    min_support: int = 1,
) -> pd.DataFrame:
    """Accuracy of every value of every attribute, with a Wilson interval.

    Parameters
    ----------
    table : DataFrame
        A prediction table (see :mod:`sparsecheck.pipeline.context`) with a boolean ``correct_column``.
    attributes : list of str
        Columns to break down by; each distinct value (as a string) is one row.
    correct_column : str
        Boolean column, True where the prediction is right.
    confidence : float
        Coverage of the Wilson interval.
    min_support : int
        Values with fewer rows are left out.

    Returns
    -------
    DataFrame with columns attribute, value, size, accuracy, error_rate, ci_low, ci_high
    (the interval is on accuracy).
    """
    _check_columns(table, [*attributes, correct_column], "prediction table")
    _check_common(confidence, min_support, "accuracy_by_attribute")
    correct = correct_array(table[correct_column], name=correct_column)
    frames = []
    for attr in attributes:
        codes, labels = encode_categories(table[attr])
        sizes = np.bincount(codes, minlength=len(labels))
        hits = np.bincount(codes, weights=correct, minlength=len(labels))
        keep = (sizes >= min_support) & (sizes > 0)
        part = {"attribute": np.full(int(keep.sum()), attr, dtype=object),
                "value": labels[keep].astype(object)}
        part.update(_metrics(hits[keep], sizes[keep], confidence))
        frames.append(pd.DataFrame(part))
    columns = ["attribute", "value", *_METRIC_COLUMNS]
    return _concat(frames, columns)


def accuracy_by_attribute_pair(
    table: pd.DataFrame,
    attributes: list[str],
    *,
    correct_column: str = "correct",
    confidence: float = 0.95,
    min_support: int = 1,
) -> pd.DataFrame:
    """Accuracy of every observed combination of values of every pair of attributes.

    Parameters
    ----------
    table : DataFrame
        A prediction table with a boolean ``correct_column``.
    attributes : list of str
        Columns to pair; every unordered pair ``(attributes[i], attributes[j])``, ``i < j``, is
        broken down. Only combinations present in the table appear.
    correct_column, confidence, min_support
        As in :func:`accuracy_by_attribute`.

    Returns
    -------
    DataFrame with columns attribute_1, value_1, attribute_2, value_2, size, accuracy,
    error_rate, ci_low, ci_high (the interval is on accuracy).

    Examples
    --------
    >>> t = pd.DataFrame({"correct": [True, False, False, True],
    ...                   "site": ["a", "a", "b", "b"], "sex": ["f", "m", "m", "m"]})
    >>> accuracy_by_attribute_pair(t, ["site", "sex"])[["value_1", "value_2", "size", "accuracy"]].to_dict("records")
    [{'value_1': 'a', 'value_2': 'f', 'size': 1, 'accuracy': 1.0}, {'value_1': 'a', 'value_2': 'm', 'size': 1, 'accuracy': 0.0}, {'value_1': 'b', 'value_2': 'm', 'size': 2, 'accuracy': 0.5}]
    """
    _check_columns(table, [*attributes, correct_column], "prediction table")
    _check_common(confidence, min_support, "accuracy_by_attribute_pair")
    if len(set(attributes)) != len(attributes):
        raise ParameterError(f"The 'attributes' parameter of accuracy_by_attribute_pair must not "
                             f"repeat a column. Got {attributes!r} instead.", parameter="attributes")
    correct = correct_array(table[correct_column], name=correct_column)
    encoded = {attr: encode_categories(table[attr]) for attr in attributes}
    frames = []
    for a, b in combinations(attributes, 2):
        (ca, la), (cb, lb) = encoded[a], encoded[b]
        cell = ca * len(lb) + cb
        cells, inverse = np.unique(cell, return_inverse=True)  # observed combinations only
        sizes = np.bincount(inverse, minlength=len(cells))
        hits = np.bincount(inverse, weights=correct, minlength=len(cells))
        keep = sizes >= min_support
        cells = cells[keep]
        part = {"attribute_1": np.full(cells.size, a, dtype=object),
                "value_1": la[cells // len(lb)].astype(object),
                "attribute_2": np.full(cells.size, b, dtype=object),
                "value_2": lb[cells % len(lb)].astype(object)}
        part.update(_metrics(hits[keep], sizes[keep], confidence))
        frames.append(pd.DataFrame(part))
    columns = ["attribute_1", "value_1", "attribute_2", "value_2", *_METRIC_COLUMNS]
    return _concat(frames, columns)


def accuracy_by_feature_activation(
    features: np.ndarray,
    class_features: Mapping[Any, Sequence[int]],
    labels: np.ndarray,
    correct: np.ndarray,
    *,
    n_bins: int = 4,
    confidence: float = 0.95,
    min_support: int = 1,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Accuracy on each class's examples, by quantile bin of each feature the class uses.

    For class ``c`` and feature ``j`` in ``class_features[c]``, the examples labelled ``c`` are
    binned by the quantiles of their own activations of ``j`` (within-class quantiles, see
    :func:`quantile_bins`), and each bin gets its size, accuracy (the recall of ``c`` there) and
    a Wilson interval. "wolves are recognised 41% of the time when feature 1042 is low, 96% when
    it is high" is two rows of this table.

    Parameters
    ----------
    features : array of float, shape (n, d)
        Deep features; may be a memory map (only the used columns of each class are read).
    class_features : mapping class -> list of int
        Feature indices each class uses, e.g. the non-zero weights of the sparse layer. Keys are
        values of ``labels``.
    labels : array of int, shape (n,)
        True class of each example.
    correct : array of bool, shape (n,)
        Whether each example is classified correctly.
    n_bins : int
        Wanted number of quantile bins per (class, feature); ties can merge bins.
    confidence, min_support
        As in :func:`accuracy_by_attribute`.
    progress : bool or None
        Show a progress bar over classes; None shows it only on a terminal.

    Returns
    -------
    DataFrame with columns class, feature, bin (0 = lowest activations), low, high (the bin's
    activation range, ``[low, high)``, the last bin closed), size, accuracy, error_rate,
    ci_low, ci_high (the interval is on accuracy).

    Examples
    --------
    >>> feats = np.array([[0.1], [0.2], [0.9], [1.0], [5.0]])
    >>> out = accuracy_by_feature_activation(feats, {1: [0]}, np.array([1, 1, 1, 1, 0]),
    ...                                      np.array([False, False, True, True, True]), n_bins=2)
    >>> out[["class", "feature", "bin", "size", "accuracy"]].to_dict("records")
    [{'class': 1, 'feature': 0, 'bin': 0, 'size': 2, 'accuracy': 0.0}, {'class': 1, 'feature': 0, 'bin': 1, 'size': 2, 'accuracy': 1.0}]
    """
    where = "accuracy_by_feature_activation"
    _check_common(confidence, min_support, where)
    if not isinstance(n_bins, Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ParameterError(f"The 'n_bins' parameter of {where} must be an int >= 1. "
                             f"Got {n_bins!r} instead.", parameter="n_bins")
    if getattr(features, "ndim", None) != 2:
        features = np.asarray(features)
        if features.ndim != 2:
            raise DataError(f"features must be a 2-d array (n, d), got shape {features.shape}")
    n, d = features.shape
    labels = np.asarray(labels)
    correct = correct_array(correct, name="correct")
    if labels.shape != (n,) or correct.shape != (n,):
        raise DataError(f"features has {n} rows but labels has shape {labels.shape} and correct "
                        f"has shape {correct.shape}")
    if not isinstance(class_features, Mapping):
        raise ParameterError(f"The 'class_features' parameter of {where} must be a mapping "
                             f"class -> list of feature indices. Got {type(class_features).__name__} "
                             "instead.", parameter="class_features")
    frames = []
    for cls, feats in tqdm(class_features.items(), desc="breakdown by feature", unit="class",
                           disable=None if progress is None else not progress):
        ids = np.asarray(list(feats), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= d):
            bad = ids[(ids < 0) | (ids >= d)][0]
            raise ParameterError(f"The 'class_features' parameter of {where} lists feature "
                                 f"{int(bad)} for class {cls!r}, but features has {d} columns.",
                                 parameter="class_features")
        rows = np.flatnonzero(labels == cls)
        if rows.size == 0 or ids.size == 0:
            if rows.size == 0:
                logger.info("class %r has no examples; skipped in the feature breakdown", cls)
            continue
        block = np.asarray(features[rows][:, ids], dtype=np.float64)
        hits_c = correct[rows]
        for k, feat in enumerate(ids):
            x = block[:, k]
            if not np.isfinite(x).all():
                raise DataError(f"feature {int(feat)} has non-finite activations for class {cls!r}")
            codes, edges = quantile_bins(x, n_bins)
            nb = len(edges) - 1
            sizes = np.bincount(codes, minlength=nb)
            hits = np.bincount(codes, weights=hits_c, minlength=nb)
            keep = sizes >= max(min_support, 1)
            bins = np.flatnonzero(keep)
            part: dict[str, Any] = {"class": [cls] * bins.size,
                                    "feature": np.full(bins.size, int(feat), dtype=np.int64),
                                    "bin": bins.astype(np.int64),
                                    "low": edges[bins], "high": edges[bins + 1]}
            part.update(_metrics(hits[keep], sizes[keep], confidence))
            frames.append(pd.DataFrame(part))
    columns = ["class", "feature", "bin", "low", "high", *_METRIC_COLUMNS]
    return _concat(frames, columns)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "size" else object) for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]
