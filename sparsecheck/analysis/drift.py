"""Drift of the sparse features and of the predicted-class mix between a reference and a batch.

Monitoring compares a new batch against a reference run on what the sparse decision layer reads:

* **feature drift** — for every used sparse feature, a two-sample Kolmogorov–Smirnov test of its
  activations (reference vs batch) and the population stability index (PSI) over bins cut at the
  reference's quantiles. p-values are Benjamini–Hochberg corrected over the features. A feature
  *drifts* when ``q < alpha`` **and** ``PSI >= psi_threshold``: the q-value says the shift is
  real, the PSI floor says it is big enough to matter (with thousands of rows, KS alone flags
  shifts nobody cares about).
* **class-mix drift** — a chi-square test of homogeneity between the reference's and the batch's
  predicted-class counts (the reference is a sample too, so a two-sample test, not a goodness of
  fit against fixed proportions), plus the PSI over classes; same double rule.

PSI is ``sum((b - r) * ln(b / r))`` over bins, with proportions smoothed by half a count per bin
so that an empty bin gives a large but finite value. Under no drift its expectation is about
``(bins - 1) * (1 / n_reference + 1 / n_batch)`` (≈ 0.014 for 10 bins, 2000 and 1000 rows), far
below the customary 0.1 ("some shift") and 0.25 ("major shift") marks.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = rng.normal(size=(2000, 3))
>>> batch = rng.normal(size=(1000, 3))
>>> batch[:, 1] += 1.0                          # feature 11 shifts by one standard deviation
>>> drift = feature_drift(ref, batch, features=[10, 11, 12])
>>> drift.drifted_features
[11]
>>> round(psi(ref[:, 0], ref[:, 0]), 6)
0.0
>>> mix = class_mix_drift([500, 500], [480, 520], class_names=["cat", "dog"])
>>> mix.drifted
False
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from sparsecheck.analysis.stats import benjamini_hochberg
from sparsecheck.defaults import DRIFT_ALPHA, DRIFT_BINS, DRIFT_PSI_THRESHOLD
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "quantile_edges",
    "psi",
    "FeatureDrift",
    "ClassMixDrift",
    "feature_drift",
    "class_mix_drift",
]

#: half a count per bin keeps empty bins finite without swamping small ones
_SMOOTHING = 0.5
#: from this many rows on both sides the KS test uses the asymptotic distribution
_ASYMPTOTIC_ROWS = 200


def _check_params(alpha: float, psi_threshold: float, bins: int | None = None) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ParameterError(f"The 'alpha' parameter must be a float in (0, 1). Got {alpha!r} instead.",
                             parameter="alpha")
    if not (isinstance(psi_threshold, (int, float)) and psi_threshold >= 0 and math.isfinite(psi_threshold)):
        raise ParameterError("The 'psi_threshold' parameter must be a float >= 0. "
                             f"Got {psi_threshold!r} instead.", parameter="psi_threshold")
    if bins is not None and (not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 2):
        raise ParameterError(f"The 'bins' parameter must be an int >= 2. Got {bins!r} instead.",
                             parameter="bins")


def quantile_edges(reference: np.ndarray, bins: int = DRIFT_BINS) -> np.ndarray:
    """Interior bin edges at the reference's quantiles ``1/bins, ..., (bins-1)/bins``.

    Repeated edges (a point mass, e.g. the zeros of a ReLU feature) are merged, so a constant
    feature gets a single edge. Bins are ``(-inf, e1], (e1, e2], ..., (em, inf)``: a point mass at
    an edge falls into one bin of its own.

    Examples
    --------
    >>> quantile_edges(np.array([0, 0, 0, 0, 0, 0, 1, 2.0]), bins=4).tolist()
    [0.0, 0.25]
    """
    values = np.asarray(reference, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise DataError("reference has no finite values to cut bins from")
    qs = np.linspace(0.0, 1.0, int(bins) + 1)[1:-1]
    return np.unique(np.quantile(values, qs))


def _proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    codes = np.searchsorted(edges, values, side="left")
    counts = np.bincount(codes, minlength=edges.size + 1).astype(np.float64)
    return _smoothed(counts)


def _smoothed(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64) + _SMOOTHING
    return counts / counts.sum()


def _psi_from_proportions(ref: np.ndarray, batch: np.ndarray) -> float:
    return float(np.sum((batch - ref) * np.log(batch / ref)))


def psi(reference: np.ndarray, batch: np.ndarray, bins: int = DRIFT_BINS, *, edges: np.ndarray | None = None) -> float:
    """Population stability index of ``batch`` against ``reference`` (1-d samples).

    Parameters
    ----------
    reference, batch : array-like of float
        Non-finite values are ignored.
    bins : int
        Number of reference-quantile bins (fewer when the reference has ties).
    edges : array, optional
        Interior edges to use instead of the reference's quantiles.

    Returns
    -------
    float
        0 for identical distributions; > 0.1 is commonly read as a shift, > 0.25 as a major one.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.normal(size=5000), rng.normal(0.5, 1, size=5000)
    >>> 0.2 < psi(a, b) < 0.3
    True
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    new = np.asarray(batch, dtype=np.float64).ravel()
    ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
    if ref.size == 0 or new.size == 0:
        raise DataError(f"psi needs finite values in both samples (got {ref.size} and {new.size})")
    if edges is None:
        edges = quantile_edges(ref, bins)
    return _psi_from_proportions(_proportions(ref, edges), _proportions(new, edges))


# --------------------------------------------------------------------------- feature drift
@dataclass
class FeatureDrift:
    """Per-feature drift of a batch against a reference.

    Attributes
    ----------
    table : DataFrame
        One row per feature, in the order given: ``feature``, ``ks_statistic``, ``p_value``,
        ``q_value`` (Benjamini–Hochberg over the features), ``psi``, ``reference_mean``,
        ``batch_mean``, ``drifted`` (``q_value < alpha and psi >= psi_threshold``).
    alpha, psi_threshold : float
        The rule that was applied.
    n_reference, n_batch : int
        Sample sizes.
    """

    table: pd.DataFrame
    alpha: float
    psi_threshold: float
    n_reference: int
    n_batch: int

    @property
    def drifted_features(self) -> list[int]:
        """Ids of the drifted features, most shifted (largest PSI) first."""
        hit = self.table[self.table["drifted"]].sort_values("psi", ascending=False)
        return [int(f) for f in hit["feature"]]

    @property
    def alert(self) -> bool:
        """True when at least one feature drifted."""
        return bool(self.table["drifted"].any())

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` most shifted features (largest KS statistic first)."""
        return self.table.sort_values(["ks_statistic", "psi"], ascending=False).head(k)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rule, the sizes, the drifted ids and every feature's row."""
        return {"alpha": self.alpha, "psi_threshold": self.psi_threshold,
                "n_reference": self.n_reference, "n_batch": self.n_batch,
                "n_drifted": len(self.drifted_features), "drifted_features": self.drifted_features,
                "features": self.table.to_dict("records")}


def feature_drift(reference: np.ndarray, batch: np.ndarray, features: Sequence[int] | None = None, *,
                  alpha: float = DRIFT_ALPHA, psi_threshold: float = DRIFT_PSI_THRESHOLD,
                  bins: int = DRIFT_BINS) -> FeatureDrift:
    """Two-sample KS and PSI of every column of ``batch`` against the same column of ``reference``.

    Parameters
    ----------
    reference : array (n_reference, k)
        Reference activations (e.g. the used sparse features on the reference run's test split).
    batch : array (n_batch, k)
        The batch's activations of the same features, same column order.
    features : sequence of int, optional
        Feature ids naming the columns (default 0..k-1).
    alpha : float
        False-discovery rate for the Benjamini–Hochberg corrected KS p-values.
    psi_threshold : float
        Minimum PSI for a significant shift to count as drift.
    bins : int
        Quantile bins for the PSI.

    Returns
    -------
    FeatureDrift

    Raises
    ------
    DataError
        when the shapes do not fit or a sample has fewer than 2 rows.
    """
    _check_params(alpha, psi_threshold, bins)
    ref = np.asarray(reference, dtype=np.float64)
    new = np.asarray(batch, dtype=np.float64)
    if ref.ndim != 2 or new.ndim != 2 or ref.shape[1] != new.shape[1]:
        raise DataError(f"reference {ref.shape} and batch {new.shape} must be 2-d with the same columns")
    if ref.shape[0] < 2 or new.shape[0] < 2:
        raise DataError(f"drift needs at least 2 rows on each side (reference {ref.shape[0]}, "
                        f"batch {new.shape[0]})")
    k = ref.shape[1]
    ids = np.arange(k) if features is None else np.asarray(features, dtype=np.int64)
    if ids.shape != (k,):
        raise DataError(f"{ids.size} feature ids for {k} columns")
    if not (np.isfinite(ref).all() and np.isfinite(new).all()):
        raise DataError("activations contain NaN or infinite values")
    if k:
        # exact p-values cost O(n1 * n2) per feature; the asymptotic ones are accurate (slightly
        # conservative) once both samples have a few hundred rows
        method = "asymp" if min(ref.shape[0], new.shape[0]) >= _ASYMPTOTIC_ROWS else "exact"
        ks = _st.ks_2samp(ref, new, axis=0, method=method)
        stat, p = np.atleast_1d(ks.statistic).astype(np.float64), np.atleast_1d(ks.pvalue).astype(np.float64)
    else:
        stat = p = np.zeros(0)
    q = benjamini_hochberg(p)
    psis = np.array([psi(ref[:, j], new[:, j], bins) for j in range(k)], dtype=np.float64)
    table = pd.DataFrame({
        "feature": ids, "ks_statistic": stat, "p_value": p, "q_value": q, "psi": psis,
        "reference_mean": ref.mean(axis=0) if k else np.zeros(0),
        "batch_mean": new.mean(axis=0) if k else np.zeros(0),
    })
    table["drifted"] = (table["q_value"] < alpha) & (table["psi"] >= psi_threshold)
    result = FeatureDrift(table, float(alpha), float(psi_threshold), int(ref.shape[0]), int(new.shape[0]))
    logger.info("feature drift: %d of %d features drifted (q < %g and PSI >= %g)",
                len(result.drifted_features), k, alpha, psi_threshold)
    return result


# --------------------------------------------------------------------------- class mix
@dataclass
class ClassMixDrift:
    """Drift of the predicted-class mix of a batch against a reference.

    Attributes
    ----------
    class_names : list of str
    reference_counts, batch_counts : list of int
        Predicted-class counts, one per class.
    chi2 : float
        Chi-square statistic of the 2 × classes homogeneity test.
    dof : int
    p_value : float
    psi : float
        PSI over classes (half-count smoothing).
    alpha, psi_threshold : float
    drifted : bool
        ``p_value < alpha and psi >= psi_threshold``.
    """

    class_names: list[str]
    reference_counts: list[int]
    batch_counts: list[int]
    chi2: float
    dof: int
    p_value: float
    psi: float
    alpha: float
    psi_threshold: float
    drifted: bool = field(init=False)

    def __post_init__(self) -> None:
        self.drifted = bool(self.p_value < self.alpha and self.psi >= self.psi_threshold)

    def shares(self) -> pd.DataFrame:
        """Per class: reference share, batch share and their difference."""
        ref = np.asarray(self.reference_counts, dtype=np.float64)
        new = np.asarray(self.batch_counts, dtype=np.float64)
        frame = pd.DataFrame({"class": self.class_names, "reference_share": ref / max(ref.sum(), 1),
                              "batch_share": new / max(new.sum(), 1)})
        frame["difference"] = frame["batch_share"] - frame["reference_share"]
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, test, PSI and the verdict."""
        return {"class_names": list(self.class_names), "reference_counts": list(self.reference_counts),
                "batch_counts": list(self.batch_counts), "chi2": self.chi2, "dof": self.dof,
                "p_value": self.p_value, "psi": self.psi, "alpha": self.alpha,
                "psi_threshold": self.psi_threshold, "drifted": self.drifted,
                "shares": self.shares().to_dict("records")}


def class_mix_drift(reference_counts: Sequence[int], batch_counts: Sequence[int], *,
                    class_names: Sequence[str] | None = None, alpha: float = DRIFT_ALPHA,
                    psi_threshold: float = DRIFT_PSI_THRESHOLD) -> ClassMixDrift:
    """Chi-square homogeneity test and PSI of predicted-class counts, batch vs reference.

    Parameters
    ----------
    reference_counts, batch_counts : sequence of int, one per class
        e.g. ``np.bincount(predictions, minlength=n_classes)``.
    class_names : sequence of str, optional
    alpha : float
        Significance level of the chi-square test.
    psi_threshold : float
        Minimum PSI over classes for a significant change to count as drift.

    Returns
    -------
    ClassMixDrift

    Examples
    --------
    >>> class_mix_drift([300, 300, 400], [100, 100, 800], alpha=0.01).drifted
    True
    """
    _check_params(alpha, psi_threshold)
    ref = np.asarray(reference_counts, dtype=np.int64)
    new = np.asarray(batch_counts, dtype=np.int64)
    if ref.ndim != 1 or ref.shape != new.shape:
        raise DataError(f"class counts must be two 1-d arrays of the same length, got {ref.shape} and {new.shape}")
    if (ref < 0).any() or (new < 0).any() or ref.sum() == 0 or new.sum() == 0:
        raise DataError("class counts must be non-negative with at least one prediction on each side")
    names = [str(i) for i in range(ref.size)] if class_names is None else [str(c) for c in class_names]
    if len(names) != ref.size:
        raise DataError(f"{len(names)} class names for {ref.size} classes")
    seen = (ref + new) > 0  # a class never predicted on either side carries no information
    if seen.sum() < 2:
        chi2, p, dof = 0.0, 1.0, 0
    else:
        res = _st.chi2_contingency(np.stack([ref[seen], new[seen]]), correction=False)
        chi2, p, dof = float(res.statistic), float(res.pvalue), int(res.dof)
    value = _psi_from_proportions(_smoothed(ref), _smoothed(new))
    result = ClassMixDrift(names, ref.tolist(), new.tolist(), chi2, dof, p, value, float(alpha),
                           float(psi_threshold))
    logger.info("class-mix drift: chi2 %.2f (dof %d, p %.3g), PSI %.3f -> %s", chi2, dof, p, value,
                "drifted" if result.drifted else "stable")
    return result
