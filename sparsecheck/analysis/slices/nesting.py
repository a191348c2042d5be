"""The nested test of a slice against its parents (the slices with one predicate fewer): the largest
one-sided Fisher p-value of "its error rate exceeds the rest of a parent's", and the rows of
slices as a sparse membership matrix; used by :class:`~sparsecheck.analysis.slices.SliceFinder`."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from sparsecheck.analysis.slices.lattice import _Candidates
from sparsecheck.analysis.stats import fisher_exact_pvalue


def _nested_pvalues(cand: _Candidates, x: sparse.csc_matrix, errors: np.ndarray) -> np.ndarray:
    """For each slice of two or more predicates, the largest one-sided Fisher p-value of "its error
    rate exceeds that of the rest of a parent" over its parents (the slice with one predicate
    fewer); 0 for single predicates. Parents missing from the candidates are counted from ``x``.

    Parents are found by integer keys (the value ids as digits), sorted and searched in arrays: at
    a thousand classes the candidates run into millions, where a Python dictionary of tuples took
    minutes.
    """
    out = np.zeros(cand.level.size)
    multi = np.flatnonzero(cand.level >= 2)
    if multi.size == 0:
        return out
    width = cand.values.shape[1]
    base = int(cand.values.max()) + 2  # digit 0 is "no predicate"
    if width * np.log2(base) >= 62:  # keys would overflow int64: count every parent from x
        return _nested_pvalues_counted(cand, x, errors)
    digits = cand.values.astype(np.int64) + 1
    weights = base ** np.arange(width, dtype=np.int64)
    keys = digits @ weights
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    child_parts, parent_parts = [], []
    for level in np.unique(cand.level[multi]):
        rows = multi[cand.level[multi] == level]
        for drop in range(int(level)):
            parent = np.concatenate([np.delete(digits[rows], drop, axis=1),
                                     np.zeros((rows.size, 1), dtype=np.int64)], axis=1)
            child_parts.append(rows)
            parent_parts.append(parent)
    child_a = np.concatenate(child_parts)
    parents = np.concatenate(parent_parts)
    pkeys = parents @ weights
    at = np.minimum(np.searchsorted(sorted_keys, pkeys), sorted_keys.size - 1)
    found = sorted_keys[at] == pkeys
    p_size = np.zeros(child_a.size, dtype=np.int64)
    p_err = np.zeros(child_a.size, dtype=np.int64)
    p_size[found] = cand.size[order[at[found]]]
    p_err[found] = cand.errors[order[at[found]]]
    counted: dict[tuple[int, ...], tuple[int, int]] = {}
    for i in np.flatnonzero(~found):  # pruned by the search: count it
        parent = tuple(int(v) - 1 for v in parents[i] if v > 0)
        if parent not in counted:
            counted[parent] = _count_rows(x, parent, errors)
        p_size[i], p_err[i] = counted[parent]
    return _max_parent_pvalue(out, cand, child_a, p_size, p_err)


def _count_rows(x: sparse.csc_matrix, values: tuple[int, ...], errors: np.ndarray) -> tuple[int, int]:
    rows = np.ones(x.shape[0], dtype=bool)
    for v in values:
        rows &= x[:, v].toarray().ravel().astype(bool)
    return int(rows.sum()), int(errors[rows].sum())


def _max_parent_pvalue(out: np.ndarray, cand: _Candidates, child_a: np.ndarray, p_size: np.ndarray,
                       p_err: np.ndarray) -> np.ndarray:
    rest_n = np.asarray(p_size) - cand.size[child_a]
    rest_e = np.asarray(p_err) - cand.errors[child_a]
    pv = np.ones(child_a.size)
    ok = rest_n > 0  # a predicate that removes no row from a parent adds nothing: p = 1
    if ok.any():
        pv[ok] = fisher_exact_pvalue(cand.errors[child_a[ok]], cand.size[child_a[ok]], rest_e[ok], rest_n[ok],
                                     alternative="greater")
    np.maximum.at(out, child_a, pv)
    return out


def _nested_pvalues_counted(cand: _Candidates, x: sparse.csc_matrix, errors: np.ndarray) -> np.ndarray:
    """:func:`_nested_pvalues` through a dictionary of value tuples (any number of values)."""
    out = np.zeros(cand.level.size)
    multi = np.flatnonzero(cand.level >= 2)
    index = {tuple(int(v) for v in cand.values[i, :cand.level[i]]): i for i in range(cand.level.size)}
    counted: dict[tuple[int, ...], tuple[int, int]] = {}
    child, p_size, p_err = [], [], []
    for i in multi:
        vals = tuple(int(v) for v in cand.values[i, :cand.level[i]])
        for drop in range(len(vals)):
            parent = vals[:drop] + vals[drop + 1:]
            j = index.get(parent)
            if j is not None:
                size, err = int(cand.size[j]), int(cand.errors[j])
            else:
                if parent not in counted:
                    counted[parent] = _count_rows(x, parent, errors)
                size, err = counted[parent]
            child.append(i)
            p_size.append(size)
            p_err.append(err)
    return _max_parent_pvalue(out, cand, np.asarray(child), np.asarray(p_size), np.asarray(p_err))


def _membership(x: sparse.csc_matrix, values: np.ndarray, level: np.ndarray) -> sparse.csc_matrix:
    """Rows of each slice: those where ``X @ s`` (matched predicates) equals the slice's level.
    Only the columns of X the slices use take part in the product."""
    c = values.shape[0]
    has = values >= 0
    used, pos = np.unique(values[has], return_inverse=True)
    rows = np.repeat(np.arange(c), has.sum(axis=1))
    s = sparse.csr_matrix((np.ones(rows.size, dtype=np.int16), (rows, pos.ravel())),
                          shape=(c, used.size))
    matched = (x[:, used].tocsr() @ s.T).tocsr()
    matched.data = (matched.data == level[matched.indices])
    matched.eliminate_zeros()
    return matched.tocsc().astype(bool)
