"""The cue library: what a config's ``data.interventions`` can put on an image, and its parser.

A cue is a small declarative object (pandera-style: a name, parameters, one verb) with
``apply(images) -> images`` on uint8 N×H×W×C batches: :class:`Patch`, :class:`Border`,
:class:`Tint`, :class:`Invert`, :class:`Blur`, :class:`Background`, :class:`Erase`, and
:class:`CallableCue` wrapping a user's ``package.module:function``. :func:`parse_cue` and
:func:`parse_intervention` build them from a config mapping such as::

    {"put": {"type": "tint", "colour": [200, 30, 30], "strength": 0.6},
     "remove": {"type": "tint", "colour": [200, 30, 30], "strength": 0.6, "undo": true}}

The cues *estimated from the data* (a region transplanted from images that carry a value, a colour
mapping, a texture) are in :mod:`sparsecheck.analysis.cues.estimate`; they share the :class:`Cue`
interface but are not written in a config.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
from scipy import ndimage

from sparsecheck.errors import ConfigError, DataError, ModelError, ParameterError

__all__ = ["cue_spec", "Cue", "Patch", "Border", "Tint", "Invert", "Blur", "Background", "Erase", "CallableCue", "CUES",
           "REGIONS", "parse_cue", "parse_intervention", "backdrop"]

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

    def apply_labelled(self, images: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """``apply``, told each image's class (a cue copied from donor images picks a donor of the
        same class; the others ignore it)."""
        return self.apply(images)

    @property
    def control(self) -> "Cue | None":
        """The cue to compare with instead of the untouched image (None: compare with the original)."""
        return None

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
        bg = backdrop(x4, 1)                                                                # (n, C)
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


def backdrop(x4: np.ndarray, width: int) -> np.ndarray:
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
        bg = backdrop(x4, round(min(h, w) / 8))
        x4[:, rows, cols] = np.clip(np.round(bg), 0, 255).astype(np.uint8)[:, None, None, :]
        return x4[..., 0] if x.ndim == 3 else x4


#: cue type (the ``type`` key of a config mapping) → class
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
    kind, params = cue_spec(spec, CUES, key=key, own_keys=("callable",))
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
    for name, value in params.items():
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


def cue_spec(spec: Any, cues: Mapping[str, Any], *, key: str, what: str = "cue",
             own_keys: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """A cue spec's ``type`` (one of ``cues``) and its other keys, each a field of that cue's class
    unless the type is in ``own_keys`` (its parser checks them); the check every modality's cue
    parser makes, with a ``ConfigError`` that names the offending key."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"must be a mapping with a 'type', got {type(spec).__name__}", key=key, value=spec)
    kind = spec.get("type")
    if kind not in cues:
        raise ConfigError(f"unknown {what} type {kind!r}; one of {sorted(cues)}", key=f"{key}.type", value=kind)
    params = {k: v for k, v in spec.items() if k != "type"}
    fields = getattr(cues[kind], "__dataclass_fields__", None)
    if fields is not None and kind not in own_keys:
        allowed = set(fields) - {"type"}
        for name, value in params.items():
            if name not in allowed:
                raise ConfigError(f"unknown parameter of a {kind} cue; allowed: {sorted(allowed)}",
                                  key=f"{key}.{name}", value=value)
    return str(kind), params


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

