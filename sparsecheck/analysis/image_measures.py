"""Per-image measurements behind the automatic attributes and the cue estimates: plain numpy on batches.

Every function takes a float32 batch ``x`` (n×H×W×3, values 0–255) or its luminance ``lum``
(n×H×W) and returns one number (or a few) per image:

=======================  ======================================================================
:func:`texture`          sharpness (variance of the 4-neighbour Laplacian), noise (Immerkær's
                         estimate of a Gaussian noise's sigma from a 3×3 second-difference
                         mask, robust to edges), blockiness (log of the mean absolute step
                         across the 8-pixel block edges JPEG leaves over that in the blocks'
                         middle)
:func:`marks`            the strongest *mark* in each of eight zones along the edges (four
                         corners, four edge middles): a window (1/8, 1/5 or 1/3 of the shorter
                         side) whose pixels are uniform (each channel's standard deviation at
                         most ``UNIFORM``) and differ from the ring around it; score = the
                         largest channel difference of their means, with the window's colour
:func:`bands`            a strip along each side (1/16, 1/8 or 1/5 of the side) against the strip
                         just inside it and the other sides' backdrop: the largest channel
                         difference of their means plus half the spread the strip lost (a blend
                         towards a colour flattens it), with the strip's colour
:func:`fg_bg_colour`     the mean colour of the foreground (pixels that differ from the image's
                         backdrop, the median of its outer ring, by more than ``FOREGROUND``
                         in some channel) and of the rest, and the foreground's share
:func:`colour_name`      a colour as a word: ``white``, ``grey``, ``black`` (chroma under
                         ``GREY_CHROMA``) or a hue family (``red``, ``orange``, ...)
=======================  ======================================================================

Windows and strips come from integral images, so a batch costs a few passes over its pixels.

Examples
--------
>>> import numpy as np
>>> x = np.full((2, 32, 32, 3), 20.0, np.float32)
>>> x[1, -5:-1, -5:-1] = 255.0                          # a white 4×4 mark, bottom-right
>>> score, colour = marks(x)
>>> [round(float(s)) for s in score[:, MARK_ZONES.index("br")]], colour_name(colour[1, MARK_ZONES.index("br")])
([0, 235], 'white')
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

__all__ = ["MARK_ZONES", "SIDES", "UNIFORM", "FOREGROUND", "GREY_CHROMA", "COLOUR_FAMILIES", "texture", "marks",
           "bands", "fg_bg_colour", "colour_name", "colour_names", "luminance", "downsample", "central_crop", "backdrop",
           "integral_image", "side_strips", "strip_pairs"]

#: the eight zones along the edges, in column order: corners and edge middles
MARK_ZONES = ("tl", "t", "tr", "l", "r", "bl", "b", "br")
SIDES = ("top", "bottom", "left", "right")
#: a mark's pixels have at most this standard deviation in every channel (0–255)
UNIFORM = 16.0
#: a pixel this far (in some channel, 0–255) from the backdrop is foreground
FOREGROUND = 60.0
#: a colour with chroma (max - min channel, 0–255) under this is white, grey or black
GREY_CHROMA = 40.0
#: colour families: name → [start, end) hue in degrees (red wraps around 0)
COLOUR_FAMILIES = {"red": (345.0, 15.0), "orange": (15.0, 45.0), "yellow": (45.0, 70.0),
                   "green": (70.0, 165.0), "cyan": (165.0, 200.0), "blue": (200.0, 260.0),
                   "purple": (260.0, 290.0), "magenta": (290.0, 345.0)}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(x: np.ndarray) -> np.ndarray:
    """n×H×W luminance of an n×H×W×3 batch."""
    return x @ _LUMA


def downsample(x: np.ndarray, side: int = 64) -> np.ndarray:
    """Area-average an n×H×W×C batch by the largest integer factor that keeps its shorter side >= ``side``.

    Marks, bands and colours are measured at this size: a mark of 1.5% of the image stays 1.5%
    of it, and a 224-pixel photo costs as little as a 64-pixel one.
    """
    n, h, w, c = x.shape
    f = min(h, w) // side
    if f < 2:
        return x
    h2, w2 = h // f, w // f
    return x[:, :h2 * f, :w2 * f].reshape(n, h2, f, w2, f, c).mean(axis=(2, 4))


def central_crop(x: np.ndarray, side: int = 128) -> np.ndarray:
    """The central ``side``×``side`` pixels of a batch (n×H×W or n×H×W×C) at full resolution,
    aligned to JPEG's 8-pixel grid: where :func:`texture` measures noise and block artefacts."""
    h, w = x.shape[1:3]
    top = ((h - side) // 2) // 8 * 8 if h > side else 0
    left = ((w - side) // 2) // 8 * 8 if w > side else 0
    return x[:, top:top + side, left:left + side]


def texture(lum: np.ndarray) -> np.ndarray:
    """n×3: sharpness, noise sigma, blockiness of each image (module docstring); NaN below 3×3 (16×16 for blocks)."""
    n, h, w = lum.shape
    out = np.full((n, 3), np.nan)
    if h >= 3 and w >= 3:
        lap = lum[:, :-2, 1:-1] + lum[:, 2:, 1:-1] + lum[:, 1:-1, :-2] + lum[:, 1:-1, 2:] - 4 * lum[:, 1:-1, 1:-1]
        out[:, 0] = lap.reshape(n, -1).var(1)
        # Immerkær (1996): sigma = sqrt(pi/2) / (6 (W-2)(H-2)) Σ |I * [[1,-2,1],[-2,4,-2],[1,-2,1]]|
        m = (lum[:, :-2, :-2] - 2 * lum[:, :-2, 1:-1] + lum[:, :-2, 2:] - 2 * lum[:, 1:-1, :-2]
             + 4 * lum[:, 1:-1, 1:-1] - 2 * lum[:, 1:-1, 2:] + lum[:, 2:, :-2] - 2 * lum[:, 2:, 1:-1] + lum[:, 2:, 2:])
        out[:, 1] = np.sqrt(np.pi / 2) * np.abs(m).reshape(n, -1).mean(1) / 6.0
    if h >= 16 and w >= 16:
        # the step across JPEG's 8-pixel block edges against the step in the middle of the blocks
        dx = np.abs(np.diff(lum, axis=2))
        dy = np.abs(np.diff(lum, axis=1))
        edge = dx[:, :, 7::8].mean(axis=(1, 2)) + dy[:, 7::8, :].mean(axis=(1, 2))
        middle = dx[:, :, 3::8].mean(axis=(1, 2)) + dy[:, 3::8, :].mean(axis=(1, 2))
        out[:, 2] = np.log((edge + 1.0) / (middle + 1.0))
    return out


def integral_image(x: np.ndarray) -> np.ndarray:
    """Summed-area table of an n×H×W×C batch: n×(H+1)×(W+1)×C float64, zero first row and column."""
    s = np.zeros((x.shape[0], x.shape[1] + 1, x.shape[2] + 1, x.shape[3]), np.float64)
    s[:, 1:, 1:] = x.cumsum(1).cumsum(2)
    return s


def _span(n: int, s: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis of length ``n``: window starts, and the starts and ends of the box grown by ``r``."""
    start = np.arange(n - s + 1)
    return start, np.maximum(start - r, 0), np.minimum(start + s + r, n)


def marks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The strongest uniform mark per zone: scores n×8 (0–255) and colours n×8×3 (module docstring).

    Every window position is tried (square windows of 1/8, 1/5 and 1/3 of the shorter side), from
    integral images; a window belongs to the zone of the 3×3 grid its centre falls in, and windows
    centred in the middle cell (where the object is) are not marks.
    """
    n, h, w, c = x.shape
    m = min(h, w)
    score = np.zeros((n, len(MARK_ZONES)))
    colour = np.full((n, len(MARK_ZONES), c), np.nan)
    s1, s2 = integral_image(x.astype(np.float64)), integral_image(x.astype(np.float64) ** 2)
    back = backdrop(x)[:, None, None, :]
    grid = {(0, 0): 0, (0, 1): 1, (0, 2): 2, (1, 0): 3, (1, 2): 4, (2, 0): 5, (2, 1): 6, (2, 2): 7}
    for frac in (1 / 8, 1 / 5, 1 / 3):
        s = max(2, int(round(frac * m)))
        if s >= m:
            continue
        r0, a0, a1 = _span(h, s, max(1, s // 2))
        c0, b0, b1 = _span(w, s, max(1, s // 2))
        win = s1[:, s:, s:] - s1[:, :-s, s:] - s1[:, s:, :-s] + s1[:, :-s, :-s]        # n × R × C × ch
        sq = s2[:, s:, s:] - s2[:, :-s, s:] - s2[:, s:, :-s] + s2[:, :-s, :-s]
        big = (s1[:, a1][:, :, b1] - s1[:, a0][:, :, b1] - s1[:, a1][:, :, b0] + s1[:, a0][:, :, b0])
        area = float(s * s)
        big_area = ((a1 - a0)[:, None] * (b1 - b0)[None, :]).astype(np.float64)[None, :, :, None]
        mean = win / area
        sd = np.sqrt(np.maximum(sq / area - mean ** 2, 0.0))
        ring = (big - win) / np.maximum(big_area - area, 1.0)
        # a mark stands out from the ring around it *and* from the image's backdrop: a dark window
        # next to a stroke is the backdrop, not a mark
        contrast = np.minimum(np.abs(mean - ring).max(axis=3), np.abs(mean - back).max(axis=3))
        strength = np.where(sd.max(axis=3) <= UNIFORM, contrast, 0.0)                # n × R × C
        vert = np.minimum(((r0 + s / 2) * 3 // h).astype(int), 2)
        horiz = np.minimum(((c0 + s / 2) * 3 // w).astype(int), 2)
        for (v, z), j in grid.items():
            rows, cols = np.flatnonzero(vert == v), np.flatnonzero(horiz == z)
            if rows.size == 0 or cols.size == 0:
                continue
            part = strength[:, rows][:, :, cols].reshape(n, -1)
            best = part.argmax(axis=1)
            better = part[np.arange(n), best] > score[:, j]
            if better.any():
                bi, bj = np.unravel_index(best, (rows.size, cols.size))
                score[better, j] = part[np.arange(n), best][better]
                colour[better, j] = mean[np.arange(n), rows[bi], cols[bj]][better]
    return score, colour


def side_strips(x: np.ndarray, side: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The strip ``k`` pixels wide along ``side`` and the strip just inside it."""
    h, w = x.shape[1:3]
    if side == "top":
        return x[:, :k], x[:, k:2 * k]
    if side == "bottom":
        return x[:, h - k:], x[:, h - 2 * k:h - k]
    if side == "left":
        return x[:, :, :k], x[:, :, k:2 * k]
    return x[:, :, w - k:], x[:, :, w - 2 * k:w - k]


def strip_pairs(x: np.ndarray, fracs: Sequence[float]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Each side's strips of each width: ``(side index in SIDES, width index, strip, inner)`` for the
    widths (shares of the side's length, at least a pixel) whose strip and inner strip fit."""
    h, w = x.shape[1:3]
    for j, side in enumerate(SIDES):
        length = h if side in ("top", "bottom") else w
        for f, frac in enumerate(fracs):
            k = max(1, int(round(frac * length)))
            if 2 * k < length:
                yield (j, f, *side_strips(x, side, k))


def bands(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per side: the band score n×4 (0–255) and colour n×4×3; and the frame score n (0–255) and
    colour n×3: for the best width, the least contrast of the four strips with the strips inside
    them, where the four are of about one colour (a frame is the backdrop's colour itself, so the
    backdrop cannot judge it; needing all four sides does).

    A band differs from the strip inside it (or is flatter: a blend towards a colour squeezes the
    image's spread) *and* from the backdrop of the other three sides (the median of their outer
    rings): a dark strip next to a stroke is the backdrop, not a band.
    """
    n, h, w, c = x.shape
    m = max(1, round(min(h, w) / 8))
    rings = {side: side_strips(x, side, m)[0].reshape(n, -1, c) for side in SIDES}
    score = np.full((n, len(SIDES)), -1.0)
    colour = np.full((n, len(SIDES), c), np.nan)
    fracs = (1 / 16, 1 / 8, 1 / 5)
    plain = np.zeros((len(fracs), n, len(SIDES)))
    plain_colour = np.zeros((len(fracs), n, len(SIDES), c))
    backs = [np.median(np.concatenate([rings[o] for o in SIDES if o != side], axis=1), axis=1) for side in SIDES]
    for j, f, strip, inner in strip_pairs(x, fracs):
        sm, im = strip.mean(axis=(1, 2)), inner.mean(axis=(1, 2))
        flat = 0.5 * np.maximum(inner.std(axis=(1, 2)) - strip.std(axis=(1, 2)), 0.0).mean(axis=1)
        own = np.abs(sm - im).max(axis=1) + flat
        s = np.minimum(own, np.abs(sm - backs[j]).max(axis=1) + flat)
        better = s > score[:, j]
        score[better, j] = s[better]
        colour[better, j] = sm[better]
        plain[f, :, j], plain_colour[f, :, j] = own, sm
    spread = np.abs(plain_colour - plain_colour.mean(axis=2, keepdims=True)).max(axis=(2, 3))     # widths × n
    frame = np.where(spread <= 40.0, plain.min(axis=2), 0.0)
    best = frame.argmax(axis=0)
    return (np.maximum(score, 0.0), colour, frame[best, np.arange(n)],
            plain_colour[best, np.arange(n)].mean(axis=1))


def backdrop(x: np.ndarray) -> np.ndarray:
    """Each image's backdrop colour (n×C): the per-channel median of its outer ring, 1/8 of the
    shorter side wide (a thin frame or a corner mark does not move a median)."""
    n, h, w, c = x.shape
    k = max(1, round(min(h, w) / 8))
    ring = np.concatenate([x[:, :k].reshape(n, -1, c), x[:, h - k:].reshape(n, -1, c),
                           x[:, k:h - k, :k].reshape(n, -1, c), x[:, k:h - k, w - k:].reshape(n, -1, c)], axis=1)
    return np.median(ring, axis=1)


def fg_bg_colour(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean colours of the foreground and the background (n×3 each, NaN where empty) and the
    foreground's share (module docstring)."""
    n, h, w, c = x.shape
    fg = (np.abs(x - backdrop(x)[:, None, None, :]) > FOREGROUND).any(axis=3)   # n × H × W
    cnt = fg.reshape(n, -1).sum(1)
    total = x.reshape(n, -1, c).sum(1)
    fg_sum = (x * fg[..., None]).reshape(n, -1, c).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fg_mean = np.where(cnt[:, None] > 0, fg_sum / cnt[:, None], np.nan)
        bg_mean = np.where((h * w - cnt)[:, None] > 0, (total - fg_sum) / (h * w - cnt)[:, None], np.nan)
    return fg_mean, bg_mean, cnt / (h * w)


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """:func:`colour_name` of each row of an m×3 array (NaN rows: None)."""
    rgb = np.asarray(rgb, np.float64).reshape(-1, 3)
    out = np.full(len(rgb), None, dtype=object)
    ok = np.isfinite(rgb).all(axis=1)
    if not ok.any():
        return out
    v = rgb[ok]
    chroma = v.max(1) - v.min(1)
    lum = v @ _LUMA.astype(np.float64)
    names = np.where(lum >= 170, "white", np.where(lum < 70, "black", "grey")).astype(object)
    # hue of the coloured ones (HSV hue from the max channel)
    mx = v.max(1)
    d = np.where(chroma > 0, chroma, 1.0)
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
    coloured = chroma >= GREY_CHROMA
    for name, (lo, hi) in COLOUR_FAMILIES.items():
        inside = (hue >= lo) | (hue < hi) if lo > hi else (hue >= lo) & (hue < hi)
        names[coloured & inside] = name
    out[ok] = names
    return out


def colour_name(rgb: np.ndarray) -> str | None:
    """A colour (three values 0–255) as a word: ``white``, ``grey``, ``black`` or a hue family.

    Examples
    --------
    >>> colour_name(np.array([250, 250, 245])), colour_name(np.array([200, 30, 30])), colour_name(np.array([9, 9, 9]))
    ('white', 'red', 'black')
    """
    return colour_names(np.asarray(rgb).reshape(1, 3))[0]
