"""Spurious reliance confirmed by intervention: put a cue on images, take it off, count what flips.

An accuracy gap between images with and without a cue is observational: few examples, and
confounded with whatever else differs between them. Where the cue can be drawn on an image, the
question can be asked directly of the model, on every test image:

* **put on** — draw the cue on the images of the *other* classes: how many does the model now
  take for the class (the *flip rate*, with a Wilson interval), against how many it took for the
  class before (the *baseline*)? How much does the class's probability rise?
* **take off** (or put the counter-value on) — on the class's *own* images: how much do its
  probability and its recall fall?

(One module of about 800 lines, on purpose: the seven cue types, the config parser that builds
them, the measurement and the cues of automatic attributes are one vocabulary; most of the length
is the cue types' docstrings with their runnable pixel-level examples.)

A cue is a small declarative object (pandera-style: a name, parameters, one verb) with
``apply(images) -> images`` on uint8 N×H×W×C batches: :class:`Patch`, :class:`Border`,
:class:`Tint`, :class:`Invert`, :class:`Blur`, :class:`Background`, and :class:`CallableCue`
wrapping a user's ``package.module:function``. :func:`parse_cue` and :func:`parse_intervention`
build them from a config mapping such as::

    {"put": {"type": "tint", "colour": [200, 30, 30], "strength": 0.6},
     "remove": {"type": "tint", "colour": [200, 30, 30], "strength": 0.6, "undo": true}}

:func:`measure_intervention` runs the model batch by batch (never more than ``batch_size``
intervened images exist at a time) and returns an :class:`InterventionResult`.

The ``confirmed`` rule (``margin``, ``min_fall`` and ``alpha`` are parameters):

* **put on** confirms when the lower end of the flip rate's interval exceeds the baseline rate by
  more than ``margin`` (default 5 points) *and* the paired exact McNemar test of "not the class →
  the class" against "the class → not the class" flips is significant (one-sided, ``p < alpha``);
* **take off** confirms when the recall of the class falls by at least ``min_fall`` (default 5
  points) *and* its paired exact McNemar test is significant (``p < alpha``).

Either confirms the reliance (``confirmed_by`` says which). A cue the model ignores gives a flip
rate at its baseline and no recall fall; a margin keeps a cue that nudges a handful of borderline
images from counting. Several cues measured at once are several tests: pass their p-values through
:func:`~sparsecheck.analysis.stats.benjamini_hochberg` when reporting them together.

Examples
--------
A toy model that says class 1 whenever the top-left corner is bright:

>>> import numpy as np
>>> def predict_proba(x):
...     bright = x[:, :4, :4].mean(axis=(1, 2, 3)) > 128
...     return np.stack([~bright, bright], axis=1).astype(float) * 0.9 + 0.05
>>> rng = np.random.default_rng(0)
>>> images = rng.integers(0, 100, size=(400, 24, 24, 3), dtype=np.uint8)
>>> labels = np.r_[np.zeros(300, int), np.ones(100, int)]
>>> images[300:, :4, :4] = 255                           # the class's own images carry the cue
>>> put = Patch(region="top-left", size=0.2, colour=(255, 255, 255))
>>> remove = Patch(region="top-left", size=0.2, colour=(0, 0, 0))
>>> result = measure_intervention(predict_proba, images, labels, 1, put, remove, seed=0,
...                               class_name="one")
>>> result.flip_rate, result.baseline_rate, result.confirmed
(1.0, 0.0, True)
>>> print(result.describe())
putting patch(top-left, 0.2, (255, 255, 255)) on 300 images of other classes turns 100% (99–100%) into
'one' (0.0% without); taking it off 100 'one' images lowers recall from 100% to 0.0% (p < 0.001): confirmed
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy import stats as _st

from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.errors import ConfigError, DataError, ModelError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["Cue", "Patch", "Border", "Tint", "Invert", "Blur", "Background", "Erase", "CallableCue", "CUES",
           "REGIONS", "parse_cue", "parse_intervention", "measure_intervention", "InterventionResult",
           "mcnemar_exact", "cue_for_auto_attribute", "auto_intervention"]

#: where a :class:`Patch` can go
REGIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")


def _as_batch(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise DataError(f"a cue applies to uint8 N×H×W or N×H×W×C images, got {x.dtype} {x.shape}")
    return x


def _colour(x: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    """The colour as a float vector that broadcasts over ``x``'s channels (grey: its luminance)."""
    c = np.asarray(colour, dtype=np.float32)
    if x.ndim == 3 or x.shape[-1] == 1:
        grey = np.float32(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
        return np.array([grey], dtype=np.float32) if x.ndim == 4 else grey  # type: ignore[return-value]
    return c[:x.shape[-1]] if x.shape[-1] <= 3 else np.r_[c, np.full(x.shape[-1] - 3, 255.0, np.float32)]


class Cue:
    """Base of the cue transforms: ``apply(images) -> images`` on uint8 N×H×W(×C), and a ``name``.

    ``apply`` never changes its input; it returns a new array of the same shape and dtype.
    """

    type: ClassVar[str] = ""

    def apply(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def name(self) -> str:
        params = ", ".join(_fmt(v) if k not in _QUIET else f"{k}={_fmt(v)}"
                           for k, v in asdict(self).items()  # type: ignore[call-overload]
                           if not (k in _QUIET and v == _QUIET[k]))
        return f"{self.type}({params})"

    def to_dict(self) -> dict[str, Any]:
        """The config mapping that :func:`parse_cue` turns back into this cue."""
        return {"type": self.type, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in asdict(self).items()}}  # type: ignore[call-overload]


# parameters shown only when they differ from these values
_QUIET: dict[str, Any] = {"margin": 0.0, "undo": False}


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(str(int(c)) if float(c).is_integer() else str(c) for c in v) + ")"
    return str(v)


@dataclass(frozen=True)
class Patch(Cue):
    """A filled square of side ``size × min(H, W)`` in a corner or the centre, ``margin × min(H, W)`` in.

    Examples
    --------
    >>> x = np.zeros((1, 10, 10, 3), np.uint8)
    >>> y = Patch(region="bottom-right", size=0.3, colour=(255, 0, 0)).apply(x)
    >>> int(y[0, 7:, 7:, 0].min()), int(y[0, :7, :, 0].max()), int(y[0, 7:, 7:, 1].max())
    (255, 0, 0)
    """

    type: ClassVar[str] = "patch"
    region: str = "top-left"
    size: float = 0.2
    colour: tuple[float, ...] = (255.0, 255.0, 255.0)
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ParameterError(f"The 'region' parameter of patch must be one of {list(REGIONS)}. "
                                 f"Got {self.region!r} instead.", parameter="region")
        if not 0.0 < float(self.size) <= 1.0 or not 0.0 <= float(self.margin) < 0.5:
            raise ParameterError(f"patch size must be in (0, 1] and margin in [0, 0.5). "
                                 f"Got size={self.size!r}, margin={self.margin!r}.", parameter="size")
        object.__setattr__(self, "colour", tuple(float(c) for c in self.colour))

    def box(self, h: int, w: int) -> tuple[slice, slice]:
        """Rows and columns the patch covers on an H×W image."""
        side = max(1, round(float(self.size) * min(h, w)))
        m = round(float(self.margin) * min(h, w))
        top = {"top": m, "bottom": h - m - side}
        left = {"left": m, "right": w - m - side}
        if self.region == "centre":
            r0, c0 = (h - side) // 2, (w - side) // 2
        else:
            v, hz = self.region.split("-")
            r0, c0 = top[v], left[hz]
        return slice(max(r0, 0), max(r0, 0) + side), slice(max(c0, 0), max(c0, 0) + side)

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images).copy()
        rows, cols = self.box(x.shape[1], x.shape[2])
        x[:, rows, cols] = np.clip(np.round(_colour(x, self.colour)), 0, 255).astype(np.uint8)
        return x


@dataclass(frozen=True)
class Border(Cue):
    """A frame ``width`` pixels wide along every edge.

    Examples
    --------
    >>> y = Border(width=1, colour=(128, 128, 128)).apply(np.zeros((1, 5, 5, 3), np.uint8))
    >>> y[0, :, :, 0].tolist()[0], y[0, 2, 1:4, 0].tolist()
    ([128, 128, 128, 128, 128], [0, 0, 0])
    """

    type: ClassVar[str] = "border"
    width: int = 1
    colour: tuple[float, ...] = (128.0, 128.0, 128.0)

    def __post_init__(self) -> None:
        if int(self.width) < 1 or int(self.width) != self.width:
            raise ParameterError(f"The 'width' parameter of border must be an int >= 1 (pixels). "
                                 f"Got {self.width!r} instead.", parameter="width")
        object.__setattr__(self, "colour", tuple(float(c) for c in self.colour))

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images).copy()
        k = int(self.width)
        c = np.clip(np.round(_colour(x, self.colour)), 0, 255).astype(np.uint8)
        x[:, :k] = c
        x[:, -k:] = c
        x[:, :, :k] = c
        x[:, :, -k:] = c
        return x


@dataclass(frozen=True)
class Tint(Cue):
    """Blend every pixel towards ``colour``: ``(1 - strength) · x + strength · colour``.

    ``undo=True`` applies the inverse, ``(x - strength · colour) / (1 - strength)``: it takes off
    a tint of the same colour and strength (up to rounding; pixels the tint clipped stay clipped).

    Examples
    --------
    >>> x = np.full((1, 2, 2, 3), 100, np.uint8)
    >>> t = Tint(colour=(200, 0, 0), strength=0.5)
    >>> undo = Tint(colour=(200, 0, 0), strength=0.5, undo=True)
    >>> t.apply(x)[0, 0, 0].tolist(), undo.apply(t.apply(x))[0, 0, 0].tolist()
    ([150, 50, 50], [100, 100, 100])
    """

    type: ClassVar[str] = "tint"
    colour: tuple[float, ...] = (255.0, 0.0, 0.0)
    strength: float = 0.5
    undo: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) < 1.0:
            raise ParameterError(f"The 'strength' parameter of tint must be a float in [0, 1). "
                                 f"Got {self.strength!r} instead.", parameter="strength")
        object.__setattr__(self, "colour", tuple(float(c) for c in self.colour))

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images).astype(np.float32)
        s, c = np.float32(self.strength), _colour(x, self.colour)
        y = (x - s * c) / (1 - s) if self.undo else (1 - s) * x + s * c
        return np.clip(np.round(y), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Invert(Cue):
    """``255 - x``: a light background for a dark one, and back.

    Examples
    --------
    >>> Invert().apply(np.array([[[0, 200]]], np.uint8)).tolist()
    [[[255, 55]]]
    """

    type: ClassVar[str] = "invert"

    def apply(self, images: np.ndarray) -> np.ndarray:
        return 255 - _as_batch(images)

    @property
    def name(self) -> str:
        return "invert()"


@dataclass(frozen=True)
class Blur(Cue):
    """Gaussian blur with standard deviation ``radius`` pixels (per channel, edges reflected).

    Examples
    --------
    >>> x = np.zeros((1, 9, 9), np.uint8); x[0, 4, 4] = 255
    >>> y = Blur(radius=1.0).apply(x)
    >>> int(y[0, 4, 4]) < 255, int(y[0, 4, 5]) > 0
    (True, True)
    """

    type: ClassVar[str] = "blur"
    radius: float = 1.0

    def __post_init__(self) -> None:
        if not float(self.radius) > 0:
            raise ParameterError(f"The 'radius' parameter of blur must be a float > 0. Got {self.radius!r} instead.",
                                 parameter="radius")

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images)
        sigma = (0.0, float(self.radius), float(self.radius)) + ((0.0,) if x.ndim == 4 else ())
        y = ndimage.gaussian_filter(x.astype(np.float32), sigma=sigma, mode="reflect")
        return np.clip(np.round(y), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Background(Cue):
    """Repaint the background: pixels within ``tolerance`` of the image's background colour.

    The background colour of each image is the per-channel median of its outermost ring of pixels
    (for an object on a plain backdrop, the backdrop's colour); a pixel belongs to the background
    when no channel differs from it by more than ``tolerance``.

    Examples
    --------
    >>> x = np.zeros((1, 6, 6, 3), np.uint8); x[0, 2:4, 2:4] = 200      # an object on black
    >>> y = Background(colour=(0, 0, 255)).apply(x)
    >>> y[0, 0, 0].tolist(), y[0, 2, 2].tolist()
    ([0, 0, 255], [200, 200, 200])
    """

    type: ClassVar[str] = "background"
    colour: tuple[float, ...] = (255.0, 255.0, 255.0)
    tolerance: float = 40.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "colour", tuple(float(c) for c in self.colour))

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images)
        x4 = x[..., None] if x.ndim == 3 else x
        bg = _backdrop(x4, 1)                                                                # (n, C)
        near = (np.abs(x4.astype(np.float32) - bg[:, None, None]) <= float(self.tolerance)).all(axis=-1)
        out = x4.copy()
        out[near] = np.clip(np.round(_colour(x4, self.colour)), 0, 255).astype(np.uint8)
        return out[..., 0] if x.ndim == 3 else out


@dataclass(frozen=True)
class CallableCue(Cue):
    """A user's function ``package.module:function(images, **kwargs) -> images``, imported by name.

    Examples
    --------
    >>> cue = CallableCue("numpy:fliplr")
    >>> cue.apply(np.arange(4, dtype=np.uint8).reshape(1, 2, 2)).tolist()
    [[[2, 3], [0, 1]]]
    """

    type: ClassVar[str] = "callable"
    target: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    key: str = "cue"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fn", _import_callable(self.target, self.key))

    @property
    def name(self) -> str:
        return f"callable({self.target})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "callable", "function": self.target, **({"kwargs": dict(self.kwargs)} if self.kwargs else {})}

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images)
        try:
            y = np.asarray(self._fn(x.copy(), **dict(self.kwargs)))  # type: ignore[attr-defined]
        except Exception as exc:
            raise ModelError(f"cue function {self.target} failed on a batch of shape {x.shape}: {exc}") from exc
        if y.shape != x.shape:
            raise ModelError(f"cue function {self.target} returned shape {y.shape} for images of shape {x.shape}")
        return np.clip(y, 0, 255).astype(np.uint8) if y.dtype != np.uint8 else y


def _import_callable(target: str, key: str) -> Callable[..., Any]:
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise ConfigError(f"must name a function as 'package.module:function', got {target!r}", key=key, value=target)
    module_name, attr = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r}: {exc}", key=key, value=target) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}", key=key, value=target)
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{target} is not callable", key=key, value=target)
    return obj


#: cue type (the ``type`` key of a config mapping) → class
def _backdrop(x4: np.ndarray, width: int) -> np.ndarray:
    """Per-image backdrop colour (n, C): the per-channel median of an outer ring ``width`` pixels wide."""
    k = max(1, min(int(width), x4.shape[1] // 2, x4.shape[2] // 2))
    n, c = x4.shape[0], x4.shape[-1]
    ring = np.concatenate([x4[:, :k].reshape(n, -1, c), x4[:, -k:].reshape(n, -1, c),
                           x4[:, k:-k, :k].reshape(n, -1, c), x4[:, k:-k, -k:].reshape(n, -1, c)], axis=1)
    return np.median(ring, axis=1).astype(np.float32)


@dataclass(frozen=True)
class Erase(Cue):
    """Paint a square (placed as :class:`Patch` places it) with each image's own backdrop colour:
    takes a mark off, whatever its colour.

    The backdrop is the per-channel median of an outer ring 1/8 of the shorter side wide (as
    :mod:`~sparsecheck.analysis.auto_attributes` measures it), so a thin frame does not set it.

    Examples
    --------
    >>> x = np.full((1, 16, 16, 3), 30, np.uint8); x[0, :3, :3] = 255          # a mark on grey 30
    >>> y = Erase(region="top-left", size=0.25).apply(x)
    >>> int(y[0, :4, :4].max()), int(y[0, 8, 8, 0])
    (30, 30)
    """

    type: ClassVar[str] = "erase"
    region: str = "top-left"
    size: float = 0.25
    margin: float = 0.0

    def __post_init__(self) -> None:
        Patch(region=self.region, size=self.size, margin=self.margin)  # the same checks

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _as_batch(images)
        x4 = (x[..., None] if x.ndim == 3 else x).copy()
        h, w = x4.shape[1], x4.shape[2]
        rows, cols = Patch(region=self.region, size=self.size, margin=self.margin).box(h, w)
        bg = _backdrop(x4, round(min(h, w) / 8))
        x4[:, rows, cols] = np.clip(np.round(bg), 0, 255).astype(np.uint8)[:, None, None, :]
        return x4[..., 0] if x.ndim == 3 else x4


CUES: dict[str, type[Cue]] = {c.type: c for c in (Patch, Border, Tint, Invert, Blur, Background, Erase,
                                                   CallableCue)}
_TUPLES = {"colour"}


def parse_cue(spec: Mapping[str, Any] | Cue, *, key: str = "cue") -> Cue:
    """Build a cue from a config mapping ``{"type": ..., <parameters>}`` (a :class:`Cue` passes through).

    Errors are :class:`~sparsecheck.errors.ConfigError` naming ``key`` (e.g.
    ``data.interventions.corner_mark.put.size``).

    Examples
    --------
    >>> parse_cue({"type": "patch", "region": "top-left", "size": 0.2, "colour": [255, 0, 0]}).name
    'patch(top-left, 0.2, (255, 0, 0))'
    >>> parse_cue({"type": "sparkle"}, key="x.put")
    Traceback (most recent call last):
    ...
    sparsecheck.errors.ConfigError: x.put.type: unknown cue type 'sparkle'; one of ['background', 'blur',
    'border', 'callable', 'erase', 'invert', 'patch', 'tint']
    """
    if isinstance(spec, Cue):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"must be a mapping with a 'type', got {type(spec).__name__}", key=key, value=spec)
    kind = spec.get("type")
    if kind not in CUES:
        raise ConfigError(f"unknown cue type {kind!r}; one of {sorted(CUES)}", key=f"{key}.type", value=kind)
    params = {k: v for k, v in spec.items() if k != "type"}
    if kind == "callable":
        unknown = sorted(set(params) - {"function", "kwargs"})
        if unknown or "function" not in params:
            raise ConfigError("a callable cue takes 'function' ('package.module:function') and optional 'kwargs'"
                              + (f"; unknown keys {unknown}" if unknown else ""), key=key, value=dict(spec))
        kwargs = params.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError("must be a mapping", key=f"{key}.kwargs", value=kwargs)
        return CallableCue(target=params["function"], kwargs=dict(kwargs), key=f"{key}.function")
    cls = CUES[kind]
    allowed = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    for name, value in params.items():
        if name not in allowed:
            raise ConfigError(f"unknown parameter of a {kind} cue; allowed: {sorted(allowed)}",
                              key=f"{key}.{name}", value=value)
        if name in _TUPLES and (not isinstance(value, (list, tuple)) or len(value) != 3
                                or not all(isinstance(c, (int, float)) and 0 <= c <= 255 for c in value)):
            raise ConfigError("must be [r, g, b] with values in 0..255", key=f"{key}.{name}", value=value)
    try:
        return cls(**{k: tuple(v) if k in _TUPLES else v for k, v in params.items()})
    except ParameterError as exc:
        raise ConfigError(str(exc), key=f"{key}.{exc.parameter}" if exc.parameter else key,
                          value=params.get(exc.parameter or "")) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad {kind} cue parameters: {exc}", key=key, value=dict(spec)) from exc


def parse_intervention(spec: Mapping[str, Any], *, key: str = "intervention") -> tuple[Cue, Cue | None]:
    """``{"put": <cue>, "remove": <cue> | None}`` → ``(put, remove)``.

    Examples
    --------
    >>> put, remove = parse_intervention({"put": {"type": "invert"}, "remove": None})
    >>> put.name, remove
    ('invert()', None)
    """
    if not isinstance(spec, Mapping):
        raise ConfigError("must be a mapping with 'put' and optional 'remove'", key=key, value=spec)
    unknown = sorted(set(spec) - {"put", "remove"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; an intervention has 'put' and optional 'remove'",
                          key=f"{key}.{unknown[0]}", value=spec[unknown[0]])
    if spec.get("put") is None:
        raise ConfigError("an intervention needs a 'put' cue", key=f"{key}.put", value=None)
    put = parse_cue(spec["put"], key=f"{key}.put")
    remove = None if spec.get("remove") is None else parse_cue(spec["remove"], key=f"{key}.remove")
    return put, remove


def mcnemar_exact(gained: int, lost: int) -> float:
    """One-sided exact McNemar p-value that ``gained`` discordant pairs outnumber ``lost`` ones.

    Examples
    --------
    >>> round(mcnemar_exact(9, 1), 4), mcnemar_exact(0, 0)
    (0.0107, 1.0)
    """
    n = int(gained) + int(lost)
    if n == 0:
        return 1.0
    return float(_st.binom.sf(int(gained) - 1, n, 0.5))


@dataclass
class InterventionResult:
    """What putting a cue on (and taking it off) did to a model's predictions for one class.

    Attributes
    ----------
    cue, remove : str
        Names of the cue put on and of the one taking it off (None when not measured).
    class_index : int
        The class; ``class_name`` its name.
    n_put : int
        Other-class images the cue was put on.
    flip_rate, flip_ci_low, flip_ci_high : float
        Share of them predicted as the class *with* the cue, and its Wilson interval.
    baseline_rate : float
        Share of the same images predicted as the class without the cue.
    flipped_to, flipped_from : int
        Discordant pairs: images that became the class, and images that stopped being it.
    put_p_value : float
        One-sided exact McNemar p-value of ``flipped_to`` against ``flipped_from``.
    prob_rise, prob_rise_ci_low, prob_rise_ci_high : float
        Mean rise of the class's probability on those images (normal interval).
    n_remove : int
        Own-class images the cue was taken off (0 when not measured).
    recall_before, recall_after : float
        The class's recall on them before and after, with Wilson intervals (``*_ci_low/high``).
    lost, regained : int
        Images no longer / newly predicted as the class after taking the cue off.
    remove_p_value : float
        One-sided exact McNemar p-value of ``lost`` against ``regained``.
    prob_fall, prob_fall_ci_low, prob_fall_ci_high : float
        Mean fall of the class's probability on them.
    confirmed : bool
        The rule in the module docstring; ``confirmed_by`` lists ``"put"`` and/or ``"remove"``.
    margin, min_fall, alpha, confidence : float
        The rule's parameters.
    """

    cue: str
    remove: str | None
    class_index: int
    class_name: str
    n_put: int
    flip_rate: float
    flip_ci_low: float
    flip_ci_high: float
    baseline_rate: float
    flipped_to: int
    flipped_from: int
    put_p_value: float
    prob_rise: float
    prob_rise_ci_low: float
    prob_rise_ci_high: float
    n_remove: int
    recall_before: float
    recall_before_ci_low: float
    recall_before_ci_high: float
    recall_after: float
    recall_after_ci_low: float
    recall_after_ci_high: float
    lost: int
    regained: int
    remove_p_value: float
    prob_fall: float
    prob_fall_ci_low: float
    prob_fall_ci_high: float
    confirmed: bool
    confirmed_by: list[str]
    margin: float
    min_fall: float
    alpha: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence for a finding (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One sentence: "putting tint(...) on 1,800 images of other classes turns 41% (39–43%) into 'seven' (0.4%
        without); taking it off ... lowers recall from ... to ...: confirmed"."""
        parts = []
        if self.n_put:
            parts.append(f"putting {self.cue} on {self.n_put:,} images of other classes turns {_pct(self.flip_rate)} "
                         f"({_pct(self.flip_ci_low, False)}–{_pct(self.flip_ci_high)}) into '{self.class_name}' "
                         f"({_pct(self.baseline_rate)} without)")
        if self.n_remove:
            parts.append(f"taking it off {self.n_remove:,} '{self.class_name}' images lowers recall from "
                         f"{_pct(self.recall_before)} to {_pct(self.recall_after)} ({_p(self.remove_p_value)})")
        verdict = "confirmed" if self.confirmed else "not confirmed"
        return "; ".join(parts) + f": {verdict}" if parts else f"no images to intervene on: {verdict}"


def _pct(v: float, sign: bool = True) -> str:
    if not math.isfinite(v):
        return "n/a"
    p = 100 * v
    return (f"{p:.1f}" if p < 10 else f"{p:.0f}") + ("%" if sign else "")


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def measure_intervention(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    class_index: int,
    put: Cue | Mapping[str, Any],
    remove: Cue | Mapping[str, Any] | None = None,
    *,
    has_cue: np.ndarray | None = None,
    sample: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    confidence: float = 0.95,
    margin: float = 0.05,
    min_fall: float = 0.05,
    alpha: float = 0.05,
    class_name: str | None = None,
) -> InterventionResult:
    """Put a cue on other classes' images and take it off the class's own; measure the model.

    Parameters
    ----------
    predict_proba : callable
        uint8 images (b, H, W[, C]) → class probabilities (b, k) (the model, input transform
        included); called on batches of at most ``batch_size``.
    images : ndarray uint8 (n, H, W[, C])
        May be a memory map: rows are read batch by batch.
    labels : ndarray (n,)
        True labels (class indices).
    class_index : int
        The class the cue is suspected to push towards.
    put, remove : Cue or config mapping
        The cue to put on other classes' images; the transform that takes it off the class's own
        (or puts the counter-value on). ``remove=None`` skips the take-off measurement.
    has_cue : ndarray (n,) bool, optional
        Which images already carry the cue: put-on uses the other-class images *without* it,
        take-off the class's images *with* it. Default: all of them.
    sample : int, optional
        At most this many images on each side, drawn with ``seed``.
    batch_size : int
    seed : int
        Seeds the sample.
    confidence : float
        Coverage of the intervals.
    margin, min_fall, alpha : float
        The ``confirmed`` rule (module docstring).
    class_name : str, optional
        For :meth:`InterventionResult.describe` (default the index).

    Returns
    -------
    InterventionResult
    """
    put_cue = parse_cue(put, key="put")
    remove_cue = None if remove is None else parse_cue(remove, key="remove")
    labels = np.asarray(labels)
    n = len(labels)
    if images.shape[0] != n:
        raise DataError(f"images have {images.shape[0]} rows but labels {n}")
    if int(batch_size) < 1:
        raise ParameterError(f"The 'batch_size' parameter of measure_intervention must be an int >= 1. "
                             f"Got {batch_size!r} instead.", parameter="batch_size")
    if not 0 < confidence < 1:
        raise ParameterError(f"The 'confidence' parameter of measure_intervention must be in (0, 1). "
                             f"Got {confidence!r} instead.", parameter="confidence")
    cue_mask = np.zeros(n, dtype=bool) if has_cue is None else np.asarray(has_cue, dtype=bool)
    if cue_mask.shape != (n,):
        raise DataError(f"has_cue must have shape ({n},), got {cue_mask.shape}")
    c = int(class_index)
    rng = np.random.default_rng(seed)
    others = np.flatnonzero((labels != c) & ~cue_mask)
    own = np.flatnonzero((labels == c) & (cue_mask if has_cue is not None else True))
    if sample is not None:
        others = np.sort(rng.choice(others, min(int(sample), others.size), replace=False))
        own = np.sort(rng.choice(own, min(int(sample), own.size), replace=False))
    z = float(_st.norm.ppf(0.5 + confidence / 2))

    before, after, dprob = _run(predict_proba, images, others, put_cue, c, int(batch_size))
    n_put = others.size
    flip_k = int(after.sum())
    lo, hi = wilson_interval(np.array([flip_k]), np.array([n_put]), confidence)
    flipped_to, flipped_from = int((after & ~before).sum()), int((before & ~after).sum())
    rise, rise_lo, rise_hi = _mean_ci(dprob, z)

    if remove_cue is not None and own.size:
        rb, ra, dp = _run(predict_proba, images, own, remove_cue, c, int(batch_size))
    else:
        rb = ra = np.zeros(0, dtype=bool)
        dp = np.zeros(0)
    n_rm = rb.size
    (rb_lo, ra_lo), (rb_hi, ra_hi) = wilson_interval(np.array([rb.sum(), ra.sum()]), np.array([n_rm, n_rm]),
                                                     confidence)
    lost, regained = int((rb & ~ra).sum()), int((ra & ~rb).sum())
    fall, fall_lo, fall_hi = _mean_ci(-dp, z)

    nan = float("nan")
    flip_rate = flip_k / n_put if n_put else nan
    baseline = float(before.mean()) if n_put else nan
    put_p = mcnemar_exact(flipped_to, flipped_from)
    rm_p = mcnemar_exact(lost, regained)
    rec_b = float(rb.mean()) if n_rm else nan
    rec_a = float(ra.mean()) if n_rm else nan
    by = []
    if n_put and float(lo[0]) > baseline + margin and put_p < alpha:
        by.append("put")
    if n_rm and rec_b - rec_a >= min_fall and rm_p < alpha:
        by.append("remove")
    result = InterventionResult(
        cue=put_cue.name, remove=None if remove_cue is None else remove_cue.name, class_index=c,
        class_name=str(c if class_name is None else class_name), n_put=int(n_put), flip_rate=flip_rate,
        flip_ci_low=float(lo[0]) if n_put else nan, flip_ci_high=float(hi[0]) if n_put else nan,
        baseline_rate=baseline, flipped_to=flipped_to, flipped_from=flipped_from, put_p_value=put_p,
        prob_rise=rise, prob_rise_ci_low=rise_lo, prob_rise_ci_high=rise_hi, n_remove=int(n_rm),
        recall_before=rec_b, recall_before_ci_low=float(rb_lo) if n_rm else nan,
        recall_before_ci_high=float(rb_hi) if n_rm else nan, recall_after=rec_a,
        recall_after_ci_low=float(ra_lo) if n_rm else nan, recall_after_ci_high=float(ra_hi) if n_rm else nan,
        lost=lost, regained=regained, remove_p_value=rm_p, prob_fall=fall, prob_fall_ci_low=fall_lo,
        prob_fall_ci_high=fall_hi, confirmed=bool(by), confirmed_by=by, margin=float(margin),
        min_fall=float(min_fall), alpha=float(alpha), confidence=float(confidence))
    logger.info("intervention %s on class %s: %s", put_cue.name, result.class_name, result.describe())
    return result


def _run(predict_proba: Callable[[np.ndarray], np.ndarray], images: np.ndarray, rows: np.ndarray, cue: Cue,
         c: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted-as-``c`` before and after the cue, and the change of ``c``'s probability, on ``rows``."""
    before = np.zeros(rows.size, dtype=bool)
    after = np.zeros(rows.size, dtype=bool)
    delta = np.zeros(rows.size)
    for start in range(0, rows.size, batch_size):
        idx = rows[start:start + batch_size]
        x = np.asarray(images[idx])
        p0 = _probs(predict_proba, x, c)
        p1 = _probs(predict_proba, cue.apply(x), c)
        sl = slice(start, start + idx.size)
        before[sl], after[sl] = p0.argmax(1) == c, p1.argmax(1) == c
        delta[sl] = p1[:, c] - p0[:, c]
    return before, after, delta


def _probs(predict_proba: Callable[[np.ndarray], np.ndarray], x: np.ndarray, c: int) -> np.ndarray:
    p = np.asarray(predict_proba(x), dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != x.shape[0] or not 0 <= c < p.shape[1]:
        raise ModelError(f"predict_proba returned shape {p.shape} for {x.shape[0]} images; "
                         f"expected ({x.shape[0]}, k) with class {c} < k")
    return p


def _mean_ci(v: np.ndarray, z: float) -> tuple[float, float, float]:
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return m, m - z * se, m + z * se


# --------------------------------------------------------------------------- cues of automatic attributes
_AUTO_REGION = {"corner_tl": "top-left", "corner_tr": "top-right", "corner_bl": "bottom-left",
                "corner_br": "bottom-right", "centre": "centre"}


def _family_rgb(family: str) -> tuple[float, float, float] | None:
    """A saturated colour in the middle of a hue family (``auto:hue`` values)."""
    import colorsys

    from sparsecheck.analysis.auto_attributes import COLOUR_FAMILIES

    span = COLOUR_FAMILIES.get(family)
    if span is None:
        return None
    start, end = span
    mid = ((start + (end - start) % 360.0 / 2.0) % 360.0) / 360.0
    r, g, b = colorsys.hsv_to_rgb(mid, 0.85, 0.9)
    return (round(r * 255.0), round(g * 255.0), round(b * 255.0))


def auto_intervention(attribute: str, value: str) -> tuple[Cue, Cue | None] | None:
    """``(put, remove)`` for an automatic attribute's value, or None where no cue exists.

    ``put`` is :func:`cue_for_auto_attribute`. ``remove`` takes the value off the class's own
    images: a corner mark (``auto:<corner>`` or ``auto:<corner>_colour``) is erased with the image's
    own backdrop (:class:`Erase`, a quarter of the side, so a mark a little way in is covered);
    an inversion is undone by inverting again; a tint or a centre patch has none.

    Examples
    --------
    >>> put, remove = auto_intervention("auto:corner_br_colour", "blue")
    >>> put.name, remove.name
    ('patch(bottom-right, 0.2, (34, 67, 230))', 'erase(bottom-right, 0.25)')
    >>> auto_intervention("auto:sharpness", "low") is None
    True
    """
    put = cue_for_auto_attribute(attribute, value)
    if put is None:
        return None
    if isinstance(put, Invert):
        return put, put
    region = str(attribute)[len("auto:"):].partition("_colour")[0]
    if region.startswith("corner") and isinstance(put, Patch):
        return put, Erase(region=_AUTO_REGION[region], size=0.25)
    return put, None


def cue_for_auto_attribute(attribute: str, value: str) -> Cue | None:
    """The intervention that puts an automatic attribute's value on an image, where there is one.

    ``auto:hue=<colour>`` → a tint of that colour; ``auto:<corner|centre>=high|low`` → a white or
    black patch there; ``auto:<corner|centre>_colour=<colour>`` → a patch of that colour;
    ``auto:inverted=yes`` → inversion. Other attributes (brightness, sharpness, sizes, ...) have
    none: their findings stay associations to review.

    Examples
    --------
    >>> cue_for_auto_attribute("auto:corner_tl", "high").to_dict()["region"]
    'top-left'
    >>> cue_for_auto_attribute("auto:inverted", "yes").name, cue_for_auto_attribute("auto:sharpness", "low") is None
    ('invert()', True)
    """
    from sparsecheck.analysis.auto_attributes import AUTO_PREFIX

    if not str(attribute).startswith(AUTO_PREFIX):
        return None
    name = str(attribute)[len(AUTO_PREFIX):]
    value = str(value)
    if name == "inverted":
        return Invert() if value == "yes" else None
    if name == "hue":
        rgb = _family_rgb(value)
        return None if rgb is None else Tint(colour=rgb, strength=0.5)
    region, _, colour = name.partition("_colour")
    if region in _AUTO_REGION:
        if name.endswith("_colour"):
            rgb = _family_rgb(value)
            return None if rgb is None else Patch(region=_AUTO_REGION[region], size=0.2, colour=rgb)
        if value in ("high", "low"):
            shade = 255.0 if value == "high" else 0.0
            return Patch(region=_AUTO_REGION[region], size=0.2, colour=(shade, shade, shade))
    return None
