"""The feature card: what is shown about one feature of the sparse layer, and its picture for images.

A :class:`FeatureCard` holds a used feature's classes and weights, its top and bottom examples,
its strongest metadata associations, its local explanations and their sanity verdict
(``results["feature_cards"]`` is its :meth:`~FeatureCard.to_dict`). :func:`card_title` and
:func:`card_lines` are its words, for any kind of input; :func:`render_card` draws the image
modality's picture: thumbnails of the top and bottom images, LIME overlays, then the words.

Examples
--------
>>> card = FeatureCard(feature=7, classes=[{"class": "wolf", "weight": 0.81}], top_examples=["a"],
...                    bottom_examples=["b"])
>>> card_title(card)
'feature 7 — used by wolf (+0.81)'
>>> card_lines(card)
['no metadata associations tested']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck.analysis.lime_features import FeatureExplanation, overlay
from sparsecheck.analysis.sanity import SanityResult
from sparsecheck.outputs import atomic_write

__all__ = ["FeatureCard", "render_card", "card_title", "card_lines", "CARD_DIR", "CARD_THUMB"]

#: feature card pictures go to ``out_dir / CARD_DIR / f"feature_{id}.png"``
CARD_DIR = "features"
#: edge of a card's example thumbnails in pixels (the report shows cards at their natural size)
CARD_THUMB = 96


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
        return card_title(self)

    def info_lines(self) -> list[str]:
        """The card's associations and sanity verdict, one line each (under a card picture)."""
        return card_lines(self)

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
    lines = card_lines(card)
    if card.explanations:
        lines.insert(0, "LIME: green superpixels raise the feature's activation, red ones lower it")
    width = max([r[1].shape[1] for r in rows] + [6 * thumb]) / dpi + 1.6
    height = 0.45 + sum(r[1].shape[0] / dpi + 0.2 for r in rows) + 0.26 * len(lines) + 0.2
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.suptitle(card_title(card), fontsize=10, x=0.01, ha="left")
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


def card_title(card: FeatureCard) -> str:
    users = ", ".join(f"{c['class']} ({c['weight']:+.2f})" for c in card.classes[:6])
    more = f" and {len(card.classes) - 6} more" if len(card.classes) > 6 else ""
    return f"feature {card.feature} — used by {users or 'no class'}{more}"


def card_lines(card: FeatureCard) -> list[str]:
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
