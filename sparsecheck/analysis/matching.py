"""Matching the features of two runs: which feature of model B is "the same" as one of model A.

Feature ids differ between models, so features are matched by their activations on the
evaluation examples both runs share (the intersection of the ids in their ``activations.npz``):
Pearson correlations between A's and B's used features, a Hungarian assignment on ``-|r|``
(one-to-one), and a pair counts as *the same feature* when ``|r| >= min_correlation``. Two runs of
the same model match by id (:func:`identity_matching`). Used by run comparison
(:mod:`sparsecheck.reports.compare`) and monitoring (:class:`RunActivations`).

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(200, 2))
>>> a = RunActivations(np.arange(200).astype(str), [3, 7], x)
>>> b = RunActivations(np.arange(200).astype(str), [11, 12], x[:, ::-1] * [2.0, -1.0])
>>> [(m.feature_a, m.feature_b) for m in match_features(a, b).matches]
[(3, 12), (7, 11)]
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["RunActivations", "FeatureMatch", "FeatureMatching", "match_features", "identity_matching",
           "DEFAULT_MIN_CORRELATION"]

DEFAULT_MIN_CORRELATION = 0.5


# --------------------------------------------------------------------------- activations + matching
@dataclass(frozen=True)
class RunActivations:
    """A run's raw activations of its used sparse features on its evaluation (test) split.

    The content of the ``activations.npz`` artifact (:func:`sparsecheck.tracking.outputs.write_activations`):
    ``ids`` (str, n), ``feature_ids`` (int, k: the used feature ids; ``features`` is read too) and
    ``activations`` (float32, n × k, raw deep features).
    """

    ids: np.ndarray
    features: np.ndarray
    activations: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids).astype(str)
        feats = np.asarray(self.features).astype(np.int64).ravel()
        acts = np.asarray(self.activations, dtype=np.float32)
        if acts.ndim != 2 or acts.shape != (ids.shape[0], feats.shape[0]):
            raise DataError(f"activations must have shape (len(ids), len(features)) = "
                            f"({ids.shape[0]}, {feats.shape[0]}), got {acts.shape}")
        if len(np.unique(ids)) != ids.shape[0]:
            raise DataError("activation ids are not unique")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "activations", acts)

    @classmethod
    def load(cls, path: str | Path) -> "RunActivations":
        """Read an ``activations.npz`` (keys ``ids``, ``feature_ids`` or ``features``, ``activations``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                key = "feature_ids" if "feature_ids" in z.files else "features"
                missing = {"ids", key, "activations"} - set(z.files)
                if missing:
                    raise DataError(f"missing arrays {sorted(missing)} (has: {sorted(z.files)})", path=path)
                return cls(z["ids"], z[key], z["activations"])
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read activations: {exc}", path=path) from exc

    def columns(self, features: Iterable[int]) -> np.ndarray:
        """The activation columns of ``features``, in that order (DataError if one is absent)."""
        index = {int(f): j for j, f in enumerate(self.features)}
        wanted = [int(f) for f in features]
        missing = [f for f in wanted if f not in index]
        if missing:
            raise DataError(f"features {missing[:10]} have no stored activations "
                            f"(stored: {len(index)} features)")
        return self.activations[:, [index[f] for f in wanted]]


@dataclass(frozen=True)
class FeatureMatch:
    """Feature ``feature_a`` of run A is the same feature as ``feature_b`` of run B (``correlation``)."""

    feature_a: int
    feature_b: int
    correlation: float


@dataclass
class FeatureMatching:
    """A one-to-one matching between the used features of two runs.

    Attributes
    ----------
    matches : list of FeatureMatch
        Pairs with ``|correlation| >= min_correlation``, strongest first.
    unmatched_a, unmatched_b : list of int
        Used features without a partner.
    method : {"correlation", "identity"}
        How features were matched (identity: both runs have the same model).
    n_shared : int
        Evaluation examples both runs share (0 for identity matching).
    min_correlation : float
    best_a, best_b : dict of int to float
        Each feature's largest ``|r|`` with any feature of the other run (for lost/gained ones,
        how close the nearest candidate came).
    nearest_a, nearest_b : dict of int to int
        That nearest feature of the other run (it may be matched to another feature: the
        assignment is one-to-one).
    """

    matches: list[FeatureMatch]
    unmatched_a: list[int]
    unmatched_b: list[int]
    method: str
    n_shared: int
    min_correlation: float
    best_a: dict[int, float] = field(default_factory=dict)
    best_b: dict[int, float] = field(default_factory=dict)
    nearest_a: dict[int, int] = field(default_factory=dict)
    nearest_b: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._a_to_b = {m.feature_a: m for m in self.matches}
        self._b_to_a = {m.feature_b: m for m in self.matches}

    def partner_of_a(self, feature: int) -> FeatureMatch | None:
        """The match of A's ``feature``, or None."""
        return self._a_to_b.get(int(feature))

    def partner_of_b(self, feature: int) -> FeatureMatch | None:
        """The match of B's ``feature``, or None."""
        return self._b_to_a.get(int(feature))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_shared": self.n_shared, "min_correlation": self.min_correlation,
                "matches": [asdict(m) for m in self.matches], "unmatched_a": self.unmatched_a,
                "unmatched_b": self.unmatched_b}


def match_features(a: RunActivations, b: RunActivations, *,
                   min_correlation: float = DEFAULT_MIN_CORRELATION) -> FeatureMatching:
    """Match A's used features to B's by the correlation of their activations on shared examples.

    Pearson correlations are computed between every A feature and every B feature over the
    examples both runs were evaluated on; a Hungarian assignment
    (:func:`scipy.optimize.linear_sum_assignment`) on ``-|r|`` pairs them one-to-one, and pairs
    with ``|r| < min_correlation`` are dropped. A constant feature correlates with nothing.

    Parameters
    ----------
    a, b : RunActivations
    min_correlation : float in (0, 1]
        Smallest ``|r|`` for two features to be called the same feature.

    Returns
    -------
    FeatureMatching

    Raises
    ------
    DataError
        when the runs share fewer than 3 evaluation examples.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3)).astype(np.float32)
    >>> ids = np.array([f"t{i}" for i in range(500)])
    >>> a = RunActivations(ids, [4, 9, 15], x)
    >>> b = RunActivations(ids[::-1], [100, 101], x[::-1][:, [2, 0]] * 3 + 1)   # reordered rows
    >>> [(m.feature_a, m.feature_b, round(m.correlation, 3)) for m in match_features(a, b).matches]
    [(4, 101, 1.0), (15, 100, 1.0)]
    """
    if not (isinstance(min_correlation, (int, float)) and 0 < min_correlation <= 1):
        raise ParameterError("The 'min_correlation' parameter must be a float in (0, 1]. "
                             f"Got {min_correlation!r} instead.", parameter="min_correlation")
    from scipy.optimize import linear_sum_assignment

    shared, ia, ib = np.intersect1d(a.ids, b.ids, assume_unique=True, return_indices=True)
    if shared.size < 3:
        raise DataError(f"the two runs share {shared.size} evaluation examples (ids in activations.npz); "
                        "features can only be matched on a common evaluation set")
    ka, kb = a.features.size, b.features.size
    if ka == 0 or kb == 0:
        corr = np.zeros((ka, kb))
    else:
        za = _standardise(a.activations[ia])
        zb = _standardise(b.activations[ib])
        corr = np.clip(za.T @ zb, -1.0, 1.0)
    matches: list[FeatureMatch] = []
    if ka and kb:
        rows, cols = linear_sum_assignment(-np.abs(corr))
        for i, j in zip(rows, cols):
            if abs(corr[i, j]) >= min_correlation:
                matches.append(FeatureMatch(int(a.features[i]), int(b.features[j]), float(corr[i, j])))
    matches.sort(key=lambda m: (-abs(m.correlation), m.feature_a))
    got_a = {m.feature_a for m in matches}
    got_b = {m.feature_b for m in matches}
    absr = np.abs(corr)
    best_a = {int(f): float(absr[i].max()) if kb else 0.0 for i, f in enumerate(a.features)}
    best_b = {int(f): float(absr[:, j].max()) if ka else 0.0 for j, f in enumerate(b.features)}
    nearest_a = {int(f): int(b.features[absr[i].argmax()]) for i, f in enumerate(a.features)} if kb else {}
    nearest_b = {int(f): int(a.features[absr[:, j].argmax()]) for j, f in enumerate(b.features)} if ka else {}
    result = FeatureMatching(matches, [int(f) for f in a.features if int(f) not in got_a],
                             [int(f) for f in b.features if int(f) not in got_b], "correlation",
                             int(shared.size), float(min_correlation), best_a, best_b, nearest_a, nearest_b)
    logger.info("matched %d of %d (A) and %d (B) used features on %d shared examples (|r| >= %g)",
                len(matches), ka, kb, shared.size, min_correlation)
    return result


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled so that ``z.T @ z`` is the correlation matrix (constant → 0)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0))
    scale = np.where(norm > 1e-12 * max(1.0, float(norm.max(initial=0.0))), norm, np.inf)
    return x / scale


def identity_matching(features_a: Iterable[int], features_b: Iterable[int]) -> FeatureMatching:
    fa, fb = sorted({int(f) for f in features_a}), sorted({int(f) for f in features_b})
    both = sorted(set(fa) & set(fb))
    return FeatureMatching([FeatureMatch(f, f, 1.0) for f in both], [f for f in fa if f not in both],
                           [f for f in fb if f not in both], "identity", 0, 1.0)
