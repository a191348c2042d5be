"""Cues estimated from the data: how the images that carry an attribute value differ from the others.

A user rarely knows the exact shape of the shortcut their model learned, and an automatic
attribute only says *which* images stand out. :func:`estimate_cue` learns the change itself from
the images: it compares the images that carry the value (*carriers*) with those that do not,
**within each class** (a value frequent in one class must not make that class's own look the
cue), and keeps, of a few kinds of change, the one that best turns non-carriers into carriers:

==========  =================================================================================
kind        the change, and the cue that puts it on an image
==========  =================================================================================
``region``  the per-pixel difference concentrates in a region (a mark, sticker, watermark,
            band or frame): :class:`Transplant` copies that region, with its estimated mask,
            from the median of the carriers of the target's class (of another class when it has
            none) onto the target. Its *control* copies the same region from the median of the
            non-carriers of that class, so that the copy itself, and what the region shows
            besides the cue, is not counted as the cue.
``colour``  a colour or intensity mapping (a tint, brightness, contrast, inversion, recoloured
            strokes or background): :class:`ColourMap`, per-channel quantile maps from the
            non-carriers' values to the carriers', fitted within classes. Each image keeps its
            structure: white strokes come out red when the carriers' strokes are red, and the
            black background stays black.
``blur``,   texture: :class:`~sparsecheck.analysis.cues.library.Blur`, :class:`AddNoise`,
``noise``,  :class:`Jpeg`, with the strength that reproduces the carriers' sharpness, noise
``jpeg``    level and block artefacts.
==========  =================================================================================

How the kind is chosen: every image is summarised by a statistic vector (its mean colour on an
8×8 grid, per-channel quantiles, the log energy of its Laplacian, a robust noise level, JPEG
blockiness). The carriers and non-carriers differ on it by ``D = Σ min(z², 100)`` over the
statistics with ``z² > 6.63`` (z: the within-class differences of the means, pooled over the
classes, over their standard errors; the floor leaves out what noise alone makes, the cap keeps
one statistic from drowning the others). When the pixel means differ, the same is asked of the
per-pixel map too (how many pixels still differ: above the largest z² that random splits of the
same images show), and the worse of the two counts. Each candidate change is applied
to the non-carriers, and its score is the share of ``D`` it removes (``explained``). The best
candidate is the estimate if it explains at least ``MIN_EXPLAINED`` (0.3), with the next ones that
do as alternates (the intervention says which one the model uses); a region must also cover at
most half the image (a larger "region" is the whole image, and copying it would copy another
image's object), and differ the same way in every class that has both kinds of images
(``MIN_CONSISTENCY``): a mark drawn on images is the same in every class, whereas the way one
class's images with a value differ in shape from the others of that class is the class's own.
A class whose difference there does not repeat between random halves of its images (a few
carriers, or carriers in name only: an automatic attribute marks some images of other classes
for reasons of their own) is noise: it neither agrees nor disagrees, and its images are not the
region's donors. One exception: a class whose carriers are all alike in the region, far more than
its other images are (their spread at most ``MAX_SPREAD`` of the others'), carries a mark drawn on
them, and the region stands, copied from such classes only, unless the classes' differences are
near opposite (at most ``MIN_AGREEMENT``). A watermark on one class's images, and the next class's
images with the same value that differ there in their own way, is such a case; an object is not
(its carriers vary as much as the rest). The texture kinds are scored on the texture statistics alone.

Taking the cue off is estimated the same way in reverse: the region of the median non-carrier of
the class (its control: of the median carrier), or the inverse colour mapping. Texture cues have
no remover.

Examples
--------
Carriers have a white 4×4 mark in the bottom-right corner, in both classes:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 90, size=(200, 24, 24, 3), dtype=np.uint8)
>>> y = np.repeat([0, 1], 100)
>>> has = rng.random(200) < 0.4
>>> x[has, -5:-1, -5:-1] = 255
>>> est = estimate_cue(x, has, y, seed=0)
>>> est.kind, round(est.area, 3), est.explained > 0.9
('region', 0.028, True)
>>> target = np.zeros((2, 24, 24, 3), np.uint8)
>>> int(est.put.apply_labelled(target, np.array([0, 1]))[:, -5:-1, -5:-1].min())
255

A red cast on the carriers is a colour mapping, and its remover takes it off:

>>> x = rng.integers(0, 200, size=(200, 16, 16, 3), dtype=np.uint8)
>>> x[has, :, :, 0] = np.clip(x[has, :, :, 0].astype(int) + 50, 0, 255)
>>> est = estimate_cue(x, has, y, seed=0)
>>> est.kind, est.remove is not None
('colour', True)
>>> moved = est.put.apply(x[~has][:50]).astype(float).mean(axis=(0, 1, 2)) - x[~has][:50].mean(axis=(0, 1, 2))
>>> bool(moved[0] > 30 and abs(moved[1]) < 5)
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from sparsecheck.analysis.cues.differences import (TEXTURE_SIGN, TEXTURE_STAT, channels_of, difference,
                                                   image_stats, mean_texture, null_floor, pixel_z2, pooled_z,
                                                   significant_pixels)
from sparsecheck.analysis.cues.library import Blur, Cue
from sparsecheck.analysis.cues.transforms import AddNoise, ColourMap, Jpeg, Transplant

logger = logging.getLogger(__name__)

__all__ = ["CueEstimate", "estimate_cue", "Transplant", "ColourMap", "AddNoise", "Jpeg"]

#: images of each group (carriers, non-carriers) read per class, and in all
PER_CLASS, TOTAL = 80, 240
#: a region may cover at most this share of the image
MAX_REGION = 0.5
#: the classes' differences inside a region must agree this much (mean pairwise cosine, over the
#: classes whose difference there is not noise: :func:`_consistency`) for it to be a cue
MIN_CONSISTENCY = 0.5
#: a class's difference inside the region counts (towards the consistency, and as a donor of the
#: region) when it repeats between random halves of the class's images this much (SPLITS splits)
MIN_RELIABILITY, SPLITS = 0.3, 4
#: a region whose classes disagree is still a cue when, in some class with a reliable difference,
#: the carriers are this much more alike inside it than the others are (the ratio of their spreads,
#: :func:`_class_differences`): the same thing drawn on every carrier, as a watermark on one class
#: and noise in the next. The classes must still agree more than MIN_AGREEMENT.
MAX_SPREAD, MIN_AGREEMENT = 0.5, 0.2
#: the least share of the difference an estimate must explain; the other kinds of change that also
#: do are kept as alternates (at most MAX_ALTERNATES): a value's images may differ in more than one
#: way (blurred ones and dark ones), and the intervention, not this score, says which one the model uses
MIN_EXPLAINED, MAX_ALTERNATES = 0.3, 2


def _class_differences(carriers: dict, others: dict, mask: np.ndarray, rng: np.random.Generator
                       ) -> dict[Any, tuple[np.ndarray, float, float]]:
    """Per class with at least 5 of each, the unit difference (carriers minus others) inside
    ``mask``, its *reliability*: how well it repeats between random halves of the class's images
    (the mean cosine of the halves' differences over a few splits, Spearman–Brown corrected to the
    whole; 0 when the halves do not agree), and its *spread*: how much the carriers vary there
    against how much the others do (the median over the region's values of the median absolute
    deviation across images, carriers over others). A class with few carriers, or carriers that share
    nothing there, has a difference that is mostly noise; carriers that all show the same thing
    there (a drawn mark) have a spread well below 1, whereas an object varies as much as the rest."""
    keep = mask > 0.5
    out: dict[Any, tuple[np.ndarray, float, float]] = {}
    for k in carriers:
        a, b = carriers[k], others.get(k)
        if b is None or len(a) < 5 or len(b) < 5:
            continue
        a2 = (a if a.ndim == 4 else a[..., None])[:, keep].reshape(len(a), -1).astype(np.float64)
        b2 = (b if b.ndim == 4 else b[..., None])[:, keep].reshape(len(b), -1).astype(np.float64)
        d = a2.mean(0) - b2.mean(0)
        norm = np.linalg.norm(d)
        if norm == 0:
            continue
        halves = []
        for _ in range(SPLITS):
            pa, pb = rng.permutation(len(a2)), rng.permutation(len(b2))
            ha, hb = len(a2) // 2, len(b2) // 2
            d1 = a2[pa[:ha]].mean(0) - b2[pb[:hb]].mean(0)
            d2 = a2[pa[ha:]].mean(0) - b2[pb[hb:]].mean(0)
            n1, n2 = np.linalg.norm(d1), np.linalg.norm(d2)
            halves.append(float(d1 @ d2 / (n1 * n2)) if n1 > 0 and n2 > 0 else 0.0)
        r = max(float(np.mean(halves)), 0.0)
        out[k] = (d / norm, 2 * r / (1 + r), (_spread(a2) + 1.0) / (_spread(b2) + 1.0))  # +1: flat vs flat is 1
    return out


def _spread(values: np.ndarray) -> float:
    """How much images (rows) vary: the median over the columns of their median absolute deviation."""
    return float(np.median(np.median(np.abs(values - np.median(values, 0)), 0)))


def _consistency(diffs: list[np.ndarray]) -> float | None:
    """How alike the classes' differences inside a region are: the mean pairwise cosine of the
    unit differences of the classes whose difference is reliable (:func:`_class_differences`, at
    least :data:`MIN_RELIABILITY`); None with fewer than two. A cue drawn on images is the same in
    every class; the way a value's images of one class differ from the others of that class in
    shape is not. A class whose few carriers share nothing there neither agrees nor disagrees: its
    difference is noise, and it is left out."""
    if len(diffs) < 2:
        return None
    g = np.stack(diffs) @ np.stack(diffs).T
    return float(g[np.triu_indices(len(diffs), 1)].mean())


def _copy_region(targets: np.ndarray, donors: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``targets`` with ``mask``'s region copied from randomly drawn ``donors``."""
    m = mask if targets.ndim == 3 else mask[..., None]
    pick = donors[rng.integers(0, len(donors), len(targets))].astype(np.float32)
    return np.clip(np.round(targets.astype(np.float32) * (1 - m) + pick * m), 0, 255).astype(np.uint8)


def _solve(gap: Any, lo: float, hi: float, *, log: bool, steps: int = 5) -> float | None:
    """The strength in [lo, hi] where ``gap`` (monotone in it) crosses zero: a bracket from five
    points, then bisection; None when it does not cross (the texture moves the other way)."""
    grid = np.geomspace(lo, hi, 5) if log else np.linspace(lo, hi, 5)
    values = [gap(float(v)) for v in grid]
    for a, b, ga, gb in zip(grid[:-1], grid[1:], values[:-1], values[1:]):
        if ga == 0:
            return float(a)
        if np.sign(ga) != np.sign(gb):
            for _ in range(steps):
                mid = float(np.sqrt(a * b) if log else (a + b) / 2)
                gm = gap(mid)
                if np.sign(gm) == np.sign(ga):
                    a, ga = mid, gm
                else:
                    b, gb = mid, gm
            return float(np.sqrt(a * b) if log else (a + b) / 2)
    return None


# --------------------------------------------------------------------------- the estimate
@dataclass
class CueEstimate:
    """What :func:`estimate_cue` learned about one attribute value.

    Attributes
    ----------
    kind : {"region", "colour", "blur", "noise", "jpeg"}
    put, remove : Cue
        Put the cue on an image; take it off (None where there is no remover).
    explained : float
        Share of the carriers-vs-others difference the estimate reproduces (module docstring).
    area : float
        Share of the image the region covers (1.0 for a global change).
    n_carriers, n_others : int
        Images compared; ``stratified``: within classes (False: no class held both).
    difference : ndarray (h, w)
        Where carriers differ from the others (pooled squared z of the pixel means; for the picture).
    mask : ndarray (H, W) or None
        The region (``kind == "region"``).
    alternates : list of CueEstimate
        Other kinds of change that also explain much of the difference (at least ``MIN_EXPLAINED``),
        best first: an intervention may try them when this one is not confirmed.
    """

    kind: str
    put: Cue
    remove: Cue | None
    explained: float
    area: float
    n_carriers: int
    n_others: int
    stratified: bool
    difference: np.ndarray
    mask: np.ndarray | None = None
    candidates: dict[str, float] = field(default_factory=dict)
    alternates: list["CueEstimate"] = field(default_factory=list)

    def describe(self) -> str:
        """In words: "a region of 2.8% of the image (bottom-right), copied from carriers" and the like."""
        if self.kind == "region":
            return f"{getattr(self.put, 'label', 'a region')}, copied from images that carry it"
        return getattr(self.put, "label", None) or self.put.name

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.describe(), "put": self.put.to_dict(),
                "remove": None if self.remove is None else self.remove.to_dict(),
                "explained": round(float(self.explained), 3), "area": round(float(self.area), 4),
                "n_carriers": int(self.n_carriers), "n_others": int(self.n_others),
                "stratified": bool(self.stratified),
                "candidates": {k: round(float(v), 3) for k, v in self.candidates.items()}}


def _sample(has: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[dict, dict, bool]:
    """Row indices of carriers and non-carriers per class (classes holding at least 2 of each)."""
    c_rows: dict[Any, np.ndarray] = {}
    o_rows: dict[Any, np.ndarray] = {}
    for k in np.unique(labels):
        c = np.flatnonzero(has & (labels == k))
        o = np.flatnonzero(~has & (labels == k))
        if len(c) >= 2 and len(o) >= 2:
            c_rows[k] = rng.permutation(c)[:PER_CLASS]
            o_rows[k] = rng.permutation(o)[:PER_CLASS]
    if len(c_rows) > TOTAL // 4:  # many classes: the strata with most of both
        keep = sorted(c_rows, key=lambda k: -min(len(c_rows[k]), len(o_rows[k])))[:TOTAL // 4]
        c_rows = {k: c_rows[k] for k in keep}
        o_rows = {k: o_rows[k] for k in keep}
    stratified = bool(c_rows)
    if not stratified:  # no class holds both: compare the groups as they are (confounded with the class)
        c_rows = {None: rng.permutation(np.flatnonzero(has))[:TOTAL]}
        o_rows = {None: rng.permutation(np.flatnonzero(~has))[:TOTAL]}
    # at most TOTAL of each in all, the biggest strata trimmed first
    for rows in (c_rows, o_rows):
        while sum(len(r) for r in rows.values()) > TOTAL:
            k = max(rows, key=lambda key: len(rows[key]))
            rows[k] = rows[k][:max(2, len(rows[k]) * 3 // 4)]
    return c_rows, o_rows, stratified


def estimate_cue(images: Any, has_value: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                 min_carriers: int = 5) -> CueEstimate | None:
    """Learn how images with a value differ from those without it (module docstring).

    Parameters
    ----------
    images : array-like uint8 (n, H, W[, C])
        Indexable by an array of rows (a memory map or a lazy dataset will do); only a sample of at
        most :data:`TOTAL` carriers and :data:`TOTAL` non-carriers is read.
    has_value : ndarray of bool (n,)
        Which images carry the value.
    labels : ndarray (n,)
        Classes: carriers and non-carriers are compared within each class.
    seed : int
        Seeds the sample and the donors' order.
    min_carriers : int
        Fewer carriers than this: no estimate.

    Returns
    -------
    CueEstimate or None
        None when the carriers do not differ from the others in any way the candidates can
        reproduce (an attribute that is not in the pixels, such as a scanner's name).
    """
    has = np.asarray(has_value, bool)
    labels = np.asarray(labels)
    if has.sum() < min_carriers or (~has).sum() < min_carriers:
        return None
    rng = np.random.default_rng(seed)
    c_rows, o_rows, stratified = _sample(has, labels, rng)
    read = lambda rows: np.asarray(images[np.sort(rows)]) if len(rows) else None  # noqa: E731
    carriers = {k: read(r) for k, r in c_rows.items()}
    others = {k: read(r) for k, r in o_rows.items()}
    c_lab = {k: labels[np.sort(r)] for k, r in c_rows.items()}
    o_lab = {k: labels[np.sort(r)] for k, r in o_rows.items()}
    sc = {k: image_stats(v) for k, v in carriers.items()}
    so = {k: image_stats(v) for k, v in others.items()}
    n_c = sum(len(v) for v in carriers.values())
    n_o = sum(len(v) for v in others.values())
    channels = channels_of(carriers)
    diff_map = pixel_z2(carriers, others)
    z_base = pooled_z(sc, so)
    base = difference(z_base)
    # what the same comparison shows between random halves (labels shuffled within each class):
    # near-duplicate images make every z larger than independent images would, and this is the floor
    null_stats, z2_floor = null_floor(carriers, others, sc, so, channels, rng)
    base -= null_stats
    pixel_base = int(significant_pixels(diff_map, channels, z2_floor).sum())
    pixel_signal = pixel_base >= max(5, 0.005 * diff_map.size)  # pixels differ, beyond a stray few
    if base <= 0 and not pixel_signal:
        logger.info("cue estimate: the images with the value do not differ from the others in the pixels")
        return None

    def explained_by(cue: Cue | None, pixels: bool = True, mapped: dict | None = None, ref: dict | None = None
                     ) -> float:
        """The share of the difference left once ``cue`` is put on the non-carriers (or ``mapped``,
        the non-carriers changed already): on the statistic vector and, when the pixels differ and
        ``pixels``, on the pixel map too (the worse of the two: a colour mapping cannot stand in for
        a region). Texture cues (``pixels=False``) are scored on the texture statistics alone: noise
        or blur moves no pixel's mean, and a value's images may differ in other ways too (blurred
        *and* dark ones), which a texture need not explain. ``ref`` stands in for the carriers'
        statistics: a copied region is compared with carriers that had the same region copied in
        from other carriers, so that the seams of the copy, edges that no image had, count on both
        sides, and a texture the region does not explain (blur all over) still counts against it."""
        if mapped is None:
            mapped = {k: cue.apply_labelled(v, o_lab[k]) for k, v in others.items()}  # type: ignore[union-attr]
        z_after = pooled_z(sc if ref is None else ref, {k: image_stats(v) for k, v in mapped.items()})
        if not pixels:
            before = difference(z_base[-3:])
            return 1.0 - difference(z_after[-3:]) / before if before > 0 else -1.0
        after = max(difference(z_after) - null_stats, 0.0)
        score = 1.0 - after / base if base > 0 else (1.0 if after == 0 else -1.0)
        if pixel_signal and pixels:
            left = int(significant_pixels(pixel_z2(carriers, mapped), channels, z2_floor).sum())
            score = min(score, 1.0 - left / pixel_base)
        return score

    all_c = np.concatenate(list(carriers.values()))
    all_o = np.concatenate(list(others.values()))
    lab_c = np.concatenate(list(c_lab.values()))
    lab_o = np.concatenate(list(o_lab.values()))
    found: dict[str, tuple[float, Cue, Cue | None, float, np.ndarray | None]] = {}
    # a region: copied from carriers (its control: from non-carriers)
    mask = _region(diff_map, all_c.shape[1:3], channels, z2_floor)
    # (its own generator: the splits do not move the draws that follow)
    class_diffs = {} if mask is None else _class_differences(carriers, others, mask, np.random.default_rng([seed, 1]))
    reliable = {k: d for k, (d, r, _) in class_diffs.items() if r >= MIN_RELIABILITY}
    consistency = _consistency(list(reliable.values()))
    if consistency is not None and consistency < MIN_CONSISTENCY:
        drawn = [k for k in reliable if class_diffs[k][2] <= MAX_SPREAD]
        spreads = ", ".join(f"{k}: {class_diffs[k][2]:.2f}" for k in reliable)
        if drawn and consistency > MIN_AGREEMENT:
            logger.info("cue estimate: the region differs one way in one class and another way in the next "
                        "(consistency %.2f), but the carriers of %s are alike in it (spread %s): a "
                        "mark drawn on them", consistency, ", ".join(map(str, drawn)), spreads)
            reliable = {k: reliable[k] for k in drawn}  # the region's donors
        else:
            logger.info("cue estimate: the region differs one way in one class and another way in the next "
                        "(consistency %.2f; spread %s): the classes' own look, not a cue", consistency, spreads)
            mask = None
    if mask is not None and 0 < (mask > 0.5).mean() <= MAX_REGION:
        area = float((mask > 0.5).mean())
        label = f"a region of {100 * area:.1f}% of the image ({_where(mask)})"
        # the region's donors: the classes whose difference there is reliable (when any is); a
        # target of another class gets the region of one of those, with its control from the same
        noisy = list(class_diffs.keys() - reliable.keys())
        donor = ~np.isin(lab_c, noisy) if noisy and reliable else np.ones(len(lab_c), bool)
        put = Transplant.from_pools(mask, all_c[donor], lab_c[donor], all_o, lab_o, label=label)
        donor_o = np.isin(lab_o, np.unique(lab_c[donor]))
        remove = Transplant.from_pools(mask, all_o[donor_o], lab_o[donor_o], all_c, lab_c,
                                       label=f"{label}, from images without it")
        # scored as copies from single carriers of the class (a median is smoother than any image),
        # measured with the medians (a median keeps the cue and drops what a few carriers add)
        copied = {k: _copy_region(o, carriers[k], mask, rng) for k, o in others.items()}
        seamed = {k: image_stats(_copy_region(c, c, mask, rng)) for k, c in carriers.items()}
        found["region"] = (explained_by(None, mapped=copied, ref=seamed), put, remove, area, mask)
    # a colour mapping (and the same after an inversion)
    for invert in (False, True):
        lut = _fit_lut(others, carriers, invert)
        back = _fit_lut(carriers, others, invert)
        if lut is None:
            continue
        put = ColourMap(lut=lut, invert=invert, label=_describe_lut(lut, invert))
        remove = None if back is None else ColourMap(lut=back, invert=invert, label="the reverse mapping")
        score = explained_by(put)
        key = "colour"
        if key not in found or score > found[key][0]:
            found[key] = (score, put, remove, 1.0, None)
    # texture: blur, noise, JPEG, each at the strength whose texture statistic matches the carriers'
    # (tried only where the carriers' texture statistic differs, in the cue's direction: |z| >= 3)
    side = max(all_c.shape[1:3]) / 32.0
    carrier_texture = mean_texture(carriers)
    few = {k: o[:max(2, 120 * len(o) // max(n_o, 1))] for k, o in others.items()}  # enough to match a mean
    z_texture = z_base[-3:] if z_base.size >= 3 else np.zeros(3)
    for kind, (lo, hi), make in (
            ("blur", (0.3, 4.0), lambda v: Blur(radius=round(v * side, 2))),
            ("noise", (2.0, 60.0), lambda v: AddNoise(sigma=round(v, 1))),
            ("jpeg", (3.0, 90.0), lambda v: Jpeg(quality=int(round(v))))):
        stat = TEXTURE_STAT[kind]
        if z_texture[stat] * TEXTURE_SIGN[kind] < 3.0:
            continue

        def gap(v: float) -> float:
            return float(mean_texture({k: make(v).apply(o) for k, o in few.items()})[stat]
                         - carrier_texture[stat])

        v = _solve(gap, lo, hi, log=kind != "jpeg")
        if v is None:
            continue
        cue = make(v)
        found[kind] = (explained_by(cue, pixels=False), cue, None, 1.0, None)
    scores = {k: v[0] for k, v in found.items()}
    # a global change explaining about as much as a region is the simpler account (and copies no object)
    if "region" in scores and "colour" in scores and scores["colour"] >= scores["region"] - 0.1 \
            and found["region"][3] > 0.15:
        scores["region"] = min(scores["region"], scores["colour"] - 1e-6)
    ranked = [k for k in sorted(scores, key=lambda k: -scores[k]) if scores[k] >= MIN_EXPLAINED]
    candidates = {k: float(v[0]) for k, v in found.items()}
    if not ranked:
        logger.info("cue estimate: nothing explains the difference (%s)",
                    ", ".join(f"{k} {v:.2f}" for k, v in candidates.items()))
        return None
    ests = [CueEstimate(kind=k, put=found[k][1], remove=found[k][2], explained=float(found[k][0]),
                        area=float(found[k][3]), n_carriers=n_c, n_others=n_o, stratified=stratified,
                        difference=diff_map, mask=found[k][4], candidates=candidates)
            for k in ranked[:MAX_ALTERNATES + 1]]
    est, est.alternates = ests[0], ests[1:]
    logger.info("cue estimate: %s (explains %.0f%%; %s)", est.describe(), 100 * est.explained,
                ", ".join(f"{k} {v:.2f}" for k, v in est.candidates.items()))
    return est


def _region(z2: np.ndarray, size: tuple[int, int], channels: int, floor: float) -> np.ndarray | None:
    """The mask (full size, 0..1) of the pixels whose means differ (above ``floor``), closed and grown by a pixel."""
    sig = significant_pixels(z2, channels, floor)
    if sig.sum() < 2:
        return None
    sig = ndimage.binary_closing(sig, iterations=1) | sig
    labelled, n = ndimage.label(sig)
    if n == 0:
        return None
    # keep the components that hold the difference (each at least 5% of it)
    energy = ndimage.sum(z2, labelled, index=np.arange(1, n + 1))
    keep = np.isin(labelled, 1 + np.flatnonzero(energy >= 0.05 * energy.sum()))
    h, w = size
    small = keep.astype(np.float32)
    if small.shape != (h, w):
        fy, fx = h / small.shape[0], w / small.shape[1]
        small = ndimage.zoom(small, (fy, fx), order=0)[:h, :w]
        if small.shape != (h, w):
            small = np.pad(small, ((0, h - small.shape[0]), (0, w - small.shape[1])), mode="edge")
    return small.astype(np.float32)


def _where(mask: np.ndarray) -> str:
    rows, cols = np.nonzero(mask > 0.5)
    h, w = mask.shape
    if (rows.size and rows.min() == 0 and rows.max() == h - 1 and cols.min() == 0 and cols.max() == w - 1
            and (mask[h // 4: -h // 4 or None, w // 4: -w // 4 or None] < 0.5).all()):
        return "along every edge"
    v = ["top", "middle", "bottom"][min(2, int(3 * rows.mean() / h))]
    hz = ["left", "centre", "right"][min(2, int(3 * cols.mean() / w))]
    return "centre" if (v, hz) == ("middle", "centre") else f"{v}-{hz}" if v != "middle" else f"{hz} edge" \
        if hz != "centre" else "centre"


def _quantile_lut(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The monotone map of values 0..255 that sends ``src``'s distribution onto ``dst``'s."""
    qs = np.linspace(0, 1, 101)
    sq = np.quantile(src, qs)
    dq = np.quantile(dst, qs)
    sq = np.maximum.accumulate(sq + np.arange(qs.size) * 1e-6)
    return np.interp(np.arange(256), sq, dq)


def _fit_lut(src: dict, dst: dict, invert: bool) -> np.ndarray | None:
    """Per-channel quantile maps from ``src`` (inverted first when ``invert``) to ``dst``, fitted per
    class and averaged (weighted by the classes' sizes)."""
    luts, weights = [], []
    for k in src:
        a, b = src[k], dst.get(k)
        if b is None or len(a) < 2 or len(b) < 2:
            continue
        a4 = (255 - a) if invert else a
        a4 = a4 if a4.ndim == 4 else a4[..., None]
        b4 = b if b.ndim == 4 else b[..., None]
        ch = a4.shape[-1]
        sa = a4.reshape(-1, ch)[:: max(1, a4[..., 0].size // 200_000)]
        sb = b4.reshape(-1, ch)[:: max(1, b4[..., 0].size // 200_000)]
        luts.append(np.stack([_quantile_lut(sa[:, j], sb[:, j]) for j in range(ch)], axis=1))
        weights.append(len(a) * len(b) / (len(a) + len(b)))
    if not luts:
        return None
    w = np.asarray(weights) / np.sum(weights)
    return np.clip(np.round(np.tensordot(w, np.stack(luts), axes=1)), 0, 255).astype(np.uint8)


def _describe_lut(lut: np.ndarray, invert: bool) -> str:
    """"a colour mapping: black → (12, 40, 90), white → (230, 20, 20)" and the like."""
    def rgb(v: int) -> str:
        row = lut[255 - v if invert else v]
        return "(" + ", ".join(str(int(c)) for c in row) + ")" if len(row) > 1 else str(int(row[0]))

    head = "an inverting colour mapping" if invert else "a colour mapping"
    return f"{head}: black → {rgb(0)}, mid-grey → {rgb(128)}, white → {rgb(255)}"
