"""The feature cache: extracted features on disk, keyed by what they depend on.

An entry is a directory in the precomputed-features layout (:mod:`sparsecheck.data.precomputed`)
named by a hash of the model's weights, the data split, the layer, the input transform and the
precision (:func:`cache_path`); a second run with the same inputs reads it back memory-mapped
(:func:`read_cache`) instead of running the model. :data:`CACHE_FORMAT` versions the entries.

Examples
--------
>>> import numpy as np, torch.nn as nn
>>> from sparsecheck.data import ImageDataset, InputSpec
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
>>> data = ImageDataset.from_arrays(np.zeros((3, 4, 4), np.uint8), np.zeros(3, int), name="toy")
>>> cache_path("cache", net, data, InputSpec()).parent.name
'cache'
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from sparsecheck.data.precomputed import META_FILE, load_features
from sparsecheck.errors import DataError
from sparsecheck.models import Model

logger = logging.getLogger(__name__)

__all__ = ["FeatureSet", "CACHE_FORMAT", "cache_path", "read_cache"]

#: version of the cache entries (in the precomputed-features layout since 2)
CACHE_FORMAT = 2


@dataclass
class FeatureSet:
    """Features of one dataset at one layer.

    Attributes
    ----------
    features : ndarray (n, d) float32 — possibly a read-only memory map
    logits : ndarray (n, n_classes) float32 — the model's own head on the same inputs
    ids, labels : the dataset's ids and labels (labels None when unlabeled)
    layer : str — resolved layer, e.g. ``"fc:input"`` or ``"avgpool"``
    from_cache : bool — True when read from the on-disk cache
    seconds : float — time spent computing (0 when read from cache)
    """

    features: np.ndarray
    logits: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    layer: str
    from_cache: bool = False
    seconds: float = 0.0
    cache_path: Path | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _cache_key(model: Model, dataset: Any, spec: Any, layer: str | None, precision: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_FORMAT, model.fingerprint(), dataset.fingerprint(), layer or "",
                         repr(spec), precision]).encode())
    return h.hexdigest()[:20]


def cache_path(cache_dir: str | Path, model: Model | nn.Module, dataset: Any, spec: Any, *,
               layer: str | None = None, precision: str = "fp32") -> Path:
    """Where :func:`extract_features` keeps the features of ``dataset`` in ``cache_dir``: a
    directory in the precomputed-features layout (:mod:`sparsecheck.data.precomputed`)."""
    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    return Path(cache_dir) / _cache_key(model, dataset, spec, layer, precision)


def read_cache(path: Path, dataset: Any) -> FeatureSet | None:
    """The cache entry at ``path`` for ``dataset``, or None when there is no complete, fitting one."""
    if not (path / META_FILE).is_file():
        return None
    try:
        stored = load_features(path)
    except DataError as exc:
        logger.warning("ignoring unreadable feature cache %s: %s", path, exc)
        return None
    if (stored.meta.get("cache_format") != CACHE_FORMAT or len(stored) != len(dataset)
            or stored.logits is None or not np.array_equal(stored.ids, dataset.ids)):
        return None
    return FeatureSet(stored.features, stored.logits, dataset.ids, dataset.labels, stored.meta.get("layer", ""),
                      True, 0.0, path)
