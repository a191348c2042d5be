"""Unnamed slices: clusters of errors in the sparse feature space, for failure modes no attribute names.

A failure mode that no metadata column (and no automatic attribute) describes still leaves a trace
in the sparse layer's features: the images the model gets wrong for the same reason tend to sit
together there. :func:`find_error_clusters` finds such regions, tests each honestly, and describes
each by the handful of sparse features that set it apart — a row for the report even when there is
no attribute at all.

How (and why this way):

1. **Sample splitting.** The examples are split at random (``seed``) into a *discovery* half and
   a *held-out* half. Clusters are shaped on the first, tested on the second. Clustering that
   looks at the errors (as Domino does, Eyuboglu et al., ICLR 2022) picks regions *because* they
   hold errors; testing the same examples would make every such region look significant, also in
   pure noise. Testing on examples the clustering never saw keeps the p-values valid, at the cost
   of half the test's sample.
2. **Error-aware k-means (Domino-style).** On the discovery half, k-means runs over *all*
   examples with the misclassified ones up-weighted so that errors and correct examples carry the
   same total weight: centroids are pulled to where errors concentrate, while every example —
   right or wrong — still gets a cluster, so a cluster has an error *rate* (Domino's mixture
   model weighs the error term in the same spirit; k-means is its hard, fast counterpart and
   scales to any ``n``). Membership is the nearest centroid in the feature space alone, so it
   applies unchanged to the held-out half (and to new data). ``k`` is ``k_max``, or fewer when the
   discovery half cannot fill ``k`` clusters with ``2 * min_size`` examples each.
3. **Test.** On the held-out half, each cluster's error rate is compared with the rest's: Wilson
   interval, one-sided Fisher exact p-value, Benjamini–Hochberg q-values across clusters. A
   cluster is kept when ``q <= fdr``, it has at least ``min_size`` held-out examples, and its
   error rate exceeds the rest's.
4. **Describe.** Over all members (both halves), each feature's standardised mean difference
   between the cluster and the rest (``z``: difference of means over the pooled standard
   deviation); the ``n_features`` largest ``|z|`` describe the cluster. Example ids are the
   misclassified members closest to the centroid.
5. **Merge.** Error-weighted k-means over-clusters on purpose (as Domino does), so one failure
   mode often comes out as several neighbouring clusters with the same description. Significant
   clusters whose ``z`` profiles point the same way (cosine similarity >= ``merge_similarity``,
   single linkage) are reported as one: its counts are the sums over its parts (on the held-out
   half), its ``q_value`` the largest of its parts' (every part passed the test on its own), its
   ``p_value`` the Fisher test of the union (descriptive: the union was chosen after testing).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(2000, 8))
>>> X[:200, 3] += 4.0                                   # a region of feature space ...
>>> correct = rng.random(2000) > 0.1
>>> correct[:200] = rng.random(200) > 0.7               # ... where the model errs 70% of the time
>>> clusters = find_error_clusters(X, correct, seed=0)
>>> top = clusters[0]
>>> top.features[0]["feature"], bool(top.error_rate > 0.5), bool(top.q_value < 0.05), len(clusters)
(3, True, True, 1)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sparsecheck.analysis.stats import benjamini_hochberg, fisher_exact_pvalue, wilson_interval
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import DataError, ParameterError
from sparsecheck.outputs import native

logger = logging.getLogger(__name__)

__all__ = ["ErrorCluster", "find_error_clusters"]


@dataclass
class ErrorCluster:
    """A region of the sparse feature space where the model errs more than elsewhere.

    Attributes
    ----------
    cluster : int
        Index of the cluster (among all ``k`` fitted).
    size : int
        Held-out examples in the cluster (the ones tested); ``members`` counts all of them.
    errors : int
        Misclassified held-out examples in it.
    error_rate, ci_low, ci_high : float
        Held-out error rate and its Wilson interval.
    rest_error_rate : float
        Error rate of the other held-out examples.
    p_value, q_value : float
        One-sided Fisher exact test against the rest; Benjamini–Hochberg across clusters.
    members : int
        Examples of both halves in the cluster.
    features : list of dict
        ``[{"feature": id, "z": standardised mean difference, "mean": cluster mean}]``, largest
        ``|z|`` first.
    examples : list
        Ids of misclassified members closest to the centroid.
    member_rows : ndarray
        Row indices (into the input) of all members.
    parts : list of int
        The k-means clusters merged into this one (``cluster`` is the first, the worst).
    """

    cluster: int
    size: int
    errors: int
    error_rate: float
    ci_low: float
    ci_high: float
    rest_error_rate: float
    p_value: float
    q_value: float
    members: int
    features: list[dict[str, Any]]
    examples: list[Any]
    member_rows: np.ndarray = field(repr=False)
    parts: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A results.json row: ``{"kind": "cluster", "features": [...], "size", "error_rate", ...}``."""
        return {"kind": "cluster", "cluster": int(self.cluster), "features": self.features,
                "size": int(self.size), "errors": int(self.errors), "error_rate": float(self.error_rate),
                "ci_low": float(self.ci_low), "ci_high": float(self.ci_high),
                "rest_error_rate": float(self.rest_error_rate), "p_value": float(self.p_value),
                "q_value": float(self.q_value), "members": int(self.members),
                "examples": [native(e) for e in self.examples], "parts": list(self.parts)}

    def describe(self) -> str:
        """One line: "cluster 4 (features 44 +2.1, 7 -1.3): 62% errors (55–69%) vs 9% elsewhere"."""
        feats = ", ".join(f"{f['feature']} {f['z']:+.1f}" for f in self.features)
        return (f"cluster {self.cluster} (features {feats}): {100 * self.error_rate:.0f}% errors "
                f"({100 * self.ci_low:.0f}–{100 * self.ci_high:.0f}%) of {self.size} held-out examples "
                f"vs {100 * self.rest_error_rate:.0f}% elsewhere (q = {self.q_value:.2g})")




def find_error_clusters(
    features: np.ndarray,
    correct: np.ndarray,
    *,
    ids: Sequence[Any] | None = None,
    feature_ids: Sequence[int] | None = None,
    k_max: int = 20,
    min_size: int = 20,
    fdr: float = ANALYSIS["fdr"],
    n_features: int = 3,
    n_examples: int = 8,
    merge_similarity: float | None = 0.7,
    seed: int = 0,
) -> list[ErrorCluster]:
    """Clusters of the feature space where errors concentrate, tested on held-out examples.

    Parameters
    ----------
    features : ndarray (n, d)
        Standardised sparse-layer features (e.g. the used features, ``(X - mean_) / std_``).
    correct : ndarray (n,) bool
        Whether the model got each example right.
    ids : sequence, optional
        Example ids for :attr:`ErrorCluster.examples` (default row numbers).
    feature_ids : sequence of int, optional
        Feature id of each column (default ``0..d-1``).
    k_max : int
        Clusters to fit (fewer when the data are too few; see the module docstring).
    min_size : int
        Held-out examples a cluster needs to be reported.
    fdr : float
        Benjamini–Hochberg level across clusters.
    n_features, n_examples : int
        Features describing each cluster; example ids per cluster.
    merge_similarity : float or None
        Significant clusters whose feature profiles (the vector of ``z`` over all features) have
        a cosine similarity of at least this are one failure mode, reported once (None: never
        merge); see the module docstring.
    seed : int
        Seeds the split and k-means.

    Returns
    -------
    list of ErrorCluster
        Significant high-error clusters, highest held-out error rate first (empty when none).
    """
    from sklearn.cluster import KMeans

    X = np.asarray(features, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if X.ndim != 2:
        raise DataError(f"features must be 2-D (examples × features), got shape {X.shape}")
    n, d = X.shape
    if ok.shape != (n,):
        raise DataError(f"correct must have shape ({n},), got {ok.shape}")
    if not np.isfinite(X).all():
        raise DataError("features contain NaN or infinite values")
    for name, value, low in (("k_max", k_max, 2), ("min_size", min_size, 1), ("n_features", n_features, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ParameterError(f"The {name!r} parameter of find_error_clusters must be an int >= {low}. "
                                 f"Got {value!r} instead.", parameter=name)
    if not 0 < fdr < 1:
        raise ParameterError(f"The 'fdr' parameter of find_error_clusters must be a float in (0, 1). "
                             f"Got {fdr!r} instead.", parameter="fdr")
    id_arr = np.arange(n) if ids is None else np.asarray(ids)
    fid = np.arange(d) if feature_ids is None else np.asarray(feature_ids)
    if id_arr.shape != (n,) or fid.shape != (d,):
        raise DataError(f"ids must have {n} entries and feature_ids {d}")

    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    held[rng.permutation(n)[: n // 2]] = True
    disc = ~held
    err = ~ok
    k = min(int(k_max), int(disc.sum()) // (2 * int(min_size)))
    if k < 2 or err[disc].sum() == 0 or err[held].sum() == 0 or ok[held].sum() == 0:
        logger.info("error clusters: too few examples or errors to cluster (n=%d, errors=%d)", n, int(err.sum()))
        return []
    n_err, n_ok = int(err[disc].sum()), int(ok[disc].sum())
    # errors and correct examples carry the same total weight
    weight = np.where(err[disc], 0.5 / n_err, 0.5 / max(n_ok, 1)) * disc.sum()
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(X[disc], sample_weight=weight)
    label = km.predict(X)

    h_label, h_err = label[held], err[held]
    sizes = np.bincount(h_label, minlength=k)
    errors = np.bincount(h_label, weights=h_err.astype(np.float64), minlength=k).astype(np.int64)
    total_n, total_e = int(held.sum()), int(h_err.sum())
    p = fisher_exact_pvalue(errors, sizes, total_e - errors, total_n - sizes)
    p = np.where(sizes >= min_size, p, np.nan)           # too small to report: not a test
    q = benjamini_hochberg(p)
    lo, hi = wilson_interval(errors, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = errors / np.maximum(sizes, 1)
        rest = (total_e - errors) / np.maximum(total_n - sizes, 1)
    keep = np.flatnonzero(np.isfinite(q) & (q <= fdr) & (rate > rest))

    keep = keep[np.argsort(-rate[keep], kind="stable")]
    profiles = {int(j): _profile(X, label == j)[0] for j in keep}
    groups = _merge(keep, profiles, merge_similarity)
    out = []
    for group in groups:
        members = np.isin(label, group)
        z, m_in = _profile(X, members)
        top = np.argsort(-np.abs(z), kind="stable")[:n_features]
        wrong = np.flatnonzero(members & err)
        dist = np.min([((X[wrong] - km.cluster_centers_[j]) ** 2).sum(1) for j in group], axis=0)
        examples = id_arr[wrong[np.argsort(dist, kind="stable")[:n_examples]]].tolist()
        size, errs = int(sizes[group].sum()), int(errors[group].sum())
        g_lo, g_hi = wilson_interval(np.array([errs]), np.array([size]))
        out.append(ErrorCluster(
            cluster=int(group[0]), size=size, errors=errs, error_rate=errs / size,
            ci_low=float(g_lo[0]), ci_high=float(g_hi[0]),
            rest_error_rate=(total_e - errs) / max(total_n - size, 1),
            p_value=float(fisher_exact_pvalue(np.array([errs]), np.array([size]), np.array([total_e - errs]),
                                              np.array([total_n - size]))[0]),
            q_value=float(q[group].max()), members=int(members.sum()),
            features=[{"feature": int(fid[t]), "z": round(float(z[t]), 3), "mean": round(float(m_in[t]), 3)}
                      for t in top],
            examples=examples, member_rows=np.flatnonzero(members), parts=[int(j) for j in group]))
    out.sort(key=lambda c: -c.error_rate)
    logger.info("error clusters: %d clusters fitted on %d examples, %d significant (fdr %.2f) on %d held out, "
                "merged into %d", k, int(disc.sum()), len(keep), fdr, total_n, len(out))
    return out


def _profile(X: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardised mean difference of every feature, members vs the rest; and the members' means."""
    m_in, m_out = X[members].mean(0), X[~members].mean(0)
    pooled = np.sqrt((X[members].var(0) + X[~members].var(0)) / 2.0)
    z = np.where(pooled > 0, (m_in - m_out) / np.where(pooled > 0, pooled, 1.0), 0.0)
    return z, m_in


def _merge(keep: np.ndarray, profiles: dict[int, np.ndarray], similarity: float | None) -> list[list[int]]:
    """Group kept clusters whose profiles have cosine similarity >= ``similarity`` (single linkage)."""
    groups = [[int(j)] for j in keep]
    if similarity is None or len(groups) < 2:
        return groups
    P = np.stack([profiles[int(j)] for j in keep])
    P = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)
    close = (P @ P.T) >= similarity
    parent = list(range(len(keep)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(*np.nonzero(np.triu(close, 1))):
        parent[root(int(b))] = root(int(a))
    merged: dict[int, list[int]] = {}
    for i, j in enumerate(keep):          # keep is sorted by error rate: each group lists its worst first
        merged.setdefault(root(i), []).append(int(j))
    return list(merged.values())
