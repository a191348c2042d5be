"""Deep-feature extraction: features and logits of a whole split, batch by batch.

Features are computed under ``torch.inference_mode`` through a tap (:mod:`~.taps`) and streamed
into a memory-mapped ``.npy`` file, so a dataset larger than RAM never has to fit in memory. With a
cache directory the result is kept on disk (:mod:`~.cache`) and a second run with the same inputs
reads it back instead of running the model; under ``torchrun`` every rank extracts its shard of the
rows (:mod:`~.distributed`). A split is any :class:`~sparsecheck.modalities.base.Split` and the
input transform any :class:`~sparsecheck.modalities.base.InputTransform`.

Examples
--------
>>> import numpy as np, torch.nn as nn
>>> from sparsecheck.data import ImageDataset, InputSpec
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
>>> data = ImageDataset.from_arrays(np.zeros((10, 4, 4), np.uint8), np.zeros(10, int), name="toy")
>>> fs = extract_features(net, data, InputSpec(), batch_size=4, device="cpu")
>>> fs.features.shape, fs.logits.shape, fs.layer
((10, 5), (10, 2), '3:input')
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from sparsecheck._runtime import progress, resolve_device
from sparsecheck.data import NumWorkers, resolve_num_workers, stack_images
from sparsecheck.data.precomputed import finish_directory
from sparsecheck.errors import DataError, ModelError, ParameterError
from sparsecheck.features.cache import CACHE_FORMAT, FeatureSet, cache_path, read_cache
from sparsecheck.features.distributed import Ranks
from sparsecheck.features.taps import FeatureExtractor
from sparsecheck.models import Model

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.modalities.base import InputTransform, Split

logger = logging.getLogger(__name__)

__all__ = ["FeatureSet", "FeatureExtractor", "Extracted", "extract_features", "extract_to", "cache_path"]


def extract_features(
    model: Model | nn.Module,
    dataset: "Split",
    spec: "InputTransform",
    *,
    layer: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    num_workers: NumWorkers = "auto",
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    desc: str | None = None,
    ranks: Ranks | None = None,
) -> FeatureSet:
    """Extract features (and logits) of ``dataset`` at ``layer``.

    Parameters
    ----------
    model : Model or nn.Module
    dataset : Split
        Any split (:class:`~sparsecheck.modalities.base.Split`: images, texts, ...).
    spec : InputTransform
        How its raw batches become model input.
    layer : str, optional
        Module name; default the input of the last ``nn.Linear``.
    batch_size : int
    num_workers : int or "auto"
        DataLoader workers decoding image files; ``"auto"`` is ``min(4, cpu count)`` for
        file-backed data and 0 (decode in this process) for in-memory arrays.
    device : "auto", "cpu" or "cuda[:N]"
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs the forward pass under CUDA autocast (GPU only; features stored as float32).
    cache_dir : path, optional
        Where to keep features; a second call with the same model, data, layer and spec reads them
        back (memory-mapped) without running the model. Each entry is a directory in the
        precomputed-features layout (:mod:`sparsecheck.data.precomputed`).
    ranks : Ranks, optional
        The ranks of a ``torchrun`` job (:func:`~sparsecheck.features.distributed.ranks_from_env`):
        each extracts its shard of the rows into the cache entry (``cache_dir`` is required then).

    Returns
    -------
    FeatureSet
    """
    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    if precision not in ("fp32", "bf16"):
        raise ModelError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    ranks = ranks or Ranks()
    name = desc or dataset.name
    if cache_dir is None:
        if ranks.world_size > 1:
            raise ParameterError("The 'cache_dir' parameter is required when extracting across ranks: each rank "
                                 "writes its rows into the cache.", parameter="cache_dir")
        return _extract_in_memory(model, dataset, spec, layer=layer, batch_size=batch_size, device=device,
                                  num_workers=num_workers, precision=precision, name=name)
    path = cache_path(cache_dir, model, dataset, spec, layer=layer, precision=precision)
    cached = read_cache(path, dataset)
    if ranks.broadcast(cached is not None):  # rank 0 decides, so every rank takes the same steps
        if cached is None:
            raise DataError(f"rank 0 found a complete cache entry that rank {ranks.rank} cannot read; every "
                            f"rank must see the same features.cache_dir", path=path)
        logger.info("features of %s read from cache %s (%d × %d)", name, path, *cached.features.shape)
        return cached
    written = extract_to(path, model, dataset, spec, layer=layer, batch_size=batch_size, device=device,
                         num_workers=num_workers, precision=precision, desc=name, ranks=ranks,
                         meta={"cache_key": path.name, "cache_format": CACHE_FORMAT})
    result = read_cache(path, dataset)
    if result is None:
        raise DataError("the cache entry just written cannot be read back", path=path)
    result.from_cache, result.seconds = False, written.seconds
    return result


@dataclass
class Extracted:
    """What :func:`extract_to` wrote: the directory, the resolved layer, rows × dims and the time taken."""

    path: Path
    layer: str
    n: int
    dim: int
    seconds: float


def extract_to(
    directory: str | Path,
    model: Model | nn.Module,
    dataset: "Split",
    spec: "InputTransform",
    *,
    layer: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    num_workers: NumWorkers = "auto",
    precision: str = "fp32",
    desc: str | None = None,
    ranks: Ranks | None = None,
    meta: dict[str, Any] | None = None,
) -> Extracted:
    """Extract features and logits of ``dataset`` into ``directory`` (the precomputed-features layout).

    Batches stream into ``features.npy`` and ``logits.npy``, which are allocated on disk once the
    first batch gives their width, so memory stays bounded by a batch. With ``ranks`` (a
    ``torchrun`` job) every rank extracts its contiguous shard of the rows and writes exactly
    those rows of the shared files (:meth:`Ranks.shard`); nothing is gathered in one process.
    Rank 0 allocates the files and, once every rank has finished, writes ``y.npy``, ``id.npy``
    and ``meta.json``, then renames the temporary directory to ``directory``: an interrupted
    extraction leaves nothing that looks complete (and rank 0 removes what it can).

    Every rank must load the same model and data (checked by fingerprint) and see ``directory``'s
    parent on a shared filesystem.

    Returns
    -------
    Extracted
    """
    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    ranks = ranks or Ranks()
    directory = Path(directory)
    name = desc or dataset.name
    n = len(dataset)
    rows = ranks.shard(n)
    with ranks.together(f"loading the model and {name}"):
        dev = ranks.device(device)
        workers = resolve_num_workers(num_workers, dataset)
        ident = (model.fingerprint(), dataset.fingerprint(), n)
    idents = ranks.gather(ident)
    with ranks.together(f"checking that every rank reads the same model and {name}"):
        if ident != idents[0]:
            raise DataError(f"rank {ranks.rank} reads model/data with fingerprints {ident[:2]} ({n} examples) but "
                            f"rank 0 reads {idents[0][:2]} ({idents[0][2]}); every rank must read the same files")
    token = ranks.broadcast(f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp = directory.with_name(f".{directory.name}.tmp-{token}")
    if model.program is None:  # exported graphs are already in inference form (and refuse eval())
        model.module.eval()
    extractor = FeatureExtractor(model, layer, device=dev)
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                if precision == "bf16" and dev.type == "cuda" else contextlib.nullcontext())
    n_batches = -(-len(rows) // batch_size)
    start = time.perf_counter()
    done = False
    try:
        first = None
        with ranks.together(f"extracting the first batch of {name}"):
            if precision not in ("fp32", "bf16"):
                raise ModelError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
            extractor.open()
            batches = iter(progress(_batches(dataset, batch_size, workers, rows), total=n_batches,
                                    desc=f"features {name}", unit="batch", show=ranks.is_main))
            first = _forward(extractor, spec, dev, autocast, next(batches, None))
        dims = ranks.gather(None if first is None else (first[2].shape[1], first[1].shape[1]))  # (features, logits)
        with ranks.together(f"allocating the features of {name}"):
            known = sorted({d for d in dims if d is not None})
            if not known:
                raise ModelError(f"dataset {name!r} is empty")
            if len(known) > 1:
                raise ModelError(f"ranks got features of different widths {known} from the same model")
            dim, n_logits = known[0]
            if ranks.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                for file, width in (("features.npy", dim), ("logits.npy", n_logits)):
                    # a sparse file of the final size: the ranks fill their rows in place
                    allocated = np.lib.format.open_memmap(tmp / file, mode="w+", dtype=np.float32,
                                                          shape=(n, width))
                    del allocated
        with ranks.together(f"extracting {name}"):
            with _RowWriter(tmp / "features.npy") as feats_out, _RowWriter(tmp / "logits.npy") as logits_out:
                batch = first
                while batch is not None:
                    lo, logits, feats = batch
                    feats_out.write(lo, feats)
                    logits_out.write(lo, logits)
                    batch = _forward(extractor, spec, dev, autocast, next(batches, None))
        seconds = time.perf_counter() - start
        with ranks.together(f"finishing the features of {name}"):
            if ranks.is_main:
                if dataset.labels is not None:
                    np.save(tmp / "y.npy", np.asarray(dataset.labels, dtype=np.int64))
                np.save(tmp / "id.npy", dataset.ids.astype(str))
                finish_directory(tmp, directory, {
                    "n": n, "dim": dim, "n_logits": n_logits, "layer": extractor.layer_name,
                    "model_fingerprint": model.fingerprint(), "model_source": model.source,
                    "data_fingerprint": dataset.fingerprint(), "data_source": dataset.source,
                    "class_names": dataset.class_names, "input_spec": repr(spec), "precision": precision,
                    "world_size": ranks.world_size, "seconds": round(seconds, 3), **(meta or {})})
        done = True
    finally:
        extractor.close()
        if not done and ranks.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
    # every rank's own rows at debug level; the whole split once, from rank 0
    logger.debug("extracted rows %d-%d of %s", rows.start, rows.stop, name)
    if ranks.is_main:
        logger.info("extracted %s features of %s: %d × %d in %.2fs (%.0f examples/s%s) into %s",
                    extractor.layer_name, name, n, dim, seconds, n / max(seconds, 1e-9),
                    f" over {ranks.world_size} ranks" if ranks.world_size > 1 else "", directory)
    return Extracted(directory, extractor.layer_name, n, dim, seconds)


def _forward(extractor: FeatureExtractor, spec: "InputTransform", dev: torch.device, autocast: Any,
             item: tuple[int, np.ndarray] | None) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(offset, logits, features)`` of one batch as float32 arrays, or None at the end."""
    if item is None:
        return None
    lo, batch = item
    with torch.inference_mode(), autocast:
        logits, feats = extractor(spec.transform(batch, device=dev))
    return lo, logits.float().cpu().numpy(), feats.float().cpu().numpy()


class _RowWriter:
    """Writes rows of an existing ``.npy`` file in place (``os.pwrite`` of exactly their bytes).

    Byte-exact writes, not a memory map: ranks on different machines writing neighbouring rows of
    a file on a network filesystem never overwrite each other's half of a shared page. The file is
    synced on close, before rank 0 marks the directory complete.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
            self.offset = fh.tell()
        self.path, self.shape, self.dtype = path, shape, dtype
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        self.fd = os.open(path, os.O_WRONLY)

    def __enter__(self) -> "_RowWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)

    def write(self, lo: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != tuple(self.shape[1:]) or lo < 0 or lo + rows.shape[0] > self.shape[0]:
            raise ModelError(f"rows {lo}..{lo + rows.shape[0]} of shape {rows.shape} do not fit {self.path.name} "
                             f"{tuple(self.shape)}")
        view = memoryview(rows).cast("B")
        pos = self.offset + lo * self.row_bytes
        while view:
            written = os.pwrite(self.fd, view, pos)
            view, pos = view[written:], pos + written


def _extract_in_memory(model: Model, dataset: "Split", spec: "InputTransform", *, layer: str | None, batch_size: int,
                       device: str | torch.device, num_workers: NumWorkers, precision: str, name: str) -> FeatureSet:
    """Extraction without a cache: features and logits of every batch into in-memory arrays."""
    dev = resolve_device(device)
    if model.program is None:
        model.module.eval()
    n = len(dataset)
    workers = resolve_num_workers(num_workers, dataset)
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                if precision == "bf16" and dev.type == "cuda" else contextlib.nullcontext())
    features: np.ndarray | None = None
    logits_out: np.ndarray | None = None
    start = time.perf_counter()
    with FeatureExtractor(model, layer, device=dev) as extractor:
        for item in progress(_batches(dataset, batch_size, workers), total=-(-n // batch_size),
                             desc=f"features {name}", unit="batch"):
            lo, logits, feats = _forward(extractor, spec, dev, autocast, item)  # type: ignore[misc]
            if features is None:
                features = np.empty((n, feats.shape[1]), dtype=np.float32)
                logits_out = np.empty((n, logits.shape[1]), dtype=np.float32)
            features[lo:lo + len(feats)] = feats
            logits_out[lo:lo + len(logits)] = logits  # type: ignore[index]
        layer_name = extractor.layer_name
    if features is None:
        raise ModelError(f"dataset {name!r} is empty")
    seconds = time.perf_counter() - start
    logger.info("extracted %s features of %s: %d × %d in %.2fs (%.0f examples/s)", layer_name, name,
                n, features.shape[1], seconds, n / max(seconds, 1e-9))
    return FeatureSet(features, logits_out, dataset.ids, dataset.labels,  # type: ignore[arg-type]
                      layer_name, False, seconds)


def _batches(dataset: "Split", batch_size: int, num_workers: int, rows: range | None = None):
    """``(offset, raw batch)`` in order over ``rows`` (default all); DataLoader workers decode when
    ``num_workers > 0`` and the split decodes example by example (image files: ``image(i)``).

    A file that cannot be decoded raises DataError naming it, also from a worker: the worker
    returns the failure as a value and it is raised here, instead of a wrapped worker traceback.
    """
    rows = range(len(dataset)) if rows is None else rows
    if num_workers <= 0 or not hasattr(dataset, "image"):
        for lo in range(rows.start, rows.stop, batch_size):
            yield lo, dataset.batch(slice(lo, min(lo + batch_size, rows.stop)))
        return
    if not len(rows):
        return
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(_Images(dataset), rows), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=_collate, persistent_workers=False)
    lo = rows.start
    for batch in loader:
        if isinstance(batch, _Failure):
            raise DataError(batch.message, path=batch.path)
        yield lo, batch
        lo += len(batch)


@dataclass(frozen=True)
class _Failure:
    """A DataError raised in a DataLoader worker, sent back as a value (picklable, no traceback)."""

    path: str | None
    message: str

    @classmethod
    def of(cls, exc: DataError) -> "_Failure":
        path = None if exc.path is None else str(exc.path)
        return cls(path, str(exc).removeprefix(f"{path}: ") if path else str(exc))


class _Images(torch.utils.data.Dataset):
    def __init__(self, dataset: "Split") -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray] | _Failure:
        try:
            return self.dataset._where(i), self.dataset.image(i)
        except DataError as exc:
            return _Failure.of(exc)


def _collate(items: list[tuple[str, np.ndarray] | _Failure]) -> np.ndarray | _Failure:
    for item in items:
        if isinstance(item, _Failure):
            return item
    try:
        return stack_images([img for _, img in items], [where for where, _ in items])  # type: ignore[misc]
    except DataError as exc:
        return _Failure.of(exc)
