"""Regularisation-path solvers for the sparse decision layer.

``fista_path`` is the fast in-memory solver (full-batch FISTA with screening, CPU or GPU);
``glm_saga_path`` wraps the published glm_saga solver, which streams mini-batches and so also
handles features larger than memory. Both solve the same problem (see :mod:`._base`) on the same
lambda grid and return a :class:`PathResult`.
"""

from sparsecheck.sparse.solvers._base import (
    PathProblem,
    PathResult,
    Standardize,
    elastic_net_objective,
    feature_statistics,
)
from sparsecheck.sparse.solvers.fista import fista_path
from sparsecheck.sparse.solvers.saga import glm_saga_path

__all__ = [
    "PathProblem",
    "PathResult",
    "Standardize",
    "elastic_net_objective",
    "feature_statistics",
    "fista_path",
    "glm_saga_path",
]
