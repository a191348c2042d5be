"""Loading models, image datasets and metadata tables.

Models come as a ``torch.export`` program (``.pt2``), a TorchScript file (``.pt``), a
``package.module:factory`` plus a state_dict file, or a torchvision model name whose weights are
already in the local torch cache. Datasets come as ``.npz`` files (``x`` uint8 N×H×W or N×H×W×C,
``y`` int, optional ``id``), ImageFolder directories, or in-memory arrays/tensors. An
:class:`InputSpec` turns stored uint8 images into the model's float input.

Examples
--------
>>> import numpy as np
>>> ds = ImageDataset.from_arrays(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1]), name="toy")
>>> len(ds), ds.ids[:2].tolist(), ds.image_shape
(4, ['toy/0', 'toy/1'], (8, 8, 1))
>>> InputSpec(mean=[0.5], std=[0.5]).transform(ds.images[:2]).shape
torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from sparsecheck.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "InputSpec",
    "ImageDataset",
    "load_dataset",
    "load_metadata",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


# --------------------------------------------------------------------------- input spec
@dataclass(frozen=True)
class InputSpec:
    """How stored uint8 images become the model's input tensor.

    ``x = (resize(image) / scale - mean) / std``, laid out N×C×H×W.

    Parameters
    ----------
    scale : float
        Divisor applied first (255 maps uint8 to [0, 1]).
    mean, std : sequence of float, optional
        Per-channel normalisation; one value broadcasts to every channel.
    size : (int, int), optional
        Resize to (height, width) with bilinear, antialiased interpolation.
    channels : int, optional
        Convert to this many channels (1 → 3 repeats grey; 3 → 1 averages).
    channel_order : {"rgb", "bgr"}
        Order the model expects; stored images are RGB.
    """

    scale: float = 255.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: tuple[int, int] | None = None
    channels: int | None = None
    channel_order: str = "rgb"

    def transform(self, images: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
        """Turn a batch of uint8 images (N×H×W or N×H×W×C) into a float32 N×C×H×W tensor."""
        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        x = x.to(device)
        if x.ndim == 3:
            x = x.unsqueeze(-1)
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        if self.channels is not None and x.shape[1] != self.channels:
            if self.channels == 3 and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            elif self.channels == 1 and x.shape[1] == 3:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise DataError(f"cannot convert {x.shape[1]} channels to {self.channels}")
        if self.channel_order == "bgr" and x.shape[1] == 3:
            x = x.flip(1)
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            x = torch.nn.functional.interpolate(x, size=tuple(self.size), mode="bilinear",
                                                align_corners=False, antialias=True)
        x = x / self.scale
        if self.mean is not None:
            x = x - torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        if self.std is not None:
            x = x / torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x.contiguous()


# --------------------------------------------------------------------------- datasets
class ImageDataset(torch.utils.data.Dataset):
    """Images with integer labels and string ids, stored as uint8 N×H×W×C.

    Build one with :meth:`from_npz`, :meth:`from_folder` or :meth:`from_arrays` (or
    :func:`load_dataset`, which picks by path). Indexing returns ``(uint8 H×W×C array, label)``;
    batches are turned into model input by an :class:`InputSpec`.
    """

    def __init__(self, name: str, ids: np.ndarray, labels: np.ndarray | None,
                 images: np.ndarray | None = None, files: Sequence[Path] | None = None,
                 class_names: list[str] | None = None, source: str = "<memory>") -> None:
        self.name = name
        self.ids = np.asarray(ids).astype(str)
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64)
        self._images = images
        self._files = list(files) if files is not None else None
        self.class_names = class_names
        self.source = source
        self._fingerprint: str | None = None

    # -- constructors
    @classmethod
    def from_arrays(cls, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor | None,
                    ids: Sequence[str] | None = None, *, name: str = "data") -> "ImageDataset":
        """Wrap in-memory images (uint8 N×H×W or N×H×W×C) and labels."""
        x = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = None if y is None else (y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y))
        _check_arrays(x, y, ids, where=name)
        if x.ndim == 3:
            x = x[..., None]
        ids_arr = np.array([f"{name}/{i}" for i in range(len(x))]) if ids is None else np.asarray(ids).astype(str)
        return cls(name, ids_arr, y, images=x)

    @classmethod
    def from_npz(cls, path: str | Path, *, name: str | None = None) -> "ImageDataset":
        """Load an ``.npz`` with ``x`` (uint8 N×H×W[×C]), ``y`` (int) and optional ``id``."""
        path = Path(path)
        if not path.is_file():
            raise DataError("file not found", path=path)
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
                if "x" not in keys:
                    raise DataError(f"missing array 'x' (has: {sorted(keys)})", path=path)
                x = z["x"]
                y = z["y"] if "y" in keys else None
                ids = z["id"] if "id" in keys else None
        except DataError:
            raise
        except Exception as exc:  # zipfile/pickle errors from a corrupt file
            raise DataError(f"cannot read .npz: {exc}", path=path) from exc
        name = name or path.stem
        try:
            _check_arrays(x, y, ids, where=str(path))
        except DataError as exc:
            raise DataError(str(exc).split(": ", 1)[-1], path=path) from None
        ds = cls.from_arrays(x, y, None if ids is None else ids.astype(str), name=name)
        ds.source = str(path)
        return ds

    @classmethod
    def from_folder(cls, root: str | Path, *, name: str | None = None,
                    class_names: list[str] | None = None) -> "ImageDataset":
        """An ImageFolder directory: one sub-directory per class, ids are ``class/file`` paths.

        Images are read lazily, so a folder larger than memory streams batch by batch.
        """
        root = Path(root)
        if not root.is_dir():
            raise DataError("directory not found", path=root)
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise DataError("no class sub-directories (expected ImageFolder layout root/CLASS/IMAGE)", path=root)
        if class_names is not None:
            unknown = sorted(set(classes) - set(class_names))
            if unknown:
                raise DataError(f"class folders {unknown} are not in data.class_names", path=root)
            index = {c: class_names.index(c) for c in classes}
        else:
            index = {c: i for i, c in enumerate(classes)}
        files, labels = [], []
        for c in classes:
            for f in sorted((root / c).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(index[c])
        if not files:
            raise DataError("no images found", path=root)
        ids = np.array([f"{f.parent.name}/{f.name}" for f in files])
        ds = cls(name or root.name, ids, np.array(labels), files=files,
                 class_names=class_names or classes, source=str(root))
        ds._check_image_sizes()
        return ds

    # -- access
    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.image(i), (-1 if self.labels is None else int(self.labels[i]))

    def image(self, i: int) -> np.ndarray:
        """One uint8 H×W×C image."""
        if self._images is not None:
            return self._images[i]
        from PIL import Image

        with Image.open(self._files[i]) as im:  # type: ignore[index]
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        return arr[..., None] if arr.ndim == 2 else arr

    def batch(self, index: np.ndarray | slice) -> np.ndarray:
        """A stacked uint8 batch N×H×W×C."""
        if self._images is not None:
            return self._images[index]
        idx = np.arange(len(self))[index]
        return np.stack([self.image(int(i)) for i in idx])

    @property
    def images(self) -> np.ndarray:
        """All images as one array (loads an ImageFolder fully: prefer :meth:`batch`)."""
        return self._images if self._images is not None else self.batch(slice(None))

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.image(0).shape)

    def subset(self, index: np.ndarray) -> "ImageDataset":
        """A view on some examples (same images, no copy for in-memory data)."""
        index = np.asarray(index)
        return ImageDataset(self.name, self.ids[index], None if self.labels is None else self.labels[index],
                            images=None if self._images is None else self._images[index],
                            files=None if self._files is None else [self._files[int(i)] for i in index],
                            class_names=self.class_names, source=self.source)

    def fingerprint(self) -> str:
        """A content hash of images, labels and ids (used as the feature cache key)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update("\0".join(self.ids.tolist()).encode())
            if self.labels is not None:
                h.update(self.labels.tobytes())
            if self._images is not None:
                h.update(str(self._images.shape).encode())
                h.update(np.ascontiguousarray(self._images).data)
            else:
                for f in self._files or []:
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def _check_image_sizes(self) -> None:
        first = self.image(0).shape
        for i in (len(self) // 2, len(self) - 1):
            if self.image(i).shape != first:
                raise DataError(f"images differ in size ({first} vs {self.image(i).shape} at "
                                f"{self.ids[i]}); set model.input.size to resize", path=self.source)


def _check_arrays(x: np.ndarray, y: np.ndarray | None, ids: Any, *, where: str) -> None:
    if x.dtype != np.uint8:
        raise DataError(f"'x' must be uint8 images, got dtype {x.dtype}", path=where)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise DataError(f"'x' must be N×H×W or N×H×W×C with C in (1, 3), got shape {x.shape}", path=where)
    if y is not None:
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(f"'y' must have shape ({x.shape[0]},) to match 'x', got {y.shape}", path=where)
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"'y' must be integer class indices, got dtype {y.dtype}", path=where)
        if y.size and y.min() < 0:
            raise DataError(f"'y' has negative label {int(y.min())}", path=where)
    if ids is not None:
        ids = np.asarray(ids)
        if ids.shape != (x.shape[0],):
            raise DataError(f"'id' must have shape ({x.shape[0]},), got {ids.shape}", path=where)
        if len(np.unique(ids.astype(str))) != ids.shape[0]:
            raise DataError("'id' values are not unique", path=where)


def load_dataset(source: str | Path | ImageDataset | tuple, *, name: str | None = None,
                 class_names: list[str] | None = None) -> ImageDataset:
    """Load a dataset from an ``.npz`` file, an ImageFolder directory, or ``(x, y[, ids])`` arrays."""
    if isinstance(source, ImageDataset):
        return source
    if isinstance(source, tuple):
        return ImageDataset.from_arrays(*source, name=name or "data")
    path = Path(source)
    if path.suffix == ".npz":
        return ImageDataset.from_npz(path, name=name)
    if path.is_dir():
        return ImageDataset.from_folder(path, name=name, class_names=class_names)
    if not path.exists():
        raise DataError("file not found", path=path)
    raise DataError("unsupported dataset format (expected .npz or an ImageFolder directory)", path=path)


# --------------------------------------------------------------------------- metadata
def load_metadata(path: str | Path, ids: np.ndarray, *, id_column: str = "id") -> pd.DataFrame:
    """Read a CSV or Parquet metadata table and return its rows in the order of ``ids``.

    Ids without a row get missing values (logged as a warning with the count); a table in which no
    id finds its row is refused with a :class:`~sparsecheck.errors.DataError` showing both id forms.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise DataError(f"cannot read metadata table: {exc}", path=path) from exc
    if id_column not in table.columns:
        raise DataError(f"no {id_column!r} column (columns: {list(table.columns)})", path=path)
    table[id_column] = table[id_column].astype(str)
    dup = table[id_column][table[id_column].duplicated()]
    if len(dup):
        raise DataError(f"{len(dup)} duplicated ids, e.g. {dup.head(3).tolist()}", path=path)
    table = table.set_index(id_column)
    ids = np.asarray(ids).astype(str)
    missing = pd.Index(ids).difference(table.index)
    if len(missing) == len(ids) and len(ids):
        raise DataError(f"none of the {len(ids)} example ids has a metadata row (ids look like "
                        f"{ids[:3].tolist()}, the table's like {table.index[:3].tolist()}); check the "
                        f"{id_column!r} column", path=path)
    if len(missing):  # real tables have gaps: those examples get missing values, not a refusal
        logger.warning("%s: %d of %d example ids have no metadata row (e.g. %s); their attributes are "
                       "treated as missing", path, len(missing), len(ids), missing[:3].tolist())
    out = table.reindex(ids)
    out.index.name = id_column
    return out.reset_index()
