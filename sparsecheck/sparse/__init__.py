"""The sparse decision layer (:class:`SparseDecisionLayer`) and its regularisation-path solvers."""

from sparsecheck.sparse.layer import SparseDecisionLayer

__all__ = ["SparseDecisionLayer"]
