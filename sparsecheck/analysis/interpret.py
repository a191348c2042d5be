"""Explain every feature the sparse decision layer uses: examples, classes, associations, LIME, cards.

A sparse layer is debuggable only if each of its features can be seen, named and trusted. For
every feature with a nonzero weight this module gathers

* its top-k and bottom-k activating test examples (:func:`top_and_bottom`),
* the classes that use it, with their weights (:func:`classes_using`),
* its association with every metadata value (:mod:`sparsecheck.analysis.association`),
* LIME superpixels regressed on its standardised activation, for the features tied to a declared
  spurious attribute and those with the largest total weight (:func:`lime_order`,
  :mod:`sparsecheck.analysis.lime_features`),
* a model-randomisation sanity check of those explanations (:mod:`sparsecheck.analysis.sanity`),

into a :class:`FeatureCard` with a PNG picture; :func:`interpret_features` does all of it for a
fitted layer and returns an :class:`Interpretation`.

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
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from sparsecheck.outputs import atomic_write
from sparsecheck._runtime import exception_reason, progress
from sparsecheck.analysis.association import (
    association_records,
    feature_associations,
    strongest_significant,
    top_associations,
)
from sparsecheck.analysis.lime_features import (
    FeatureActivation,
    FeatureExplanation,
    LimeFeatureExplainer,
    Segmenter,
    overlay,
)
from sparsecheck.analysis.sanity import SanityResult, model_randomisation_test
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

#: feature card pictures go to ``out_dir / CARD_DIR / f"feature_{id}.png"``
CARD_DIR = "features"
#: edge of a card's example thumbnails in pixels (the report shows cards at their natural size)
CARD_THUMB = 96
_CARD_NAME = re.compile(r"^feature_\d+\.png$")
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


def features_by_weight(layer: Any, limit: int | None = None) -> list[int]:
    """Used features, largest total ``|weight|`` over classes first, at most ``limit`` of them."""
    W = np.abs(np.asarray(layer.weight_))
    total = W.sum(axis=0)
    used = np.flatnonzero(total > 0)
    order = used[np.argsort(-total[used], kind="stable")]
    return [int(j) for j in (order if limit is None else order[:int(limit)])]


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
               fdr: float = 0.05, min_effect: float = 0.2) -> list[int]:
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
                      limit: int | None = None, *, fdr: float = 0.05, min_effect: float = 0.2) -> list[tuple[int, str]]:
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


# --------------------------------------------------------------------------- cards
@dataclass
class FeatureCard:
    """Everything shown about one feature of the sparse layer.

    ``to_dict()`` is the ``results["feature_cards"]`` contract: ``feature``, ``classes``
    ([{class, weight}]), ``image`` (PNG path relative to the output directory, or None),
    ``top_examples`` / ``bottom_examples`` (example ids), ``associations`` (top 5:
    [{attribute, value, effect, q_value}]), ``lime`` ({samples, examples, why} or None) and ``sanity``
    ({spearman, trustworthy} or None) and ``thumb`` (thumbnail edge in the picture, pixels).
    """

    feature: int
    classes: list[dict[str, Any]]
    top_examples: list[str]
    bottom_examples: list[str]
    top_activations: list[float] = field(default_factory=list)
    bottom_activations: list[float] = field(default_factory=list)
    associations: list[dict[str, Any]] = field(default_factory=list)
    explanations: list[FeatureExplanation] = field(default_factory=list)
    lime_samples: int = 0
    sanity: SanityResult | None = None
    image: str | None = None
    thumb: int | None = None
    #: why LIME explained this feature (see :func:`explanation_order`), when it did
    lime_why: str | None = None
    #: rows of the top and bottom examples in the split (for pictures drawn later)
    top_rows: list[int] = field(default_factory=list, repr=False)
    bottom_rows: list[int] = field(default_factory=list, repr=False)
    #: what the modality adds about the feature (:meth:`~sparsecheck.modalities.base.Modality.feature_notes`;
    #: text: ``words``, the words and phrases of its positive and negative activations), in results.json too
    notes: dict[str, Any] = field(default_factory=dict)

    def title(self) -> str:
        """"feature 12 — used by seven (+0.81), ..." (a card picture's title)."""
        return _title(self)

    def info_lines(self) -> list[str]:
        """The card's associations and sanity verdict, one line each (under a card picture)."""
        return _card_text(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": int(self.feature),
            "classes": [{"class": str(c["class"]), "weight": float(c["weight"])} for c in self.classes],
            "image": self.image,
            "top_examples": [str(i) for i in self.top_examples],
            "bottom_examples": [str(i) for i in self.bottom_examples],
            "associations": [dict(a) for a in self.associations],
            "lime": ({"samples": int(self.lime_samples), "examples": len(self.explanations),
                      **({"why": self.lime_why} if self.lime_why else {})} if self.explanations else None),
            "sanity": None if self.sanity is None else self.sanity.card(),
            "thumb": self.thumb,
            **self.notes,
        }


def render_card(card: FeatureCard, path: str | Path, *, top_images: np.ndarray | None = None,
                bottom_images: np.ndarray | None = None, thumb: int = CARD_THUMB, dpi: int = 90) -> Path:
    """Draw a feature card as a PNG (matplotlib Agg), written atomically.

    Rows: the top-activating examples, the bottom-activating ones, LIME overlays (green raises
    the feature, red lowers it — a legend line says so under the pictures), then the classes
    using the feature, its strongest metadata associations and the sanity verdict as text.

    Parameters
    ----------
    card : FeatureCard
    path : path of the PNG
    top_images, bottom_images : ndarray (k, H, W, C) uint8, optional
    thumb : int
        Thumbnail edge in pixels.
    """
    from matplotlib.figure import Figure

    rows: list[tuple[str, np.ndarray]] = []
    if top_images is not None and len(top_images):
        rows.append((f"top {len(top_images)}", _mosaic([_thumb(i, thumb) for i in top_images])))
    if bottom_images is not None and len(bottom_images):
        rows.append((f"bottom {len(bottom_images)}", _mosaic([_thumb(i, thumb) for i in bottom_images])))
    if card.explanations:
        f = max(1, thumb // max(card.explanations[0].image.shape[:2]))
        rows.append(("LIME", _mosaic([_thumb(overlay(e, scale=f), thumb) for e in card.explanations])))
    lines = _card_text(card)
    if card.explanations:
        lines.insert(0, "LIME: green superpixels raise the feature's activation, red ones lower it")
    width = max([r[1].shape[1] for r in rows] + [6 * thumb]) / dpi + 1.6
    height = 0.45 + sum(r[1].shape[0] / dpi + 0.2 for r in rows) + 0.26 * len(lines) + 0.2
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.suptitle(_title(card), fontsize=10, x=0.01, ha="left")
    top = 1.0 - 0.45 / height
    for label, mosaic in rows:
        h = (mosaic.shape[0] / dpi + 0.2) / height
        ax = fig.add_axes((1.4 / width, top - h, mosaic.shape[1] / dpi / width, h - 0.2 / height))
        ax.imshow(mosaic, interpolation="nearest", aspect="equal")
        ax.set_axis_off()
        fig.text(0.1 / width, top - h / 2, label, fontsize=8, va="center")
        top -= h
    for i, line in enumerate(lines):
        fig.text(0.1 / width, top - (i + 0.8) * 0.26 / height, line, fontsize=8, va="center", family="monospace")
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path


def _title(card: FeatureCard) -> str:
    users = ", ".join(f"{c['class']} ({c['weight']:+.2f})" for c in card.classes[:6])
    more = f" and {len(card.classes) - 6} more" if len(card.classes) > 6 else ""
    return f"feature {card.feature} — used by {users or 'no class'}{more}"


def _card_text(card: FeatureCard) -> list[str]:
    lines = []
    for a in card.associations[:5]:
        value = "" if a["value"] is None else f"={a['value']}"
        lines.append(f"{a['attribute']}{value}: effect {a['effect']:.3f}, q={a['q_value']:.2g}")
    if not lines:
        lines.append("no metadata associations tested")
    if card.sanity is not None:
        verdict = "trustworthy" if card.sanity.trustworthy else "NOT trustworthy"
        lines.append(f"LIME sanity (model randomisation): spearman {card.sanity.spearman:.2f} → {verdict}")
    return lines


def _thumb(image: np.ndarray, size: int) -> np.ndarray:
    """Float RGB thumbnail of edge ``size`` (nearest-neighbour up, anti-aliased down)."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    h, w = img.shape[:2]
    if h <= size and w <= size:
        f = max(1, size // max(h, w))
        return np.clip(img.repeat(f, axis=0).repeat(f, axis=1), 0.0, 1.0)
    from skimage.transform import resize

    scale = size / max(h, w)
    return np.clip(resize(img, (max(1, round(h * scale)), max(1, round(w * scale))), anti_aliasing=True), 0, 1)


def _mosaic(thumbs: list[np.ndarray], gap: int = 2) -> np.ndarray:
    h = max(t.shape[0] for t in thumbs)
    w = sum(t.shape[1] for t in thumbs) + gap * (len(thumbs) - 1)
    out = np.ones((h, w, 3))
    x = 0
    for t in thumbs:
        out[:t.shape[0], x:x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out


# --------------------------------------------------------------------------- the LIME job
def explain_features(model: Any, jobs: dict[int, np.ndarray], *, explainer: LimeFeatureExplainer,
                     example_ids: dict[int, Sequence[str]] | None = None, layer: str | None = None,
                     input_spec: Any = None, mean: Any = 0.0, std: Any = 1.0, device: str = "cpu",
                     channels: int | None = None, bar: Any = None,
                     on_error: Callable[[str, str], None] | None = None,
                     deadline: float | None = None) -> dict[int, list[FeatureExplanation]]:
    """LIME explanations of several features on their images, each image perturbed once for all
    the features that ask for it, under one progress bar.

    One :class:`FeatureActivation` serves every feature (one forward pass computes them all), and
    an image that several features are explained on (the same example id) gets one set of
    perturbed images, from which LIME fits one local model per feature
    (:meth:`~sparsecheck.analysis.lime_features.LimeFeatureExplainer.explain_many`): the forward
    passes of one explanation for all of them. Images are explained in the order of the first
    feature of ``jobs`` that asks for them; with a ``deadline`` no image starts after it.

    Parameters
    ----------
    model : Model or nn.Module
    jobs : dict feature → ndarray (n, H, W, C) uint8
        The images to explain each feature on (typically its top-activating examples).
    explainer : LimeFeatureExplainer
    example_ids : dict feature → ids, optional
        The images' ids: the same id in two features' jobs is the same image. Without ids every
        image is its own.
    layer, input_spec, mean, std, device, channels
        As for FeatureActivation.
    bar : progress bar, optional
        Advanced once per explained image; by default one is opened for the whole job.
    on_error : callable ``(what, reason)``, optional
        Called instead of raising when one example cannot be explained; that example is left out.
    deadline : float, optional
        A :func:`time.perf_counter` value after which no explanation starts.

    Returns
    -------
    dict feature → list of FeatureExplanation, in the order of its jobs
    """
    features = list(jobs)
    out: dict[int, list[FeatureExplanation]] = {f: [] for f in features}
    if not features:
        return out
    # one entry per distinct image: its pixels, id, and the (feature, position) pairs that want it
    images: dict[Any, dict[str, Any]] = {}
    for f in features:
        ids = list(example_ids.get(f, [])) if example_ids else []
        for i, image in enumerate(jobs[f]):
            key = ids[i] if i < len(ids) else (f, i)
            entry = images.setdefault(key, {"image": image, "id": ids[i] if i < len(ids) else None, "wants": []})
            entry["wants"].append((f, i))
    own_bar = bar is None
    bar = progress(total=len(images), desc="LIME feature explanations", unit="image") if own_bar else bar
    placed: dict[int, dict[int, FeatureExplanation]] = {f: {} for f in features}
    try:
        with FeatureActivation(model, features, layer=layer, input_spec=input_spec, mean=mean, std=std,
                               device=device, channels=channels) as target:
            column = {f: j for j, f in enumerate(features)}
            for key, entry in images.items():
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                wanted = [f for f, _ in entry["wants"]]
                try:
                    exps = explainer.explain_many(entry["image"], target, columns=[column[f] for f in wanted],
                                                  features=wanted, example_id=entry["id"])
                except Exception as exc:  # one example LIME cannot explain must not cost the others
                    if on_error is None:
                        raise
                    on_error(f"LIME of feature{'s' if len(wanted) > 1 else ''} {', '.join(map(str, wanted))} on "
                             f"example {entry['id'] if entry['id'] is not None else key}", exception_reason(exc))
                    bar.update(1)
                    continue
                for (f, i), e in zip(entry["wants"], exps):
                    placed[f][i] = e
                bar.update(1)
    finally:
        if own_bar:
            bar.close()
    return {f: [placed[f][i] for i in sorted(placed[f])] for f in features}


def shared_rows(top_rows: dict[int, Sequence[int]], per_feature: int, pool: int) -> dict[int, list[int]]:
    """For each feature, ``per_feature`` of its first ``pool`` top rows, chosen so that as few
    distinct rows as possible are explained in all (each distinct row costs one LIME run, whatever
    the features explained on it): greedily the row that the most still-short features have among
    their candidates, the better ranked first. Features keep their order of preference.

    Examples
    --------
    >>> shared_rows({1: [10, 11, 12, 13], 2: [12, 20, 10, 21]}, per_feature=2, pool=4)
    {1: [10, 12], 2: [12, 10]}
    """
    cand = {f: list(rows)[:pool] for f, rows in top_rows.items()}
    picked: dict[int, list[int]] = {f: [] for f in cand}
    need = {f: min(per_feature, len(rows)) for f, rows in cand.items()}
    while any(need[f] > len(picked[f]) for f in cand):
        votes: dict[int, tuple[int, float]] = {}
        for f, rows in cand.items():
            if need[f] <= len(picked[f]):
                continue
            for rank, r in enumerate(rows):
                if r not in picked[f]:
                    n, s = votes.get(r, (0, 0.0))
                    votes[r] = (n + 1, s - rank)
        row = max(votes, key=lambda r: votes[r])
        for f, rows in cand.items():
            if need[f] > len(picked[f]) and row in rows and row not in picked[f]:
                picked[f].append(row)
    return {f: sorted(rows, key=cand[f].index) for f, rows in picked.items()}


_explain_all = explain_features  # interpret_features' parameter of that name is the config's count


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
                       dataset: Any = None, input_spec: Any = None, feature_layer: str | None = None,
                       device: str = "cpu", seed: int = 0, out_dir: str | Path | None = None,
                       on_skip: Callable[[str, str], None] | None = None, split: str = "test",
                       top_k: int = ANALYSIS["top_k"], explain: bool = ANALYSIS["explain"],
                       explain_features: int | None = ANALYSIS["explain_features"],
                       lime_examples: int = ANALYSIS["lime_examples"], lime_samples: int = ANALYSIS["lime_samples"],
                       sanity_check: bool = ANALYSIS["sanity_check"],
                       sanity_features: int = ANALYSIS["sanity_features"],
                       sanity_examples: int = ANALYSIS["sanity_examples"],
                       sanity_threshold: float = ANALYSIS["sanity_threshold"],
                       sanity_cascade: bool = ANALYSIS["sanity_cascade"],
                       spurious_attributes: Sequence[str] = (), fdr: float = ANALYSIS["fdr"],
                       card_images: int | None = ANALYSIS["card_images"],
                       associations_per_feature: int | None = ANALYSIS["associations_per_feature"],
                       modality: Any = None) -> Interpretation:
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
        What LIME needs (the model, the split's images, how they become input, the feature
        layer's name); LIME and its sanity check run only when ``explain`` and both
        ``model`` and ``dataset`` are given.
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
    modality : Modality, optional
        The kind of input (:mod:`sparsecheck.modalities`): its explainer, card pictures and
        :meth:`~sparsecheck.modalities.base.Modality.feature_notes` (text: the words of each
        feature's activations, over ``dataset``); default images'.

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
    explain_cards(interpretation, layer, model=model, dataset=dataset, input_spec=input_spec,
                  feature_layer=feature_layer, device=device, seed=seed, out_dir=out, on_skip=on_skip,
                  order=explanation_order(layer, None, table, list(spurious_attributes), explain_features, fdr=fdr),
                  limit=explain_features, lime_examples=lime_examples, lime_samples=lime_samples,
                  sanity_check=sanity_check, sanity_features=sanity_features, sanity_examples=sanity_examples,
                  sanity_threshold=sanity_threshold, sanity_cascade=sanity_cascade, card_images=card_images,
                  off_reason=None if explain else "not asked for (explain=False)", modality=modality)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    logger.info("interpreted %d features (%d explained with LIME on %d examples, %d sanity-checked) in %.1fs",
                used.size, summary["explained_features"], summary["explained_examples"],
                summary["sanity_checked"], time.perf_counter() - start)
    return interpretation


def draw_cards(cards: Sequence[FeatureCard], out: Path, dataset: Any, artifacts: dict[str, str], *,
               modality: Any = None) -> None:
    """Render each card's picture to ``out / CARD_DIR / feature_<id>.png`` and note it in ``artifacts``
    (the ``modality``'s :meth:`~sparsecheck.modalities.base.Modality.render_card`; default images')."""
    for card in cards:
        rel = f"{CARD_DIR}/feature_{card.feature}.png"
        top = None if dataset is None or not card.top_rows else dataset.batch(card.top_rows)
        bottom = None if dataset is None or not card.bottom_rows else dataset.batch(card.bottom_rows)
        if modality is None:
            render_card(card, out / rel, top_images=top, bottom_images=bottom)
        else:
            modality.render_card(card, out / rel, top=top, bottom=bottom)
        card.image, card.thumb = rel, CARD_THUMB
        artifacts[rel] = str(out / rel)


def explain_cards(interpretation: Interpretation, layer: Any, *, model: Any, dataset: Any, input_spec: Any = None,
                  feature_layer: str | None = None, device: str = "cpu", seed: int = 0,
                  out_dir: str | Path | None = None, on_skip: Callable[[str, str], None] | None = None,
                  order: Sequence[tuple[int, str]] = (), limit: int | None = ANALYSIS["explain_features"],
                  budget_s: float | None = ANALYSIS["explain_budget_s"],
                  lime_examples: int = ANALYSIS["lime_examples"], lime_samples: int = ANALYSIS["lime_samples"],
                  sanity_check: bool = ANALYSIS["sanity_check"], sanity_features: int = ANALYSIS["sanity_features"],
                  sanity_examples: int = ANALYSIS["sanity_examples"],
                  sanity_threshold: float = ANALYSIS["sanity_threshold"],
                  sanity_cascade: bool = ANALYSIS["sanity_cascade"], card_images: int | None = ANALYSIS["card_images"],
                  off_reason: str | None = None, modality: Any = None) -> Interpretation:
    """Explain the cards' features with LIME in ``order``, then sanity-check them, within a time budget.

    ``order`` is :func:`explanation_order`'s ``(feature, why)`` list; the first ``limit`` features
    are explained on their top ``lime_examples`` examples, one after the other, until ``budget_s``
    seconds have passed (no explanation starts after that; the sanity checks count against the
    same budget). The sanity check runs on up to ``sanity_features`` explained features: those
    the results name first (a finding, a failing assertion, a slice), then the heaviest. With
    ``out_dir`` and images, card pictures are drawn for the first ``card_images`` features of
    ``order`` and every explained one (a picture costs a tenth of a second; at a thousand classes
    every used feature would take minutes, for pictures the report does not show), and pictures
    of other features are removed.

    Updates ``interpretation`` in place (cards, ``sanity``, ``summary``; what an earlier call
    explained is replaced) and returns it. The
    summary gets ``explained_features``, ``explained_examples``, ``lime_*`` timings,
    ``sanity_checked`` and ``explain``: the order rule, ``limit``, ``budget_s``, ``candidates``,
    ``explained``, ``not_explained`` (count by reason) and ``needed`` (every feature the results
    name: ``{feature, why, explained, reason}``). Without a model or images, or with an
    ``off_reason`` (LIME switched off), nothing is explained and the reason says so.
    
    ``modality`` (:class:`~sparsecheck.modalities.base.Modality`) gives the explainer, the sanity
    check's probes and the card pictures; default images' (LIME superpixels).
    """
    cards = {c.feature: c for c in interpretation.cards}
    order = [(int(f), why) for f, why in order if int(f) in cards]
    n_limit = len(order) if limit is None else min(int(limit), len(order))
    chosen, beyond = order[:n_limit], order[n_limit:]
    reasons: dict[int, str] = {f: f"beyond analysis.explain_features ({limit})" for f, _ in beyond}
    explained: dict[int, list[FeatureExplanation]] = {}
    sanity: dict[int, SanityResult] = {}
    lime_seconds = forward_seconds = 0.0
    batch_size = None
    t0 = time.perf_counter()
    deadline = None if budget_s is None else t0 + float(budget_s)
    chosen_at_all = off_reason is None and model is not None and dataset is not None
    if not chosen_at_all:  # the caller says why once (explain_stage: one ``skipped`` entry)
        reasons.update({f: off_reason or "LIME needs the model and the images" for f, _ in chosen})
        chosen = []
    if chosen:
        n_lime = max(0, min(int(lime_examples), min(len(cards[f].top_rows) for f, _ in chosen)))
        n_sanity_examples = min(int(sanity_examples), n_lime)
        # each feature on n_lime of its top examples, chosen so that features share images: an image
        # explained for several features costs the forward passes of one explanation
        rows = shared_rows({f: cards[f].top_rows for f, _ in chosen}, n_lime, max(n_lime, 2 * n_lime))
        id_of = {r: i for f, _ in chosen for r, i in zip(cards[f].top_rows, cards[f].top_examples)}
        jobs = {f: dataset.batch(rows[f]) for f, _ in chosen}
        job_ids = {f: [id_of[r] for r in rows[f]] for f, _ in chosen}
        explainer = (LimeFeatureExplainer(num_samples=int(lime_samples), random_state=seed,
                                          segmenter=Segmenter(random_state=seed)) if modality is None
                     else modality.explainer(num_samples=int(lime_samples), seed=seed))
        common = dict(layer=feature_layer, input_spec=input_spec, mean=layer.mean_, std=layer.std_, device=device,
                      channels=_channels(dataset))
        named = [f for f, why in chosen if not why.startswith(("total |weight|", "tied to"))]
        check = ([f for f in named] + [f for f in features_by_weight(layer) if f in jobs and f not in named]
                 )[:int(sanity_features)] if sanity_check else []
        total = len({i for v in job_ids.values() for i in v}) + len(check) * n_sanity_examples * (8 if sanity_cascade else 1)
        with progress(total=total, desc="explaining features", unit="image") as bar:
            try:
                explained = _explain_all(model, jobs, explainer=explainer, example_ids=job_ids, bar=bar,
                                         on_error=on_skip, deadline=deadline, **common)
            except Exception as exc:  # optional: a model LIME cannot drive costs the pictures, not the run
                if on_skip is None:
                    raise
                on_skip("LIME explanations", exception_reason(exc))
                explained, check = {}, []
                reasons.update({f: f"LIME failed: {exception_reason(exc)}" for f, _ in chosen})
            lime_seconds = time.perf_counter() - t0
            forward_seconds = sum(e.forward_seconds for v in explained.values() for e in v)
            for f in check:
                exps = explained.get(f, [])[:n_sanity_examples]
                if not exps:
                    continue
                if deadline is not None and time.perf_counter() >= deadline:
                    if on_skip is not None:
                        on_skip(f"sanity check of feature {f}", f"the time budget analysis.explain_budget_s "
                                                                 f"({budget_s:g} s) was spent")
                    continue
                try:
                    examples = _raw_batch([e.example for e in exps])
                    sanity[f] = model_randomisation_test(
                        model, f, examples, explainer=explainer,
                        original_maps=[e.attribution_map() for e in exps], cascade=sanity_cascade,
                        threshold=sanity_threshold, random_state=seed, example_ids=[e.example_id for e in exps],
                        on_explained=lambda: bar.update(1),
                        probes=None if modality is None else modality.sanity_probes(examples), **common)
                except Exception as exc:
                    if on_skip is None:
                        raise
                    on_skip(f"sanity check of feature {f}", exception_reason(exc))
        batch_size = getattr(explainer, "last_batch_size_", None)
        for f, _ in chosen:
            if not explained.get(f) and f not in reasons:
                reasons[f] = (f"the time budget analysis.explain_budget_s ({budget_s:g} s) was spent"
                              if deadline is not None and time.perf_counter() >= deadline
                              else "no example could be explained")
        untrusted = [f for f, r in sanity.items() if not r.trustworthy]
        if untrusted:
            logger.warning("LIME explanations of features %s did not pass the model-randomisation check",
                           untrusted)
    why = dict(order)
    for f, card in cards.items():  # what this pass explained replaces what an earlier one did
        card.explanations, card.lime_why = explained.get(f, []), why.get(f) if explained.get(f) else None
        card.lime_samples, card.sanity = int(lime_samples), sanity.get(f)
    interpretation.sanity.clear()
    interpretation.sanity.update(sanity)
    if out_dir is not None:
        pictured = [f for f, _ in order][:len(order) if card_images is None else int(card_images)]
        drawn = [cards[f] for f in dict.fromkeys([*pictured, *(f for f in explained if explained[f])])]
        for card in cards.values():
            card.image = card.thumb = None
        for rel in [k for k in interpretation.artifacts if k.startswith(f"{CARD_DIR}/")]:
            del interpretation.artifacts[rel]
        if dataset is not None:
            draw_cards(drawn, Path(out_dir), dataset, interpretation.artifacts, modality=modality)
        _remove_stale_cards(Path(out_dir) / CARD_DIR, {Path(c.image).name for c in drawn if c.image})
    n_explained = sum(len(v) for v in explained.values())
    n_features = sum(bool(v) for v in explained.values())
    counts: dict[str, int] = {}
    for r in reasons.values():
        counts[r] = counts.get(r, 0) + 1
    needed = [{"feature": f, "why": w, "explained": bool(explained.get(f)),
               **({"reason": reasons[f]} if f in reasons else {})}
              for f, w in order if not w.startswith(("total |weight|", "tied to"))]
    interpretation.summary.update({
        "explained_features": n_features, "explained_examples": n_explained,
        "lime_samples": int(lime_samples) if n_explained else None,
        "lime_seconds": round(lime_seconds, 3), "forward_seconds": round(forward_seconds, 3),
        "examples_per_second": round(n_explained / lime_seconds, 3) if lime_seconds > 0 else None,
        "sanity_checked": len(interpretation.sanity),
        "card_images": sum(c.image is not None for c in cards.values()),
        "explain": {"order": "features the results name (findings, failing assertions, top slices), then tied to a "
                             "declared spurious attribute, then by total |weight|",
                    "limit": limit, "budget_s": budget_s, "candidates": len(order), "explained": n_features,
                    "batch_size": batch_size, "not_explained": counts, "needed": needed}})
    for f, r in reasons.items():  # each named feature LIME could have explained here and did not
        if (on_skip is not None and chosen_at_all and why.get(f)
                and not why[f].startswith(("total |weight|", "tied to"))):
            on_skip(f"LIME of feature {f} ({why[f]})", r)
    return interpretation


def _feature_notes(modality: Any, dataset: Any, z: np.ndarray, used: np.ndarray) -> list[dict[str, Any]]:
    """The modality's notes on each used feature, in the order of ``used`` (empty dicts without any)."""
    notes = modality.feature_notes(dataset, z, [int(f) for f in used])
    return [dict(notes.get(int(f), {})) for f in used]


def _raw_batch(examples: Sequence[Any]) -> Any:
    """Examples as one raw batch: images stacked into an array, anything else an object array."""
    if examples and isinstance(examples[0], np.ndarray):
        return np.stack(examples)
    return np.asarray(list(examples), dtype=object)


def _channels(dataset: Any) -> int | None:
    try:
        shape = dataset.image_shape
    except Exception:  # pragma: no cover - a dataset that cannot show an image fails later anyway
        return None
    return int(shape[-1]) if len(shape) == 3 else 1


def _remove_stale_cards(directory: Path, keep: set[str]) -> None:
    """Drop card pictures of features this run does not use (left by an earlier run in the same --out)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if _CARD_NAME.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
