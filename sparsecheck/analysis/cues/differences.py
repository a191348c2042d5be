"""How two groups of images differ: the statistics behind :func:`~sparsecheck.analysis.cues.estimate_cue`.

Groups are dicts ``class → images``: every comparison is made within classes and pooled over them.

* :func:`image_stats` — each image's statistic vector (mean colour on an 8×8 grid, per-channel
  quantiles, log sharpness, log noise, blockiness);
* :func:`pooled_z` — per statistic, the within-class mean differences pooled over the classes, over
  their standard error (a variance pooled over every group); :func:`difference` — how much two
  groups differ on such a vector (``Σ min(z², 100)`` over the statistics with ``z² > 6.63``);
* :func:`pixel_z2` and :func:`significant_pixels` — the same per pixel (means and spreads), and the
  pixels that differ (Benjamini–Hochberg at 1%, above the shuffles' largest z²); :func:`null_floor` —
  what the same comparison shows between random halves of the same images (near-duplicates and
  few carriers per class inflate every z).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as _st

from sparsecheck.analysis.image_measures import central_crop, luminance, texture
from sparsecheck.analysis.stats import benjamini_hochberg

__all__ = ["MAX_SIDE", "TEXTURE_STAT", "TEXTURE_SIGN", "small", "texture_stats", "mean_texture", "image_stats",
           "pooled_z", "difference", "pixel_z2", "null_floor", "channels_of", "significant_pixels"]

_GRID = 8
#: pixel maps and statistics are computed at most at this size
MAX_SIDE = 64


def small(x: np.ndarray) -> np.ndarray:
    """float32 N×h×w×C, at most ``MAX_SIDE`` on a side (area-averaged)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    n, h, w, c = x.shape
    f = int(np.ceil(max(h, w) / MAX_SIDE))
    if f > 1:
        h2, w2 = h // f, w // f
        x = x[:, :h2 * f, :w2 * f].reshape(n, h2, f, w2, f, c).mean(axis=(2, 4))
    return x


def texture_stats(x: np.ndarray) -> np.ndarray:
    """Per image: log sharpness, log noise, log blockiness (N×3) on the full-resolution centre
    (:func:`~sparsecheck.analysis.image_measures.texture`)."""
    x = np.asarray(x)
    x4 = x if x.ndim == 4 else x[..., None]
    crop = central_crop(x4, 64).astype(np.float32)
    lum = luminance(crop) if crop.shape[-1] == 3 else crop[..., 0]
    t = texture(lum)
    t = np.nan_to_num(t, nan=0.0)
    return np.stack([np.log(t[:, 0] + 1.0), np.log(t[:, 1] + 0.5), t[:, 2]], axis=1)  # blockiness is a log already


#: which texture statistic (column of :func:`texture_stats`) each texture cue moves, and which way
TEXTURE_STAT = {"blur": 0, "noise": 1, "jpeg": 2}
TEXTURE_SIGN = {"blur": -1.0, "noise": 1.0, "jpeg": 1.0}


def mean_texture(groups: dict) -> np.ndarray:
    """The texture statistics' mean over the groups (weighted by their sizes)."""
    rows = [texture_stats(v) for v in groups.values() if len(v)]
    return np.concatenate(rows).mean(axis=0)


def image_stats(x: np.ndarray) -> np.ndarray:
    """The statistic vector of each image (N×S): grid means, channel quantiles, texture."""
    s = small(x)
    n, h, w, c = s.shape
    g = _GRID if min(h, w) >= _GRID else min(h, w)
    rows = np.array_split(np.arange(h), g)
    cols = np.array_split(np.arange(w), g)
    grid = np.stack([s[:, r][:, :, cc].mean(axis=(1, 2)) for r in rows for cc in cols], axis=1).reshape(n, -1)
    q = np.quantile(s.reshape(n, -1, c), [0.05, 0.25, 0.5, 0.75, 0.95], axis=1).transpose(1, 0, 2).reshape(n, -1)
    return np.concatenate([grid, q, texture_stats(x)], axis=1).astype(np.float64)


def pooled_z(a: dict[Any, np.ndarray], b: dict[Any, np.ndarray]) -> np.ndarray:
    """Per statistic: the within-class mean differences (a - b), pooled over the classes, over their se.

    The variance is pooled over every group (a common within-group variance per statistic), so that
    a class with two carriers cannot make a z-score huge by chance; the classes are weighted by
    ``1 / (1/n_a + 1/n_b)``, the inverse of their share of the variance.
    """
    num, wsum, ss, dof = 0.0, 0.0, 0.0, 0
    for k in a:
        xa, xb = a[k], b.get(k)
        if xb is None or len(xa) < 1 or len(xb) < 1:
            continue
        w = 1.0 / (1.0 / len(xa) + 1.0 / len(xb))
        num = num + w * (xa.mean(axis=0) - xb.mean(axis=0))
        wsum += w
        ss = ss + ((xa - xa.mean(axis=0)) ** 2).sum(axis=0) + ((xb - xb.mean(axis=0)) ** 2).sum(axis=0)
        dof += len(xa) + len(xb) - 2
    if wsum == 0 or dof <= 0:
        return np.zeros(0)
    sd = np.sqrt(ss / dof) + 1e-6
    return (num / wsum) / (sd / np.sqrt(wsum))


#: a statistic whose z² exceeds this counts as "certainly different", however large
_CAP = 100.0
#: z² below this (the 99th percentile of chi-square with 1 degree of freedom) is noise
_FLOOR = float(_st.chi2.isf(0.01, 1))


def difference(z: np.ndarray) -> float:
    """How much two groups differ on a statistic vector: Σ min(z², _CAP) over the statistics with z² > _FLOOR.

    The floor leaves out what noise alone makes (about 1% of the statistics); the cap keeps one
    statistic with a tiny spread (a mark of one constant colour) from drowning every other: a
    candidate that fixes it but breaks ten others must not look better.
    """
    if not z.size:
        return 0.0
    z2 = z ** 2
    return float(np.minimum(z2[z2 > _FLOOR], _CAP).sum())


def pixel_z2(carriers: dict, others: dict) -> np.ndarray:
    """Per pixel (at most ``MAX_SIDE`` a side), Σ over channels of two pooled z²: of the difference of
    the means, and of the spreads (the mean absolute deviation from the median of the class's images;
    a blend towards a colour moves the mean of varied photos little, but it squeezes their spread),
    so ``2 × channels`` degrees of freedom."""
    a = {k: small(v).reshape(len(v), -1) for k, v in carriers.items()}
    b = {k: small(v).reshape(len(v), -1) for k, v in others.items()}
    z_mean = pooled_z(a, b)
    # absolute deviations from the median of both groups of the class together: under no difference
    # both groups' deviations have one distribution, whatever their sizes (each group's own median
    # would sit closer to a small group's points, and bias every pixel the same way)
    dev_a, dev_b = {}, {}
    for k in a:
        if k in b and len(a[k]) >= 3 and len(b[k]) >= 3:
            centre = np.median(np.concatenate([a[k], b[k]]), axis=0)
            dev_a[k], dev_b[k] = np.abs(a[k] - centre), np.abs(b[k] - centre)
    z_spread = pooled_z(dev_a, dev_b)
    if z_spread.size != z_mean.size:
        z_spread = np.zeros_like(z_mean)
    shape = small(next(iter(carriers.values()))[:1]).shape[1:]
    return (z_mean.reshape(shape) ** 2 + z_spread.reshape(shape) ** 2).sum(axis=-1)


def null_floor(carriers: dict, others: dict, sc: dict, so: dict, channels: int, rng: np.random.Generator,
               repeats: int = 5) -> tuple[float, float]:
    """What the same comparison shows between random splits of the same images (the carrier/non-carrier
    labels shuffled within each class), the larger of ``repeats`` shuffles: the difference of the
    statistic vectors, and the largest pixel z² (:func:`pixel_z2`).

    The pixel floor is a permutation *max* statistic: a pixel counts as different only when its z²
    exceeds every pixel of the shuffles (:func:`significant_pixels`' ``floor``). The chi-square
    p-values alone are not calibrated here: a handful of carriers per class, near-duplicate images
    and pixels that are either ink or background make the z² heavy-tailed, and one shuffle in a few
    then passes hundreds of pixels; a count of shuffled pixels subtracted from the observed one
    inherits that noise, whereas the shuffles' largest z² varies little and stays far below a
    drawn cue's.
    """
    worst_stats, worst_z2 = 0.0, 0.0
    for _ in range(repeats):
        pa, pb, qa, qb = {}, {}, {}, {}
        for k in carriers:
            n = len(carriers[k])
            both = np.concatenate([carriers[k], others[k]])
            stats = np.concatenate([sc[k], so[k]])
            order = rng.permutation(len(both))
            pa[k], pb[k] = both[order[:n]], both[order[n:]]
            qa[k], qb[k] = stats[order[:n]], stats[order[n:]]
        worst_stats = max(worst_stats, difference(pooled_z(qa, qb)))
        worst_z2 = max(worst_z2, float(pixel_z2(pa, pb).max(initial=0.0)))
    return worst_stats, worst_z2


def channels_of(groups: dict) -> int:
    first = next(iter(groups.values()))
    return int(first.shape[-1]) if first.ndim == 4 else 1


def significant_pixels(z2: np.ndarray, channels: int, floor: float = 0.0) -> np.ndarray:
    """Pixels that differ (:func:`pixel_z2`): Benjamini–Hochberg over their chi-square p-values at 1%,
    and a z² above ``floor`` (the shuffles' largest, :func:`null_floor`)."""
    p = _st.chi2.sf(z2.ravel(), df=2 * channels)
    return (benjamini_hochberg(p) <= 0.01).reshape(z2.shape) & (z2 > floor)
