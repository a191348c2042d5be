"""Deep features and the sparse decision layer fitted over them."""

from sparsecheck.sparse.layer import SparseDecisionLayer

__all__ = ["SparseDecisionLayer"]
