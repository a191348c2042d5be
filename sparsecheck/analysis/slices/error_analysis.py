"""Error analysis of one prediction table: slices, feature slices and ranked error breakdowns.

:func:`analyse_errors` runs two slice searches (both with :class:`SliceFinder`, both on the
errors of the model's own head, ``correct``) and two error breakdowns:

* **slices** over the metadata attributes and the label (as class names). The prediction is
  left out: with the label it describes the errors by definition (``label=cat AND
  prediction=dog`` is all errors), and such slices would top every search;
* **feature slices** over the label and the activations of the features the sparse layer uses
  (columns ``feat_<id>``, quantile-binned by SliceFinder: ``n_bins`` = 4). They are searched
  apart because activations are the model's own state: a low activation of the features of the
  predicted class *is* low confidence, so a bin of them always describes the errors more sharply
  than any attribute, and in one ranking they would crowd out (group under themselves) the
  slices a person can act on;
* **by_pair**: accuracy by every pair of the attributes, the label and the prediction, but not
  label × prediction (:func:`~sparsecheck.analysis.breakdown.accuracy_by_attribute_pair`);
* **by_feature_activation**: each class's accuracy by quantile bin of each feature it uses
  (:func:`~sparsecheck.analysis.breakdown.accuracy_by_feature_activation`).

Each breakdown row gets a one-sided Fisher p-value (its error rate against the rest: all other
rows for a pair cell, the class's other bins for a feature bin) and a Benjamini–Hochberg q-value
over its table; significant rows (``q <= fdr``) come first, then the worst; at most
:data:`MAX_BREAKDOWN_ROWS` rows each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sparsecheck.analysis.auto_attributes import is_auto
from sparsecheck.analysis.breakdown import accuracy_by_attribute_pair, accuracy_by_feature_activation
from sparsecheck.analysis.slices.finder import Slice, SliceFinder
from sparsecheck.analysis.stats import benjamini_hochberg, fisher_exact_pvalue
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import DataError

__all__ = ["ErrorAnalysis", "analyse_errors", "MAX_BREAKDOWN_ROWS"]

logger = logging.getLogger(__name__)

#: most rows of each error breakdown kept in results.json
MAX_BREAKDOWN_ROWS = 50


@dataclass
class ErrorAnalysis:
    """What :func:`analyse_errors` found; :meth:`to_results` gives its results.json entries."""

    slices: list[Slice]
    search: dict[str, Any]
    feature_slices: list[Slice] = field(default_factory=list)
    by_pair: list[dict[str, Any]] = field(default_factory=list)
    by_feature_activation: list[dict[str, Any]] = field(default_factory=list)

    def to_results(self) -> dict[str, Any]:
        """``slices``, ``slice_search``, ``feature_slices`` and ``error_breakdowns``."""
        return {"slices": [s.to_dict() for s in self.slices], "slice_search": self.search,
                "feature_slices": [s.to_dict() for s in self.feature_slices],
                "error_breakdowns": {"by_pair": self.by_pair, "by_feature_activation": self.by_feature_activation}}


def _error_features(block: np.ndarray, correct: np.ndarray, limit: int | None) -> np.ndarray:
    """Columns of ``block`` in their order, at most ``limit`` of them: those whose mean differs most
    between the errors and the rest, in units of their standard deviation."""
    k = block.shape[1]
    if limit is None or k <= int(limit):
        return np.arange(k)
    wrong = ~np.asarray(correct, dtype=bool)
    if not wrong.any() or wrong.all():
        return np.arange(int(limit))
    gap = np.abs(block[wrong].mean(0) - block[~wrong].mean(0)) / np.maximum(block.std(0), 1e-12)
    return np.sort(np.argsort(-gap, kind="stable")[:int(limit)])


def analyse_errors(table: pd.DataFrame, attributes: Sequence[str], *, features: Any = None, layer: Any = None,
                   class_names: Sequence[str] = (), max_predicates: int = ANALYSIS["max_predicates"],
                   min_support: int = ANALYSIS["min_support"], top_k: int = ANALYSIS["slices_top_k"],
                   fdr: float = ANALYSIS["fdr"],
                   feature_slice_features: int | None = ANALYSIS["feature_slice_features"]) -> ErrorAnalysis:
    """Slices, feature slices and error breakdowns of a labelled prediction table.

    Parameters
    ----------
    table : DataFrame
        The prediction table (``label``, ``prediction``, ``correct``, metadata columns); not modified.
    attributes : sequence of str
        The metadata columns to slice by.
    features : ndarray (n, d), optional
        Deep features of the same rows; with ``layer``, feature slices and the feature breakdown.
    layer : SparseDecisionLayer, optional
    class_names : sequence of str
        Labels and predictions are shown by name (an index without a name as itself).
    max_predicates, min_support, top_k, fdr
        Of both slice searches (:class:`SliceFinder`); ``min_support`` and ``fdr`` also of the
        breakdowns.
    feature_slice_features : int, optional
        The feature slice search looks at this many used features, those whose activation
        differs most between the errors and the rest (standardised mean difference); None: all.
        With a thousand classes every feature is used and all of them make millions of candidate
        slices (minutes and gigabytes) for slices no reader gets to.

    Returns
    -------
    ErrorAnalysis
    """
    if "label" not in table.columns:
        raise DataError("the test split has no labels; slices need them")
    names = list(class_names)

    def name_of(v: Any) -> str:
        return names[int(v)] if 0 <= int(v) < len(names) else str(v)

    table = table.copy()
    labels = np.asarray(table["label"].to_numpy())  # class indices, before they become names
    table["label"] = [name_of(v) for v in table["label"]]
    table["prediction"] = [name_of(v) for v in table["prediction"]]
    attributes = [a for a in attributes if a in table.columns]
    params = dict(max_predicates=max_predicates, min_support=min_support, top_k=top_k, fdr=fdr)
    # automatic image attributes and the user's metadata are searched side by side, never mixed
    families = {a: "automatic" if is_auto(a) else "metadata" for a in attributes}
    finder = SliceFinder(**params).fit(table, [*attributes, "label"], families=families, lead=["metadata"])
    result = ErrorAnalysis(slices=list(finder.slices_),
                           search={"n_rows": finder.n_rows_, "error_rate": finder.error_rate_,
                                   "n_tests": finder.n_tests_, "min_support": finder.min_support_,
                                   "columns": list(finder.columns_)})

    correct = table["correct"].to_numpy(dtype=bool)
    if layer is not None and features is not None and len(layer.used_features()):
        used = [int(f) for f in layer.used_features()]
        block = np.asarray(features[:, used], dtype=np.float64)
        searched = _error_features(block, correct, feature_slice_features)
        result.search.update({"feature_slice_features": int(searched.size), "used_features": len(used)})
        feat_table = pd.DataFrame({f"feat_{used[j]}": block[:, j] for j in searched})
        feat_table["label"] = table["label"].to_numpy()
        feat_table["correct"] = correct
        result.feature_slices = list(SliceFinder(**params).fit(feat_table).slices_)
        class_features = {c: [int(f) for f in np.flatnonzero(layer.weight_[k])]
                          for k, c in enumerate(layer.classes_)}
        by_feature = accuracy_by_feature_activation(features, class_features, labels, correct,
                                                    min_support=1)
        result.by_feature_activation = _ranked_feature_breakdown(by_feature, name_of, fdr, min_support)
    else:
        logger.info("slices: no sparse layer (or it uses no feature); no feature slices or feature breakdown")

    pair_columns = [*attributes, "label", "prediction"]
    if len(pair_columns) >= 3:
        by_pair = accuracy_by_attribute_pair(table, pair_columns, min_support=min_support)
        by_pair = by_pair[~((by_pair["attribute_1"] == "label") & (by_pair["attribute_2"] == "prediction"))]
        result.by_pair = _ranked_pair_breakdown(by_pair, int((~correct).sum()), len(correct), fdr)
    logger.info("slices: %d reported (%d significant), %d feature slices; top: %s", len(result.slices),
                sum(s.significant for s in result.slices), len(result.feature_slices),
                str(result.slices[0]) if result.slices else "none")
    return result
def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in frame.to_dict("records"):
        out.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return out


def _ranked_pair_breakdown(by_pair: pd.DataFrame, n_errors: int, n: int, fdr: float) -> list[dict[str, Any]]:
    """Pair cells with Fisher p (cell's errors vs all other rows), BH q; significant, then worst, first."""
    if by_pair.empty:
        return []
    size = by_pair["size"].to_numpy(dtype=np.float64)
    errors = np.rint(by_pair["error_rate"].to_numpy(dtype=np.float64) * size)
    p = fisher_exact_pvalue(errors, size, n_errors - errors, n - size, alternative="greater")
    frame = by_pair.assign(p_value=p, q_value=benjamini_hochberg(p))
    frame["significant"] = frame["q_value"] <= fdr
    frame = frame.sort_values(["significant", "error_rate", "size"], ascending=False, kind="stable")
    return _records(frame.head(MAX_BREAKDOWN_ROWS))


def _ranked_feature_breakdown(by_feature: pd.DataFrame, name_of: Any, fdr: float,
                              min_support: int) -> list[dict[str, Any]]:
    """Feature bins with Fisher p (bin's errors vs the class's other bins), BH q; significant,
    then largest accuracy gap below the class's other bins, first. Bins under min_support are
    counted in their class's totals but not reported."""
    if by_feature.empty:
        return []
    frame = by_feature.copy()
    size = frame["size"].to_numpy(dtype=np.float64)
    errors = np.rint(frame["error_rate"].to_numpy(dtype=np.float64) * size)
    key = frame["class"].astype(str) + "/" + frame["feature"].astype(str)
    total_size = frame.groupby(key)["size"].transform("sum").to_numpy(dtype=np.float64)
    total_err = pd.Series(errors).groupby(key.to_numpy()).transform("sum").to_numpy()
    rest_size, rest_err = total_size - size, total_err - errors
    p = fisher_exact_pvalue(errors, size, rest_err, rest_size, alternative="greater")
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["accuracy_rest"] = np.where(rest_size > 0, 1.0 - rest_err / np.maximum(rest_size, 1), np.nan)
    frame["gap"] = frame["accuracy_rest"] - frame["accuracy"]
    frame["p_value"] = p
    frame = frame[frame["size"] >= min_support].copy()
    frame["q_value"] = benjamini_hochberg(frame["p_value"].to_numpy())
    frame["significant"] = frame["q_value"] <= fdr
    frame.insert(1, "class_name", [name_of(c) for c in frame["class"]])
    frame = frame.sort_values(["significant", "gap", "size"], ascending=False, kind="stable")
    return _records(frame.head(MAX_BREAKDOWN_ROWS))
