"""Small, vectorised statistics shared by every analysis: intervals, tests, multiple testing.

One implementation of each, used by error breakdowns, slice discovery, feature associations,
assertions and drift alike.

Examples
--------
>>> import numpy as np
>>> lo, hi = wilson_interval(np.array([5]), np.array([10]))
>>> round(float(lo[0]), 3), round(float(hi[0]), 3)
(0.237, 0.763)
>>> benjamini_hochberg(np.array([0.01, 0.04, 0.03])).round(3).tolist()
[0.03, 0.04, 0.04]
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

__all__ = [
    "softmax",
    "wilson_interval",
    "benjamini_hochberg",
    "two_proportion_pvalue",
    "fisher_exact_pvalue",
    "auc_effect",
    "point_biserial",
    "mcnemar_exact",
]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, k)`` scores, shifted by each row's maximum (no overflow).

    >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def wilson_interval(
    successes: np.ndarray, totals: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions, elementwise.

    Parameters
    ----------
    successes, totals : array-like of int
        Counts; ``totals == 0`` gives the uninformative interval (0, 1).
    confidence : float
        Two-sided coverage.

    Returns
    -------
    (low, high) : tuple of float arrays
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(totals, dtype=np.float64)
    z = _st.norm.ppf(0.5 + confidence / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / np.maximum(n, 1), 0.0)
        denom = 1.0 + z * z / np.maximum(n, 1)
        centre = (p + z * z / (2 * np.maximum(n, 1))) / denom
        half = z * np.sqrt(p * (1 - p) / np.maximum(n, 1) + z * z / (4 * np.maximum(n, 1) ** 2)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def benjamini_hochberg(p_values: np.ndarray, n_tests: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), same order as the input. NaN stays NaN.

    With ``n_tests``, the p-values are members of a family of that many hypotheses whose other
    members count as p = 1 (which can only raise q): a search that tested more than it kept.

    >>> benjamini_hochberg(np.array([0.01, 0.04, np.nan])).round(3).tolist()
    [0.02, 0.04, nan]
    >>> benjamini_hochberg(np.array([0.01, 0.04]), n_tests=4).round(3).tolist()
    [0.04, 0.08]
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return q
    m = max(int(n_tests or 0), ok.size)
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, ok.size + 1)
    q[order] = np.clip(np.minimum.accumulate(ranked[::-1])[::-1], 0.0, 1.0)
    return q


def mcnemar_exact(gained: int, lost: int) -> float:
    """One-sided exact McNemar p-value that ``gained`` discordant pairs outnumber ``lost`` ones.

    Examples
    --------
    >>> round(mcnemar_exact(9, 1), 4), mcnemar_exact(0, 0)
    (0.0107, 1.0)
    """
    n = int(gained) + int(lost)
    if n == 0:
        return 1.0
    return float(_st.binom.sf(int(gained) - 1, n, 0.5))


def two_proportion_pvalue(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray,
                          alternative: str = "greater") -> np.ndarray:
    """Pooled two-proportion z-test of ``k1/n1`` against ``k2/n2``, elementwise.

    ``alternative="greater"`` tests whether the first proportion is larger (a slice's error rate
    against its complement's); ``"two-sided"`` tests any difference.
    """
    k1, n1, k2, n2 = (np.asarray(a, dtype=np.float64) for a in (k1, n1, k2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = k1 / n1
        p2 = k2 / n2
        pooled = (k1 + k2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (p1 - p2) / se
    z = np.where(se > 0, z, 0.0)
    if alternative == "greater":
        p = _st.norm.sf(z)
    elif alternative == "two-sided":
        p = 2 * _st.norm.sf(np.abs(z))
    else:
        raise ValueError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    return np.where((n1 > 0) & (n2 > 0), p, np.nan)


def auc_effect(values: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """AUC of ``values`` separating ``mask`` from the rest, with a two-sided Mann–Whitney p-value.

    0.5 means no association, 1.0 that every masked example scores higher than every other one.
    Returns ``(nan, nan)`` when either group is empty.
    """
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    n1 = int(mask.sum())
    n0 = mask.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan"), float("nan")
    ranks = _st.rankdata(values)
    u = ranks[mask].sum() - n1 * (n1 + 1) / 2.0
    auc = u / (n1 * n0)
    # normal approximation with tie correction
    _, counts = np.unique(values, return_counts=True)
    n = n1 + n0
    tie = (counts ** 3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    sigma = np.sqrt(n1 * n0 / 12.0 * ((n + 1) - tie))
    if sigma == 0:
        return float(auc), 1.0
    z = (u - n1 * n0 / 2.0) / sigma
    return float(auc), float(2 * _st.norm.sf(abs(z)))


def point_biserial(values: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Pearson correlation between ``values`` and a numeric ``other``, with its two-sided p-value."""
    values = np.asarray(values, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(other)
    if ok.sum() < 3 or np.std(values[ok]) == 0 or np.std(other[ok]) == 0:
        return float("nan"), float("nan")
    r, p = _st.pearsonr(values[ok], other[ok])
    return float(r), float(p)


#: above this many tables, :func:`fisher_exact_pvalue` computes each distinct table once
_DEDUPE_ABOVE = 4096


def fisher_exact_pvalue(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray,
                        alternative: str = "greater") -> np.ndarray:
    """One-sided Fisher exact test of ``k1/n1`` against ``k2/n2``, elementwise.

    The exact counterpart of :func:`two_proportion_pvalue` (hypergeometric tail given the
    margins): use it for small groups or rare events, where the z-test's p-values are too small
    (a 30-row group with a 20% base rate gets p-values tens of times too small in the tail).

    Examples
    --------
    >>> round(float(fisher_exact_pvalue(np.array([8]), np.array([10]), np.array([2]), np.array([10]))[0]), 4)
    0.0115
    """
    k1, n1, k2, n2 = (np.asarray(a, dtype=np.float64) for a in (k1, n1, k2, n2))
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    shape = np.broadcast_shapes(k1.shape, n1.shape, k2.shape, n2.shape)
    if int(np.prod(shape)) > _DEDUPE_ABOVE:  # slice searches repeat the same small tables: test each once
        cols = [np.broadcast_to(a, shape).ravel() for a in (k1, n1, k2, n2)]
        key = _pack_counts(cols)
        if key is not None:
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            p = _fisher(*(c[first] for c in cols), alternative=alternative)
            return p[inverse.ravel()].reshape(shape)
    return _fisher(k1, n1, k2, n2, alternative=alternative)


def _pack_counts(cols: list[np.ndarray]) -> np.ndarray | None:
    """One int64 key per row of non-negative integer counts (bit fields), or None when they do not fit."""
    if not all(np.isfinite(c).all() and (c >= 0).all() and (c == np.floor(c)).all() for c in cols):
        return None
    bits = [max(1, int(c.max()).bit_length()) if c.size else 1 for c in cols]
    if sum(bits) > 62:
        return None
    key = np.zeros(cols[0].size, dtype=np.int64)
    for c, b in zip(cols, bits):
        key = (key << b) | c.astype(np.int64)
    return key


def _fisher(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray, *, alternative: str) -> np.ndarray:
    total, successes = n1 + n2, k1 + k2
    if alternative == "greater":
        p = _st.hypergeom.sf(k1 - 1, total, successes, n1)
    else:
        p = _st.hypergeom.cdf(k1, total, successes, n1)
    return np.where((n1 > 0) & (n2 > 0), np.clip(p, 0.0, 1.0), np.nan)
