"""The data of a run as MLflow dataset inputs (``mlflow.log_input``'s entities), one per split.

Each split (and a monitoring batch) becomes an MLflow dataset with

* **name**: the file's stem (``test`` for ``test.npz``, the folder's name for an ImageFolder);
* **source**: where it lives (a local path as MLflow's ``local`` source; in-memory data as a
  ``code`` source);
* **digest**: :meth:`sparsecheck.data.ImageDataset.digest`, the content hash that the feature
  cache key is built from (ids, labels, pixels or files), so two runs over the same data get the
  same digest whatever their model's input size;
* **schema**: the images served (uint8 ``N×H×W×C``) and labels (int64), as tensor specs; for
  texts, a ``text`` string column and the labels;
* **profile**: ``num_examples``, ``num_classes``, ``class_counts`` (class name → examples),
  ``split`` and ``image_shape`` (texts: ``modality`` and ``words``, their mean and longest length);

and the input tag ``mlflow.data.context`` (:data:`CONTEXTS`: ``training``, ``validation``,
``testing``, ``monitoring``). Nothing is loaded to log a dataset: the digest and label counts
were computed when the data was read, and the image shape comes from file headers.

This module imports MLflow at import time; the tracking package imports it only when logging.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source import DatasetSource

from sparsecheck.tracking.tags import TAG_SOURCE, TAG_SPLIT

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.entities import DatasetInput

    from sparsecheck.data import ImageDataset
    from sparsecheck.data.precomputed import PrecomputedFeatures

logger = logging.getLogger(__name__)

__all__ = ["CONTEXTS", "SplitDataset", "split_dataset", "dataset_inputs"]

#: the ``mlflow.data.context`` input tag of each split
CONTEXTS = {"train": "training", "val": "validation", "test": "testing", "batch": "monitoring"}


class SplitDataset(Dataset):
    """One split of a sparsecheck run as an MLflow dataset: metadata only, no data copied.

    Parameters
    ----------
    source : DatasetSource
    name : str
    digest : str
        The split's content digest (:meth:`ImageDataset.digest`).
    profile : dict
        JSON-ready summary (see the module docstring).
    image_shape : tuple of int
        ``(H, W, C)`` of the images served.
    labelled : bool
    """

    def __init__(self, source: DatasetSource, name: str, digest: str, profile: dict[str, Any],
                 image_shape: tuple[int, ...], labelled: bool, *, features: bool = False, text: bool = False) -> None:
        self._profile = profile
        self._image_shape = tuple(int(v) for v in image_shape)
        self._labelled = labelled
        self._features = features
        self._text = text
        super().__init__(source=source, name=name, digest=digest)

    def _compute_digest(self) -> str:  # pragma: no cover - the digest is always given
        raise NotImplementedError("a SplitDataset is built with the split's content digest")

    @property
    def profile(self) -> dict[str, Any]:
        return dict(self._profile)

    @property
    def schema(self) -> Any:
        from mlflow.data.schema import TensorDatasetSchema
        from mlflow.types.schema import Schema, TensorSpec

        if self._text:  # one string per example
            from mlflow.types.schema import ColSpec

            labels = Schema([ColSpec("long", "y")]) if self._labelled else None
            return TensorDatasetSchema(features=Schema([ColSpec("string", "text")]), targets=labels)
        images = Schema([TensorSpec(np.dtype("float32"), (-1, *self._image_shape), "features")] if self._features
                        else [TensorSpec(np.dtype("uint8"), (-1, *self._image_shape), "x")])
        labels = Schema([TensorSpec(np.dtype("int64"), (-1,), "y")]) if self._labelled else None
        return TensorDatasetSchema(features=images, targets=labels)

    def to_dict(self) -> dict[str, str]:
        config = super().to_dict()
        config.update({"schema": json.dumps(self.schema.to_dict()), "profile": json.dumps(self.profile)})
        return config


def _source(where: str, split: str) -> DatasetSource:
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_registered_sources

    path = Path(where)
    if where and not where.startswith("<") and path.exists():
        # MLflow registers its local-file source twice, and resolving a path then warns that it is
        # ambiguous: take the local source directly
        local = next(s for s in get_registered_sources() if s._get_source_type() == "local")
        return local(str(path.resolve()))
    return CodeDatasetSource({TAG_SPLIT: split, TAG_SOURCE: where})


def split_dataset(ds: "ImageDataset | PrecomputedFeatures", split: str, class_names: list[str] | None = None
                  ) -> SplitDataset:
    """The MLflow dataset of one split (``split`` is ``train``, ``val``, ``test`` or ``batch``): its
    images, or its precomputed features (schema ``features`` float32 ``N×D``, profile ``dim``)."""
    counts = ds.class_counts()
    names = list(class_names or [])
    by_name = {(names[k] if 0 <= k < len(names) else str(k)): n for k, n in counts.items()}
    text = getattr(ds, "modality", None) == "text"
    features = not text and not hasattr(ds, "image_shape")
    if text:
        shape: tuple[int, ...] = ()
        described = ds.describe()  # type: ignore[union-attr]
        extra: dict[str, Any] = {"modality": "text", "words": described["words"]}
    else:
        shape = (int(ds.dim),) if features else tuple(int(v) for v in ds.image_shape)  # type: ignore[union-attr]
        extra = {"dim": shape[0]} if features else {"image_shape": list(shape)}
    profile: dict[str, Any] = {"num_examples": len(ds), "split": split, **extra}
    if ds.labels is not None:
        profile.update({"num_classes": len(counts), "class_counts": by_name})
    source = str(ds.source)
    path = Path(source)
    name = (path.stem or path.name) if source and not source.startswith("<") else (ds.name or split)
    return SplitDataset(_source(source, split), name=name, digest=ds.digest(), profile=profile,
                        image_shape=shape, labelled=ds.labels is not None, features=features, text=text)


def dataset_inputs(datasets: Mapping[str, "ImageDataset | PrecomputedFeatures"], class_names: list[str] | None = None
                   ) -> list["DatasetInput"]:
    """``DatasetInput`` entities for ``MlflowClient.log_inputs``: one per split, with its context tag."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for split, ds in datasets.items():
        entity = split_dataset(ds, split, class_names)._to_mlflow_entity()
        context = CONTEXTS.get(split, split)
        inputs.append(DatasetInput(dataset=entity, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]))
    return inputs
