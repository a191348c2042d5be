"""The cues learned from the data, as transforms: a region copied from typical images with a value,
a colour mapping, noise, JPEG compression (:func:`~sparsecheck.analysis.cues.estimate_cue` builds
them; a config cannot declare them, since their content comes from the images).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sparsecheck.analysis.cues.library import Cue
from sparsecheck.errors import DataError

__all__ = ["Transplant", "ColourMap", "AddNoise", "Jpeg", "image_seed"]


def image_seed(image: np.ndarray) -> int:
    """A stable per-image number (CRC-32 of its bytes): the same target gets the same donor every time."""
    return zlib.crc32(np.ascontiguousarray(image).tobytes())


def _class_medians(images: np.ndarray, labels: np.ndarray) -> dict[Any, np.ndarray]:
    """Per class, the per-pixel median image (uint8) of ``images`` of that class."""
    out = {}
    for k in np.unique(labels):
        out[k] = np.median(images[labels == k], axis=0).round().astype(np.uint8)
    return out


@dataclass(frozen=True, eq=False)
class Transplant(Cue):
    """Copy a region (``mask``, H×W in [0, 1]) of a typical image with the cue onto each target.

    ``cue_images`` and ``control_images`` map a class to an image: the per-pixel *median* of the
    images of that class that carry the value, and of those that do not
    (:meth:`from_pools`). A median keeps what the images share there (the mark, the band) and
    drops what a few of them add (another shortcut, an object's part). A target of class k gets
    class k's region when both maps hold k; else that of a class drawn (by a hash of the target's
    pixels) from those they both hold. Its :attr:`control` copies the same region from the other
    map, of the same class, so that the cued and the control image differ only in the cue, never in
    which class's look the region shows or in the seam of the copy.

    Examples
    --------
    >>> mask = np.zeros((4, 4), np.float32); mask[0, 0] = 1
    >>> t = Transplant.from_pools(mask, np.full((3, 4, 4, 3), 200, np.uint8), np.zeros(3, int),
    ...                           np.full((3, 4, 4, 3), 9, np.uint8), np.zeros(3, int), label="a mark")
    >>> x = np.zeros((1, 4, 4, 3), np.uint8)
    >>> int(t.apply(x)[0, 0, 0, 0]), int(t.control.apply(x)[0, 0, 0, 0]), int(t.apply(x)[0, 1, 1, 0])
    (200, 9, 0)
    """

    type: ClassVar[str] = "transplant"
    mask: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    cue_images: dict[Any, np.ndarray] = field(default_factory=dict)
    control_images: dict[Any, np.ndarray] = field(default_factory=dict)
    label: str = "a region"
    n_images: int = 0

    @classmethod
    def from_pools(cls, mask: np.ndarray, donors: np.ndarray, donor_labels: np.ndarray, others: np.ndarray,
                   other_labels: np.ndarray, *, label: str = "a region") -> "Transplant":
        """The transplant of ``donors``' region, controlled by ``others``' (each a class's median)."""
        return cls(mask=mask, cue_images=_class_medians(donors, donor_labels),
                   control_images=_class_medians(others, other_labels), label=label,
                   n_images=int(len(donors)))

    @property
    def control(self) -> "Transplant":
        """The same region from the images without the cue (same class as the cue's)."""
        return Transplant(mask=self.mask, cue_images=self.control_images, control_images=self.cue_images,
                          label=f"{self.label}, control", n_images=self.n_images)

    def apply(self, images: np.ndarray) -> np.ndarray:
        return self.apply_labelled(images, None)

    def apply_labelled(self, images: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        x = np.asarray(images)
        shared = [k for k in self.cue_images if k in self.control_images]
        if not shared or len(x) == 0:
            return x.copy()
        first = self.cue_images[shared[0]]
        d_shape = first.shape if x.ndim == 4 else first.shape[:-1]
        if x.shape[1:] != d_shape:
            raise DataError(f"a transplant from {d_shape} images cannot go onto images of {x.shape[1:]}")
        source = np.empty((len(x), *first.shape), np.float32)
        for i in range(len(x)):
            k = labels[i] if labels is not None and labels[i] in self.control_images and labels[i] in self.cue_images \
                else shared[image_seed(x[i]) % len(shared)]
            source[i] = self.cue_images[k]
        if x.ndim == 3:
            source = source[..., 0]
        m = self.mask if x.ndim == 3 else self.mask[..., None]
        y = x.astype(np.float32) * (1 - m) + source * m
        return np.clip(np.round(y), 0, 255).astype(np.uint8)

    @property
    def name(self) -> str:
        return f"transplant({self.label})"

    def to_dict(self) -> dict[str, Any]:
        rows, cols = np.nonzero(self.mask > 0.5)
        box = [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1] if rows.size else None
        return {"type": "transplant", "region": self.label, "area": round(float((self.mask > 0.5).mean()), 4),
                "box": box, "images": int(self.n_images), "classes": len(self.cue_images)}


@dataclass(frozen=True, eq=False)
class ColourMap(Cue):
    """Map every pixel value through a per-channel lookup table ``lut`` (256×C uint8).

    ``invert`` first inverts the image (``255 - x``): a mapping that turns dark into light and
    light into dark is not monotone, a lookup after an inversion is.

    Examples
    --------
    >>> lut = np.stack([np.arange(256), np.zeros(256), np.zeros(256)], axis=1).astype(np.uint8)
    >>> ColourMap(lut=lut).apply(np.full((1, 2, 2, 3), 120, np.uint8))[0, 0, 0].tolist()
    [120, 0, 0]
    """

    type: ClassVar[str] = "colour_map"
    lut: np.ndarray = field(default_factory=lambda: np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 3)))
    invert: bool = False
    label: str = "a colour mapping"

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images)
        if self.invert:
            x = 255 - x
        if x.ndim == 3:
            return self.lut[x, 0]
        c = x.shape[-1]
        out = np.empty_like(x)
        for ch in range(c):
            out[..., ch] = self.lut[x[..., ch], min(ch, self.lut.shape[1] - 1)]
        return out

    @property
    def name(self) -> str:
        return f"colour_map({self.label})"

    def to_dict(self) -> dict[str, Any]:
        probe = np.array([0, 64, 128, 192, 255])
        return {"type": "colour_map", "mapping": self.label, "invert": bool(self.invert),
                "probe": {int(v): [int(c) for c in self.lut[255 - v if self.invert else v]] for v in probe}}


@dataclass(frozen=True)
class AddNoise(Cue):
    """Add Gaussian noise of standard deviation ``sigma`` (grey levels); each image's noise is
    seeded by its own pixels, so the same image always gets the same noise.

    Examples
    --------
    >>> y = AddNoise(sigma=20.0).apply(np.full((1, 8, 8, 3), 128, np.uint8))
    >>> 10 < float(y.std()) < 30
    True
    """

    type: ClassVar[str] = "noise"
    sigma: float = 10.0

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images)
        out = np.empty_like(x)
        for i in range(len(x)):
            noise = np.random.default_rng(image_seed(x[i])).normal(0.0, float(self.sigma), x[i].shape)
            out[i] = np.clip(np.round(x[i] + noise), 0, 255).astype(np.uint8)
        return out


@dataclass(frozen=True)
class Jpeg(Cue):
    """Compress each image as JPEG at ``quality`` (1–95) and decode it again.

    Examples
    --------
    >>> x = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3), dtype=np.uint8)
    >>> y = Jpeg(quality=5).apply(x)
    >>> y.shape == x.shape and bool((y != x).any())
    True
    """

    type: ClassVar[str] = "jpeg"
    quality: int = 20

    def apply(self, images: np.ndarray) -> np.ndarray:
        from PIL import Image

        x = np.asarray(images)
        grey = x.ndim == 3 or x.shape[-1] == 1
        out = np.empty_like(x)
        for i in range(len(x)):
            im = Image.fromarray(x[i].squeeze(-1) if x.ndim == 4 and grey else x[i])
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(self.quality))
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
            out[i] = dec.reshape(out[i].shape)
        return out
