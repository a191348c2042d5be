"""Repeated artefacts: the same thing at the same place on many images, learned from the split.

A shortcut in a data set is rarely a uniform square. It is a watermark, a logo, a ruler, a
scanner's tag or a hospital's token: content of any shape and texture that sits at the same place,
looking the same, on many images. What sets it apart from the object is not its shape but its
*repetition*: on the images that carry it, the same pixels hold nearly the same values, where on
the others they vary (photos) or hold something else (a blank backdrop).

:func:`zone_pixels` cuts each image (at a fixed grid of ``GRID``×``GRID`` cells, area-averaged)
into the eight zones along its edges — the 3×3 grid without its middle, where the object is — and
keeps each zone's cells. :class:`RepeatedPatterns` then looks, zone by zone, for a *template*:

1. k-means (``k`` clusters) groups the split's images by the zone's content;
2. in each cluster of at least ``min_share`` of the images, the *pinned* cells are those whose
   values spread at most ``PIN`` times as much as over the whole split, at most ``TIGHT`` grey
   levels (0–255) apart, and at least ``FAR`` levels away from the zone's usual (median) value;
3. a cluster with pinned cells over at least ``MIN_AREA`` of the image, whose colour differs by
   ``FAR`` from its images' backdrop (the median of their edge zones: a blank where the object
   usually reaches is not an artefact), is a template: its pinned cells and their values. An image carries it when, on those cells, it is within the template's
   tolerance of them and nearer to them than to the usual values. The members are matched again
   and the template re-estimated twice, so that carriers k-means split off come back.

Each zone gives a column ``auto:pattern_<zone>`` whose values are ``none`` or the template's
colour (``white``, ``magenta``, ...; ``magenta-2`` for a second one of the same colour). Natural
variation in photos is never that tight (clusters of real photos keep about half the split's
spread); parts of an object drawn on a blank backdrop can be, and they are reported like any other
attribute: the spurious stage asks whether the training data ties them to a class and whether
putting them on other images moves the model before it calls anything a finding.

What it cannot see: a cue that changes with each image (a mark at a random place, a semi-transparent
overlay whose pixels keep most of the photo under them — alpha below about 0.7 on textured
photos), and one in the central cell. Those are left to the other automatic attributes and to the
user's metadata.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 256, size=(300, 48, 48, 3)).astype(np.float32)      # textured images
>>> text = rng.random((6, 10)) < 0.5                                        # a fixed "glyph" pattern
>>> x[:60, 40:46, 36:46][:, text] = (255.0, 0.0, 255.0)                     # on the first 60, bottom-right
>>> zones = zone_pixels(x)
>>> finder = RepeatedPatterns(random_state=0).fit(zones)
>>> columns = finder.transform(zones)
>>> values = columns["auto:pattern_br"]
>>> sorted(set(values[:60])), round(float((values[60:] != "none").mean()), 2)
(['magenta'], 0.0)
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from sparsecheck.analysis.image_measures import MARK_ZONES, colour_names, integral_image
from sparsecheck.errors import ParameterError

logger = logging.getLogger(__name__)

__all__ = ["GRID", "PIN", "TIGHT", "FAR", "MIN_AREA", "zone_pixels", "RepeatedPatterns"]

#: cells per side of the grid the zones are cut from (a multiple of 3)
GRID = 36
#: a pinned cell spreads at most this share of its spread over the split
PIN = 0.3
#: ... and at most this many grey levels (standard deviation, 0–255)
TIGHT = 16.0
#: a pinned cell's value is at least this far from the zone's usual value (0–255)
FAR = 40.0
#: a template's pinned cells cover at least this share of the image
MIN_AREA = 0.003
#: images a template is fitted on, at most (a seeded sample beyond that)
_MAX_FIT = 6000
_POSITIONS = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))   # MARK_ZONES' order


def zone_pixels(x: np.ndarray, grid: int = GRID) -> np.ndarray:
    """The eight edge zones of each image as uint8 cells: n × 8 × (grid/3)² × 3.

    ``x`` is an n×H×W×3 batch (0–255, any float or int dtype); each image is area-averaged onto a
    ``grid``×``grid`` grid (a cell is at least one pixel: a small image repeats its pixels).
    """
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    k = grid // 3
    rows = _edges(h, grid)
    cols = _edges(w, grid)
    s = integral_image(x)
    r0, r1 = rows[:-1], np.maximum(rows[1:], rows[:-1] + 1)
    c0, c1 = cols[:-1], np.maximum(cols[1:], cols[:-1] + 1)
    total = s[:, r1][:, :, c1] - s[:, r0][:, :, c1] - s[:, r1][:, :, c0] + s[:, r0][:, :, c0]
    cells = total / ((r1 - r0)[:, None] * (c1 - c0)[None, :])[None, :, :, None]
    out = np.empty((n, len(_POSITIONS), k * k, c), np.uint8)
    for j, (v, z) in enumerate(_POSITIONS):
        out[:, j] = np.clip(np.round(cells[:, v * k:(v + 1) * k, z * k:(z + 1) * k]), 0, 255).reshape(n, k * k, c)
    return out


def _edges(n: int, grid: int) -> np.ndarray:
    """Cell boundaries along an axis of ``n`` pixels (clipped so that every cell starts on a pixel)."""
    return np.minimum(np.floor(np.linspace(0, n, grid + 1)).astype(int), n - 1 if n < grid else n)


class RepeatedPatterns:
    """Find repeated artefacts per edge zone (module docstring); ``transform`` names the carriers.

    Parameters
    ----------
    k : int, default 8
        Clusters per zone.
    min_share : float, default 0.02
        A cluster with less of the split is not looked at.
    random_state : int, default 0

    Attributes
    ----------
    templates_ : dict[str, list[dict]]
        Zone → templates: ``value`` (the column's value), ``cells`` (pinned cell-channel indices),
        ``mean``, ``usual``, ``tolerance``, ``share`` (of the split that matches) and ``area``.
    """

    def __init__(self, k: int = 8, min_share: float = 0.02, random_state: int = 0) -> None:
        self.k = k
        self.min_share = min_share
        self.random_state = random_state

    def fit(self, zones: np.ndarray) -> "RepeatedPatterns":
        """Find the templates in a split's zones (:func:`zone_pixels`)."""
        zones = np.asarray(zones)
        n = len(zones)
        if n > _MAX_FIT:
            zones = zones[np.sort(np.random.default_rng(self.random_state).choice(n, _MAX_FIT, replace=False))]
        self.templates_: dict[str, list[dict[str, Any]]] = {}
        backdrop = np.median(zones.reshape(len(zones), -1, zones.shape[-1]), axis=1)      # n × 3: the edges' colour
        for j, zone in enumerate(MARK_ZONES):
            d = zones[:, j].reshape(len(zones), -1).astype(np.float32)
            self.templates_[zone] = self._fit_zone(d, backdrop)
        found = {z: [t["value"] for t in ts] for z, ts in self.templates_.items() if ts}
        logger.info("repeated patterns: %s", ", ".join(f"{z}={'/'.join(v)}" for z, v in found.items()) or "none")
        return self

    def _fit_zone(self, d: np.ndarray, backdrop: np.ndarray) -> list[dict[str, Any]]:
        n = len(d)
        if n < max(2 * self.k, 20) or np.ptp(d, axis=0).max() < FAR:
            return []
        usual = np.median(d, axis=0)
        spread = d.std(axis=0) + 1e-6
        with warnings.catch_warnings():        # fewer distinct zones than clusters: fewer clusters, as wanted
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(self.k, n_init=2, random_state=self.random_state).fit_predict(d)
        least = max(3, int(np.ceil(self.min_share * n)))
        min_cells = MIN_AREA * (GRID * GRID) * 3     # cell-channels: the image has GRID² cells of 3 channels
        out: list[dict[str, Any]] = []
        for c in range(self.k):
            members = labels == c
            template = None
            for _ in range(3):
                if members.sum() < least:
                    template = None
                    break
                mean, sd = d[members].mean(axis=0), d[members].std(axis=0)
                pinned = (sd <= PIN * spread) & (sd <= TIGHT) & (np.abs(mean - usual) >= FAR) \
                    & (np.abs(mean - usual) >= 3 * sd)
                if pinned.sum() < min_cells:
                    template = None
                    break
                tolerance = max(20.0, 2.5 * float(sd[pinned].mean()))
                at = np.unique(np.flatnonzero(pinned) // 3)
                template = {"cells": np.flatnonzero(pinned), "mean": mean[pinned], "usual": usual[pinned],
                            "tolerance": tolerance, "rgb": mean.reshape(-1, 3)[at].mean(axis=0)}
                members = self._match(d, template)
            if template is None or members.sum() < least:
                continue
            if np.abs(template["rgb"] - np.median(backdrop[members], axis=0)).max() < FAR:
                continue                     # the images' own backdrop (an object absent), not something on them
            if any(np.array_equal(t["members"], members) for t in out):
                continue
            template["members"] = members
            template["share"] = float(members.mean())
            template["area"] = float(template["cells"].size / (GRID * GRID * 3))
            out.append(template)
        names: list[str] = []
        for t in sorted(out, key=lambda t: -t["share"]):
            base = str(colour_names(t.pop("rgb"))[0])
            name = base if base not in names else f"{base}-{sum(n.split('-')[0] == base for n in names) + 1}"
            names.append(name)
            t["value"] = name
            del t["members"]
        return sorted(out, key=lambda t: -t["share"])

    @staticmethod
    def _match(d: np.ndarray, t: dict[str, Any]) -> np.ndarray:
        v = d[:, t["cells"]]
        off = np.abs(v - t["mean"]).mean(axis=1)
        return (off <= t["tolerance"]) & (off < np.abs(v - t["usual"]).mean(axis=1))

    def transform(self, zones: np.ndarray) -> dict[str, np.ndarray]:
        """Column ``auto:pattern_<zone>`` → each image's template value or ``"none"``, for the
        zones where :meth:`fit` found a template."""
        if not hasattr(self, "templates_"):
            raise ParameterError("This RepeatedPatterns instance is not fitted yet; call fit first.", parameter="fit")
        zones = np.asarray(zones)
        out: dict[str, np.ndarray] = {}
        for j, zone in enumerate(MARK_ZONES):
            templates = self.templates_.get(zone, [])
            if not templates:
                continue
            d = zones[:, j].reshape(len(zones), -1).astype(np.float32)
            value = np.full(len(d), "none", dtype=object)
            best = np.full(len(d), np.inf)
            for t in templates:
                off = np.abs(d[:, t["cells"]] - t["mean"]).mean(axis=1) / t["tolerance"]
                take = self._match(d, t) & (off < best)
                value[take], best[take] = t["value"], off[take]
            out[f"auto:pattern_{zone}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The templates found, JSON-ready: zone → value, share of the fitting split, area."""
        return {zone: [{"value": t["value"], "share": round(t["share"], 4), "area": round(t["area"], 4)}
                       for t in ts] for zone, ts in getattr(self, "templates_", {}).items() if ts}
