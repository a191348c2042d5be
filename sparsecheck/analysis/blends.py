"""Blended strips: one side of the image faded towards one colour on many images, learned from the split.

A band of "snow" along the bottom, a tinted strip, a semi-transparent frame: the strip keeps the
image under it, faded towards a colour, ``pixel = (1 - s) · image + s · colour``. On one photo that
looks like any lighter or flatter strip (a sky, a wall), and a fixed threshold on how much the strip
stands out (the ``auto:band_<side>`` attributes) misses a half-strength blend over textured photos.
What gives the blend away is that it is *the same on many images*:

* the strip's texture is squeezed: the spread of its pixels over the spread of the strip just
  inside it, ``r``, estimates ``1 - s``;
* undoing the blend, ``(mean of the strip - r · mean of the strip inside) / (1 - r)``, gives the
  blend's colour back on every image that carries it, whatever the photo under it (on other
  images, where nothing was blended, it is noise).

:func:`blend_stats` measures ``r`` and that colour for each side at widths from 1/32 to 1/4 of the
side (on the ~64 px images the other measures use). :class:`Blends` then looks, side by side and
width by width, among the images whose strip is squeezed (``r <= R_MAX``), for the colour that most
of them agree on within ``TOL`` grey levels per channel (a mode search); the width where most images
agree gives the side's template, when they are at least ``min_share`` of the split, unless they
share a blank backdrop and the colour is that backdrop's (within ``FAR``): a strip of blank
ground next to an object drawn on it is squeezed too, and "blended" towards the ground, which is
the object's shape, not something put on the image. (Photos have no shared backdrop: a green fade
over photos of plants is a blend.)

Each side with a template gives a column ``auto:blend_<side>`` whose values are ``none`` or the
colour's name. Measured on generated bands over clean photos (``python bench/auto_attributes.py
--table``, the ``band`` and ``frame`` rows): the column sees half-strength blends that the band
attribute's threshold misses; it cannot see a strip narrower than two pixels at 64 px, nor a blend
whose colour is the images' own backdrop.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 256, size=(300, 64, 64, 3)).astype(np.float32)     # textured images
>>> x[:90, 52:] = 0.4 * x[:90, 52:] + 0.6 * np.array([255.0, 0.0, 255.0])   # a magenta fade along the bottom
>>> stats = blend_stats(x)
>>> finder = Blends().fit(stats, backdrop=np.full((300, 3), 128.0))
>>> values = finder.transform(stats)["auto:blend_bottom"]
>>> sorted(set(values[:90])), round(float((values[90:] != "none").mean()), 2)
(['magenta'], 0.0)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sparsecheck.analysis.image_measures import SIDES, colour_names, strip_pairs
from sparsecheck.errors import ParameterError

logger = logging.getLogger(__name__)

__all__ = ["WIDTHS", "R_MAX", "TOL", "FAR", "blend_stats", "Blends"]

#: strip widths, as shares of the side they run along
WIDTHS = (1 / 32, 1 / 21, 1 / 16, 1 / 11, 1 / 8, 1 / 6, 1 / 4)
#: a strip is squeezed when its spread is at most this share of the spread just inside it
R_MAX = 0.7
#: the images of a template agree on the blend's colour within this many grey levels per channel
TOL = 40.0
#: a blend's colour nearer than this to its images' shared blank backdrop is that backdrop (grey levels, any channel)
FAR = 40.0
#: images the mode search starts from, at most (a seeded sample beyond that)
_SEEDS = 600


def blend_stats(x: np.ndarray) -> np.ndarray:
    """Per image, side and width (:data:`WIDTHS`): ``(r, R, G, B)``, the strip's spread over the
    spread of the strip inside it and the colour that undoes the blend (NaN where the strip pair
    does not fit): n × 4 × len(WIDTHS) × 4, float32.

    ``x`` is an n×H×W×3 batch on 0–255.
    """
    x = np.asarray(x, np.float32)
    n, c = x.shape[0], x.shape[-1]
    out = np.full((n, len(SIDES), len(WIDTHS), 4), np.nan, np.float32)
    for j, f, strip, inner in strip_pairs(x, WIDTHS):
        strip, inner = strip.reshape(n, -1, c), inner.reshape(n, -1, c)
        ms, mi = strip.mean(axis=1), inner.mean(axis=1)
        # +1 grey level: a flat strip next to a flat one is not squeezed (r = 1), it is blank
        r = (strip.std(axis=1).sum(axis=1) + 1.0) / (inner.std(axis=1).sum(axis=1) + 1.0)
        out[:, j, f, 0] = r
        out[:, j, f, 1:] = (ms - r[:, None] * mi) / np.maximum(1.0 - r[:, None], 0.05)
    return out


class Blends:
    """Find the blended strips of a split (module docstring); ``transform`` names the carriers.

    Parameters
    ----------
    min_share : float, default 0.05
        A template needs at least this share of the split (and at least 10 images).
    random_state : int, default 0

    Attributes
    ----------
    templates_ : dict[str, dict]
        Side → its template: ``value`` (the column's value), ``width`` (index into :data:`WIDTHS`),
        ``colour`` (the blend's RGB), ``share`` (of the fitting split) and ``squeeze`` (the median
        ``r`` of its images, about ``1 - s``).
    """

    def __init__(self, min_share: float = 0.05, random_state: int = 0) -> None:
        self.min_share = min_share
        self.random_state = random_state

    def fit(self, stats: np.ndarray, backdrop: np.ndarray) -> "Blends":
        """Find the templates in a split's :func:`blend_stats`; ``backdrop`` is each image's
        backdrop colour (n×3: :func:`~sparsecheck.analysis.image_measures.backdrop`)."""
        if not 0.0 < float(self.min_share) < 1.0:
            raise ParameterError(f"The 'min_share' parameter of Blends must be in (0, 1). Got {self.min_share!r} "
                                 f"instead.", parameter="min_share")
        stats = np.asarray(stats, np.float32)
        backdrop = np.asarray(backdrop, np.float64)
        n = len(stats)
        rng = np.random.default_rng(self.random_state)
        least = max(10, int(np.ceil(self.min_share * n)))
        self.templates_: dict[str, dict[str, Any]] = {}
        for j, side in enumerate(SIDES):
            best: dict[str, Any] | None = None
            for f in range(len(WIDTHS)):
                r, colour = stats[:, j, f, 0], stats[:, j, f, 1:]
                squeezed = np.flatnonzero(np.isfinite(r) & (r <= R_MAX))
                if squeezed.size < least:
                    continue
                seeds = squeezed if squeezed.size <= _SEEDS else rng.choice(squeezed, _SEEDS, replace=False)
                c = colour[squeezed]
                near = (np.abs(colour[seeds][:, None, :] - c[None, :, :]).max(axis=2) < TOL).sum(axis=1)
                centre = colour[seeds[int(near.argmax())]].astype(np.float64)
                members = np.zeros(n, bool)
                for _ in range(4):       # a few mean-shift steps, by the median
                    members = self._match(r, colour, centre)
                    if not members.any():
                        break
                    centre = np.median(colour[members], axis=0).astype(np.float64)
                count = int(members.sum())
                if count < least or (best is not None and count <= best["count"]):
                    continue
                if self._is_backdrop(np.clip(centre, 0.0, 255.0), backdrop[members]):
                    continue
                best = {"width": f, "colour": centre, "count": count, "share": count / n,
                        "squeeze": float(np.median(r[members]))}
            if best is not None:
                best["value"] = str(colour_names(np.clip(best["colour"], 0.0, 255.0)[None, :])[0])
                del best["count"]
                self.templates_[side] = best
        logger.info("blended strips: %s", ", ".join(f"{s}={t['value']}" for s, t in self.templates_.items()) or "none")
        return self

    @staticmethod
    def _is_backdrop(colour: np.ndarray, backdrops: np.ndarray) -> bool:
        """Is the colour the members' shared blank backdrop? (Strokes drawn on black squeeze the black
        strip beside them: that is the object's outline, not something put on the images.) Photos
        have no shared backdrop: theirs spread by more than ``FAR / 2`` (median absolute deviation)."""
        centre = np.median(backdrops, axis=0)
        shared = np.median(np.abs(backdrops - centre), axis=0).max() < FAR / 2
        return bool(shared and np.abs(colour - centre).max() < FAR)

    @staticmethod
    def _match(r: np.ndarray, colour: np.ndarray, centre: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.isfinite(r) & (r <= R_MAX) & (np.abs(colour - centre).max(axis=1) < TOL)

    def transform(self, stats: np.ndarray) -> dict[str, np.ndarray]:
        """Column ``auto:blend_<side>`` → each image's template value or ``"none"``, for the sides
        where :meth:`fit` found a template."""
        if not hasattr(self, "templates_"):
            raise ParameterError("This Blends instance is not fitted yet; call fit first.", parameter="fit")
        stats = np.asarray(stats, np.float32)
        out: dict[str, np.ndarray] = {}
        for j, side in enumerate(SIDES):
            t = self.templates_.get(side)
            if t is None:
                continue
            on = self._match(stats[:, j, t["width"], 0], stats[:, j, t["width"], 1:], t["colour"])
            out[f"auto:blend_{side}"] = np.where(on, t["value"], "none").astype(object)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The templates found, JSON-ready: side → value, width (share of the side), colour, share, squeeze."""
        return {side: {"value": t["value"], "width": round(WIDTHS[t["width"]], 4),
                       "colour": [round(float(v), 1) for v in np.clip(t["colour"], 0.0, 255.0)],
                       "share": round(float(t["share"]), 4), "squeeze": round(t["squeeze"], 3)}
                for side, t in getattr(self, "templates_", {}).items()}
