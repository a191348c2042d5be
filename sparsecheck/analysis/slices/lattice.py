"""The exact lattice search behind :class:`~sparsecheck.analysis.slices.SliceFinder`.

Scores and SliceLine's upper bound, the size of the tested family (for Benjamini–Hochberg), the
integer-key lookup of parents, and the level-by-level search over an encoded table
(:mod:`~sparsecheck.analysis.slices.encoding`). See :mod:`sparsecheck.analysis.slices` for how and
why it works.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from sparsecheck.analysis.slices.encoding import _Encoding

logger = logging.getLogger(__name__)

_TOL = 1e-9  # slack on score comparisons, so float noise never prunes a slice that ties
_MIN_SCORE = 1e-9  # a slice is reported when its score exceeds this (is positive beyond float noise)
_GEN_CHUNK = 2_000_000  # candidates generated at once (bounds memory of the join)

# ----------------------------------------------------------------------------- scoring


def _score(size: np.ndarray, errors: np.ndarray, n: int, mean_error: float, alpha: float) -> np.ndarray:
    size = np.asarray(size, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = alpha * (errors / (size * mean_error) - 1.0) - (1.0 - alpha) * (n / size - 1.0)
    return np.where(size > 0, sc, -np.inf)


def _upper_bound(size_ub: np.ndarray, errors_ub: np.ndarray, n: int, mean_error: float,
                 alpha: float, min_support: int) -> np.ndarray:
    """Largest score any slice with at most ``size_ub`` rows and ``errors_ub`` errors (and at
    least ``min_support`` rows) can have. The score, as a function of the size s with the errors
    at their most (min(s, errors_ub)), is monotone on [min_support, errors_ub] and on
    [errors_ub, size_ub], so its maximum is at one of the three end points (SliceLine, sec. 3.2)."""
    ss = np.asarray(size_ub, dtype=np.float64)
    se = np.asarray(errors_ub, dtype=np.float64)
    best = np.full(ss.shape, -np.inf)
    for s in (np.full(ss.shape, float(min_support)), np.clip(se, min_support, np.maximum(ss, min_support)), ss):
        with np.errstate(divide="ignore", invalid="ignore"):
            f = alpha * (np.minimum(s, se) / (s * mean_error) - 1.0) - (1.0 - alpha) * (n / s - 1.0)
        best = np.maximum(best, np.where(s > 0, f, -np.inf))
    return np.where((ss >= min_support) & (se > 0), best, -np.inf)


def _family_size(supported: np.ndarray, max_level: int, cap: int) -> int:
    """Upper bound on the number of slices of up to ``max_level`` predicates with at least
    ``min_support`` rows: an attribute set T holds at most min(prod of its supported values,
    n // min_support) of them."""
    dims = supported[supported > 0].astype(np.float64)
    elem = np.zeros(max_level + 1)  # elementary symmetric sums of dims
    elem[0] = 1.0
    for dim in dims:
        elem[1:] = elem[1:] + elem[:-1] * dim
    total = 0.0
    for level in range(1, max_level + 1):
        n_sets = math.comb(dims.size, level)
        if n_sets == 0:
            break
        if n_sets <= 200_000:
            sets = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(dims.size), level)),
                               dtype=np.int64, count=n_sets * level).reshape(n_sets, level)
            total += float(np.minimum(np.prod(dims[sets], axis=1), cap).sum())
        else:
            total += min(elem[level], float(n_sets) * cap)
    return int(min(total, 2 ** 62))


def _kth_largest(values: np.ndarray, k: int) -> float:
    """k-th largest of ``values``, or 0.0 when there are fewer than k (no pruning by rank yet)."""
    if values.size < k:
        return 0.0
    return float(np.partition(values, values.size - k)[values.size - k])


# ----------------------------------------------------------------------------- key lookup


class _RowIndex:
    """Find rows of a small int matrix (each row a sorted list of value ids) in a reference set."""

    def __init__(self, rows: np.ndarray, base: int) -> None:
        self.width = rows.shape[1]
        self.base = base
        self.packed = base ** max(self.width, 1) < 2 ** 62
        if self.packed:
            keys = self._keys(rows)
            self.order = np.argsort(keys, kind="stable")
            self.sorted = keys[self.order]
        else:  # too many values to pack a row into one int64: hash the tuples instead
            self.index = pd.MultiIndex.from_arrays(list(rows.T)) if self.width else None

    def _keys(self, rows: np.ndarray) -> np.ndarray:
        keys = np.zeros(rows.shape[0], dtype=np.int64)
        for j in range(rows.shape[1]):
            keys = keys * self.base + rows[:, j]
        return keys

    def lookup(self, rows: np.ndarray) -> np.ndarray:
        """Position of each row in the reference set, -1 where absent."""
        if self.packed:
            keys = self._keys(rows)
            if self.sorted.size == 0:
                return np.full(keys.size, -1, dtype=np.int64)
            pos = np.minimum(np.searchsorted(self.sorted, keys), self.sorted.size - 1)
            return np.where(self.sorted[pos] == keys, self.order[pos], -1)
        return self.index.get_indexer(pd.MultiIndex.from_arrays(list(rows.T)))


# ----------------------------------------------------------------------------- the search


@dataclass
class _Candidates:
    """Every evaluated slice: value ids (padded with -1), level, size, errors."""

    values: np.ndarray
    level: np.ndarray
    size: np.ndarray
    errors: np.ndarray


class _LatticeSearch:
    """One run of the level-wise search; keeps only arrays, knows nothing of pandas."""

    def __init__(self, enc: _Encoding, x: sparse.csc_matrix, errors: np.ndarray, *, alpha: float,
                 min_support: int, max_predicates: int, pool: int, progress: bool | None,
                 families: np.ndarray | None = None) -> None:
        self.enc = enc
        self.x = x
        self.n = enc.codes.shape[1]
        self.errors = errors
        self.error_idx = np.flatnonzero(errors)
        self.mean_error = self.error_idx.size / self.n
        self.alpha = alpha
        self.min_support = min_support
        self.max_predicates = max_predicates
        self.pool = pool
        self.progress = progress
        self.value_attr = np.repeat(np.arange(len(enc.columns)), np.diff(enc.offsets))
        # family code of each value's column; -1 combines with any family (see SliceFinder.fit)
        self.attr_family = None if families is None else np.asarray(families, dtype=np.int64)
        self.value_family = None if families is None else self.attr_family[self.value_attr]
        self.threshold = 0.0  # the pruning threshold in force; never decreases
        self.top_scores = np.zeros(0)
        self.stats: list[dict[str, int]] = []

    # -- bookkeeping
    def _ub(self, size: np.ndarray, errors: np.ndarray) -> np.ndarray:
        return _upper_bound(size, errors, self.n, self.mean_error, self.alpha, self.min_support)

    def _update_threshold(self, scores: np.ndarray) -> None:
        self.top_scores = np.concatenate([self.top_scores, scores[scores > _MIN_SCORE]])
        if self.top_scores.size > self.pool:
            self.top_scores = np.partition(self.top_scores, self.top_scores.size - self.pool)[-self.pool:]
        self.threshold = max(self.threshold, _kth_largest(self.top_scores, self.pool))

    def _promising(self, upper_bound: np.ndarray) -> np.ndarray:
        """Whether slices with this bound may still be reported: positive, and within reach of
        the current top-k."""
        return (upper_bound > _MIN_SCORE) & \
            (upper_bound >= self.threshold - _TOL * (1 + abs(self.threshold)))

    def _alive(self, size: np.ndarray, errors: np.ndarray) -> np.ndarray:
        """Slices worth extending: enough rows, some errors, and descendants that can still
        reach the top-k."""
        return (size >= self.min_support) & (errors > 0) & self._promising(self._ub(size, errors))

    # -- main loop
    def run(self) -> _Candidates:
        n_values = self.enc.n_values
        # level 1: column sums of the one-hot matrix, over all rows and over the error rows
        size1 = np.diff(self.x.indptr).astype(np.int64)
        err1 = np.rint(self.errors.astype(np.float64) @ self.x).astype(np.int64)
        ok1 = size1 >= self.min_support
        store_vals = [np.flatnonzero(ok1)[:, None]]
        store_size, store_err = [size1[ok1]], [err1[ok1]]
        self._update_threshold(_score(size1[ok1], err1[ok1], self.n, self.mean_error, self.alpha))
        self.stats.append({"level": 1, "candidates": n_values, "evaluated": n_values,
                           "kept": int(ok1.sum())})
        self.size1, self.err1 = size1, err1
        supported = np.bincount(self.value_attr[ok1], minlength=len(self.enc.columns))
        cap = self.n // self.min_support
        self.family_size = _family_size(supported, self.max_predicates, cap)
        # each family of columns is its own multiple-testing family: the slices over its columns
        # (with the free ones), less those over the free columns alone (the family -1)
        self.family_sizes: dict[int, int] = {}
        if self.attr_family is not None:
            free = self.attr_family < 0
            free_size = _family_size(np.where(free, supported, 0), self.max_predicates, cap)
            self.family_sizes[-1] = free_size
            for fam in np.unique(self.attr_family[~free]):
                cols = free | (self.attr_family == fam)
                self.family_sizes[int(fam)] = _family_size(np.where(cols, supported, 0), self.max_predicates,
                                                           cap) - free_size

        alive1 = self._alive(size1, err1)
        self._compact(alive1)
        parents = np.flatnonzero(alive1)[:, None]
        p_size, p_err = size1[alive1], err1[alive1]
        for level in range(2, self.max_predicates + 1):
            if parents.shape[0] == 0:
                break
            ext = np.flatnonzero(self._alive(size1, err1) & (self.compact_of_value >= 0))
            cand, generated = self._generate(parents, p_size, p_err, ext)
            if cand.shape[0] == 0:
                self.stats.append({"level": level, "candidates": generated, "evaluated": 0, "kept": 0})
                break
            size, err = self._evaluate(cand, level)
            ok = size >= self.min_support
            store_vals.append(cand[ok])
            store_size.append(size[ok])
            store_err.append(err[ok])
            self._update_threshold(_score(size[ok], err[ok], self.n, self.mean_error, self.alpha))
            self.stats.append({"level": level, "candidates": generated, "evaluated": int(cand.shape[0]),
                               "kept": int(ok.sum())})
            logger.debug("level %d: %d candidates generated, %d evaluated, %d with support; "
                         "threshold %.4g", level, generated, cand.shape[0], int(ok.sum()), self.threshold)
            alive = ok & self._alive(size, err)
            parents, p_size, p_err = cand[alive], size[alive], err[alive]

        width = self.max_predicates
        values = np.full((sum(v.shape[0] for v in store_vals), width), -1, dtype=np.int64)
        level_arr = np.empty(values.shape[0], dtype=np.int64)
        row = 0
        for v in store_vals:
            values[row:row + v.shape[0], :v.shape[1]] = v
            level_arr[row:row + v.shape[0]] = v.shape[1]
            row += v.shape[0]
        return _Candidates(values, level_arr, np.concatenate(store_size), np.concatenate(store_err))

    # -- candidate generation
    def _generate(self, parents: np.ndarray, p_size: np.ndarray, p_err: np.ndarray,
                  ext: np.ndarray) -> tuple[np.ndarray, int]:
        """Children of ``parents`` (one more predicate, on a later attribute) whose every parent
        is alive and whose upper bound can reach the top-k."""
        width = parents.shape[1]
        index = _RowIndex(parents, self.enc.n_values)
        ext_attr = self.value_attr[ext]
        start = np.searchsorted(ext_attr, self.value_attr[parents[:, -1]], side="right")
        count = (ext.size - start).astype(np.int64)
        ends = np.cumsum(count)
        out, generated, lo = [], int(ends[-1]) if ends.size else 0, 0
        while lo < parents.shape[0]:
            base = ends[lo - 1] if lo else 0
            hi = max(int(np.searchsorted(ends, base + _GEN_CHUNK, side="right")), lo + 1)
            cnt = count[lo:hi]
            total = int(cnt.sum())
            if total:
                rep = np.repeat(np.arange(lo, hi), cnt)
                within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                new = ext[start[rep] + within]
                child = np.empty((total, width + 1), dtype=np.int64)
                child[:, :width] = parents[rep]
                child[:, width] = new
                ss = np.minimum(p_size[rep], self.size1[new])
                se = np.minimum(p_err[rep], self.err1[new])
                ok = np.ones(total, dtype=bool)
                for j in range(width):  # the parent dropping column `width` is `rep` itself
                    pos = index.lookup(np.delete(child, j, axis=1))
                    ok &= pos >= 0
                    pos = np.where(pos >= 0, pos, 0)
                    ss = np.minimum(ss, p_size[pos])
                    se = np.minimum(se, p_err[pos])
                keep = ok & self._promising(self._ub(ss, se))
                if self.value_family is not None:  # never mix two families in one slice
                    fam = self.value_family[child]
                    named = fam >= 0
                    first = np.where(named.any(axis=1), fam[np.arange(total), np.argmax(named, axis=1)], -1)
                    keep &= ~(named & (fam != first[:, None])).any(axis=1)
                out.append(child[keep])
            lo = hi
        cand = np.concatenate(out) if out else np.zeros((0, width + 1), dtype=np.int64)
        return cand, generated

    # -- evaluation
    def _compact(self, alive1: np.ndarray) -> None:
        """Re-code every attribute to its alive values plus one 'other' code, so contingency
        tables stay small whatever the attributes' cardinality."""
        enc = self.enc
        d = len(enc.columns)
        self.compact_of_value = np.full(enc.n_values, -1, dtype=np.int64)
        self.dims = np.ones(d, dtype=np.int64)
        self.compact_codes = np.empty_like(enc.codes)
        for a in range(d):
            lo, hi = enc.offsets[a], enc.offsets[a + 1]
            keep = alive1[lo:hi]
            k = int(keep.sum())
            mapping = np.full(hi - lo, k, dtype=enc.codes.dtype)
            mapping[keep] = np.arange(k, dtype=enc.codes.dtype)
            self.compact_of_value[lo:hi][keep] = np.arange(k)
            self.dims[a] = k + 1
            self.compact_codes[a] = mapping[enc.codes[a]] if k else k
        self.compact_err = self.compact_codes[:, self.error_idx]

    def _evaluate(self, cand: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact sizes and error counts of ``cand``, one contingency table per attribute set."""
        attrs = self.value_attr[cand]
        local = self.compact_of_value[cand]
        order = np.lexsort(attrs.T[::-1])
        attrs_s = attrs[order]
        change = np.flatnonzero(np.any(attrs_s[1:] != attrs_s[:-1], axis=1)) + 1
        bounds = np.concatenate([[0], change, [cand.shape[0]]])
        # runs of candidates sharing all attributes but the last one (the "prefix")
        p_change = np.flatnonzero(np.any(attrs_s[1:, :-1] != attrs_s[:-1, :-1], axis=1)) + 1
        p_bounds = np.concatenate([p_change, [cand.shape[0]]])
        size = np.zeros(cand.shape[0], dtype=np.int64)
        err = np.zeros(cand.shape[0], dtype=np.int64)
        prefix_key: tuple[int, ...] | None = None
        prefix: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None
        groups = range(len(bounds) - 1)
        bar = tqdm(groups, desc=f"slices, level {level}", unit="attr set", leave=False,
                   disable=None if self.progress is None else not self.progress)
        for g in bar:
            rows = order[bounds[g]:bounds[g + 1]]
            attr_set = tuple(int(a) for a in attrs_s[bounds[g]])
            dims = [int(self.dims[a]) for a in attr_set]
            cells = int(np.prod(dims, dtype=object))
            if cells >= 2 ** 62:
                size[rows], err[rows] = self._evaluate_wide(attr_set, local[rows])
                continue
            if attr_set[:-1] != prefix_key:
                prefix_key = attr_set[:-1]
                # all candidates sharing this prefix: restrict the table to their parents' rows
                stop = int(p_bounds[np.searchsorted(p_bounds, bounds[g], side="right")])
                prefix = self._prefix_codes(prefix_key, local[order[bounds[g]:stop], :-1])
            row_code, err_code, row_sel, err_sel = prefix
            last = attr_set[-1]
            last_rows = self.compact_codes[last] if row_sel is None else self.compact_codes[last][row_sel]
            last_err = self.compact_err[last] if err_sel is None else self.compact_err[last][err_sel]
            code = row_code * dims[-1] + last_rows
            ecode = err_code * dims[-1] + last_err
            cell = np.zeros(rows.size, dtype=np.int64)
            for j, a in enumerate(attr_set):
                cell = cell * dims[j] + local[rows, j]
            size[rows] = _count_cells(code, cell, cells)
            err[rows] = _count_cells(ecode, cell, cells)
        bar.close()
        return size, err

    def _prefix_codes(self, attr_set: tuple[int, ...], local: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Combined code of ``attr_set`` for the rows (and error rows) inside one of the needed
        prefix cells ``local``; other rows cannot fall in any candidate and are dropped."""
        dims = [int(self.dims[a]) for a in attr_set]
        code = np.zeros(self.n, dtype=np.int64)
        ecode = np.zeros(self.error_idx.size, dtype=np.int64)
        for a, dim in zip(attr_set, dims):
            code = code * dim + self.compact_codes[a]
            ecode = ecode * dim + self.compact_err[a]
        cells = int(np.prod(dims, dtype=object))
        need = np.zeros(local.shape[0], dtype=np.int64)
        for j, dim in enumerate(dims):
            need = need * dim + local[:, j]
        if cells <= 4 * self.n + (1 << 16):
            mask = np.zeros(cells, dtype=bool)
            mask[need] = True
            inside = mask[code]
            inside_e = mask[ecode]
        else:
            need = np.unique(need)
            inside = np.isin(code, need)
            inside_e = np.isin(ecode, need)
        if inside.mean() > 0.5:  # not worth a copy
            return code, ecode, None, None
        sel, esel = np.flatnonzero(inside), np.flatnonzero(inside_e)
        return code[sel], ecode[esel], sel, esel

    def _evaluate_wide(self, attr_set: tuple[int, ...], local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fallback for attribute sets whose combined code would overflow int64: hash the rows."""
        want = pd.MultiIndex.from_arrays(list(local.T))
        out = []
        for codes in (self.compact_codes, self.compact_err):
            rows = pd.MultiIndex.from_arrays([codes[a] for a in attr_set])
            counts = pd.Series(1, index=rows).groupby(level=list(range(len(attr_set)))).size()
            out.append(counts.reindex(want, fill_value=0).to_numpy(dtype=np.int64))
        return out[0], out[1]


def _count_cells(code: np.ndarray, cell: np.ndarray, n_cells: int) -> np.ndarray:
    """How many entries of ``code`` equal each entry of ``cell``."""
    if n_cells <= 4 * max(code.size, 1) + (1 << 16):
        return np.bincount(code, minlength=n_cells)[cell]
    srt = np.sort(code)
    return np.searchsorted(srt, cell, side="right") - np.searchsorted(srt, cell, side="left")
