"""Automatic image attributes: the classic shortcuts, measured on the pixels, no metadata needed.

A model can lean on global brightness (or an inverted background), contrast, a colour cast, blur, a
mark in a corner or on the border, or the size and shape an image had before it was resized. None
of these needs a metadata column to be found: each is measured on every image here, binned into a
few levels, and handed to the same association, slice and spurious machinery as a user's metadata,
as columns named ``auto:<property>`` (:data:`AUTO_PREFIX` marks them as automatic, so a report can
say so).

Two steps:

1. :func:`image_properties` — raw, per-image numbers (vectorised numpy over a batch);
   :func:`stream_properties` runs it over an iterator of batches, so a dataset larger than memory
   never sits in it (only the small ``n × ~40`` table is kept).
2. :class:`AutoAttributes` — ``fit`` on a reference split learns bin edges, ``transform`` turns any
   split's properties into categorical columns. Columns that do not vary on the reference split
   are dropped.

The properties (all on pixel values scaled to [0, 1]; luminance ``Y = 0.299 R + 0.587 G + 0.114 B``):

=====================  =========================================================================
``brightness``         mean luminance
``background_lum``     median luminance of an outer ring 1/8 of the shorter side wide (the
                       backdrop's luminance; a thin frame or a corner mark does not move a median)
``inversion``          ``background_lum`` minus the centre's mean luminance (> 0: a light
                       background, the object darker than its surround: ``auto:inverted=yes``)
``contrast``           standard deviation of luminance
``hue``                dominant hue in degrees: circular mean of the pixel hues weighted by chroma
                       (``max - min`` of RGB, i.e. saturation × value: near-black pixels have a
                       high HSV saturation from noise but no visible colour); NaN without colour
``hue_strength``       length of that chroma-weighted mean vector (0: no dominant colour)
``saturation``         mean HSV saturation of pixels with value > 0.1
``colourfulness``      Hasler & Süsstrunk (2003): ``σ_rgyb + 0.3 μ_rgyb`` on the 0–255 scale
``sharpness``          variance of the 4-neighbour Laplacian of luminance (low: blurred)
``<region>_lum``       mean luminance of a region; ``<region>_r|g|b`` its mean colour;
                       ``<corner>_median`` a corner's median luminance. Regions:
                       ``corner_tl``, ``corner_tr``, ``corner_bl``, ``corner_br`` (1/6 of each
                       side), ``border`` (a ring of 1/16 of the shorter side, at least 1 pixel),
                       ``centre`` (the middle half of each side)
``height``, ``width``  the size before resizing (``original_sizes``; else the array's)
``aspect``             width / height
=====================  =========================================================================

The categorical columns :class:`AutoAttributes` makes: ``auto:brightness``, ``auto:contrast``,
``auto:saturation``, ``auto:colourfulness``, ``auto:sharpness``, ``auto:<region>`` (luminance; for
the four corners, ``<corner>_median`` minus ``background_lum`` at fixed steps of ±0.2: a mark that
covers most of a corner and stands out from the image's own backdrop is ``high`` (or ``low``), an
inverted image's light corners and a thin frame through them are not),
``auto:height``, ``auto:width``, ``auto:aspect`` as levels ``low|mid|high`` (or ``low|high``);
``auto:inverted`` as ``yes|no``; ``auto:hue`` and ``auto:<region>_colour`` as colour families
(``red, orange, yellow, green, cyan, blue, purple, magenta`` or ``grey``).

Levels are *natural breaks* by default: a 1-D k-means (3 levels) on the reference values, started
at the quantiles, so that a mode — the 30% of images with a bright corner square, the 15% shown
inverted — gets a level of its own instead of being spread over tertiles; a level holding less than
``min_share`` of the reference is merged into its neighbour. ``binning="quantile"`` gives plain
quantile levels (tertiles). Colour families use fixed hue ranges, not fitted ones, so a colour worn
by 1% of the images still gets its own value.

Cost (``python bench/auto_attributes.py``; the shared 2-core machine under a load of 3–5, one
thread, batches of 256): about 85 ms per 1,000 images of 32×32 and 2.3 s per 1,000 of 224×224 for
the properties, plus 15–50 ms per 1,000 for fitting and applying the levels — small next to a
forward pass of a CNN on the same images (a ResNet-18 on CPU takes tens of ms per 224×224 image).
Images are processed in chunks of 64 whatever the batch size, so memory stays at a few float32
copies of 64 images.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 60, size=(60, 24, 24, 3), dtype=np.uint8)
>>> x[:20, :, :, 0] = 220                      # a red cast on the first 20
>>> x[20:40, :4, :4] = 255                     # a bright top-left corner on the next 20
>>> props = image_properties(x)
>>> auto = AutoAttributes().fit(props)
>>> table = auto.transform(props)
>>> table.loc[0, "auto:hue"], table.loc[30, "auto:hue"]
('red', 'grey')
>>> table.loc[25, "auto:corner_tl"], table.loc[45, "auto:corner_tl"]
('high', 'mid')
>>> all(c.startswith(AUTO_PREFIX) for c in table.columns)
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["AUTO_PREFIX", "REGIONS", "COLOUR_FAMILIES", "image_properties", "stream_properties",
           "hue_family", "AutoAttributes", "is_auto"]

#: prefix of every automatic attribute column
AUTO_PREFIX = "auto:"
#: the regions measured, in column order
REGIONS = ("corner_tl", "corner_tr", "corner_bl", "corner_br", "border", "centre")
#: colour families: name → [start, end) hue in degrees (red wraps around 0)
COLOUR_FAMILIES = {"red": (345.0, 15.0), "orange": (15.0, 45.0), "yellow": (45.0, 70.0),
                   "green": (70.0, 165.0), "cyan": (165.0, 200.0), "blue": (200.0, 260.0),
                   "purple": (260.0, 290.0), "magenta": (290.0, 345.0)}
_CHUNK = 64
# properties binned into levels (name → auto column); the inversion score and colours are handled apart
_LEVELLED = ["brightness", "contrast", "saturation", "colourfulness", "sharpness", "height", "width", "aspect"]
#: a corner is ``low``/``high`` when its median luminance is this far below/above the backdrop's
_MARK_EDGES = (-0.2, 0.2)
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


def _regions(h: int, w: int) -> dict[str, Any]:
    """Row and column slices of the rectangular regions, and the border ring's width."""
    ch, cw = max(1, round(h / 6)), max(1, round(w / 6))
    return {"corner_tl": (slice(0, ch), slice(0, cw)), "corner_tr": (slice(0, ch), slice(w - cw, w)),
            "corner_bl": (slice(h - ch, h), slice(0, cw)), "corner_br": (slice(h - ch, h), slice(w - cw, w)),
            "centre": (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4)),
            "_border_width": max(1, round(min(h, w) / 16)), "_background_width": max(1, round(min(h, w) / 8))}


def image_properties(images: np.ndarray, original_sizes: np.ndarray | None = None) -> pd.DataFrame:
    """Raw per-image measurements of a batch (see the module docstring for each column).

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
    masks = _regions(h, w)
    parts = [_chunk_properties(x[i:i + _CHUNK], masks) for i in range(0, n, _CHUNK)]
    cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.empty(0)
            for k in (parts[0] if parts else _empty_keys())}
    cols["height"], cols["width"] = sizes[:, 0], sizes[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["aspect"] = np.where(sizes[:, 0] > 0, sizes[:, 1] / sizes[:, 0], np.nan)
    return pd.DataFrame(cols)


def _empty_keys() -> list[str]:
    keys = ["brightness", "background_lum", "inversion", "contrast", "hue", "hue_strength", "saturation",
            "colourfulness",
            "sharpness"]
    for r in REGIONS:
        keys += [f"{r}_lum", f"{r}_r", f"{r}_g", f"{r}_b"] + ([f"{r}_median"] if r.startswith("corner") else [])
    return keys


def _chunk_properties(x8: np.ndarray, masks: dict[str, Any]) -> dict[str, np.ndarray]:
    n, h, w, c = x8.shape
    # planar float32 (n, 3, H, W): reductions over contiguous pixels and elementwise max/min are
    # many times faster than reductions over a trailing axis of 3
    x = np.ascontiguousarray(np.moveaxis(x8, 3, 1), dtype=np.float32)
    x *= np.float32(1.0 / 255.0)
    if c == 1:
        x = np.repeat(x, 3, axis=1)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    lum = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b   # (n, H, W)
    flat = lum.reshape(n, -1)
    total = x.reshape(n, 3, -1).sum(2).astype(np.float64)                  # (n, 3)
    mean_rgb_all = total / (h * w)
    luma = _LUMA.astype(np.float64)
    out: dict[str, np.ndarray] = {"brightness": mean_rgb_all @ luma}
    region_lum = {}
    bw = masks["_border_width"]
    inner = x[:, :, bw:h - bw, bw:w - bw].sum(axis=(2, 3)).astype(np.float64)
    inner_n = max(h - 2 * bw, 0) * max(w - 2 * bw, 0)
    for name in REGIONS:
        if name == "border":
            mean_rgb = (total - inner) / max(h * w - inner_n, 1)
        else:
            rows, cols = masks[name]
            mean_rgb = x[:, :, rows, cols].mean(axis=(2, 3)).astype(np.float64)
        region_lum[name] = mean_rgb @ luma
        out[f"{name}_lum"] = region_lum[name]
        if name.startswith("corner"):
            rows, cols = masks[name]
            out[f"{name}_median"] = np.median(lum[:, rows, cols].reshape(n, -1), axis=1).astype(np.float64)
        out[f"{name}_r"], out[f"{name}_g"], out[f"{name}_b"] = mean_rgb.T
    # the background: the median of a wider ring, so a thin frame or a corner mark does not move it
    k = masks["_background_width"]
    ring = np.concatenate([lum[:, :k].reshape(n, -1), lum[:, h - k:].reshape(n, -1),
                           lum[:, k:h - k, :k].reshape(n, -1), lum[:, k:h - k, w - k:].reshape(n, -1)], axis=1)
    out["background_lum"] = np.median(ring, axis=1).astype(np.float64)
    out["inversion"] = out["background_lum"] - region_lum["centre"]
    out["contrast"] = flat.std(1).astype(np.float64)
    # the chroma-weighted circular mean of hue: each pixel's opponent vector (r - (g + b)/2,
    # √3/2 (g - b)) has (nearly) the HSV chroma as length and the HSV hue as angle, and it is
    # linear in RGB, so its mean over the pixels is that of the mean colour
    out["hue"], out["hue_strength"] = _opponent_hue(mean_rgb_all)
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    lit = mx > np.float32(0.1)
    sat = (mx - mn) / np.maximum(mx, np.float32(1e-6))
    sat *= lit
    out["saturation"] = sat.reshape(n, -1).sum(1).astype(np.float64) / np.maximum(lit.reshape(n, -1).sum(1), 1)
    rg = (r - g).reshape(n, -1)
    yb = (np.float32(0.5) * (r + g) - b).reshape(n, -1)
    out["colourfulness"] = 255.0 * (np.sqrt(rg.var(1).astype(np.float64) + yb.var(1).astype(np.float64))
                                    + 0.3 * np.hypot(rg.mean(1), yb.mean(1)).astype(np.float64))
    if h >= 3 and w >= 3:
        lap = (lum[:, :-2, 1:-1] + lum[:, 2:, 1:-1] + lum[:, 1:-1, :-2] + lum[:, 1:-1, 2:]
               - np.float32(4.0) * lum[:, 1:-1, 1:-1])
        out["sharpness"] = lap.reshape(n, -1).var(1).astype(np.float64)
    else:
        out["sharpness"] = np.full(n, np.nan)
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
        for r in REGIONS:
            v = _region_level_value(props, r)
            # a corner mark is a fixed step from the backdrop, not a fitted level: corners that hold
            # no mark are then one level (a constant column, dropped), not noise cut in three
            self.levels_[_region_level_key(r)] = _MARK_EDGES if r.startswith("corner") else self._edges(
                v[np.isfinite(v)])
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
        missing = sorted(set(_empty_keys() + ["height", "width", "aspect"]) - set(props.columns))
        if missing:
            raise DataError(f"the properties table lacks columns {missing}; make it with image_properties")
        out: dict[str, np.ndarray] = {}
        for name in ["brightness"]:
            out[AUTO_PREFIX + name] = _Levels(self.levels_[name]).apply(props[name].to_numpy(np.float64))
        inverted = props["inversion"].to_numpy(np.float64) > 0
        out[AUTO_PREFIX + "inverted"] = np.where(inverted, "yes", "no").astype(object)
        for name in ["contrast", "saturation", "colourfulness"]:
            out[AUTO_PREFIX + name] = _Levels(self.levels_[name]).apply(props[name].to_numpy(np.float64))
        out[AUTO_PREFIX + "hue"] = hue_family(props["hue"].to_numpy(np.float64),
                                              props["hue_strength"].to_numpy(np.float64), self.grey_below)
        sharpness = props["sharpness"].to_numpy(np.float64)
        out[AUTO_PREFIX + "sharpness"] = _Levels(self.levels_["sharpness"]).apply(sharpness)
        for r in REGIONS:
            out[AUTO_PREFIX + r] = _Levels(self.levels_[_region_level_key(r)]).apply(_region_level_value(props, r))
            rgb = props[[f"{r}_r", f"{r}_g", f"{r}_b"]].to_numpy(np.float64)
            hue, chroma = _opponent_hue(rgb)
            out[AUTO_PREFIX + r + "_colour"] = hue_family(hue, chroma, self.grey_below)
        for name in ["height", "width", "aspect"]:
            out[AUTO_PREFIX + name] = _Levels(self.levels_[name]).apply(props[name].to_numpy(np.float64))
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
                "columns": list(getattr(self, "columns_", [])), "dropped": list(getattr(self, "dropped_", []))}


def _region_level_key(region: str) -> str:
    return f"{region}_vs_background" if region.startswith("corner") else f"{region}_lum"


def _region_level_value(props: pd.DataFrame, region: str) -> np.ndarray:
    """What ``auto:<region>`` levels: a corner's median luminance against the image's own backdrop
    (a mark stands out from it, a light image is not a bright corner everywhere, and a thin frame
    through the corner does not move a median), other regions' mean luminance."""
    if region.startswith("corner"):
        return props[f"{region}_median"].to_numpy(np.float64) - props["background_lum"].to_numpy(np.float64)
    return props[f"{region}_lum"].to_numpy(np.float64)


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
