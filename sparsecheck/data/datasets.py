"""Image datasets: ``.npz`` files, ImageFolder directories, CSV/Parquet manifests, in-memory arrays.

Datasets come as ``.npz`` files (``x`` uint8 N×H×W or N×H×W×C, ``y`` int, optional ``id``),
ImageFolder directories, CSV/Parquet manifests (``path``, ``label``, optional ``id``, any other
column is metadata), or in-memory arrays/tensors; :func:`load_dataset` reads any of them into an
:class:`ImageDataset`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from sparsecheck._runtime import progress
from sparsecheck.data.images import (
    GREY_MODES,
    IMAGE_SUFFIXES,
    ImageGeometry,
    _as_array,
    _probe,
    decode_image,
    stack_images,
)
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["ImageDataset", "load_dataset", "resolve_num_workers", "NumWorkers", "MANIFEST_SUFFIXES",
           "SKIPPED_EXAMPLES"]

MANIFEST_SUFFIXES = {".csv", ".parquet", ".pq"}
#: how many skipped file names results.json and the log show
SKIPPED_EXAMPLES = 5
NumWorkers = int | Literal["auto"]


def resolve_num_workers(num_workers: NumWorkers, dataset: "ImageDataset | None" = None) -> int:
    """DataLoader workers: ``"auto"`` is ``min(4, cpu count)`` for file-backed data, 0 in memory
    (and for a split that does not say it is file-backed)."""
    if num_workers == "auto":
        if dataset is not None and getattr(dataset, "in_memory", True):
            return 0
        return min(4, os.cpu_count() or 1)
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ParameterError(f"The 'num_workers' parameter must be 'auto' or an int >= 0. "
                             f"Got {num_workers!r} instead.", parameter="num_workers")
    return num_workers


# --------------------------------------------------------------------------- datasets
class ImageDataset(torch.utils.data.Dataset):
    """Images with integer labels and string ids, served as uint8 H×W×C arrays.

    Build one with :meth:`from_npz`, :meth:`from_folder`, :meth:`from_manifest` or
    :meth:`from_arrays` (or :func:`load_dataset`, which picks by path). Indexing returns
    ``(uint8 H×W×C array, label)``; batches are turned into model input by an :class:`InputSpec`.

    Image files are decoded lazily (a folder larger than memory streams batch by batch) to 1
    channel when every image of the dataset is greyscale, else to 3 (RGB); see
    :func:`decode_image`. With a ``geometry`` every image is resized/cropped as it is loaded;
    without one, files that differ in size are refused when the dataset is built.

    Attributes
    ----------
    metadata : DataFrame or None
        Per-example columns from a manifest (``id`` first), in the order of ``ids``.
    skipped_unreadable : list of (str, str)
        Files left out as unreadable (path, reason) by ``skip_unreadable``.
    """

    def __init__(self, name: str, ids: np.ndarray, labels: np.ndarray | None,
                 images: np.ndarray | None = None, files: Sequence[Path] | None = None,
                 class_names: list[str] | None = None, source: str = "<memory>", *,
                 geometry: ImageGeometry | None = None, channels: int | None = None,
                 sizes: np.ndarray | None = None, metadata: pd.DataFrame | None = None) -> None:
        self.name = name
        self.ids = np.asarray(ids).astype(str)
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64)
        self._images = images
        self._files = list(files) if files is not None else None
        self.class_names = class_names
        self.source = source
        self.geometry = geometry
        self.channels = channels if channels is not None else (
            int(images.shape[-1]) if images is not None else 3)
        self._sizes = sizes  # (n, 2) oriented height, width of each file, from its header
        self.metadata = metadata
        self.skipped_unreadable: list[tuple[str, str]] = []
        self._fingerprint: str | None = None
        self._digest: str | None = None

    # -- constructors
    @classmethod
    def from_arrays(cls, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor | None,
                    ids: Sequence[str] | None = None, *, name: str = "data",
                    geometry: ImageGeometry | None = None) -> "ImageDataset":
        """Wrap in-memory images (uint8 N×H×W or N×H×W×C) and labels."""
        x = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = None if y is None else (y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y))
        _check_arrays(x, y, ids, where=name)
        if x.ndim == 3:
            x = x[..., None]
        ids_arr = np.array([f"{name}/{i}" for i in range(len(x))]) if ids is None else np.asarray(ids).astype(str)
        return cls(name, ids_arr, y, images=x, geometry=geometry)

    @classmethod
    def from_npz(cls, path: str | Path, *, name: str | None = None,
                 geometry: ImageGeometry | None = None) -> "ImageDataset":
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
        ds = cls.from_arrays(x, y, None if ids is None else ids.astype(str), name=name, geometry=geometry)
        ds.source = str(path)
        return ds

    @classmethod
    def from_folder(cls, root: str | Path, *, name: str | None = None, class_names: list[str] | None = None,
                    geometry: ImageGeometry | None = None, skip_unreadable: bool = False,
                    num_workers: NumWorkers = "auto") -> "ImageDataset":
        """An ImageFolder directory: one sub-directory per class, ids are ``class/file`` paths.

        Every file's header is read up front (mode and size, no pixels: about as costly as listing
        the files) to choose the channel count and check that the images fit ``geometry``. Pixels
        are decoded lazily. ``skip_unreadable`` adds a full decoding pass (see
        :meth:`without_unreadable`).
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
        return cls._from_files(name or root.name, ids, np.array(labels), files, class_names or classes,
                               str(root), geometry=geometry, skip_unreadable=skip_unreadable,
                               num_workers=num_workers)

    @classmethod
    def from_manifest(cls, path: str | Path, *, name: str | None = None, class_names: list[str] | None = None,
                      geometry: ImageGeometry | None = None, skip_unreadable: bool = False,
                      num_workers: NumWorkers = "auto") -> "ImageDataset":
        """A CSV or Parquet table of images: ``path``, ``label``, optional ``id``, then metadata.

        ``path`` is relative to the manifest's directory (or absolute). ``label`` is a class name
        or an integer class index (names are looked up in ``class_names``; without them the
        sorted distinct names become the classes); without a ``label`` column the data is
        unlabeled. ``id`` defaults to ``path`` as written. Every other column is per-example
        metadata (:attr:`metadata`), used as ``data.metadata`` is.
        """
        path = Path(path)
        table = _read_table(path)
        if "path" not in table.columns:
            raise DataError(f"a manifest needs a 'path' column (columns: {list(table.columns)})", path=path)
        if table.empty:
            raise DataError("the manifest has no rows", path=path)
        for col in ("path", "id", "label"):
            if col in table.columns:
                if table[col].isna().any():
                    raise DataError(f"column {col!r} has {int(table[col].isna().sum())} empty values", path=path)
                table[col] = table[col].astype(str)
        ids = table["id"] if "id" in table.columns else table["path"]
        dup = ids[ids.duplicated()]
        if len(dup):
            raise DataError(f"{len(dup)} duplicated ids, e.g. {dup.head(3).tolist()}", path=path)
        labels, names = (None, class_names) if "label" not in table.columns else \
            _manifest_labels(table["label"], class_names, path)
        base = path.parent
        files = [p if p.is_absolute() else base / p for p in map(Path, table["path"])]
        meta = table.drop(columns=[c for c in ("path", "label", "id") if c in table.columns])
        meta.insert(0, "id", ids.to_numpy())
        return cls._from_files(name or path.stem, ids.to_numpy(), labels, files, names, str(path),
                               geometry=geometry, skip_unreadable=skip_unreadable, num_workers=num_workers,
                               metadata=meta.reset_index(drop=True))

    @classmethod
    def _from_files(cls, name: str, ids: np.ndarray, labels: np.ndarray | None, files: list[Path],
                    class_names: list[str] | None, source: str, *, geometry: ImageGeometry | None,
                    skip_unreadable: bool, num_workers: NumWorkers,
                    metadata: pd.DataFrame | None = None) -> "ImageDataset":
        start = time.perf_counter()
        modes, sizes, keep, skipped = [], [], [], []
        for i, f in enumerate(files):
            try:
                mode, h, w = _probe(f)
            except DataError as exc:
                if not skip_unreadable:
                    raise
                skipped.append((str(f), str(exc).removeprefix(f"{f}: ")))
                continue
            modes.append(mode)
            sizes.append((h, w))
            keep.append(i)
        logger.debug("read %d image headers of %s in %.2fs", len(files), source, time.perf_counter() - start)
        if not keep:
            raise DataError(f"none of the {len(files)} images is readable", path=source)
        idx = np.asarray(keep)
        channels = 1 if all(m in GREY_MODES for m in modes) else 3
        ds = cls(name, ids[idx], None if labels is None else labels[idx], files=[files[i] for i in keep],
                 class_names=class_names, source=source, geometry=geometry, channels=channels,
                 sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
                 metadata=None if metadata is None else metadata.iloc[idx].reset_index(drop=True))
        ds.skipped_unreadable = skipped
        ds._check_sizes()
        if skip_unreadable:
            ds = ds.without_unreadable(num_workers=num_workers)
        if ds.skipped_unreadable:
            shown = "; ".join(f"{f}: {why}" for f, why in ds.skipped_unreadable[:SKIPPED_EXAMPLES])
            logger.warning("%s: skipped %d unreadable of %d images (data.skip_unreadable), e.g. %s", source,
                           len(ds.skipped_unreadable), len(files), shown)
        return ds

    # -- access
    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.image(i), (-1 if self.labels is None else int(self.labels[i]))

    @property
    def original_sizes(self) -> np.ndarray | None:
        """(n, 2) height and width of each image file before any resizing (None for arrays)."""
        return self._sizes

    @property
    def in_memory(self) -> bool:
        """True for array-backed data, False when images are read from files."""
        return self._images is not None

    def image(self, i: int) -> np.ndarray:
        """One uint8 H×W×C image, brought to :attr:`geometry` when the dataset has one.

        Raises
        ------
        DataError
            naming the file, when it cannot be decoded.
        """
        if self._images is not None:
            img = self._images[i]
            return img if self.geometry is None else self.geometry.apply(img)
        decoded = decode_image(self._files[i], self.channels)  # type: ignore[index]
        return _as_array(decoded) if self.geometry is None else self.geometry.apply(decoded)

    def batch(self, index: np.ndarray | slice) -> np.ndarray:
        """A stacked uint8 batch N×H×W×C."""
        if self._images is not None and self.geometry is None:
            return self._images[index]
        idx = np.arange(len(self))[index]
        return stack_images([self.image(int(i)) for i in idx], [self._where(int(i)) for i in idx])

    def _where(self, i: int) -> str:
        return str(self._files[i]) if self._files is not None else str(self.ids[i])

    @property
    def images(self) -> np.ndarray:
        """All images as one array (loads an ImageFolder fully: prefer :meth:`batch`)."""
        return self._images if (self._images is not None and self.geometry is None) else self.batch(slice(None))

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(H, W, C) of the images served (after the geometry); from file headers, not pixels."""
        if self._images is not None:
            h, w = self._images.shape[1:3]
        elif self._sizes is not None and len(self._sizes):
            h, w = (int(v) for v in self._sizes[0])
        else:
            return tuple(self.image(0).shape)
        if self.geometry is not None:
            h, w = self.geometry.output_size(h, w)
        return (int(h), int(w), self.channels)

    # -- derived datasets
    def _replace(self, **changes: Any) -> "ImageDataset":
        fields = dict(name=self.name, ids=self.ids, labels=self.labels, images=self._images, files=self._files,
                      class_names=self.class_names, source=self.source, geometry=self.geometry,
                      channels=self.channels, sizes=self._sizes, metadata=self.metadata)
        fields.update(changes)
        name, ids, labels = fields.pop("name"), fields.pop("ids"), fields.pop("labels")
        ds = ImageDataset(name, ids, labels, fields.pop("images"), fields.pop("files"),
                          fields.pop("class_names"), fields.pop("source"), **fields)
        ds.skipped_unreadable = list(self.skipped_unreadable)
        return ds

    def subset(self, index: np.ndarray) -> "ImageDataset":
        """A view on some examples (same images, no copy for in-memory data)."""
        index = np.asarray(index)
        return self._replace(
            ids=self.ids[index], labels=None if self.labels is None else self.labels[index],
            images=None if self._images is None else self._images[index],
            files=None if self._files is None else [self._files[int(i)] for i in index],
            sizes=None if self._sizes is None else self._sizes[index],
            metadata=None if self.metadata is None else self.metadata.iloc[index].reset_index(drop=True))

    def with_geometry(self, geometry: ImageGeometry | None) -> "ImageDataset":
        """The same examples, each image brought to ``geometry`` as it is loaded.

        Raises
        ------
        DataError
            when the images would still differ in size (``resize`` without ``crop`` on images of
            different aspect ratios), naming the config keys to set.
        """
        ds = self._replace(geometry=geometry)
        ds._check_sizes()
        return ds

    def with_channels(self, channels: int) -> "ImageDataset":
        """The same image files decoded to ``channels`` (1 or 3); in-memory data must already have them."""
        if channels == self.channels:
            return self
        if self._images is not None:
            raise DataError(f"{self.name}: in-memory images have {self.channels} channels, not {channels}; "
                            f"set model.input.channels", path=self.source)
        return self._replace(channels=channels)

    def without_unreadable(self, *, num_workers: NumWorkers = "auto", batch_size: int = 64) -> "ImageDataset":
        """The examples whose files decode, after one full decoding pass over every file.

        The pass costs about as much as decoding the dataset once more (spread over
        ``num_workers`` DataLoader workers); it is what ``data.skip_unreadable`` pays for
        knowing every bad file before features are extracted. Files that fail are listed in
        :attr:`skipped_unreadable`; in-memory data is returned as is.
        """
        if self._files is None:
            return self
        workers = resolve_num_workers(num_workers, self)
        loader = torch.utils.data.DataLoader(_DecodeCheck(self._files, self.channels), batch_size=batch_size,
                                             num_workers=workers, collate_fn=_as_list)
        failed: dict[int, str] = {}
        start = time.perf_counter()
        for results in progress(loader, total=-(-len(self) // batch_size), desc=f"checking {self.name}",
                                unit="batch"):
            failed.update((i, reason) for i, reason in results if reason is not None)
        logger.info("decoded %d images of %s in %.1fs to find unreadable ones: %d found", len(self),
                    self.name, time.perf_counter() - start, len(failed))
        if not failed:
            return self
        if len(failed) == len(self):
            raise DataError(f"none of the {len(self)} images is readable, e.g. "
                            f"{self._files[min(failed)]}: {failed[min(failed)]}", path=self.source)
        ds = self.subset(np.asarray([i for i in range(len(self)) if i not in failed]))
        ds.skipped_unreadable = self.skipped_unreadable + [(str(self._files[i]), failed[i]) for i in sorted(failed)]
        return ds

    def fingerprint(self) -> str:
        """A content hash of images, labels, ids and geometry (used as the feature cache key)."""
        if self._fingerprint is None:
            h = hashlib.sha256(self.digest().encode())
            h.update(f"{self.geometry!r}:{self.channels}".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def digest(self) -> str:
        """A hash of what the examples are: ids, labels, and the pixels (in-memory arrays) or the
        files' paths, sizes and modification times — not how they are brought to the model
        (geometry, channels). Two runs over the same data get the same digest whatever their
        model's input size; :meth:`fingerprint` adds the geometry to it for the feature cache.
        """
        if self._digest is None:
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
            self._digest = h.hexdigest()[:16]
        return self._digest

    def class_counts(self) -> dict[int, int]:
        """Examples per label (``{label: count}``, labels sorted); empty for unlabelled data."""
        if self.labels is None:
            return {}
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def _check_sizes(self) -> None:
        """Refuse files whose images would come out in different sizes (they could never be batched)."""
        if self._sizes is None or not len(self._sizes):
            return
        g = self.geometry
        out = self._sizes if g is None else np.array([g.output_size(int(h), int(w)) for h, w in self._sizes])
        uniq, first = np.unique(out, axis=0, return_index=True)
        if len(uniq) == 1:
            return
        a, b = sorted(first)[:2]
        seen = (f"{out[a][0]}×{out[a][1]} at {self.ids[a]} vs {out[b][0]}×{out[b][1]} at {self.ids[b]}; "
                f"{len(uniq)} sizes in all")
        if g is None:
            raise DataError(f"images differ in size ({seen}); set model.input.size: [H, W] to resize every "
                            f"image, or model.input.resize: N with model.input.crop: M for torchvision's "
                            f"resize-shorter-side-then-centre-crop", path=self.source)
        raise DataError(f"model.input.resize without model.input.crop leaves images of different aspect "
                        f"ratios in different sizes ({seen}); set model.input.crop too", path=self.source)


class _DecodeCheck(torch.utils.data.Dataset):
    """For :meth:`ImageDataset.without_unreadable`: ``(index, None)`` or ``(index, reason)``."""

    def __init__(self, files: Sequence[Path], channels: int) -> None:
        self.files, self.channels = files, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, str | None]:
        try:
            decode_image(self.files[i], self.channels)
        except DataError as exc:
            return i, str(exc).removeprefix(f"{self.files[i]}: ")
        return i, None


def _as_list(items: list[Any]) -> list[Any]:
    return items


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"path": str, "id": str, "label": str}, keep_default_na=False,
                           na_values=[""])
    except Exception as exc:
        raise DataError(f"cannot read table: {exc}", path=path) from exc


def _manifest_labels(values: pd.Series, class_names: list[str] | None,
                     path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Label indices from class names or integer indices (a value that names a class is a name)."""
    values = values.str.strip()
    is_int = values.str.fullmatch(r"\d+")
    if class_names is not None:
        lookup = {c: i for i, c in enumerate(class_names)}
        named = values.isin(list(lookup))
        bad = values[~named & ~is_int]
        if len(bad):
            raise DataError(f"labels {sorted(bad.unique().tolist())[:5]} are not in data.class_names "
                            f"{class_names}", path=path)
        labels = np.where(named, values.map(lookup).fillna(-1), pd.to_numeric(values.where(~named, "0")))
        labels = labels.astype(np.int64)
        if labels.max() >= len(class_names):
            raise DataError(f"label index {int(labels.max())} is out of range for {len(class_names)} "
                            f"data.class_names", path=path)
        return labels, class_names
    if is_int.all():
        return values.astype(np.int64).to_numpy(), None
    if is_int.any():
        raise DataError(f"'label' mixes class names and integer indices (e.g. {values[is_int].iloc[0]!r} "
                        f"and {values[~is_int].iloc[0]!r}); set data.class_names to say which is which",
                        path=path)
    names = sorted(values.unique().tolist())
    lookup = {c: i for i, c in enumerate(names)}
    return values.map(lookup).to_numpy(np.int64), names


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
                 class_names: list[str] | None = None, geometry: ImageGeometry | None = None,
                 skip_unreadable: bool = False, num_workers: NumWorkers = "auto") -> ImageDataset:
    """Load a dataset from an ``.npz`` file, an ImageFolder directory, a ``.csv``/``.parquet``/``.pq``
    manifest, or ``(x, y[, ids])`` arrays.

    Parameters
    ----------
    geometry : ImageGeometry, optional
        Applied to every image as it is loaded (``InputSpec.geometry``).
    skip_unreadable : bool
        Leave out image files that cannot be decoded (listed in ``skipped_unreadable``) instead of
        raising; costs one full decoding pass (:meth:`ImageDataset.without_unreadable`).
    num_workers : int or "auto"
        DataLoader workers for that pass.
    """
    if isinstance(source, ImageDataset):
        return source if geometry is None else source.with_geometry(geometry)
    if isinstance(source, tuple):
        return ImageDataset.from_arrays(*source, name=name or "data", geometry=geometry)
    path = Path(source)
    files = dict(geometry=geometry, skip_unreadable=skip_unreadable, num_workers=num_workers)
    if path.suffix == ".npz":
        return ImageDataset.from_npz(path, name=name, geometry=geometry)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return ImageDataset.from_manifest(path, name=name, class_names=class_names, **files)
    if path.is_dir():
        return ImageDataset.from_folder(path, name=name, class_names=class_names, **files)
    if not path.exists():
        raise DataError("file not found", path=path)
    raise DataError("unsupported dataset format (expected .npz, a .csv/.parquet manifest or an ImageFolder "
                    "directory)", path=path)
