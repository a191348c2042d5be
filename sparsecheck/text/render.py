"""Pictures of text: a feature card (word clouds, highlighted examples, LIME) and a confirmed cue.

A text feature card (:func:`render_text_card`) shows, top to bottom:

1. two word clouds, the words and phrases that raise the feature (green) and those that lower it
   (red), as in the paper's SST figure: from the activation of the split's texts that contain
   them (:mod:`sparsecheck.text.words`), else, when the card carries no such words, from LIME on
   the feature's activation; the caption says which;
2. the top-activating texts, then the bottom-activating ones, each word that drives the feature
   (a word of the clouds) highlighted, green or red, in proportion to its weight;
3. the texts LIME explained, each word shaded by its own LIME weight;
4. the classes using the feature, its strongest metadata associations and the sanity verdict.

Words are drawn one by one with matplotlib (Agg), measured as they are placed, wrapped at the
card's width, at most :data:`MAX_LINES` lines per text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sparsecheck.outputs import atomic_write
from sparsecheck.text.words import lime_word_weights, word_cloud

__all__ = ["render_text_card", "render_text_cue", "card_words", "MAX_LINES"]

#: lines of a highlighted text at most (longer texts end with "…")
MAX_LINES = 3
_TOKEN = re.compile(r"\w+(?:'\w+)*|'\w+|[^\w\s']+|'", re.UNICODE)
_GREEN = np.array([0.10, 0.62, 0.20])
_RED = np.array([0.85, 0.15, 0.12])


def card_words(card: Any) -> tuple[dict[str, float], str]:
    """``(term → weight, source)``: the feature's drivers over the whole split, the activation
    words the card carries (``card.notes["words"]``), else, without them, LIME's words on the
    texts it explained."""
    words = (getattr(card, "notes", None) or {}).get("words") or {}
    weights = {str(t): float(v) for t, v in [*words.get("positive", []), *words.get("negative", [])]}
    if weights:
        return weights, "mean activation of the texts that contain them"
    if getattr(card, "explanations", None):
        n = len(card.explanations)
        return lime_word_weights(card.explanations), f"LIME on the feature's activation ({n} text{'s' if n != 1 else ''})"
    return {}, "no words"


def _renderer(fig: Any) -> Any:
    """An Agg renderer for ``fig``, to measure words as they are placed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return FigureCanvasAgg(fig).get_renderer()


def _shade(weight: float, peak: float) -> tuple[float, float, float, float] | None:
    if not weight or peak <= 0:
        return None
    strength = min(1.0, abs(weight) / peak)
    if strength < 0.15:
        return None
    rgb = _GREEN if weight > 0 else _RED
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]), 0.15 + 0.55 * strength)


def _draw_text(fig: Any, renderer: Any, x0: float, y: float, width: float, text: str,
               weights: dict[str, float], *, fontsize: float, line_h: float, lines: int = MAX_LINES) -> float:
    """Draw ``text`` from figure coordinates ``(x0, y)``, words in ``weights`` (lower-cased keys)
    shaded; returns the y below the last line. ``width`` and ``line_h`` in figure units."""
    peak = max((abs(v) for v in weights.values()), default=0.0)
    fig_w = fig.get_figwidth() * fig.dpi
    x, line = x0, 1
    space = 4.0 / fig_w
    for m in _TOKEN.finditer(str(text)):
        token = m.group(0)
        colour = _shade(weights.get(token.lower(), 0.0), peak)
        t = fig.text(x, y - 0.75 * line_h, token, fontsize=fontsize, va="baseline", ha="left", family="DejaVu Sans",
                     bbox=None if colour is None else dict(boxstyle="square,pad=0.12", facecolor=colour,
                                                            edgecolor="none"))
        w = t.get_window_extent(renderer).width / fig_w
        if x + w > x0 + width and x > x0:
            if line >= lines:
                t.set_text("…")
                t.set_position((x, y - 0.75 * line_h))
                t.set_bbox(None)
                return y - line_h
            line += 1
            x, y = x0, y - line_h
            t.set_position((x, y - 0.75 * line_h))
        x += w + space
    return y - line_h


def render_text_card(card: Any, path: str | Path, *, top: Sequence[str] | None = None,
                     bottom: Sequence[str] | None = None, dpi: int = 90, width_in: float = 10.0,
                     seed: int = 0) -> Path:
    """Draw a text feature card as a PNG (module docstring), written atomically."""
    from matplotlib.figure import Figure

    weights, source = card_words(card)
    clouds = [word_cloud(weights, positive=True, seed=seed), word_cloud(weights, positive=False, seed=seed)]
    top = [str(t) for t in (top if top is not None else [])]
    bottom = [str(t) for t in (bottom if bottom is not None else [])]
    lime = list(getattr(card, "explanations", []) or [])
    info = card.info_lines()
    if lime:
        info.insert(0, "LIME: green words raise the feature's activation, red ones lower it")
    # layout in inches: title, clouds, three blocks of texts (each text up to MAX_LINES lines), info lines
    line_in = 0.2
    per_text = MAX_LINES * line_in + 0.06
    blocks = [("top", top), ("bottom", bottom), ("LIME", [e.text for e in lime])]
    height = 0.5 + (2.3 if any(c is not None for c in clouds) else 0.3) + \
        sum(0.28 + per_text * len(items) for _, items in blocks if items) + 0.24 * len(info) + 0.3
    fig = Figure(figsize=(width_in, height), dpi=dpi)
    renderer = _renderer(fig)
    fig.suptitle(card.title(), fontsize=10, x=0.01, y=1.0 - 0.12 / height, ha="left", va="top")
    y = 1.0 - 0.5 / height
    # 1. the word clouds
    if any(c is not None for c in clouds):
        h = 1.95 / height
        for i, (cloud, label) in enumerate(zip(clouds, ("raise the feature", "lower the feature"))):
            left = 0.02 + i * 0.5
            fig.text(left, y, label, fontsize=9, va="top", weight="bold", color=_GREEN if i == 0 else _RED)
            ax = fig.add_axes((left, y - h - 0.22 / height, 0.46, h))
            ax.set_axis_off()
            if cloud is None:
                ax.text(0.5, 0.5, "no words", ha="center", va="center", fontsize=9, color="grey")
            else:
                ax.imshow(cloud, interpolation="bilinear", aspect="auto")
        y -= h + 0.32 / height
        fig.text(0.02, y, f"words and phrases from {source}", fontsize=7.5, va="top", color="#555555")
        y -= 0.2 / height
    # 2-3. the texts, highlighted
    line_h = line_in / height
    for label, items in blocks:
        if not items:
            continue
        fig.text(0.02, y, f"{label} {len(items)}", fontsize=8.5, va="top", weight="bold")
        y -= 0.24 / height
        for k, text in enumerate(items):
            own = lime[k].word_weights() if label == "LIME" else weights
            own = {str(w).lower(): v for w, v in own.items()}
            y = _draw_text(fig, renderer, 0.04, y, 0.93, text, own, fontsize=8.5, line_h=line_h) - 0.06 / height
        y -= 0.04 / height
    # 4. classes, associations, sanity
    for line in info:
        fig.text(0.02, y, line, fontsize=8, va="top", family="monospace")
        y -= 0.24 / height
    path = Path(path)
    with atomic_write(path, "wb") as fh:  # cropped to what was drawn: texts take fewer lines than planned
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.12)
    return path


def render_text_cue(path: str | Path, *, estimate: Any, cue_name: str, examples: Sequence[tuple[Any, str]],
                    title: str, dpi: int = 90) -> Path:
    """A confirmed text cue: what it is (inserted or removed words), then each example text as it
    is, with the cue and in the control, under its caption (the prediction)."""
    from matplotlib.figure import Figure

    lines: list[tuple[str, str]] = [("cue", cue_name)]
    if estimate is not None and hasattr(estimate, "describe"):
        lines.append(("estimated", estimate.describe()))
    height = 0.5 + 0.3 * len(lines) + len(examples) * (0.26 + MAX_LINES * 0.2) + 0.2
    fig = Figure(figsize=(10.0, height), dpi=dpi)
    renderer = _renderer(fig)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    y = 1.0 - 0.5 / height
    for k, v in lines:
        fig.text(0.02, y, f"{k}: {v}", fontsize=8.5, va="top", family="monospace")
        y -= 0.3 / height
    marked = {str(w).lower(): 1.0 for w in getattr(getattr(estimate, "put", None), "words", ()) or ()}
    for text, caption in examples:
        fig.text(0.02, y, caption, fontsize=8.5, va="top", weight="bold")
        y -= 0.24 / height
        y = _draw_text(fig, renderer, 0.04, y, 0.93, str(text), marked, fontsize=8.5, line_h=0.2 / height)
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.12)
    return path
