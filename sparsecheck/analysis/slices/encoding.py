"""Encoding a table for the slice search: every column becomes integer codes, one-hot encoded once.

Missing values (NaN, None) are a value of their own, ``"nan"``. Float columns with more than
``n_bins`` distinct values are binned by quantiles (labels like ``"[0.12, 0.5)"``); every other
column (int, bool, str, category) is used as is, compared by its string form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from sparsecheck.analysis.breakdown import MISSING_LABEL, bin_labels, encode_categories, quantile_bins

# ----------------------------------------------------------------------------- encoding


@dataclass
class _Encoding:
    """The slicing columns as integer codes; value ``j`` of column ``a`` is global id
    ``offsets[a] + j``."""

    columns: list[str]
    labels: list[np.ndarray]  # per column, the value labels (str)
    edges: list[np.ndarray | None]  # per column, quantile bin edges when the column was binned
    codes: np.ndarray  # (d, n) local codes
    offsets: np.ndarray  # (d + 1,)

    @property
    def n_values(self) -> int:
        return int(self.offsets[-1])

    def without_rows(self) -> "_Encoding":
        return _Encoding(self.columns, self.labels, self.edges, self.codes[:, :0], self.offsets)


def _is_binned(series: pd.Series, n_bins: int) -> bool:
    if not pd.api.types.is_float_dtype(series.dtype):
        return False
    x = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.unique(x[np.isfinite(x)]).size > n_bins


def _encode_column(series: pd.Series, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if _is_binned(series, n_bins):
        codes, edges = quantile_bins(series.to_numpy(dtype=np.float64, na_value=np.nan), n_bins)
        labels = bin_labels(edges)
        if (codes < 0).any():
            codes = np.where(codes < 0, len(labels), codes)
            labels.append(MISSING_LABEL)
        return codes, np.asarray(labels, dtype=str), edges
    codes, labels = encode_categories(series)
    return codes, labels, None


def _encode_table(table: pd.DataFrame, columns: list[str], n_bins: int) -> _Encoding:
    n = len(table)
    dtype = np.int32
    codes = np.empty((len(columns), n), dtype=dtype)
    labels, edges = [], []
    for a, col in enumerate(columns):
        c, lab, e = _encode_column(table[col], n_bins)
        codes[a] = c
        labels.append(lab)
        edges.append(e)
    offsets = np.concatenate([[0], np.cumsum([len(lab) for lab in labels])]).astype(np.int64)
    return _Encoding(list(columns), labels, edges, codes, offsets)


def _one_hot(enc: _Encoding) -> sparse.csr_matrix:
    """X: one row per example, a 1 in the column of each of its values (n x total values)."""
    d, n = enc.codes.shape
    indices = (enc.codes + enc.offsets[:-1, None].astype(enc.codes.dtype)).T.ravel()
    indptr = np.arange(0, n * d + 1, d, dtype=np.int64)
    return sparse.csr_matrix((np.ones(n * d, dtype=np.int8), indices, indptr),
                             shape=(n, enc.n_values))
