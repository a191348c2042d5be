"""The results of the spurious-feature analysis: one finding (:class:`SpuriousFinding`) and the
whole analysis (:class:`SpuriousAnalysis`); the analysis itself is :mod:`sparsecheck.analysis.spurious`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sparsecheck.outputs import native


@dataclass
class SpuriousFinding:
    """One class relying on one feature that tracks one attribute value.

    Attributes
    ----------
    class_name : str
        The class (``"class"`` in :meth:`to_dict`).
    feature : int
        Index of the deep feature (column of the sparse layer's weight).
    attribute, value : str
        The metadata attribute and the value the feature fires on.
    score : float
        ``(2 * AUC - 1) * min(class_specific_gap, ablation_gap)``, see the module docstring.
    significant : bool
        Whether every condition of the decision rule holds.
    evidence : dict of str to number
        auc, q_value and p_value (of the association), weight, n_with, n_without, recall_with,
        recall_without, gap, gap_p_value, gap_q_value, others_accuracy_with,
        others_accuracy_without, others_gap, class_specific_gap, class_specific_gap_p_value,
        class_specific_gap_q_value, sparse_recall_with, sparse_recall_without,
        ablated_recall_with, ablated_recall_without (sparse layer's recall after the ablation),
        ablation_drop_with, ablation_drop_without (mean drop of the probability of the class),
        ablation_gap. Recalls are fractions of the class's examples classified correctly.
    sentence : str
        The finding in words.
    class_label : int or str
        The class's label value (as in ``classes_``).
    features : list of int
        Every feature of the class that carries the same shortcut (the rule holds for each), the
        strongest (``feature``) first: one finding per shortcut, however many features carry it.
    other_sides : list of dict
        Findings folded under this one (:func:`fold_other_sides`): another class relying on the
        *absence* of the value (its class, feature, attribute, value and score).
    also_seen_as : list of dict
        Attributes that mark the same images (:func:`pool_findings`): an automatic attribute
        under a declared one's finding, with their agreement.
    automatic : bool
        Found on an automatic image attribute (no metadata named it).
    """

    class_name: str
    feature: int
    attribute: str
    value: str
    score: float
    significant: bool
    evidence: dict[str, Any]
    sentence: str
    class_label: Any = None
    features: list[int] = field(default_factory=list)
    other_sides: list[dict[str, Any]] = field(default_factory=list)
    also_seen_as: list[dict[str, Any]] = field(default_factory=list)
    automatic: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: class, feature, attribute, value, score, evidence, sentence, then
        significant, class_label, features, other_sides, also_seen_as and automatic. Non-finite
        numbers become None."""
        return {"class": self.class_name, "feature": int(self.feature), "attribute": self.attribute,
                "value": self.value, "score": _num(self.score),
                "evidence": {k: _num(v) if isinstance(v, float) else v for k, v in self.evidence.items()},
                "sentence": self.sentence, "significant": bool(self.significant),
                "class_label": native(self.class_label), "features": [int(f) for f in (self.features or [self.feature])],
                "other_sides": [dict(o) for o in self.other_sides],
                "also_seen_as": [dict(a) for a in self.also_seen_as], "automatic": bool(self.automatic)}


@dataclass
class SpuriousAnalysis:
    """What :func:`find_spurious_features` found.

    Attributes
    ----------
    findings : list of SpuriousFinding
        The candidates meeting the decision rule, highest score first.
    candidates : DataFrame
        Every (class, feature, attribute, value) evaluated, highest score first, with every
        measurement (columns as the evidence keys, plus class, class_name, feature, attribute,
        value, score, significant).
    attributes : list of str
        The attributes scanned.
    params : dict
        fdr, min_auc, min_gap, min_ablation, min_group.
    """

    findings: list[SpuriousFinding]
    candidates: pd.DataFrame
    attributes: list[str]
    params: dict[str, float | int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: findings (list of dicts), n_candidates, attributes, params."""
        return {"findings": [f.to_dict() for f in self.findings], "n_candidates": int(len(self.candidates)),
                "attributes": list(self.attributes), "params": dict(self.params)}

    def top_for_class(self, class_name: str) -> SpuriousFinding | None:
        """The best finding for ``class_name``, or None."""
        return next((f for f in self.findings if f.class_name == class_name), None)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


