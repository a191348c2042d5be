"""One slice of the data as :class:`~sparsecheck.analysis.slices.SliceFinder` reports it: its
predicates, size, error rate with its interval, p- and q-values and score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Slice:
    """One slice of the data and how the model does on it.

    Attributes
    ----------
    predicates : dict of str to str
        ``{attribute: value}``; the slice is the rows where all hold.
    size, errors : int
        Rows in the slice, and wrong predictions among them.
    error_rate : float
    ci_low, ci_high : float
        Wilson interval on the error rate.
    p_value : float
        One-sided Fisher exact test: is the error rate higher than on the rest of the rows?
    q_value : float
        Benjamini–Hochberg adjusted p-value over every slice of its family in the searched lattice
        (see the module docstring).
    score : float
        SliceLine score (higher is worse for the model); the ranking key.
    significant : bool
        ``q_value <= fdr``.
    related : list of dict
        Predicates of lower-ranked slices grouped under this one (their rows overlap it).
    family : str or None
        The multiple-testing family of its columns (``SliceFinder.fit(families=...)``; ``"label"``
        for slices over the free columns alone), None without families.
    """

    predicates: dict[str, str]
    size: int
    errors: int
    error_rate: float
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    score: float
    significant: bool
    related: list[dict[str, str]] = field(default_factory=list)
    family: str | None = None

    @property
    def level(self) -> int:
        """Number of predicates."""
        return len(self.predicates)

    def __str__(self) -> str:
        return " AND ".join(f"{k}={v}" for k, v in self.predicates.items())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: predicates, size, error_rate, ci_low, ci_high, p_value, q_value, then
        errors, score, significant and related. Non-finite numbers become None."""

        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {"predicates": dict(self.predicates), "size": int(self.size),
                "error_rate": num(self.error_rate), "ci_low": num(self.ci_low),
                "ci_high": num(self.ci_high), "p_value": num(self.p_value),
                "q_value": num(self.q_value), "errors": int(self.errors), "score": num(self.score),
                "significant": bool(self.significant), "related": [dict(r) for r in self.related],
                "family": self.family}
