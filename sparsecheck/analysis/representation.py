"""How similar two runs' representations are: linear CKA between their feature layers on shared examples.

Linear centred kernel alignment (Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network
Representations Revisited", ICML 2019) compares two representations of the same n examples,
``X`` (n × p) and ``Y`` (n × q), after centring each column:

    CKA(X, Y) = ||Yᵀ X||²_F / (||Xᵀ X||_F · ||Yᵀ Y||_F)

It is 1 for a representation and itself, invariant to orthogonal transforms and isotropic scaling
of either side (so two models whose layers differ by a rotation of the same features score 1),
and near 0 for unrelated ones (for independent random matrices it is about ``√(p·q) / n`` when n
is much larger than p and q). Unlike feature matching
(:mod:`sparsecheck.analysis.matching`), it needs no one-to-one pairing of features, so it also
compares layers of different widths.

:func:`linear_cka` accumulates the three cross-product matrices in float64 over chunks of rows
after subtracting float64 column means (numerically stable for n up to 1e5 and widths up to
4096: memory ``8·(p² + q² + p·q)`` bytes, 400 MB at p = q = 4096); when n is smaller than the
widths it uses the equal n × n Gram form instead.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 20))
>>> Q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
>>> round(linear_cka(X, 3 * X @ Q), 6), linear_cka(X, rng.normal(size=(500, 20))) < 0.1
(1.0, True)
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["linear_cka", "FeatureSample", "RepresentationSimilarity", "compare_representations"]

#: float64 values per chunk of rows (2**24: 128 MB)
_CHUNK_VALUES = 2 ** 24


def _column_means(X: np.ndarray, rows: int) -> np.ndarray:
    total = np.zeros(X.shape[1], dtype=np.float64)
    for lo in range(0, X.shape[0], rows):
        total += np.asarray(X[lo:lo + rows], dtype=np.float64).sum(axis=0)
    return total / X.shape[0]


def linear_cka(X: Any, Y: Any, *, chunk_rows: int | None = None) -> float:
    """Linear CKA between two representations of the same examples (rows in the same order).

    Parameters
    ----------
    X : array (n, p)
    Y : array (n, q)
        Any float dtype (a float16 or memory-mapped array is read chunk by chunk).
    chunk_rows : int, optional
        Rows per chunk (default: about 2**24 values per chunk).

    Returns
    -------
    float
        In [0, 1]; NaN when either representation is constant over the examples.

    Raises
    ------
    DataError
        when the shapes do not fit (not 2-D, different numbers of rows, fewer than 2 rows).
    """
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise DataError(f"CKA needs two 2-D arrays with the same rows, got {X.shape} and {Y.shape}")
    n, p = X.shape
    q = Y.shape[1]
    if n < 2:
        raise DataError(f"CKA needs at least 2 examples, got {n}")
    if chunk_rows is not None and not (isinstance(chunk_rows, int) and chunk_rows >= 1):
        raise ParameterError(f"The 'chunk_rows' parameter of linear_cka must be an int >= 1. Got {chunk_rows!r} "
                             "instead.", parameter="chunk_rows")
    rows = chunk_rows or max(64, _CHUNK_VALUES // max(p + q, 1))
    mx, my = _column_means(X, rows), _column_means(Y, rows)
    if n * n < p * p + q * q + p * q:  # the n × n Gram form is smaller and equal
        Xc = np.asarray(X, dtype=np.float64) - mx
        Yc = np.asarray(Y, dtype=np.float64) - my
        K, L = Xc @ Xc.T, Yc @ Yc.T
        hsic, norm_x, norm_y = float(np.vdot(K, L)), float(np.linalg.norm(K)), float(np.linalg.norm(L))
    else:
        xx = np.zeros((p, p), dtype=np.float64)
        yy = np.zeros((q, q), dtype=np.float64)
        yx = np.zeros((q, p), dtype=np.float64)
        for lo in range(0, n, rows):
            xc = np.asarray(X[lo:lo + rows], dtype=np.float64) - mx
            yc = np.asarray(Y[lo:lo + rows], dtype=np.float64) - my
            xx += xc.T @ xc
            yy += yc.T @ yc
            yx += yc.T @ xc
        hsic = float(np.sum(yx * yx))
        norm_x, norm_y = float(np.linalg.norm(xx)), float(np.linalg.norm(yy))
    if norm_x == 0.0 or norm_y == 0.0 or not math.isfinite(hsic):
        return float("nan")
    return float(min(1.0, max(0.0, hsic / (norm_x * norm_y))))


@dataclass(frozen=True)
class FeatureSample:
    """A run's deep features on (a sample of) its test split: ``ids`` (str, n) and ``features`` (n × d).

    The content of the ``test_features.npz`` artifact
    (:func:`sparsecheck.tracking.outputs.write_test_features`).
    """

    ids: np.ndarray
    features: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids).astype(str)
        feats = np.asarray(self.features)
        if feats.ndim != 2 or feats.shape[0] != ids.shape[0]:
            raise DataError(f"features must have shape (len(ids), d) = ({ids.shape[0]}, d), got {feats.shape}")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "features", feats)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSample":
        """Read a ``test_features.npz`` (``ids``, ``features``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = {"ids", "features"} - set(z.files)
                if missing:
                    raise DataError(f"missing arrays {sorted(missing)} (has: {sorted(z.files)})", path=path)
                return cls(z["ids"], z["features"])
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read test features: {exc}", path=path) from exc


def _shared_rows(ids_a: np.ndarray, ids_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into A and B of the ids both have, in the same (sorted id) order."""
    _, rows_a, rows_b = np.intersect1d(np.asarray(ids_a).astype(str), np.asarray(ids_b).astype(str),
                                       assume_unique=True, return_indices=True)
    return rows_a, rows_b


@dataclass(frozen=True)
class RepresentationSimilarity:
    """Linear CKA between two runs, on the test examples both have.

    Attributes
    ----------
    cka_full : float or None
        Between the whole feature layers (``test_features.npz``); None when a run lacks them.
    n_full : int
        Shared examples it was measured on.
    dim_a, dim_b : int or None
        Widths of the two layers.
    cka_used : float or None
        Between the features each run's sparse layer uses (``activations.npz``).
    n_used : int
    used_a, used_b : int or None
        Numbers of used features.
    """

    cka_full: float | None = None
    n_full: int = 0
    dim_a: int | None = None
    dim_b: int | None = None
    cka_used: float | None = None
    n_used: int = 0
    used_a: int | None = None
    used_b: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("cka_full", "cka_used"):
            if d[key] is not None and not math.isfinite(d[key]):
                d[key] = None
        return d


def compare_representations(full_a: FeatureSample | None = None, full_b: FeatureSample | None = None,
                            used_a: Any = None, used_b: Any = None, *, min_examples: int = 10,
                            notes: list[str] | None = None) -> RepresentationSimilarity | None:
    """Linear CKA of the whole layers (``full_*``) and of the used sparse features (``used_*``,
    :class:`~sparsecheck.analysis.matching.RunActivations`), each on the examples both runs share.

    A pair that is missing, or shares fewer than ``min_examples`` ids, is left out (with a line
    in ``notes``); None when neither can be measured.
    """
    notes = notes if notes is not None else []
    found: dict[str, Any] = {}
    pairs = (("full", full_a, full_b, "features"), ("used", used_a, used_b, "activations"))
    for kind, a, b, attr in pairs:
        if a is None or b is None:
            continue
        rows_a, rows_b = _shared_rows(a.ids, b.ids)
        xa, xb = getattr(a, attr), getattr(b, attr)
        if rows_a.size < min_examples:
            notes.append(f"CKA ({'whole layer' if kind == 'full' else 'used features'}) not measured: the runs "
                         f"share {rows_a.size} test examples (need {min_examples})")
            continue
        if xa.shape[1] == 0 or xb.shape[1] == 0:
            continue
        found[f"cka_{kind}"] = linear_cka(xa[rows_a], xb[rows_b])
        found[f"n_{kind}"] = int(rows_a.size)
        if kind == "full":
            found["dim_a"], found["dim_b"] = int(xa.shape[1]), int(xb.shape[1])
        else:
            found["used_a"], found["used_b"] = int(xa.shape[1]), int(xb.shape[1])
    if not found:
        return None
    result = RepresentationSimilarity(**found)
    logger.info("representation similarity: CKA whole layer %s, used features %s", result.cka_full, result.cka_used)
    return result
