"""Loading image datasets and metadata tables (models: :mod:`sparsecheck.models`).

Datasets come as ``.npz`` files (``x`` uint8 N×H×W or N×H×W×C,
``y`` int, optional ``id``), ImageFolder directories, CSV/Parquet manifests (``path``, ``label``,
optional ``id``, any other column is metadata), or in-memory arrays/tensors.

Image files of any size and PIL mode are decoded to uint8 (see :func:`decode_image`). An
:class:`ImageGeometry` (``size``, or torchvision's ``resize`` + ``crop`` preset) is applied to each
image as it is loaded, so images of different sizes never meet in one batch. An :class:`InputSpec`
turns the stored uint8 images into the model's float input.

The package: :mod:`~.images` (decoding, geometry, input spec), :mod:`~.datasets`
(:class:`ImageDataset`, :func:`load_dataset`) and :mod:`~.metadata` (:func:`load_metadata`).

Examples
--------
>>> import numpy as np
>>> ds = ImageDataset.from_arrays(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1]), name="toy")
>>> len(ds), ds.ids[:2].tolist(), ds.image_shape
(4, ['toy/0', 'toy/1'], (8, 8, 1))
>>> InputSpec(mean=[0.5], std=[0.5]).transform(ds.images[:2]).shape
torch.Size([2, 1, 8, 8])
>>> ds.with_geometry(ImageGeometry(resize=12, crop=(10, 10))).batch(slice(0, 2)).shape
(2, 10, 10, 1)
"""

from sparsecheck.data.datasets import (
    MANIFEST_SUFFIXES,
    SKIPPED_EXAMPLES,
    ImageDataset,
    NumWorkers,
    load_dataset,
    resolve_num_workers,
)
from sparsecheck.data.images import GREY_MODES, IMAGE_SUFFIXES, ImageGeometry, InputSpec, decode_image, stack_images
from sparsecheck.data.metadata import load_metadata

__all__ = [
    "InputSpec",
    "ImageGeometry",
    "ImageDataset",
    "decode_image",
    "load_dataset",
    "load_metadata",
    "resolve_num_workers",
    "stack_images",
]
