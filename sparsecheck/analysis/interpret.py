"""Explain every feature the sparse decision layer uses: examples, classes, associations, LIME, cards.

A sparse layer is debuggable only if each of its features can be seen, named and trusted. For
every feature with a nonzero weight this module gathers

* its top-k and bottom-k activating test examples (:func:`top_and_bottom`),
* the classes that use it, with their weights (:func:`classes_using`),
* its association with every metadata value (:mod:`sparsecheck.analysis.association`),
* local explanations (LIME superpixels for images) regressed on its standardised activation, for
  the features tied to a declared spurious attribute and those with the largest total weight
  (:func:`lime_order`; done by :mod:`sparsecheck.analysis.explain` with the run's modality),
* a model-randomisation sanity check of those explanations (:mod:`sparsecheck.analysis.sanity`),

into a :class:`~sparsecheck.analysis.cards.FeatureCard` with a picture; :func:`interpret_features`
does all of it for a fitted layer and returns an :class:`Interpretation`.

Examples
--------
>>> import numpy as np
>>> acts = np.array([[0.1, 5.0], [0.9, 1.0], [0.5, 3.0]])
>>> top, bottom = top_and_bottom(acts, k=2)
>>> top.T.tolist(), bottom.T.tolist()
([[1, 2], [0, 2]], [[0, 2], [1, 2]])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sparsecheck.analysis.association import (
    association_records,
    feature_associations,
    strongest_significant,
    top_associations,
)
from sparsecheck.analysis.cards import CARD_DIR, CARD_THUMB, FeatureCard, render_card
from sparsecheck.analysis.explain import explain_cards, explain_features, features_by_weight
from sparsecheck.analysis.sanity import SanityResult
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import ParameterError, SparsecheckError

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureCard",
    "top_and_bottom",
    "classes_using",
    "features_by_weight",
    "lime_order",
    "explanation_order",
    "explain_features",
    "explain_cards",
    "render_card",
    "interpret_features",
    "Interpretation",
    "CARD_DIR",
    "CARD_THUMB",
]

_SORT_LIMIT = 200_000  # above this many examples, partial sorts pick the top k


# --------------------------------------------------------------------------- building blocks
def top_and_bottom(activations: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the ``k`` highest and ``k`` lowest activations of every column.

    Parameters
    ----------
    activations : ndarray (n, F)
    k : int
        Capped at ``n``.

    Returns
    -------
    top, bottom : ndarray (k, F) of int
        ``top[:, j]`` from the highest activation down, ``bottom[:, j]`` from the lowest up;
        ties keep the examples' order.
    """
    A = np.asarray(activations, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    if int(k) < 1:
        raise ParameterError(f"The 'k' parameter of top_and_bottom must be an int >= 1. Got {k!r} instead.",
                             parameter="k")
    n = A.shape[0]
    k = min(int(k), n)
    if n <= _SORT_LIMIT:
        return np.argsort(-A, axis=0, kind="stable")[:k], np.argsort(A, axis=0, kind="stable")[:k]
    out = []
    for sign in (-1.0, 1.0):
        cand = np.sort(np.argpartition(sign * A, k - 1, axis=0)[:k], axis=0)  # examples' order for ties
        vals = np.take_along_axis(sign * A, cand, axis=0)
        out.append(np.take_along_axis(cand, np.argsort(vals, axis=0, kind="stable"), axis=0))
    return out[0], out[1]


def classes_using(layer: Any, class_names: Sequence[str] | None = None) -> dict[int, list[dict[str, Any]]]:
    """For every used feature, the classes with a nonzero weight on it, largest ``|weight|`` first.

    Parameters
    ----------
    layer : SparseDecisionLayer (anything with ``weight_`` and ``classes_``)
    class_names : sequence of str, optional
        Indexed by class label (``classes_`` values); default the labels as strings.

    Returns
    -------
    dict feature → ``[{"class": str, "weight": float}]``
    """
    W = np.asarray(layer.weight_)
    labels = list(getattr(layer, "classes_", range(W.shape[0])))

    def name(c: int) -> str:
        label = labels[c]
        if class_names is not None:
            try:
                return str(class_names[int(label)])
            except (ValueError, TypeError, IndexError):
                pass
        return str(label)

    out: dict[int, list[dict[str, Any]]] = {}
    for j in np.flatnonzero((W != 0).any(axis=0)):
        col = W[:, j]
        rows = np.flatnonzero(col)
        rows = rows[np.argsort(-np.abs(col[rows]), kind="stable")]
        out[int(j)] = [{"class": name(int(c)), "weight": float(col[c])} for c in rows]
    return out


def _tied_to_spurious(layer: Any, associations: pd.DataFrame, spurious_attributes: Sequence[str], *,
                      fdr: float, min_effect: float) -> set[int]:
    """Positively weighted features with a significant, strong association with a declared spurious
    attribute (``q_value <= fdr``, ``AUC - 0.5 >= min_effect``, or ``|r| >= 2 * min_effect`` numeric)."""
    if not len(associations) or not spurious_attributes:
        return set()
    t = associations[associations["attribute"].isin(list(spurious_attributes)) & (associations["q_value"] <= fdr)]
    numeric = t["value"].isna()
    strong = np.where(numeric, t["effect"].abs() >= 2 * min_effect, t["effect"] - 0.5 >= min_effect)
    positive = set(np.flatnonzero((np.asarray(layer.weight_) > 0).any(axis=0)).tolist())
    return {int(f) for f in t.loc[strong, "feature"]} & positive


def lime_order(layer: Any, associations: pd.DataFrame, spurious_attributes: Sequence[str], limit: int | None, *,
               fdr: float = ANALYSIS["fdr"], min_effect: float = 0.2) -> list[int]:
    """Features to explain with LIME: those tied to a declared spurious attribute first, then by weight.

    The spurious findings (computed later in a run) name positively weighted features that fire on
    a spurious attribute value; their LIME picture is what a reader of a finding wants to see. So
    up to half of the ``limit`` slots go to features with a positive weight and a significant
    association (``q_value <= fdr``, ``AUC - 0.5 >= min_effect``, or ``|r| >= 2 * min_effect`` for a
    numeric attribute) with one of ``spurious_attributes``, heaviest first; the rest follow
    :func:`features_by_weight`. A run knows better once its findings exist: :func:`explanation_order`.
    """
    by_weight = features_by_weight(layer)
    n = len(by_weight) if limit is None else int(limit)
    tied = _tied_to_spurious(layer, associations, spurious_attributes, fdr=fdr, min_effect=min_effect)
    first = [f for f in by_weight if f in tied][:max(1, n // 2) if n else 0]
    return (first + [f for f in by_weight if f not in first])[:n]


def explanation_order(layer: Any, needed: Mapping[int, Sequence[str]] | None = None,
                      associations: pd.DataFrame | None = None, spurious_attributes: Sequence[str] = (),
                      limit: int | None = None, *, fdr: float = ANALYSIS["fdr"], min_effect: float = 0.2) -> list[tuple[int, str]]:
    """Every used feature in the order LIME explains them, each with why it comes there.

    What a reader needs first: the features ``needed`` names (a run passes
    :func:`sparsecheck.reports.evidence.featured_features`: features of spurious findings, of failing
    assertions and of the top feature slices, in that order), then features tied to a declared
    spurious attribute, then the rest by total ``|weight|`` (:func:`lime_order`: tied features
    take at most half of the ``limit`` slots left after the needed ones).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> layer = SimpleNamespace(weight_=np.array([[3.0, 0.0, 0.5], [0.0, 2.0, 0.0]]))
    >>> explanation_order(layer, {2: ["finding: cat on background = snow"]})
    [(2, 'finding: cat on background = snow'), (0, 'total |weight| rank 1'), (1, 'total |weight| rank 2')]
    """
    by_weight = features_by_weight(layer)
    rank = {f: i + 1 for i, f in enumerate(by_weight)}
    order: list[tuple[int, str]] = []
    seen: set[int] = set()
    for f, reasons in (needed or {}).items():
        f = int(f)
        if f in rank and f not in seen:
            order.append((f, "; ".join(str(r) for r in reasons) or "named in the results"))
            seen.add(f)
    table = associations if associations is not None else pd.DataFrame()
    tied = _tied_to_spurious(layer, table, spurious_attributes, fdr=fdr, min_effect=min_effect)
    left = None if limit is None else max(int(limit) - len(order), 0)
    first = lime_order(layer, table, spurious_attributes, left, fdr=fdr, min_effect=min_effect) if left != 0 else []
    for f in first + features_by_weight(layer):
        if f not in seen:
            why = "tied to a declared spurious attribute" if f in tied else f"total |weight| rank {rank[f]}"
            order.append((f, why))
            seen.add(f)
    return order


# --------------------------------------------------------------------------- all features of a layer
@dataclass
class Interpretation:
    """What :func:`interpret_features` found; :meth:`to_results` gives its results.json entries.

    Attributes
    ----------
    associations : DataFrame
        Tidy feature × metadata-value table (feature, attribute, value, effect, p_value, q_value, ...),
        every test.
    cards : list of FeatureCard
    sanity : dict feature → SanityResult
    summary : dict
        Counts and timings (``results["interpretation"]``).
    artifacts : dict name → path
        Card pictures written under ``out_dir``.
    fdr, associations_per_feature
        Which associations ``results["feature_attributes"]`` lists
        (:func:`~sparsecheck.analysis.association.strongest_significant`).
    """

    associations: pd.DataFrame
    cards: list[FeatureCard]
    sanity: dict[int, SanityResult]
    summary: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    fdr: float = ANALYSIS["fdr"]
    associations_per_feature: int | None = ANALYSIS["associations_per_feature"]

    def to_results(self) -> dict[str, Any]:
        """``feature_attributes`` (the significant associations, the strongest
        ``associations_per_feature`` of each feature; the whole table stays in :attr:`associations`),
        ``feature_cards``, ``feature_sanity`` and ``interpretation``."""
        kept = strongest_significant(self.associations, fdr=self.fdr, per_feature=self.associations_per_feature)
        return {"feature_attributes": association_records(kept),
                "feature_cards": [c.to_dict() for c in self.cards],
                "feature_sanity": [r.to_dict() for r in self.sanity.values()],
                "interpretation": self.summary}


def interpret_features(layer: Any, features: Any, ids: Sequence[str], metadata: pd.DataFrame,
                       labels: Any = None, *, class_names: Sequence[str] | None = None, model: Any = None,
                       dataset: Any = None, input_spec: Any = None, modality: Any = None,
                       feature_layer: str | None = None,
                       device: str = "cpu", seed: int = 0, out_dir: str | Path | None = None,
                       on_skip: Callable[[str, str], None] | None = None, split: str = "test",
                       top_k: int = ANALYSIS["top_k"], explain: bool = ANALYSIS["explain"],
                       explain_features: int | None = ANALYSIS["explain_features"],
                       lime_examples: int = ANALYSIS["lime_examples"], lime_samples: int = ANALYSIS["lime_samples"],
                       lime_convergence: float | None = ANALYSIS["lime_convergence"],
                       sanity_check: bool = ANALYSIS["sanity_check"],
                       sanity_features: int = ANALYSIS["sanity_features"],
                       sanity_examples: int = ANALYSIS["sanity_examples"],
                       sanity_threshold: float = ANALYSIS["sanity_threshold"],
                       sanity_cascade: bool = ANALYSIS["sanity_cascade"],
                       spurious_attributes: Sequence[str] = (), fdr: float = ANALYSIS["fdr"],
                       card_images: int | None = ANALYSIS["card_images"],
                       associations_per_feature: int | None = ANALYSIS["associations_per_feature"]) -> Interpretation:
    """Explain every feature of a fitted sparse ``layer`` on one split's examples.

    Parameters
    ----------
    layer : SparseDecisionLayer
    features : ndarray (n, d)
        Deep features of the split (may be a memory map); only the used columns are read.
    ids : sequence of str, shape (n,)
    metadata : DataFrame
        One row per example (same order); every column but ``id`` is an attribute.
    labels : ndarray (n,), optional
        Associations are computed within classes when given.
    class_names : sequence of str, optional
    model, dataset, input_spec, feature_layer, device
        What LIME needs (the model, the split's examples, how they become input, the feature
        layer's name); LIME and its sanity check run only when ``explain`` and both
        ``model`` and ``dataset`` are given.
    modality : Modality, optional
        The kind of input ``dataset`` holds (:mod:`sparsecheck.modalities`: its explainer, its
        sanity probes, how its cards are drawn, and
        :meth:`~sparsecheck.modalities.base.Modality.feature_notes`: text, the words of each
        feature's activations over ``dataset``); default images.
    seed : int
        Seeds LIME, its segmenter and the sanity check.
    out_dir : path, optional
        Card pictures go to ``out_dir / CARD_DIR`` (for the first ``card_images`` features in
        LIME's order, and every explained one); pictures an earlier run left are removed.
    on_skip : callable(what, reason), optional
        Told about an optional step that failed (one LIME example, a sanity check); without it,
        LIME's errors raise.
    top_k, explain, explain_features, lime_examples, lime_samples, sanity_*, fdr, card_images
        As the ``analysis:`` section of the config.
    associations_per_feature : int or None
        ``analysis.associations_per_feature``: how many significant associations of each feature
        :meth:`Interpretation.to_results` lists (the whole table is ``Interpretation.associations``).
    spurious_attributes : sequence of str
        ``data.spurious_attributes``: features tied to them are explained with LIME first
        (:func:`lime_order`).

    Returns
    -------
    Interpretation
    """
    if layer is None:
        raise SparsecheckError("the interpretation needs a fitted sparse layer; run the sparse stage before it")
    used = np.asarray(layer.used_features(), dtype=np.int64)
    start = time.perf_counter()
    n = len(ids)
    acts = np.asarray(features[:, used], dtype=np.float64) if used.size else np.empty((n, 0))
    ids = np.asarray(ids).astype(str)

    # examples and classes
    top, bottom = top_and_bottom(acts, top_k) if used.size else (np.empty((0, 0), int),) * 2
    users = classes_using(layer, class_names)
    column = {int(f): i for i, f in enumerate(used)}

    # associations, within classes when labels are known
    attrs = [c for c in metadata.columns if c != "id"]
    if used.size and attrs:
        table = feature_associations(acts, metadata.reset_index(drop=True), features=used,
                                     attributes=attrs, strata=labels)
    else:
        table = feature_associations(np.empty((n, 0)), metadata.iloc[:, :0], features=[])

    # cards (pictures without LIME yet), then LIME and the sanity check in the order a reader needs
    cards: list[FeatureCard] = []
    for f in used.tolist():
        j = column[f]
        cards.append(FeatureCard(
            feature=f, classes=users.get(f, []), top_examples=ids[top[:, j]].tolist(),
            bottom_examples=ids[bottom[:, j]].tolist(), top_activations=acts[top[:, j], j].tolist(),
            bottom_activations=acts[bottom[:, j], j].tolist(), associations=top_associations(table, f, 5),
            lime_samples=int(lime_samples), top_rows=top[:, j].tolist(), bottom_rows=bottom[:, j].tolist()))
    if modality is not None and dataset is not None and used.size:
        z = (acts - np.asarray(layer.mean_)[used]) / np.asarray(layer.std_)[used]
        for card, notes in zip(cards, _feature_notes(modality, dataset, z, used)):
            card.notes.update(notes)
    summary: dict[str, Any] = {"split": split, "used_features": int(used.size), "top_k": int(top_k)}
    interpretation = Interpretation(table, cards, {}, summary, {}, fdr=float(fdr),
                                    associations_per_feature=associations_per_feature)
    out = Path(out_dir) if out_dir is not None else None
    explain_cards(interpretation, layer, model=model, dataset=dataset, input_spec=input_spec, modality=modality,
                  feature_layer=feature_layer, device=device, seed=seed, out_dir=out, on_skip=on_skip,
                  order=explanation_order(layer, None, table, list(spurious_attributes), explain_features, fdr=fdr),
                  limit=explain_features, lime_examples=lime_examples, lime_samples=lime_samples,
                  lime_convergence=lime_convergence,
                  sanity_check=sanity_check, sanity_features=sanity_features, sanity_examples=sanity_examples,
                  sanity_threshold=sanity_threshold, sanity_cascade=sanity_cascade, card_images=card_images,
                  off_reason=None if explain else "not asked for (explain=False)")
    summary["seconds"] = round(time.perf_counter() - start, 3)
    logger.info("interpreted %d features (%d explained with LIME on %d examples, %d sanity-checked) in %.1fs",
                used.size, summary["explained_features"], summary["explained_examples"],
                summary["sanity_checked"], time.perf_counter() - start)
    return interpretation


def _feature_notes(modality: Any, dataset: Any, z: np.ndarray, used: np.ndarray) -> list[dict[str, Any]]:
    """The modality's notes on each used feature, in the order of ``used`` (empty dicts without any)."""
    notes = modality.feature_notes(dataset, z, [int(f) for f in used])
    return [dict(notes.get(int(f), {})) for f in used]
