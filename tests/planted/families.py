"""Cue families for planted shortcut tasks: each draws its own location, size and colour.

A *family* is a kind of shortcut (a patch, a sticker, a band, ...); a *cue* is one draw from it
(:func:`draw_cue`): the same change applied to every image that carries it in a task, as a
shortcut in a real data set is the same watermark, ruler or scanner artefact on every image.

The families are split, before any tuning, into :data:`TUNING_FAMILIES` (the ones detection may be
developed against) and :data:`HELDOUT_FAMILIES` (never looked at while tuning; their figures are the
ones that count):

==============  =======  ==================================================================
family          split    what a draw does (area: share of the image the cue covers)
==============  =======  ==================================================================
``patch``       tuning   a filled rectangle (aspect 1:2..2:1), 1.5–25% of the area, anywhere
                         off the image's centre, a random colour
``band``        tuning   a strip along one side, 1.5–25% of the area, blended towards a random
                         colour (strength 0.5–0.95): "snow" along the bottom
``fg_colour``   tuning   the object recoloured: its luminance kept, its colour a random hue
``blur``        tuning   Gaussian blur, sigma 0.8–2 px per 32 px of image side
``noise``       tuning   Gaussian noise, sigma 12–35 grey levels
``sticker``     held-out a random star-shaped polygon, 1.5–25% of the area, anywhere off the
                         centre, a random colour, sometimes with an outline
``watermark``   held-out a few random letters, semi-transparent (alpha 0.5–1), box 1.5–25%
``frame``       held-out a border along every side, 1.5–25% of the area, blended towards a
                         random colour
``bg_colour``   held-out the background (not the object) blended towards a random colour
``jpeg``        held-out JPEG compression at quality 4–20
``ruler``       fresh    a thin line along one side, a little in from the edge, with ticks
                         across it every few pixels, a random colour, over half to all the side
``logo``        fresh    a ring or a cross, 1.5–25% of the area, off the centre, a random colour
``grid``        fresh    thin lines every 4–8 px (per 32 px of side) over the whole image,
                         blended towards a random colour (strength 0.3–0.6)
``vignette``    fresh    the corners darkened or tinted, fading to nothing at the centre
                         (strength 0.4–0.8)
``gamma``       fresh    a tone curve: gamma 0.4–0.6 or 1.7–2.5
==============  =======  ==================================================================

The ``fresh`` families were added after the first held-out figures had been read and the
automatic attributes changed in answer to them (the repeated patterns of
``sparsecheck/analysis/repeats.py``): they were written before that change was run on them and are
not used to tune anything, so the figures on them are held-out figures for the current code.

"Off the centre": a local cue never covers more than a quarter of the central half of the image,
where the object is; it may still touch it.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.zeros((4, 32, 32, 3), np.uint8)
>>> cue = draw_cue("patch", rng, (32, 32))
>>> y = cue.apply(x, fg_mask=np.zeros((4, 32, 32), bool))
>>> y.shape, y.dtype, bool((y != x).any()), 0.015 <= cue.area <= 0.25
((4, 32, 32, 3), dtype('uint8'), True, True)
>>> sorted(FAMILIES) == sorted(TUNING_FAMILIES + HELDOUT_FAMILIES + FRESH_FAMILIES)
True
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

__all__ = ["PlantedCue", "draw_cue", "FAMILIES", "TUNING_FAMILIES", "HELDOUT_FAMILIES", "FRESH_FAMILIES",
           "LOCAL_FAMILIES", "family_split",
           "random_colour"]

TUNING_FAMILIES = ["patch", "band", "fg_colour", "blur", "noise"]
HELDOUT_FAMILIES = ["sticker", "watermark", "frame", "bg_colour", "jpeg"]
FRESH_FAMILIES = ["ruler", "logo", "grid", "vignette", "gamma"]
#: families whose cue covers part of the image (the rest change every pixel, or the object/background)
LOCAL_FAMILIES = ["patch", "sticker", "watermark", "band", "frame", "ruler", "logo"]
MIN_AREA, MAX_AREA = 0.015, 0.25


@dataclass
class PlantedCue:
    """One draw of a family: ``apply(images, fg_mask)`` → images carrying the cue.

    ``mask`` (H×W float in [0, 1]) is where a local cue is painted and how opaquely; ``colour`` its
    colour; ``params`` the draw, for the ground truth.
    """

    family: str
    area: float
    params: dict[str, Any]
    mask: np.ndarray | None = None
    colour: tuple[int, int, int] | None = None
    _fn: Callable[..., np.ndarray] | None = field(default=None, repr=False)

    def apply(self, images: np.ndarray, fg_mask: np.ndarray | None = None) -> np.ndarray:
        """The images (uint8 N×H×W×3) with the cue; ``fg_mask`` (N×H×W bool) marks each image's object."""
        x = np.asarray(images)
        if x.shape[0] == 0:
            return x.copy()
        if self.mask is not None:
            a = self.mask[None, :, :, None].astype(np.float32)
            c = np.asarray(self.colour, np.float32)
            return np.clip(np.round(x * (1 - a) + c * a), 0, 255).astype(np.uint8)
        assert self._fn is not None
        return self._fn(x, fg_mask)

    def describe(self) -> str:
        p = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.family}({p})"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "area": round(float(self.area), 4), "params": self.params,
                "colour": None if self.colour is None else list(self.colour)}


FAMILIES = {}


def _family(name: str):
    def register(fn):
        FAMILIES[name] = fn
        return fn
    return register


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A colour of random hue, saturation 0.5–1 and value 0.5–1, or (one time in four) a grey level."""
    import colorsys

    if rng.random() < 0.25:
        g = int(rng.choice([int(rng.integers(0, 40)), int(rng.integers(215, 256))]))
        return (g, g, g)
    r, g, b = colorsys.hsv_to_rgb(float(rng.random()), float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.0)))
    return (round(255 * r), round(255 * g), round(255 * b))


def _off_centre(mask: np.ndarray) -> bool:
    h, w = mask.shape
    centre = mask[h // 4: h - h // 4, w // 4: w - w // 4]
    return float(centre.mean()) <= 0.25


def _place(shape_mask: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Put a small binary shape at a random place off the centre (tries until it fits)."""
    sh, sw = shape_mask.shape
    best = None
    for _ in range(200):
        top = int(rng.integers(0, h - sh + 1))
        left = int(rng.integers(0, w - sw + 1))
        m = np.zeros((h, w), np.float32)
        m[top:top + sh, left:left + sw] = shape_mask
        if _off_centre(m):
            return m
        best = m if best is None else best
    return best  # type: ignore[return-value]


def _side_for(area: float, h: int, w: int, aspect: float) -> tuple[int, int]:
    px = area * h * w
    sh = max(2, int(round(math.sqrt(px / aspect))))
    sw = max(2, int(round(px / sh)))
    return min(sh, h), min(sw, w)


@_family("patch")
def _patch(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    area = float(rng.uniform(MIN_AREA, MAX_AREA))
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    sh, sw = _side_for(area, h, w, aspect)
    mask = _place(np.ones((sh, sw), np.float32), h, w, rng)
    colour = random_colour(rng)
    return PlantedCue("patch", float(mask.mean()), {"size": [sh, sw], "at": _where(mask)}, mask, colour)


@_family("sticker")
def _sticker(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    area = float(rng.uniform(MIN_AREA, MAX_AREA))
    k = int(rng.integers(5, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = rng.uniform(0.45, 1.0, k)
    side = 64
    pts = [(side / 2 + side / 2 * r * np.cos(a), side / 2 + side / 2 * r * np.sin(a)) for a, r in zip(angles, radii)]
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).polygon(pts, fill=255)
    shape = np.asarray(img, np.float32) / 255
    fill = shape.mean()
    s = min(min(h, w) - 1, max(3, int(round(math.sqrt(area * h * w / max(fill, 0.2))))))
    small = np.asarray(Image.fromarray((shape * 255).astype(np.uint8)).resize((s, s), Image.BILINEAR),
                       np.float32) / 255
    small = (small > 0.5).astype(np.float32)
    mask = _place(small, h, w, rng)
    colour = random_colour(rng)
    outline = bool(rng.random() < 0.4)
    if outline:  # a darker or lighter rim, as printed stickers have
        rim = mask - ndimage.binary_erosion(mask > 0, iterations=1).astype(np.float32)
        mask = mask.copy()
        colour_rim = tuple(int(255 - c) for c in colour)
        return PlantedCue("sticker", float(mask.mean()), {"vertices": k, "outline": True, "at": _where(mask)},
                          None, colour, _two_tone(mask - rim, colour, rim, colour_rim))
    return PlantedCue("sticker", float(mask.mean()), {"vertices": k, "outline": False, "at": _where(mask)},
                      mask, colour)


def _two_tone(inner: np.ndarray, c1, rim: np.ndarray, c2) -> Callable[..., np.ndarray]:
    def apply(x: np.ndarray, fg: Any) -> np.ndarray:
        y = x.astype(np.float32)
        for m, c in ((inner, c1), (rim, c2)):
            a = m[None, :, :, None]
            y = y * (1 - a) + np.asarray(c, np.float32) * a
        return np.clip(np.round(y), 0, 255).astype(np.uint8)
    return apply


_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789©"


@_family("watermark")
def _watermark(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    area = float(rng.uniform(MIN_AREA, MAX_AREA))
    text = "".join(rng.choice(list(_LETTERS), size=int(rng.integers(2, 6))))
    font = ImageFont.load_default(size=48)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=font)
    tw, th = canvas.size
    box_px = area * h * w
    scale = math.sqrt(box_px / (tw * th))
    nw, nh = max(4, min(w, int(round(tw * scale)))), max(3, min(h, int(round(th * scale))))
    glyphs = np.asarray(canvas.resize((nw, nh), Image.BILINEAR), np.float32) / 255
    alpha = float(rng.uniform(0.5, 1.0))
    mask = _place(glyphs, h, w, rng) * alpha
    colour = random_colour(rng)
    return PlantedCue("watermark", float(nw * nh / (h * w)), {"text": text, "alpha": round(alpha, 2),
                                                               "at": _where(mask > 0.1)}, mask, colour)


@_family("band")
def _band(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    area = float(rng.uniform(MIN_AREA, MAX_AREA))
    side = str(rng.choice(["top", "bottom", "left", "right"]))
    strength = float(rng.uniform(0.5, 0.95))
    mask = np.zeros((h, w), np.float32)
    if side in ("top", "bottom"):
        k = max(1, int(round(area * h)))
        if side == "top":
            mask[:k] = 1
        else:
            mask[h - k:] = 1
    else:
        k = max(1, int(round(area * w)))
        if side == "left":
            mask[:, :k] = 1
        else:
            mask[:, w - k:] = 1
    colour = random_colour(rng)
    return PlantedCue("band", float(mask.mean()), {"side": side, "width": k, "strength": round(strength, 2)},
                      mask * strength, colour)


@_family("frame")
def _frame(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    area = float(rng.uniform(MIN_AREA, MAX_AREA))
    # 1 - (1 - 2k/h)(1 - 2k/w) = area
    k = max(1, int(round(min(h, w) * (1 - math.sqrt(1 - area)) / 2)))
    strength = float(rng.uniform(0.6, 1.0))
    mask = np.zeros((h, w), np.float32)
    mask[:k], mask[-k:], mask[:, :k], mask[:, -k:] = 1, 1, 1, 1
    colour = random_colour(rng)
    return PlantedCue("frame", float(mask.mean()), {"width": k, "strength": round(strength, 2)}, mask * strength,
                      colour)


def _saturated(rng: np.random.Generator) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(float(rng.random()), float(rng.uniform(0.6, 1.0)), 1.0)
    return (round(255 * r), round(255 * g), round(255 * b))


@_family("fg_colour")
def _fg_colour(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    colour = _saturated(rng)
    c = np.asarray(colour, np.float32) / 255

    def apply(x: np.ndarray, fg: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32)
        lum = y @ np.array([0.299, 0.587, 0.114], np.float32)
        top = np.maximum(c @ np.array([0.299, 0.587, 0.114], np.float32), 0.3)
        recoloured = np.clip(lum[..., None] * c / top, 0, 255)       # the object's shading, in the new colour
        m = ndimage.gaussian_filter(fg.astype(np.float32), sigma=(0, 0.7, 0.7))[..., None]
        return np.clip(np.round(y * (1 - m) + recoloured * m), 0, 255).astype(np.uint8)

    return PlantedCue("fg_colour", 1.0, {"colour": list(colour)}, None, colour, apply)


@_family("bg_colour")
def _bg_colour(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    colour = random_colour(rng)
    strength = float(rng.uniform(0.3, 0.7))

    def apply(x: np.ndarray, fg: np.ndarray) -> np.ndarray:
        m = (1 - ndimage.gaussian_filter(fg.astype(np.float32), sigma=(0, 0.7, 0.7)))[..., None] * strength
        y = x.astype(np.float32) * (1 - m) + np.asarray(colour, np.float32) * m
        return np.clip(np.round(y), 0, 255).astype(np.uint8)

    return PlantedCue("bg_colour", 1.0, {"colour": list(colour), "strength": round(strength, 2)}, None, colour,
                      apply)


@_family("blur")
def _blur(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    sigma = float(rng.uniform(0.8, 2.0)) * min(h, w) / 32

    def apply(x: np.ndarray, fg: Any) -> np.ndarray:
        return np.clip(np.round(ndimage.gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma, 0))),
                       0, 255).astype(np.uint8)

    return PlantedCue("blur", 1.0, {"sigma": round(sigma, 2)}, None, None, apply)


@_family("noise")
def _noise(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    sigma = float(rng.uniform(12, 35))
    seed = int(rng.integers(2**31))

    def apply(x: np.ndarray, fg: Any) -> np.ndarray:
        r = np.random.default_rng([seed, x.shape[0], int(x[:, 0, 0, 0].sum())])
        return np.clip(np.round(x + r.normal(0, sigma, x.shape)), 0, 255).astype(np.uint8)

    return PlantedCue("noise", 1.0, {"sigma": round(sigma, 1)}, None, None, apply)


@_family("jpeg")
def _jpeg(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    quality = int(rng.integers(4, 21))

    def apply(x: np.ndarray, fg: Any) -> np.ndarray:
        out = np.empty_like(x)
        for i, im in enumerate(x):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=quality)
            out[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return out

    return PlantedCue("jpeg", 1.0, {"quality": quality}, None, None, apply)


@_family("ruler")
def _ruler(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    side = str(rng.choice(["top", "bottom", "left", "right"]))
    along, across = (w, h) if side in ("top", "bottom") else (h, w)
    unit = max(1, round(min(h, w) / 32))
    length = int(round(along * rng.uniform(0.5, 1.0)))
    start = int(rng.integers(0, along - length + 1))
    inset = int(rng.integers(1, 4)) * unit
    step, tick = int(rng.integers(3, 6)) * unit, int(rng.integers(2, 5)) * unit
    m = np.zeros((across, along), np.float32)              # rows: distance from the side
    m[inset:inset + unit, start:start + length] = 1
    for t in range(start, start + length, step):
        m[inset:min(across, inset + unit + tick), t:t + unit] = 1
    if side == "bottom":
        m = m[::-1]
    mask = m if side in ("top", "bottom") else m.T
    if side == "right":
        mask = mask[:, ::-1]
    colour = random_colour(rng)
    return PlantedCue("ruler", float(mask.mean()), {"side": side, "length": length, "step": step},
                      np.ascontiguousarray(mask), colour)


@_family("logo")
def _logo(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    area = float(rng.uniform(MIN_AREA, MAX_AREA))
    side = max(5, int(round(math.sqrt(area * h * w))))
    side = min(side, min(h, w) // 2)
    yy, xx = np.mgrid[:side, :side] + 0.5
    c = side / 2
    kind = str(rng.choice(["ring", "cross"]))
    if kind == "ring":
        r = np.hypot(yy - c, xx - c)
        shape = ((r <= c) & (r >= c * rng.uniform(0.5, 0.75))).astype(np.float32)
    else:
        arm = max(1, int(round(side * rng.uniform(0.2, 0.35))))
        lo = (side - arm) // 2
        shape = np.zeros((side, side), np.float32)
        shape[lo:lo + arm], shape[:, lo:lo + arm] = 1, 1
    mask = _place(shape, h, w, rng)
    colour = random_colour(rng)
    return PlantedCue("logo", float(side * side / (h * w)), {"shape": kind, "at": _where(mask)}, mask, colour)


@_family("grid")
def _grid(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    unit = max(1, round(min(h, w) / 32))
    step = int(rng.integers(4, 9)) * unit
    offset = int(rng.integers(0, step))
    mask = np.zeros((h, w), np.float32)
    mask[offset::step], mask[:, offset::step] = 1, 1
    strength = float(rng.uniform(0.3, 0.6))
    colour = random_colour(rng)
    return PlantedCue("grid", 1.0, {"step": step, "strength": round(strength, 2)}, mask * strength, colour)


@_family("vignette")
def _vignette(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    yy, xx = np.mgrid[:h, :w] + 0.5
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) / math.sqrt(2)     # 0 centre, 1 corner
    strength = float(rng.uniform(0.4, 0.8))
    mask = (np.clip((r - 0.35) / 0.65, 0, 1) ** 1.5 * strength).astype(np.float32)
    colour = (0, 0, 0) if rng.random() < 0.5 else random_colour(rng)
    return PlantedCue("vignette", 1.0, {"strength": round(strength, 2), "colour": list(colour)}, mask, colour)


@_family("gamma")
def _gamma(rng: np.random.Generator, h: int, w: int) -> PlantedCue:
    gamma = float(rng.uniform(0.4, 0.6) if rng.random() < 0.5 else rng.uniform(1.7, 2.5))
    curve = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)

    def apply(x: np.ndarray, fg: Any) -> np.ndarray:
        return curve[x]

    return PlantedCue("gamma", 1.0, {"gamma": round(gamma, 2)}, None, None, apply)


def family_split(family: str) -> str:
    """``tuning``, ``held-out`` or ``fresh`` (module docstring)."""
    return "tuning" if family in TUNING_FAMILIES else "fresh" if family in FRESH_FAMILIES else "held-out"


def _where(mask: np.ndarray) -> str:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return "nowhere"
    h, w = mask.shape
    v = ["top", "middle", "bottom"][min(2, int(3 * rows.mean() / h))]
    hz = ["left", "centre", "right"][min(2, int(3 * cols.mean() / w))]
    return f"{v}-{hz}"


def draw_cue(family: str, rng: np.random.Generator, shape: tuple[int, int]) -> PlantedCue:
    """One cue of ``family`` for H×W images, drawn with ``rng``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown cue family {family!r}; one of {sorted(FAMILIES)}")
    return FAMILIES[family](rng, int(shape[0]), int(shape[1]))
