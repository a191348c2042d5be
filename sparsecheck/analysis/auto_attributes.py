"""Automatic image attributes: the classic shortcuts, measured on the pixels, no metadata needed.

A model can lean on global brightness (or an inverted background), contrast, a colour cast, blur,
noise or compression, a mark in a corner or along an edge, a band along one side, a frame, a
watermark or logo repeated at one place, the
colour of the object or of its background, or the size and shape an image had before it was
resized. None of these needs a metadata column to be found: each is measured on every image here
and turned into a few values, handed to the same association, slice and spurious machinery as a
user's metadata, as columns named ``auto:<property>`` (:data:`AUTO_PREFIX` marks them as
automatic, so a report can say so).

Two steps:

1. :func:`image_properties` — raw, per-image numbers (vectorised numpy over a batch, the measures
   of :mod:`~sparsecheck.analysis.image_measures`); :func:`stream_properties` runs it over an
   iterator of batches, so a dataset larger than memory never sits in it.
2. :class:`AutoAttributes` — ``fit`` on a reference split learns bin edges, ``transform`` turns any
   split's properties into categorical columns. Columns that do not vary on the reference split
   are dropped.

The categorical columns (pixel values on 0–255; luminance ``Y = 0.299 R + 0.587 G + 0.114 B``):

=========================  ==================================================================
``auto:brightness``        mean luminance, ``low|mid|high``
``auto:inverted``          ``yes`` when the backdrop (median of an outer ring 1/8 of the shorter
                           side wide) is lighter than the centre: a dark object on light
``auto:contrast``,         standard deviation of luminance; mean HSV saturation of lit pixels;
``auto:saturation``,       Hasler & Süsstrunk's colourfulness (``low|mid|high`` each)
``auto:colourfulness``
``auto:hue``               the dominant hue (chroma-weighted circular mean), a colour family
                           (``red, orange, yellow, green, cyan, blue, purple, magenta``) or ``grey``
``auto:fg_colour``,        the colour of the foreground (pixels far from the backdrop) and of the
``auto:bg_colour``         background, each ``white|grey|black`` or a colour family: red strokes
                           on black are ``fg_colour=red``, a green backdrop ``bg_colour=green``
``auto:sharpness``,        Laplacian variance, Immerkær noise sigma, JPEG blockiness
``auto:noise``,            (``low|mid|high`` each)
``auto:blockiness``
``auto:mark_<zone>``       the colour of a uniform mark that stands out from its surround in one
                           of eight zones along the edges (``tl, t, tr, l, r, bl, b, br``), down
                           to 1/8 of the shorter side (1.6% of a square image); ``none`` without
``auto:band_<side>``       the colour of a strip along ``top|bottom|left|right`` (1/16 to 1/5 of
                           the side) that differs from the strip inside it, or that a blend
                           flattened; ``none`` without
``auto:frame``             the colour of a band along all four sides alike; ``none`` without
``auto:pattern_<zone>``    the colour of a *repeated* artefact in one of the eight edge zones:
                           the same content, of any shape or texture (text, a logo, a ruler), at
                           the same place on many images of the split
                           (:mod:`~sparsecheck.analysis.repeats`); ``none`` without. Only zones
                           where the split has one get a column
``auto:blend_<side>``      the colour a strip along one side is *faded towards* on many images
                           of the split (a half-strength band of "snow" over textured photos):
                           the strip's texture squeezed, and the same colour undoing the blend
                           (:mod:`~sparsecheck.analysis.blends`); ``none`` without. Only sides
                           where the split has one get a column
``auto:height``,           the size before resizing (``original_sizes``; else the array's) and
``auto:width``,            width / height
``auto:aspect``
=========================  ==================================================================

Levels are *natural breaks* by default: a 1-D k-means (3 levels) on the reference values, started
at the quantiles, so that a mode — the 15% of images shown inverted — gets a level of its own
instead of being spread over tertiles; a level holding less than ``min_share`` of the reference
is merged into its neighbour. ``binning="quantile"`` gives plain quantile levels (tertiles).
Colours, marks, bands and the frame use fixed names and thresholds (``MARK_MIN``, ``BAND_MIN``),
not fitted ones, so a mark on 1% of the images still gets its own value. What these measures see
and miss, measured on generated cues over clean digits and photos, is in the README
(``python bench/auto_attributes.py --table``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 60, size=(60, 24, 24, 3), dtype=np.uint8)
>>> x[:20, :, :, 0] = 220                      # a red cast on the first 20
>>> x[20:40, 1:5, 1:5] = 255                   # a white mark near the top-left corner on the next 20
>>> props = image_properties(x)
>>> auto = AutoAttributes().fit(props)
>>> table = auto.transform(props)
>>> table.loc[0, "auto:hue"], table.loc[30, "auto:hue"]
('red', 'grey')
>>> table.loc[25, "auto:mark_tl"], table.loc[45, "auto:mark_tl"]
('white', 'none')
>>> all(c.startswith(AUTO_PREFIX) for c in table.columns)
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from sparsecheck.analysis.blends import Blends, blend_stats
from sparsecheck.analysis.image_measures import (COLOUR_FAMILIES, MARK_ZONES, SIDES, backdrop, bands, central_crop,
                                                 colour_names, downsample, fg_bg_colour, luminance, marks, texture)
from sparsecheck.analysis.repeats import RepeatedPatterns, zone_pixels
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["AUTO_PREFIX", "COLOUR_FAMILIES", "MARK_MIN", "BAND_MIN", "image_properties", "stream_properties",
           "hue_family", "AutoAttributes", "is_auto"]

#: prefix of every automatic attribute column
AUTO_PREFIX = "auto:"
#: a mark scores at least this (the largest channel difference from its surround, 0–255)
MARK_MIN = 70.0
#: a band (and a frame) scores at least this (0–255)
BAND_MIN = 52.0
_CHUNK = 64
# properties binned into levels
_LEVELLED = ["brightness", "contrast", "saturation", "colourfulness", "sharpness", "noise", "blockiness",
             "height", "width", "aspect"]
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_auto(attribute: str) -> bool:
    """Whether an attribute column is automatic (named with :data:`AUTO_PREFIX`)."""
    return str(attribute).startswith(AUTO_PREFIX)


def hue_family(hue: np.ndarray, strength: np.ndarray, grey_below: float) -> np.ndarray:
    """Colour family of each hue (degrees); ``"grey"`` where ``strength < grey_below`` or hue is NaN.

    Examples
    --------
    >>> hue_family(np.array([5.0, 120.0, 230.0, 350.0]), np.array([0.3, 0.3, 0.01, 0.3]), 0.05).tolist()
    ['red', 'green', 'grey', 'red']
    """
    hue = np.asarray(hue, dtype=np.float64) % 360.0
    out = np.full(hue.shape, "grey", dtype=object)
    coloured = np.isfinite(hue) & (np.asarray(strength, dtype=np.float64) >= grey_below)
    for name, (lo, hi) in COLOUR_FAMILIES.items():
        inside = (hue >= lo) | (hue < hi) if lo > hi else (hue >= lo) & (hue < hi)
        out[coloured & inside] = name
    return out


def _as_rgb(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise DataError(f"images must be uint8 N×H×W or N×H×W×C with C in (1, 3, 4), got shape {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"images must be uint8, got {x.dtype}")
    if x.shape[-1] == 4:
        x = x[..., :3]
    return x


def _property_names() -> list[str]:
    keys = ["brightness", "background_lum", "inversion", "contrast", "hue", "hue_strength", "saturation",
            "colourfulness", "sharpness", "noise", "blockiness", "fg_r", "fg_g", "fg_b", "fg_share",
            "bg_r", "bg_g", "bg_b", "backdrop_r", "backdrop_g", "backdrop_b"]
    for col in [f"mark_{z}" for z in MARK_ZONES] + [f"band_{s}" for s in SIDES] + ["frame"]:
        keys += [col, f"{col}_r", f"{col}_g", f"{col}_b"]
    return keys + ["height", "width", "aspect"]


def image_properties(images: np.ndarray, original_sizes: np.ndarray | None = None) -> pd.DataFrame:
    """Raw per-image measurements of a batch (the columns behind each attribute, module docstring).

    Parameters
    ----------
    images : ndarray uint8 (n, H, W) or (n, H, W, C)
        C = 1 (grey, treated as R = G = B), 3 (RGB) or 4 (alpha ignored).
    original_sizes : ndarray (n, 2), optional
        ``(height, width)`` of each image before it was resized; default the array's own size.

    Returns
    -------
    DataFrame
        ``n`` rows, float64 columns.

    Examples
    --------
    >>> x = np.zeros((2, 12, 12, 3), np.uint8); x[1] = 255
    >>> p = image_properties(x, original_sizes=np.array([[100, 200], [50, 50]]))
    >>> p["brightness"].round(3).tolist(), p["aspect"].tolist()
    ([0.0, 1.0], [2.0, 1.0])
    """
    x = _as_rgb(images)
    n, h, w, c = x.shape
    if original_sizes is None:
        sizes = np.tile(np.array([h, w], dtype=np.float64), (n, 1))
    else:
        sizes = np.asarray(original_sizes, dtype=np.float64)
        if sizes.shape != (n, 2):
            raise DataError(f"original_sizes must have shape ({n}, 2) (height, width), got {sizes.shape}")
    parts = [_chunk_properties(x[i:i + _CHUNK]) for i in range(0, n, _CHUNK)]
    cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.empty(0)
            for k in _property_names() if k not in ("height", "width", "aspect")}
    cols["height"], cols["width"] = sizes[:, 0], sizes[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["aspect"] = np.where(sizes[:, 0] > 0, sizes[:, 1] / sizes[:, 0], np.nan)
    table = pd.DataFrame(cols)
    zones = np.concatenate([p["zones"] for p in parts]) if parts else np.empty((0,), object)
    table["zones"] = pd.Series(list(zones), dtype=object)   # each image's edge zones, for the repeated patterns
    blends = np.concatenate([p["blends"] for p in parts]) if parts else np.empty((0,), object)
    table["blends"] = pd.Series(list(blends), dtype=object)  # each image's strips, for the blended ones
    return table


def _chunk_properties(x8: np.ndarray) -> dict[str, np.ndarray]:
    """The properties of one chunk: texture on the full-resolution centre, the rest at about 64 px."""
    c = x8.shape[-1]
    full = x8 if c == 3 else np.repeat(x8, 3, axis=3)
    tex = texture(luminance(central_crop(full).astype(np.float32)))  # full resolution: noise, JPEG blocks
    x = downsample(full.astype(np.float32))                          # everything else at ~64 px
    n, h, w, _ = x.shape
    lum = luminance(x)                                               # (n, H, W), 0–255
    unit = lum / 255.0
    mean_rgb = x.reshape(n, -1, 3).mean(1).astype(np.float64) / 255.0
    out: dict[str, np.ndarray] = {"brightness": unit.reshape(n, -1).mean(1).astype(np.float64)}
    k = max(1, round(min(h, w) / 8))
    ring = np.concatenate([unit[:, :k].reshape(n, -1), unit[:, h - k:].reshape(n, -1),
                           unit[:, k:h - k, :k].reshape(n, -1), unit[:, k:h - k, w - k:].reshape(n, -1)], axis=1)
    out["background_lum"] = np.median(ring, axis=1).astype(np.float64)
    centre = unit[:, h // 4:h - h // 4, w // 4:w - w // 4].reshape(n, -1).mean(1)
    out["inversion"] = out["background_lum"] - centre
    out["contrast"] = unit.reshape(n, -1).std(1).astype(np.float64)
    # the chroma-weighted circular mean of hue: each pixel's opponent vector (r - (g + b)/2,
    # √3/2 (g - b)) has (nearly) the HSV chroma as length and the HSV hue as angle, and it is
    # linear in RGB, so its mean over the pixels is that of the mean colour
    out["hue"], out["hue_strength"] = _opponent_hue(mean_rgb)
    # planar channels: elementwise max/min of three planes is many times faster than a reduction
    # over a trailing axis of 3
    r, g, b = (np.ascontiguousarray(x[..., j]) / np.float32(255.0) for j in range(3))
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    lit = mx > np.float32(0.1)
    sat = (mx - mn) / np.maximum(mx, np.float32(1e-6)) * lit
    out["saturation"] = sat.reshape(n, -1).sum(1).astype(np.float64) / np.maximum(lit.reshape(n, -1).sum(1), 1)
    rg = (r - g).reshape(n, -1)
    yb = (np.float32(0.5) * (r + g) - b).reshape(n, -1)
    out["colourfulness"] = 255.0 * (np.sqrt(rg.var(1).astype(np.float64) + yb.var(1).astype(np.float64))
                                    + 0.3 * np.hypot(rg.mean(1), yb.mean(1)).astype(np.float64))
    out["sharpness"], out["noise"], out["blockiness"] = tex[:, 0] / 255.0 ** 2, tex[:, 1], tex[:, 2]
    fg, bg, share = fg_bg_colour(x)
    for part, rgb in (("fg", fg), ("bg", bg)):
        out[f"{part}_r"], out[f"{part}_g"], out[f"{part}_b"] = rgb.T.astype(np.float64)
    out["fg_share"] = share.astype(np.float64)
    out["backdrop_r"], out["backdrop_g"], out["backdrop_b"] = backdrop(x).T.astype(np.float64)
    score, colour = marks(x)
    for j, z in enumerate(MARK_ZONES):
        out[f"mark_{z}"] = score[:, j]
        out[f"mark_{z}_r"], out[f"mark_{z}_g"], out[f"mark_{z}_b"] = colour[:, j].T
    bscore, bcolour, frame, frame_colour = bands(x)
    for j, side in enumerate(SIDES):
        out[f"band_{side}"] = bscore[:, j]
        out[f"band_{side}_r"], out[f"band_{side}_g"], out[f"band_{side}_b"] = bcolour[:, j].T
    out["frame"] = frame
    out["frame_r"], out["frame_g"], out["frame_b"] = frame_colour.T
    out["zones"] = zone_pixels(x)
    out["blends"] = blend_stats(x)
    return out


def _opponent_hue(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue (degrees, NaN without colour) and chroma of colours (m, 3) in [0, 1], on the opponent plane."""
    a = rgb[:, 0] - 0.5 * (rgb[:, 1] + rgb[:, 2])
    b = np.sqrt(3.0) / 2.0 * (rgb[:, 1] - rgb[:, 2])
    strength = np.hypot(a, b)
    with np.errstate(invalid="ignore"):
        hue = np.where(strength > 1e-6, np.degrees(np.arctan2(b, a)) % 360.0, np.nan)
    return hue, strength


def stream_properties(batches: Iterable[Any]) -> pd.DataFrame:
    """:func:`image_properties` over an iterator of batches, concatenated.

    Each item is a uint8 image batch or an ``(images, original_sizes)`` pair; only the per-image
    table is kept, never more than one batch of pixels.

    Examples
    --------
    >>> batches = (np.full((5, 8, 8), v, np.uint8) for v in (0, 255))
    >>> stream_properties(batches)["brightness"].round(2).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    parts = []
    for item in batches:
        if isinstance(item, tuple):
            images, sizes = item
        else:
            images, sizes = item, None
        parts.append(image_properties(images, sizes))
    if not parts:
        raise DataError("no image batches to measure")
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class _Levels:
    edges: tuple[float, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return {0: ("all",), 1: ("low", "high"), 2: ("low", "mid", "high")}.get(
            len(self.edges), tuple(f"q{i + 1}" for i in range(len(self.edges) + 1)))

    def apply(self, values: np.ndarray) -> np.ndarray:
        out = np.asarray(self.names, dtype=object)[np.searchsorted(np.asarray(self.edges), values, side="right")]
        out[~np.isfinite(values)] = None
        return out


class AutoAttributes:
    """Bin raw image properties into categorical ``auto:*`` attributes (fit on a reference split).

    Parameters
    ----------
    levels : int, default 3
        Levels per numeric property (2 gives ``low|high``, 3 ``low|mid|high``).
    binning : {"natural", "quantile"}, default "natural"
        ``"natural"``: 1-D k-means breaks (a mode gets a level of its own); ``"quantile"``: equal
        shares of the reference split.
    min_share : float, default 0.02
        A level with less of the reference split is merged into its neighbour.
    grey_below : float, default 0.05
        Chroma (0–1) below which an image's or a region's colour is ``grey``.
    max_fit_rows : int, default 50000
        Rows of the reference table used to fit (a seeded sample beyond that).
    random_state : int, default 0
        Seeds that sample.

    Attributes
    ----------
    levels_ : dict[str, tuple[float, ...]]
        Property → bin edges.
    columns_ : list[str]
        The ``auto:*`` columns :meth:`transform` returns (those that vary on the reference split).
    dropped_ : list[str]
        The columns dropped because they did not vary.
    """

    def __init__(self, levels: int = 3, binning: str = "natural", min_share: float = 0.02,
                 grey_below: float = 0.05, max_fit_rows: int = 50000, random_state: int = 0) -> None:
        self.levels = levels
        self.binning = binning
        self.min_share = min_share
        self.grey_below = grey_below
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def _validate(self) -> None:
        if not isinstance(self.levels, (int, np.integer)) or not 2 <= self.levels <= 5:
            raise ParameterError(f"The 'levels' parameter of AutoAttributes must be an int in [2, 5]. "
                                 f"Got {self.levels!r} instead.", parameter="levels")
        if self.binning not in ("natural", "quantile"):
            raise ParameterError(f"The 'binning' parameter of AutoAttributes must be 'natural' or 'quantile'. "
                                 f"Got {self.binning!r} instead.", parameter="binning")
        if not 0.0 <= float(self.min_share) < 0.5:
            raise ParameterError(f"The 'min_share' parameter of AutoAttributes must be a float in [0, 0.5). "
                                 f"Got {self.min_share!r} instead.", parameter="min_share")

    def fit(self, reference: pd.DataFrame | Iterable[Any]) -> "AutoAttributes":
        """Learn bin edges on a reference split.

        Parameters
        ----------
        reference : DataFrame or iterable of batches
            The table :func:`image_properties` / :func:`stream_properties` returns, or batches to
            measure (as :func:`stream_properties` takes them).
        """
        self._validate()
        props = reference if isinstance(reference, pd.DataFrame) else stream_properties(reference)
        if len(props) == 0:
            raise DataError("no reference images to fit the automatic attributes on")
        if len(props) > self.max_fit_rows:
            rows = np.random.default_rng(self.random_state).choice(len(props), self.max_fit_rows, replace=False)
            props = props.iloc[np.sort(rows)]
        self.levels_ = {}
        for name in _LEVELLED:
            v = props[name].to_numpy(dtype=np.float64)
            self.levels_[name] = self._edges(v[np.isfinite(v)])
        self.patterns_ = RepeatedPatterns(random_state=self.random_state)
        if "zones" in props.columns:
            self.patterns_.fit(np.stack(props["zones"].to_numpy()))
        self.blends_ = Blends(random_state=self.random_state)
        if "blends" in props.columns:
            self.blends_.fit(np.stack(props["blends"].to_numpy()),
                             props[["backdrop_r", "backdrop_g", "backdrop_b"]].to_numpy(np.float64))
        self.columns_, self.dropped_ = [], []
        table = self._bin(props)
        for col in table.columns:
            (self.columns_ if table[col].nunique(dropna=True) > 1 else self.dropped_).append(col)
        logger.info("automatic attributes: %d columns (%d constant on the reference split dropped: %s)",
                    len(self.columns_), len(self.dropped_), ", ".join(self.dropped_) or "none")
        return self

    def _edges(self, v: np.ndarray) -> tuple[float, ...]:
        if v.size == 0 or np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):
            return ()
        k = int(self.levels)
        if self.binning == "quantile":
            edges = np.unique(np.quantile(v, np.arange(1, k) / k))
        else:
            edges = _natural_breaks(v, k)
        return _merge_small(v, list(edges), float(self.min_share))

    def _bin(self, props: pd.DataFrame) -> pd.DataFrame:
        missing = sorted(set(_property_names()) - set(props.columns))
        if missing:
            raise DataError(f"the properties table lacks columns {missing}; make it with image_properties")
        out: dict[str, np.ndarray] = {}
        level = lambda name: _Levels(self.levels_[name]).apply(props[name].to_numpy(np.float64))  # noqa: E731
        out[AUTO_PREFIX + "brightness"] = level("brightness")
        out[AUTO_PREFIX + "inverted"] = np.where(props["inversion"].to_numpy(np.float64) > 0, "yes", "no").astype(object)
        for name in ("contrast", "saturation", "colourfulness"):
            out[AUTO_PREFIX + name] = level(name)
        out[AUTO_PREFIX + "hue"] = hue_family(props["hue"].to_numpy(np.float64),
                                              props["hue_strength"].to_numpy(np.float64), self.grey_below)
        for part in ("fg", "bg"):
            out[AUTO_PREFIX + f"{part}_colour"] = colour_names(props[[f"{part}_r", f"{part}_g", f"{part}_b"]])
        for name in ("sharpness", "noise", "blockiness"):
            out[AUTO_PREFIX + name] = level(name)
        for kind, places, least in (("mark", MARK_ZONES, MARK_MIN), ("band", SIDES, BAND_MIN), ("frame", ("",), BAND_MIN)):
            for place in places:
                col = f"{kind}_{place}" if place else kind
                named = colour_names(props[[f"{col}_r", f"{col}_g", f"{col}_b"]])
                out[AUTO_PREFIX + col] = np.where(props[col].to_numpy(np.float64) >= least, named, "none").astype(object)
        for name in ("height", "width", "aspect"):
            out[AUTO_PREFIX + name] = level(name)
        if "zones" in props.columns and hasattr(self.patterns_, "templates_") and len(props):
            out.update(self.patterns_.transform(np.stack(props["zones"].to_numpy())))
        if "blends" in props.columns and hasattr(self.blends_, "templates_") and len(props):
            out.update(self.blends_.transform(np.stack(props["blends"].to_numpy())))
        return pd.DataFrame(out, index=props.index)

    def transform(self, data: pd.DataFrame | Iterable[Any]) -> pd.DataFrame:
        """Categorical ``auto:*`` columns for a split (a properties table or batches to measure).

        Returns
        -------
        DataFrame
            One row per image (index reset), the columns in ``columns_``, object dtype.
        """
        if not hasattr(self, "levels_"):
            raise ParameterError("This AutoAttributes instance is not fitted yet; call fit first.",
                                 parameter="fit")
        props = data if isinstance(data, pd.DataFrame) else stream_properties(data)
        return self._bin(props.reset_index(drop=True))[self.columns_]

    def fit_transform(self, reference: pd.DataFrame | Iterable[Any]) -> pd.DataFrame:
        """:meth:`fit` then :meth:`transform` on the same split (batches are measured once)."""
        props = reference if isinstance(reference, pd.DataFrame) else stream_properties(reference)
        return self.fit(props).transform(props)

    def to_dict(self) -> dict[str, Any]:
        """The fitted bins, JSON-ready (for a run's record of how ``auto:*`` values were made)."""
        return {"binning": self.binning, "levels": int(self.levels), "grey_below": float(self.grey_below),
                "edges": {k: [float(e) for e in v] for k, v in getattr(self, "levels_", {}).items()},
                "columns": list(getattr(self, "columns_", [])), "dropped": list(getattr(self, "dropped_", [])),
                "patterns": self.patterns_.to_dict() if hasattr(self, "patterns_") else {},
                "blends": self.blends_.to_dict() if hasattr(self, "blends_") else {}}


def _natural_breaks(v: np.ndarray, k: int, iterations: int = 100) -> np.ndarray:
    """Edges of a 1-D k-means (Lloyd, started at the quantiles) of ``v``: midpoints of sorted centres."""
    s = np.sort(v)
    centres = np.unique(np.quantile(s, (np.arange(k) + 0.5) / k))
    if centres.size < 2:  # more than half the values tie: split at the tie's ends instead
        centres = np.unique(np.r_[s[0], centres, s[-1]])
    csum = np.r_[0.0, np.cumsum(s)]
    for _ in range(iterations):
        edges = (centres[1:] + centres[:-1]) / 2.0
        cuts = np.r_[0, np.searchsorted(s, edges, side="right"), s.size]
        counts = np.diff(cuts)
        keep = counts > 0
        new = (csum[cuts[1:]] - csum[cuts[:-1]])[keep] / counts[keep]
        if new.size == centres.size and np.allclose(new, centres, rtol=0, atol=1e-12):
            break
        centres = new
    return (centres[1:] + centres[:-1]) / 2.0


def _merge_small(v: np.ndarray, edges: list[float], min_share: float) -> tuple[float, ...]:
    """Drop edges until every level holds at least ``min_share`` of ``v``."""
    while edges:
        counts = np.bincount(np.searchsorted(np.asarray(edges), v, side="right"), minlength=len(edges) + 1)
        share = counts / v.size
        i = int(np.argmin(share))
        if share[i] >= min_share and share[i] > 0:
            break
        if i == 0:
            edges.pop(0)
        elif i == len(edges):
            edges.pop()
        else:  # merge into the smaller neighbour
            edges.pop(i - 1 if share[i - 1] <= share[i + 1] else i)
    return tuple(float(e) for e in edges)
