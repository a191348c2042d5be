"""Precomputed features as a data source: deep features extracted once, read by every later run.

A split (``data.train|val|test``, or monitoring's ``--batch``) can name features instead of images.
Three layouts hold the same arrays (N examples, D features, C classes):

=====================  ==========================================================================
layout                 what it holds
=====================  ==========================================================================
directory              ``features.npy`` (float N×D), ``y.npy`` (int N), ``id.npy`` (str N),
                       optional ``logits.npy`` (float N×C), and ``meta.json``, written last: a
                       directory without it is an interrupted write and is refused. This is what
                       ``sparsecheck extract`` and the feature cache write; it is read
                       memory-mapped, so it may be larger than RAM.
``.npz``               arrays ``features``, ``y``, optional ``id`` and ``logits`` (an image
                       ``.npz`` has ``x`` instead of ``features``). Read into memory.
``.parquet`` / ``.pq`` columns ``features`` (a list of D floats per row), ``y``, optional ``id``
                       and ``logits`` (a list of C floats); any other column is per-example
                       metadata, as in an image manifest (an image manifest has ``path``).
=====================  ==========================================================================

``meta.json`` (inside a directory, or beside a file as ``<stem>.meta.json``) is optional for the
files; every key in it is optional too: ``layer`` (the feature layer, e.g. ``"head:input"``),
``model_fingerprint`` (:meth:`sparsecheck.models.Model.fingerprint` of the model that computed
them), ``model_source``, ``class_names``. When a run also names a model, its fingerprint must
match ``model_fingerprint``; splits whose ``layer`` or ``model_fingerprint`` differ are refused.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()) / "train"
>>> rng = np.random.default_rng(0)
>>> _ = write_features(d, rng.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2]),
...                    ids=[f"a{i}" for i in range(6)], meta={"layer": "fc:input"})
>>> is_features(d), is_features(d.parent / "images.npz")
(True, False)
>>> f = load_features(d)
>>> f.features.shape, f.labels.tolist()[:3], f.layer, f.logits is None
((6, 4), [0, 1, 2], 'fc:input', True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sparsecheck.errors import DataError
from sparsecheck.outputs import write_json_atomic

logger = logging.getLogger(__name__)

__all__ = ["PrecomputedFeatures", "FEATURES_FORMAT", "META_FILE", "is_features", "load_features",
           "write_features", "sidecar_path"]

#: ``meta.json``'s ``format`` value, and its version
FEATURES_FORMAT = "sparsecheck-features"
FORMAT_VERSION = 1
#: the file that marks a features directory complete
META_FILE = "meta.json"
PARQUET_SUFFIXES = (".parquet", ".pq")
#: the array names of the format (directory: ``<name>.npy``; ``.npz``: ``<name>``)
ARRAYS = ("features", "y", "id", "logits")


@dataclass
class PrecomputedFeatures:
    """Features, labels, ids and (optionally) logits of one split, read from a features file.

    Attributes
    ----------
    name : str
        The split (``"train"``, ...) or the file's stem.
    source : str
        The path it was read from.
    features : ndarray (n, d) — a read-only memory map for a directory
    labels : ndarray (n,) int64 or None
    ids : ndarray (n,) str
    logits : ndarray (n, c) or None — the model's own head on the same examples
    meta : dict — ``meta.json`` (or the sidecar); empty when there is none
    metadata : DataFrame or None — per-example columns of a Parquet file (``id`` first)
    """

    name: str
    source: str
    features: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray
    logits: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    metadata: pd.DataFrame | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def layer(self) -> str | None:
        """The feature layer ``meta.json`` names, if any."""
        return self.meta.get("layer")

    @property
    def model_fingerprint(self) -> str | None:
        """The fingerprint of the model that computed the features, if ``meta.json`` gives it."""
        return self.meta.get("model_fingerprint")

    def class_counts(self) -> dict[int, int]:
        """Examples per label (``{label: count}``, labels sorted); empty for unlabelled data."""
        if self.labels is None:
            return {}
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def digest(self) -> str:
        """What the examples are, as MLflow's dataset digest: :meth:`fingerprint` (features carry
        no geometry to leave out, unlike :meth:`sparsecheck.data.ImageDataset.digest`)."""
        return self.fingerprint()

    def fingerprint(self) -> str:
        """A content hash of ids, labels, features and logits (read in chunks: bounded memory)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update("\0".join(self.ids.tolist()).encode())
            if self.labels is not None:
                h.update(self.labels.tobytes())
            for arr in (self.features, self.logits):
                if arr is None:
                    continue
                h.update(f"{arr.shape}{arr.dtype}".encode())
                step = max(1, (64 << 20) // max(1, arr.itemsize * arr.shape[1]))
                for lo in range(0, arr.shape[0], step):
                    h.update(np.ascontiguousarray(arr[lo:lo + step]).data)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


# --------------------------------------------------------------------------- detection
def sidecar_path(path: str | Path) -> Path:
    """``train.npz`` → ``train.meta.json``: the optional metadata beside a features file."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def is_features(path: str | Path) -> bool:
    """True when ``path`` holds precomputed features rather than images.

    A directory with ``meta.json`` or ``features.npy``; an ``.npz`` with a ``features`` array; a
    Parquet file with a ``features`` column. Raises DataError for an ``.npz`` with both ``x`` and
    ``features``, which could be either.
    """
    path = Path(path)
    if path.is_dir():
        return (path / META_FILE).is_file() or (path / "features.npy").is_file()
    suffix = path.suffix.lower()
    if suffix == ".npz" and path.is_file():
        keys = _npz_keys(path)
        if "features" in keys and "x" in keys:
            raise DataError(f"has both 'x' (images) and 'features' (precomputed features); keep one "
                            f"(has: {sorted(keys)})", path=path)
        return "features" in keys
    if suffix in PARQUET_SUFFIXES and path.is_file():
        return "features" in _parquet_columns(path)
    return False


def _npz_keys(path: Path) -> set[str]:
    try:
        with np.load(path, allow_pickle=False) as z:  # lists the members without reading them
            return set(z.files)
    except Exception as exc:
        raise DataError(f"cannot read .npz: {exc}", path=path) from exc


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:
        raise DataError(f"cannot read Parquet file: {exc}", path=path) from exc


# --------------------------------------------------------------------------- reading
def load_features(path: str | Path, *, name: str | None = None, labels_required: bool = False,
                  mmap: bool = True) -> PrecomputedFeatures:
    """Read precomputed features from a directory, an ``.npz`` or a Parquet file (see the module).

    Parameters
    ----------
    path : path
    name : str, optional
        Default: the file's stem.
    labels_required : bool
        Refuse a file without ``y`` (the splits of a run need labels; a monitoring batch does not).
    mmap : bool
        Memory-map a directory's arrays (read-only) instead of reading them.

    Raises
    ------
    DataError
        naming the file and the shape that does not fit: features not N×D floats, ``y``/``id``/
        ``logits`` of another length, negative labels, duplicated ids, an incomplete directory.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir():
        arrays, meta, metadata = _read_dir(path, mmap), _read_meta(path / META_FILE), None
        if not meta:
            raise DataError(f"features directory without {META_FILE}: an interrupted write (sparsecheck "
                            f"writes {META_FILE} last); extract again", path=path)
    elif path.suffix.lower() == ".npz":
        arrays, meta, metadata = _read_npz(path), _read_meta(sidecar_path(path)), None
    elif path.suffix.lower() in PARQUET_SUFFIXES:
        arrays, metadata = _read_parquet(path)
        meta = _read_meta(sidecar_path(path))
    else:
        raise DataError("not a features file (expected a directory with features.npy and meta.json, an .npz "
                        "with 'features', or a Parquet file with a 'features' column)", path=path)
    feats = _check(arrays, path, labels_required)
    ids = arrays.get("id")
    name = name or path.stem
    ids = np.array([f"{name}/{i}" for i in range(feats.shape[0])]) if ids is None else np.asarray(ids).astype(str)
    labels = arrays.get("y")
    return PrecomputedFeatures(name=name, source=str(path), features=feats,
                               labels=None if labels is None else np.asarray(labels).astype(np.int64),
                               ids=ids, logits=arrays.get("logits"), meta=meta, metadata=metadata)


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read features metadata: {exc}", path=path) from exc
    if not isinstance(meta, dict):
        raise DataError(f"features metadata must be a JSON object, got {type(meta).__name__}", path=path)
    return meta


def _read_dir(path: Path, mmap: bool) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for key in ARRAYS:
        f = path / f"{key}.npy"
        if not f.is_file():
            continue
        try:
            arrays[key] = np.load(f, mmap_mode="r" if mmap and key in ("features", "logits") else None,
                                  allow_pickle=False)
        except Exception as exc:
            raise DataError(f"cannot read {f.name}: {exc}", path=path) from exc
    if "features" not in arrays:
        raise DataError("no features.npy", path=path)
    return arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "features" not in z.files:
                raise DataError(f"missing array 'features' (has: {sorted(z.files)})", path=path)
            return {k: z[k] for k in ARRAYS if k in z.files}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read .npz: {exc}", path=path) from exc


def _read_parquet(path: Path) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    try:
        table = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"cannot read Parquet file: {exc}", path=path) from exc
    arrays: dict[str, np.ndarray] = {}
    for key in ("features", "logits"):
        if key in table.columns:
            try:
                arrays[key] = np.stack([np.asarray(v) for v in table[key]]) if len(table) else np.empty((0, 0))
            except ValueError as exc:
                raise DataError(f"column {key!r} must hold lists of one length: {exc}", path=path) from exc
    if "y" in table.columns:
        arrays["y"] = table["y"].to_numpy()
    if "id" in table.columns:
        arrays["id"] = table["id"].astype(str).to_numpy()
    extra = [c for c in table.columns if c not in ARRAYS]
    metadata = None
    if extra:
        ids = arrays.get("id", np.array([f"{path.stem}/{i}" for i in range(len(table))]))
        metadata = table[extra].reset_index(drop=True)
        metadata.insert(0, "id", ids)
    return arrays, metadata


def _check(arrays: dict[str, np.ndarray], path: Path, labels_required: bool) -> np.ndarray:
    feats = arrays["features"]
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
        raise DataError(f"'features' must be an N×D float array, got shape {feats.shape} dtype {feats.dtype}",
                        path=path)
    n = feats.shape[0]
    if n == 0:
        raise DataError("'features' has no rows", path=path)
    y = arrays.get("y")
    if y is None:
        if labels_required:
            raise DataError(f"no labels: a split needs 'y' (int, shape ({n},)) next to 'features' {feats.shape}",
                            path=path)
    else:
        if y.shape != (n,):
            raise DataError(f"'y' has shape {y.shape} but 'features' has shape {feats.shape}: expected ({n},)",
                            path=path)
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"'y' must be integer class indices, got dtype {y.dtype}", path=path)
        if y.min() < 0:
            raise DataError(f"'y' has negative label {int(y.min())}", path=path)
    ids = arrays.get("id")
    if ids is not None:
        if ids.shape != (n,):
            raise DataError(f"'id' has shape {ids.shape} but 'features' has shape {feats.shape}: expected ({n},)",
                            path=path)
        as_str = pd.Index(np.asarray(ids).astype(str))
        if not as_str.is_unique:
            dup = as_str[as_str.duplicated()]
            raise DataError(f"{len(dup)} duplicated ids, e.g. {dup[:3].tolist()}", path=path)
    logits = arrays.get("logits")
    if logits is not None:
        if logits.ndim != 2 or logits.shape[0] != n or not np.issubdtype(logits.dtype, np.floating):
            raise DataError(f"'logits' must be a float array of shape ({n}, C) to match 'features' {feats.shape}, "
                            f"got shape {logits.shape} dtype {logits.dtype}", path=path)
        if y is not None and int(y.max()) >= logits.shape[1]:
            raise DataError(f"label {int(y.max())} is out of range for 'logits' {logits.shape} "
                            f"({logits.shape[1]} classes)", path=path)
    return feats


# --------------------------------------------------------------------------- writing
def write_features(directory: str | Path, features: np.ndarray, labels: np.ndarray | None, *,
                   ids: Sequence[str] | np.ndarray | None = None, logits: np.ndarray | None = None,
                   meta: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write in-memory arrays as a features directory (the layout ``sparsecheck extract`` writes).

    The arrays go into a temporary directory beside ``directory``, ``meta.json`` last, which is
    then renamed into place: an interrupted write leaves nothing that looks complete. For
    extraction that streams batch by batch (and across ranks), see
    :func:`sparsecheck.features.extraction.extract_to`.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise DataError("exists; pass overwrite=True to replace it", path=directory)
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    tmp = directory.with_name(f".{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        np.save(tmp / "features.npy", features)
        if labels is not None:
            np.save(tmp / "y.npy", np.asarray(labels, dtype=np.int64))
        np.save(tmp / "id.npy", np.asarray([str(i) for i in range(n)] if ids is None else ids).astype(str))
        if logits is not None:
            np.save(tmp / "logits.npy", np.asarray(logits, dtype=np.float32))
        finish_directory(tmp, directory, {**(meta or {}), "n": n, "dim": int(features.shape[1]),
                                          "n_logits": None if logits is None else int(np.shape(logits)[1])})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def finish_directory(tmp: Path, directory: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` into ``tmp`` (atomically) and rename ``tmp`` to ``directory``, replacing it."""
    write_json_atomic(tmp / META_FILE, {"format": FEATURES_FORMAT, "version": FORMAT_VERSION, **meta})
    if directory.exists():
        # the old one stops looking complete first, then goes
        (directory / META_FILE).unlink(missing_ok=True)
        shutil.rmtree(directory)
    os.replace(tmp, directory)
