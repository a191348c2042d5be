"""The slice finder: :class:`Slice` results and the :class:`SliceFinder` estimator.

:class:`SliceFinder` checks its parameters, encodes the table
(:mod:`~sparsecheck.analysis.slices.encoding`), runs the lattice search
(:mod:`~sparsecheck.analysis.slices.lattice`), then ranks the candidates (Wilson intervals,
Fisher p-values, Benjamini–Hochberg over the whole family) and groups overlapping ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator

from sparsecheck.analysis.breakdown import MISSING_LABEL, correct_array, encode_categories
from sparsecheck.analysis.slices.encoding import _encode_table, _one_hot
from sparsecheck.analysis.slices.lattice import (
    _MIN_SCORE,
    _Candidates,
    _LatticeSearch,
    _score,
)
from sparsecheck.analysis.stats import benjamini_hochberg, fisher_exact_pvalue, wilson_interval
from sparsecheck.errors import DataError, ParameterError
from sparsecheck.analysis.slices.nesting import _membership, _nested_pvalues
from sparsecheck.analysis.slices.result import Slice
from sparsecheck.defaults import ANALYSIS

__all__ = ["Slice", "SliceFinder", "find_slices"]

logger = logging.getLogger(__name__)

_POOL_FACTOR = 5  # prune against the (factor * top_k)-th best score, so grouping has spares
_MEMBER_CHUNK = 32  # slices whose rows are materialised at once when grouping
_DEFAULT_EXCLUDED = ("id", "confidence", "correct", "sparse_correct")


# ----------------------------------------------------------------------------- estimator


class SliceFinder(BaseEstimator):
    """Find the slices of a prediction table where the model errs most (exact SliceLine search).

    Parameters
    ----------
    max_predicates : int, default 3
        Most predicates per slice (SliceLine's L).
    min_support : int, float or None, default None
        Fewest rows in a slice: an int is a row count, a float in (0, 1) a fraction of the rows
        (rounded up). None: 1% of the rows, at least 30.
    alpha : float in (0, 1], default 0.95
        Weight of the error rate against the size in the score.
    top_k : int, default 10
        Slices to report (after grouping overlapping ones).
    n_bins : int, default 4
        Quantile bins for float columns.
    fdr : float in (0, 1), default 0.05
        False discovery rate: slices with ``q_value <= fdr`` are ``significant``.
    group_overlap : float in [0, 1], default 0.5
        A slice whose row overlap with a better reported slice exceeds this is grouped under it
        (``related``) instead of being reported. 1.0 turns grouping off.
    overlap : {"containment", "jaccard"}, default "containment"
        Overlap measure: |A∩B| / |A∪B|, or |A∩B| / min(|A|, |B|).
    confidence : float in (0, 1), default 0.95
        Coverage of the Wilson intervals.
    nested : bool, default True
        Report a slice of several predicates only when it is significantly worse than each of its
        parents without it (a one-sided Fisher test per parent; its p-value is the largest of those
        and of the test against all other rows, inside the same BH control). A harmless predicate
        that rides on a real cause (``inverted=yes AND scanner=s1``) then gives way to the simpler
        slice that carries the errors (``inverted=yes``). False ranks by score alone.
    progress : bool or None, default None
        Progress bars; None shows them only on a terminal.

    Attributes
    ----------
    slices_ : list of Slice
        The top slices, best (highest score) first; only slices with a positive score.
    candidates_ : DataFrame
        Every evaluated slice with at least ``min_support_`` rows, best score first: slice,
        level, size, errors, error_rate, score, p_value, q_value.
    n_tests_ : int
        Size of the multiple-testing family (an upper bound on the number of slices of up to
        ``max_predicates`` predicates with ``min_support_`` rows); unevaluated ones count as p = 1.
    columns_ : list of str
        Columns sliced on.
    n_rows_, n_errors_ : int
    error_rate_ : float
        Overall error rate.
    min_support_ : int
        ``min_support`` in rows.
    search_stats_ : list of dict
        Per level: candidates generated, evaluated, kept (with support).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"site": ["a"] * 40 + ["b"] * 60,
    ...                       "correct": [False] * 20 + [True] * 20 + [True] * 58 + [False] * 2})
    >>> finder = SliceFinder(min_support=10, progress=False).fit(table, ["site"])
    >>> [(str(s), s.size, s.errors) for s in finder.slices_]
    [('site=a', 40, 20)]
    """

    def __init__(
        self,
        max_predicates: int = 3,
        min_support: int | float | None = None,
        alpha: float = 0.95,
        top_k: int = 10,
        n_bins: int = 4,
        fdr: float = ANALYSIS["fdr"],
        group_overlap: float = 0.5,
        overlap: str = "containment",
        confidence: float = 0.95,
        nested: bool = True,
        significant_only: bool = True,
        progress: bool | None = None,
    ) -> None:
        self.max_predicates = max_predicates
        self.min_support = min_support
        self.alpha = alpha
        self.top_k = top_k
        self.n_bins = n_bins
        self.fdr = fdr
        self.group_overlap = group_overlap
        self.overlap = overlap
        self.confidence = confidence
        self.nested = nested
        self.significant_only = significant_only
        self.progress = progress

    # -- parameters
    def _bad(self, name: str, what: str) -> ParameterError:
        return ParameterError(f"The {name!r} parameter of SliceFinder must be {what}. "
                              f"Got {getattr(self, name)!r} instead.", parameter=name)

    def _check_params(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, Integral) and not isinstance(v, bool)

        def is_real(v: Any) -> bool:
            return isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)

        if not is_int(self.max_predicates) or self.max_predicates < 1:
            raise self._bad("max_predicates", "an int >= 1")
        ms = self.min_support
        if ms is not None and not ((is_int(ms) and ms >= 1) or (is_real(ms) and not is_int(ms) and 0 < ms < 1)):
            raise self._bad("min_support", "an int >= 1, a float in (0, 1) or None")
        if not is_real(self.alpha) or not 0 < self.alpha <= 1:
            raise self._bad("alpha", "a float in (0, 1]")
        if not is_int(self.top_k) or self.top_k < 1:
            raise self._bad("top_k", "an int >= 1")
        if not is_int(self.n_bins) or self.n_bins < 2:
            raise self._bad("n_bins", "an int >= 2")
        if not is_real(self.fdr) or not 0 < self.fdr < 1:
            raise self._bad("fdr", "a float in (0, 1)")
        if not isinstance(self.nested, bool):
            raise self._bad("nested", "a bool")
        if not is_real(self.group_overlap) or not 0 <= self.group_overlap <= 1:
            raise self._bad("group_overlap", "a float in [0, 1]")
        if self.overlap not in ("jaccard", "containment"):
            raise self._bad("overlap", "'jaccard' or 'containment'")
        if not is_real(self.confidence) or not 0 < self.confidence < 1:
            raise self._bad("confidence", "a float in (0, 1)")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise self._bad("progress", "a bool or None")

    def _resolve_min_support(self, n: int) -> int:
        ms = self.min_support
        if ms is None:
            return max(30, int(np.ceil(0.01 * n)))
        if isinstance(ms, Integral):
            return int(ms)
        return max(1, int(np.ceil(ms * n)))

    # -- inputs
    @staticmethod
    def _default_columns(table: pd.DataFrame, skip: set[str]) -> list[str]:
        return [str(c) for c in table.columns
                if c not in skip and c not in _DEFAULT_EXCLUDED and not str(c).startswith("prob_")]

    def _inputs(self, table: pd.DataFrame, columns: Sequence[str] | None, errors: Any,
                correct_column: str) -> tuple[list[str], np.ndarray]:
        if not isinstance(table, pd.DataFrame):
            raise DataError(f"SliceFinder.fit expects a pandas DataFrame, got {type(table).__name__}")
        skip: set[str] = set()
        if errors is None:
            if correct_column not in table.columns:
                raise DataError(f"the table has no column {correct_column!r} (pass errors= or "
                                f"correct_column=); it has {list(map(str, table.columns))}")
            err = ~correct_array(table[correct_column], name=correct_column)
            skip.add(correct_column)
        elif isinstance(errors, str):
            if errors not in table.columns:
                raise DataError(f"the table has no error column {errors!r}; it has "
                                f"{list(map(str, table.columns))}")
            err = correct_array(table[errors], name=errors)
            skip.add(errors)
        else:
            err = correct_array(errors, name="errors")
            if err.shape[0] != len(table):
                raise DataError(f"errors has {err.shape[0]} entries but the table has {len(table)} rows")
        if columns is None:
            cols = self._default_columns(table, skip)
        else:
            if isinstance(columns, str):
                raise ParameterError("The 'columns' parameter of SliceFinder.fit must be a list of "
                                     f"column names. Got {columns!r} instead.", parameter="columns")
            cols = list(columns)
            missing = [c for c in cols if c not in table.columns]
            if missing:
                raise DataError(f"the table has no column {missing[0]!r}; it has "
                                f"{list(map(str, table.columns))}")
            if skip & set(cols):
                raise ParameterError(f"The 'columns' parameter of SliceFinder.fit must not include "
                                     f"the error column {sorted(skip & set(cols))[0]!r}.",
                                     parameter="columns")
            if len(set(cols)) != len(cols):
                raise ParameterError(f"The 'columns' parameter of SliceFinder.fit repeats a column. "
                                     f"Got {cols!r} instead.", parameter="columns")
        if not cols:
            raise ParameterError("The 'columns' parameter of SliceFinder.fit must name at least one "
                                 "column to slice on. Got none.", parameter="columns")
        return cols, err

    @staticmethod
    def _families(cols: Sequence[str], families: Mapping[str, str] | None) -> np.ndarray | None:
        """Family code of each column (-1: combines with every column), or None when all are free."""
        if not families:
            return None
        unknown = [c for c in families if c not in cols]
        if unknown:
            raise ParameterError(f"The 'families' parameter of SliceFinder.fit names a column that is not "
                                 f"sliced on: {unknown[0]!r} (columns: {list(cols)}).", parameter="families")
        codes = {name: i for i, name in enumerate(dict.fromkeys(str(f) for f in families.values()))}
        return np.array([codes[str(families[c])] if c in families else -1 for c in cols], dtype=np.int64)

    # -- fit
    def fit(
        self,
        table: pd.DataFrame,
        columns: Sequence[str] | None = None,
        *,
        errors: np.ndarray | pd.Series | str | None = None,
        correct_column: str = "correct",
        families: Mapping[str, str] | None = None,
        lead: Sequence[str] = (),
    ) -> "SliceFinder":
        """Search ``table`` for the top slices.

        Parameters
        ----------
        table : DataFrame
            One row per example, e.g. :meth:`sparsecheck.pipeline.RunContext.prediction_table`
            with feature activations added as float columns.
        columns : list of str, optional
            Columns to slice on. Default: every column except ``id``, ``confidence``,
            ``correct``, ``sparse_correct``, ``prob_*`` and the error column.
        errors : array of bool, str or None
            Which rows are errors: a boolean (or 0/1) array, or the name of such a column.
            None: the rows where ``correct_column`` is False.
        correct_column : str
            Used when ``errors`` is None.
        families : mapping of column → family name, optional
            Columns of different families are never combined in one slice; a column without a
            family combines with every column. The pipeline puts the automatic image attributes in
            one family and the user's metadata in another: a recorded attribute can shift a
            pixel measurement (a thin frame raises an image's sharpness), and a slice mixing the
            two (``frame=yes AND auto:sharpness=mid``) then describes that artefact, not where the
            model fails. ``label`` stays free, so ``corner=yes AND label=three`` is searched.
            Each family is also its own multiple-testing family (Benjamini–Hochberg within it;
            the slices over free columns alone are the family ``"label"``), so a thousand
            automatic candidates do not drown the significance of the user's own attributes.
        lead : sequence of family names
            When slices of different families cover (nearly) the same rows, one of a family named
            here leads (in this order) and the other is grouped under it, whatever their scores:
            the pipeline passes ``["metadata"]``, so a declared attribute names the failing images
            an automatic one also describes.

        Returns
        -------
        self
        """
        started = time.perf_counter()
        self._check_params()
        cols, err = self._inputs(table, columns, errors, correct_column)
        n = len(table)
        self.columns_ = cols
        self.n_rows_ = n
        self.n_errors_ = int(err.sum())
        self.error_rate_ = self.n_errors_ / n if n else float("nan")
        self.min_support_ = self._resolve_min_support(n)
        self.search_stats_: list[dict[str, int]] = []
        self._encoding = _encode_table(table, cols, self.n_bins)
        family_of = self._families(cols, families)
        self._family_names = list(dict.fromkeys(str(f) for f in (families or {}).values()))
        self._lead = [self._family_names.index(f) for f in lead if f in self._family_names]
        if self.n_errors_ == 0 or n == 0:
            self._encoding = self._encoding.without_rows()
            logger.info("SliceFinder: %d rows and no errors; nothing to slice", n)
            self.slices_: list[Slice] = []
            self.candidates_ = _empty_candidates()
            self.n_tests_ = 0
            return self
        x = _one_hot(self._encoding).tocsc()
        pool = _POOL_FACTOR * self.top_k
        rounds = 0
        while True:
            search = _LatticeSearch(self._encoding, x, err, alpha=float(self.alpha),
                                    min_support=self.min_support_, max_predicates=self.max_predicates,
                                    pool=pool, progress=self.progress, families=family_of)
            cand = search.run()
            rounds += 1
            sizes = search.family_sizes or {-1: search.family_size}
            exact = self._rank(cand, x, search.threshold, sizes, np.asarray(err, dtype=bool), family_of)
            # fewer significant slices than top_k: a pruned one could only join at the tail; one
            # wider search is enough (the full lattice would cost minutes at many attributes)
            if exact or (self.significant_only and rounds >= 2):
                break
            pool *= 4
            logger.debug("grouping left fewer than top_k slices above the pruning threshold; "
                         "searching again with a pool of %d", pool)
        self.search_stats_ = search.stats
        self.n_tests_ = max(search.family_size, len(self.candidates_))
        self._encoding = self._encoding.without_rows()  # transform needs only labels and edges
        logger.info("SliceFinder: %d rows, error rate %.4f, %d slices evaluated, %d reported "
                    "(%d significant) in %.2fs", n, self.error_rate_, len(self.candidates_),
                    len(self.slices_), sum(s.significant for s in self.slices_),
                    time.perf_counter() - started)
        return self

    def _rank(self, cand: _Candidates, x: sparse.csc_matrix, threshold: float, n_tests: dict[int, int],
              errors: np.ndarray, family_of: np.ndarray | None = None) -> bool:
        """Statistics, q-values (per family), ranking and grouping; False when pruning may have
        hidden a slice that grouping would now report (then the search runs again with less pruning)."""
        n, n_err = self.n_rows_, self.n_errors_
        score = _score(cand.size, cand.errors, n, n_err / n, float(self.alpha))
        p = fisher_exact_pvalue(cand.errors, cand.size, n_err - cand.errors, n - cand.size,
                                alternative="greater")
        # a refinement must also be worse than each of its parents without it (intersection-union:
        # its p-value is the largest of the tests), inside the same FDR control
        if self.nested:
            p = np.maximum(p, _nested_pvalues(cand, x, errors))
        attr_of = np.repeat(np.arange(len(self.columns_)), np.diff(self._encoding.offsets))
        fam = np.full(cand.level.size, -1, dtype=np.int64)
        if family_of is not None:
            for j in range(cand.values.shape[1]):
                has = cand.values[:, j] >= 0
                fam[has] = np.maximum(fam[has], family_of[attr_of[cand.values[has, j]]])
        q = np.full(p.shape, np.nan)
        for code in np.unique(fam):
            rows = fam == code
            q[rows] = benjamini_hochberg(p[rows], n_tests=n_tests.get(int(code), int(rows.sum())))
        low, high = wilson_interval(cand.errors, cand.size, float(self.confidence))
        # a predicate that adds nothing is dropped: a refinement that is not significantly worse
        # than its parents is not reported (its parents carry its errors); with significant_only,
        # no slice leads that is not significant
        significant = q <= float(self.fdr)
        refines = (cand.level <= 1) | significant | (not self.nested)
        if self.significant_only:
            refines &= significant
        positive = np.flatnonzero(score > _MIN_SCORE)
        keys = [cand.values[positive, j] for j in range(cand.values.shape[1] - 1, -1, -1)]
        # the slices that may lead come first; the others can only be shown under one of them
        order = positive[np.lexsort([*keys, cand.level[positive], -cand.size[positive], -score[positive],
                                     ~refines[positive]])]

        reps, related = self._group(cand, order, x, refines, fam)
        exact = threshold <= 0 or (len(reps) == self.top_k and score[reps[-1]] >= threshold)
        if not exact and not self.significant_only:
            return False
        labels = np.concatenate(self._encoding.labels) if self._encoding.labels else np.zeros(0, str)
        names_of = ["label", *self._family_names]

        def predicates(i: int) -> dict[str, str]:
            vals = cand.values[i, :cand.level[i]]
            return {self.columns_[attr_of[v]]: str(labels[v]) for v in vals}

        fdr = float(self.fdr)
        self.slices_ = [
            Slice(predicates=predicates(i), size=int(cand.size[i]), errors=int(cand.errors[i]),
                  error_rate=float(cand.errors[i] / cand.size[i]), ci_low=float(low[i]),
                  ci_high=float(high[i]), p_value=float(p[i]), q_value=float(q[i]),
                  score=float(score[i]), significant=bool(q[i] <= fdr),
                  related=[predicates(j) for j in related[i]],
                  family=names_of[int(fam[i]) + 1] if family_of is not None else None)
            for i in reps
        ]
        names = np.array([f"{self.columns_[attr_of[v]]}={labels[v]}" for v in range(len(labels))],
                         dtype=object)
        desc = np.full(cand.level.size, "", dtype=object)
        for j in range(cand.values.shape[1]):
            has = cand.values[:, j] >= 0
            sep = " AND " if j else ""
            desc[has] = desc[has] + sep + names[cand.values[has, j]]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = cand.errors / cand.size
        self.candidates_ = pd.DataFrame({
            "slice": desc, "level": cand.level, "size": cand.size, "errors": cand.errors,
            "error_rate": rate, "score": score, "p_value": p, "q_value": q,
            "family": [names_of[int(c) + 1] for c in fam] if family_of is not None else None,
        }).sort_values(["score", "size"], ascending=[False, False], kind="stable").reset_index(drop=True)
        return exact

    def _group(self, cand: _Candidates, order: np.ndarray, x: sparse.csc_matrix, can_lead: np.ndarray,
               fam: np.ndarray | None = None) -> tuple[list[int], dict[int, list[int]]]:
        """Greedy grouping of ``order`` (best first) by row overlap; returns the representatives
        and, for each, the slices grouped under it. A slice with ``can_lead`` False (a refinement
        that adds nothing to its parents) is never a representative, only grouped under one. A
        slice of a ``lead`` family (:meth:`fit`) overlapping a representative of another family
        takes its place, and the other is grouped under it."""
        rank = {code: r for r, code in enumerate(getattr(self, "_lead", []))}

        def prefer(i: int, rep: int) -> bool:
            if fam is None or not rank:
                return False
            return rank.get(int(fam[i]), len(rank)) < rank.get(int(fam[rep]), len(rank))
        k = self.top_k
        reps: list[int] = []
        related: dict[int, list[int]] = {}
        if self.group_overlap >= 1.0:  # grouping off: nothing can overlap by more than 1
            reps = [int(i) for i in order if can_lead[i]][:k]
            return reps, {i: [] for i in reps}
        scan_limit = _POOL_FACTOR * k
        rep_members: sparse.csc_matrix | None = None
        pos = 0
        while pos < order.size and (len(reps) < k or pos < scan_limit):
            chunk = order[pos:pos + _MEMBER_CHUNK]
            pos += chunk.size
            members = _membership(x, cand.values[chunk], cand.level[chunk])  # n x c, csc bool
            both = members if rep_members is None else sparse.hstack([rep_members, members], format="csc")
            both_i = both.astype(np.int32)
            inter = (both_i.T @ both_i).toarray().astype(np.float64)
            sizes = np.diag(inter).copy()
            n_old = 0 if rep_members is None else rep_members.shape[1]
            rep_cols = list(range(n_old))  # columns of `both` holding the current representatives
            changed = False
            for c, i in enumerate(chunk):
                col = n_old + c
                if rep_cols:
                    ov = inter[col, rep_cols]
                    if self.overlap == "jaccard":
                        ov = ov / (sizes[col] + sizes[rep_cols] - ov)
                    else:
                        ov = ov / np.minimum(sizes[col], sizes[rep_cols])
                    best = int(np.argmax(ov))
                    if ov[best] > self.group_overlap:
                        old = reps[best]
                        if can_lead[i] and prefer(int(i), old):  # the lead family names these rows
                            reps[best] = int(i)
                            related[int(i)] = [old, *related.pop(old)]
                            rep_cols[best] = col
                            changed = True
                            continue
                        related[old].append(int(i))
                        continue
                if len(reps) >= k or not can_lead[i]:
                    continue
                reps.append(int(i))
                related[int(i)] = []
                rep_cols.append(col)
                changed = True
            if changed:
                rep_members = both[:, rep_cols]
        return reps, related

    # -- using a fitted finder
    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Membership of the rows of ``table`` in each of ``slices_``.

        Float columns are binned with the edges learnt in :meth:`fit` (the lowest and highest
        bins extended to cover values outside the fitted range); values unseen in fit match no
        slice.

        Returns
        -------
        ndarray of bool, shape (len(table), len(slices_))
        """
        if not hasattr(self, "slices_"):
            raise ParameterError("This SliceFinder is not fitted yet; call fit first.",
                                 parameter="self")
        needed = {a for s in self.slices_ for a in s.predicates}
        missing = [c for c in self.columns_ if c in needed and c not in table.columns]
        if missing:
            raise DataError(f"the table has no column {missing[0]!r}, which the slices use")
        codes: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        for a, col in enumerate(self.columns_):
            if col not in needed:
                continue
            labels, edges = self._encoding.labels[a], self._encoding.edges[a]
            lookup = {str(lab): j for j, lab in enumerate(labels)}
            if edges is not None:
                x = table[col].to_numpy(dtype=np.float64, na_value=np.nan)
                c = np.searchsorted(edges[1:-1], x, side="right").astype(np.int64)
                c[np.isnan(x)] = lookup.get(MISSING_LABEL, -1)
            else:
                raw, lab = encode_categories(table[col])
                c = np.array([lookup.get(str(v), -1) for v in lab], dtype=np.int64)[raw] if lab.size \
                    else np.zeros(0, dtype=np.int64)
            codes[col] = (c, lookup)
        out = np.ones((len(table), len(self.slices_)), dtype=bool)
        for s_i, s in enumerate(self.slices_):
            for col, value in s.predicates.items():
                c, lookup = codes[col]
                out[:, s_i] &= c == lookup[value]
        return out


def _empty_candidates() -> pd.DataFrame:
    return pd.DataFrame({"slice": pd.Series(dtype=object), "level": pd.Series(dtype=np.int64),
                         "size": pd.Series(dtype=np.int64), "errors": pd.Series(dtype=np.int64),
                         "error_rate": pd.Series(dtype=float), "score": pd.Series(dtype=float),
                         "p_value": pd.Series(dtype=float), "q_value": pd.Series(dtype=float)})


def find_slices(
    table: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    errors: np.ndarray | pd.Series | str | None = None,
    correct_column: str = "correct",
    **params: Any,
) -> list[Slice]:
    """Top slices of ``table``: ``SliceFinder(**params).fit(table, columns, ...).slices_``.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"site": ["a"] * 50 + ["b"] * 50,
    ...                       "correct": [False] * 25 + [True] * 75})
    >>> [s.to_dict()["predicates"] for s in find_slices(table, min_support=10, progress=False)]
    [{'site': 'a'}]
    """
    finder = SliceFinder(**params)
    return finder.fit(table, columns, errors=errors, correct_column=correct_column).slices_
