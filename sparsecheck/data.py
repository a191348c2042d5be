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

import contextlib
import hashlib
import importlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from sparsecheck.errors import DataError, ModelError

logger = logging.getLogger(__name__)

__all__ = [
    "InputSpec",
    "ImageDataset",
    "Model",
    "load_model",
    "load_dataset",
    "load_metadata",
    "fingerprint_module",
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

    Every id must find its row; otherwise a :class:`~sparsecheck.errors.DataError` says how many
    are missing and names a few.
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
    if len(missing):
        raise DataError(f"{len(missing)} of {len(ids)} example ids have no metadata row, "
                        f"e.g. {missing[:5].tolist()}", path=path)
    out = table.loc[ids].reset_index().rename(columns={"index": id_column})
    return out


# --------------------------------------------------------------------------- models
@dataclass
class Model:
    """A loaded classifier.

    Attributes
    ----------
    module : nn.Module
        Runs ``logits = module(x)``; for exported and TorchScript files this is the graph module.
    kind : {"export", "torchscript", "factory", "torchvision", "module"}
    source : str
        Path, factory or model name it came from.
    program : torch.export.ExportedProgram or None
        The exported program (also for TorchScript, converted), used to tap feature layers.
    """

    module: nn.Module
    kind: str
    source: str
    program: Any = None
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_module(self.module)
        return self._fingerprint


def fingerprint_module(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def load_model(*, path: str | Path | None = None, factory: str | None = None,
               weights: str | Path | None = None, factory_kwargs: dict | None = None,
               torchvision: str | None = None, torchvision_weights: str = "DEFAULT",
               example_input: torch.Tensor | None = None) -> Model:
    """Load a classifier from exactly one source.

    Parameters
    ----------
    path : path to a ``.pt2`` exported program or a TorchScript ``.pt`` file.
    factory : ``"package.module:function"`` returning an ``nn.Module``; ``weights`` is its state_dict.
    torchvision : a torchvision model name (``"resnet18"``); ``torchvision_weights`` names the
        weights enum member, loaded only from the local torch cache (never downloaded).
    example_input : a batch used to convert TorchScript models (needed only for ``.pt`` files).
    """
    given = [s for s in (path, factory, torchvision) if s]
    if len(given) != 1:
        raise ModelError("give exactly one of a model file, a factory or a torchvision name")
    if path is not None:
        return _load_file(Path(path), example_input)
    if factory is not None:
        return _load_factory(factory, weights, factory_kwargs or {})
    return _load_torchvision(str(torchvision), torchvision_weights)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _third_party_output_to_debug(what: str):
    """Keep torch's warnings and log lines out of the terminal while a model file is read.

    A corrupt file makes torch log a dozen-line traceback before it raises; the caller's one-line
    error says what matters, so on failure they go to our DEBUG log (``-v`` shows them). After a
    successful load, warnings are issued again as if never caught and torch's log lines are passed on.
    """
    collect = _Collect()
    # torch's logging gives "torch" and some sub-loggers ("torch.export") stderr handlers of their own
    loggers = [lg for name, lg in list(logging.Logger.manager.loggerDict.items())
               if (name == "torch" or name.startswith("torch.")) and isinstance(lg, logging.Logger) and lg.handlers]
    saved = [(lg, lg.handlers[:]) for lg in loggers]
    for lg in loggers:
        lg.handlers = [collect]
    failed = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
            failed = False
        finally:
            for lg, handlers in saved:
                lg.handlers = handlers
            for record in collect.records:
                level = logging.DEBUG if failed else min(record.levelno, logging.WARNING)
                logger.log(level, "%s: torch logged: %s", what, record.getMessage())
            if failed:
                for w in caught:
                    logger.debug("%s: %s: %s", what, w.category.__name__, w.message)
    for w in caught:  # reached only after a successful load: as if never caught
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _load_file(path: Path, example_input: torch.Tensor | None) -> Model:
    if not path.is_file():
        raise ModelError("model file not found", path=path)
    if path.suffix == ".pt2":
        try:
            with _third_party_output_to_debug(f"loading {path}"):
                program = torch.export.load(str(path))
        except Exception as exc:
            raise ModelError(f"not a torch.export program: {exc}", path=path) from exc
        return Model(program.module(), "export", str(path), program)
    try:
        with _third_party_output_to_debug(f"loading {path}"):
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelError(f"not a TorchScript file ({type(exc).__name__}); give a .pt2 from "
                         f"torch.export.save or a TorchScript .pt", path=path) from exc
    module.eval()
    program = None
    if example_input is not None:
        program = _torchscript_to_program(module, example_input, path)
    return Model(module, "torchscript", str(path), program)


def _torchscript_to_program(module: nn.Module, example_input: torch.Tensor, path: Path) -> Any:
    # TorchScript modules refuse forward hooks; converting to an exported program lets us tap
    # the graph instead.
    try:
        from torch._export.converter import TS2EPConverter

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return TS2EPConverter(module, (example_input,)).convert()
    except Exception as exc:
        raise ModelError(f"cannot trace TorchScript model for feature extraction: {exc}; "
                         f"re-save it with torch.export.save as .pt2", path=path) from exc


def _load_factory(factory: str, weights: str | Path | None, kwargs: dict) -> Model:
    if ":" not in factory:
        raise ModelError(f"factory must look like 'package.module:function', got {factory!r}")
    mod_name, fn_name = factory.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot import factory {factory!r}: {exc}") from exc
    try:
        module = fn(**kwargs)
    except Exception as exc:
        raise ModelError(f"factory {factory!r} failed: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelError(f"factory {factory!r} returned {type(module).__name__}, not an nn.Module")
    if weights is not None:
        _load_state_dict(module, Path(weights))
    module.eval()
    return Model(module, "factory", factory)


def _load_state_dict(module: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ModelError("weights file not found", path=path)
    try:
        with _third_party_output_to_debug(f"loading {path}"):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read state_dict: {exc}", path=path) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(f"state_dict does not fit the model: {' '.join(first[:3])}", path=path) from exc


def _load_torchvision(name: str, weights_name: str) -> Model:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError) as exc:
        raise ModelError(f"unknown torchvision model {name!r}") from exc
    try:
        weights = enum.DEFAULT if weights_name == "DEFAULT" else enum[weights_name]
    except KeyError as exc:
        raise ModelError(f"torchvision model {name!r} has no weights {weights_name!r} "
                         f"(choices: {[w.name for w in enum]})") from exc
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise ModelError(f"weights {weights} are not in the local torch cache; copy "
                         f"{Path(weights.url).name} there (set TORCH_HOME to choose the cache)",
                         path=cached)
    module = torchvision.models.get_model(name, weights=None,
                                          num_classes=len(weights.meta.get("categories") or []) or 1000)
    _load_state_dict(module, cached)
    module.eval()
    return Model(module, f"torchvision", f"torchvision:{name}:{weights.name}")
