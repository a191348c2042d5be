"""Images: the first implementation of the modality seam (:class:`~sparsecheck.modalities.base.Modality`).

A split is an :class:`~sparsecheck.data.ImageDataset` (``.npz``, ImageFolder, CSV/Parquet
manifest of paths); its raw batches are uint8 ``N×H×W×C`` arrays. The model's input transform is
an :class:`~sparsecheck.data.InputSpec` (``model.input``, or the weights' own preset); cards and
cues are drawn as PNG with matplotlib; the local explainer is LIME on SLIC superpixels
(:mod:`sparsecheck.analysis.lime_features`); the automatic attributes are binned image properties
(:mod:`sparsecheck.analysis.auto_attributes`); cues are drawn on pixels
(:mod:`sparsecheck.analysis.cues`); the invariance transforms are ``hflip``, ``brightness``,
``noise`` and ``fgsm``.

Examples
--------
>>> import numpy as np, torch
>>> from sparsecheck.modalities import get_modality
>>> images = get_modality("image")
>>> split = images.load_split((np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 0, 1])), name="toy")
>>> len(split), split.batch([0, 2]).shape, images.describe_split(split)
(4, (2, 8, 8, 1), {'image_shape': [8, 8, 1]})
>>> flip = images.invariance_transforms()["hflip"]
>>> x = np.arange(4, dtype=np.uint8).reshape(1, 1, 4, 1)
>>> from sparsecheck.modalities.base import Perturbation
>>> flip.apply(x, Perturbation(magnitude=0.0, generator=torch.Generator())).ravel().tolist()
[3.0, 2.0, 1.0, 0.0]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from sparsecheck._runtime import note_forward, progress
from sparsecheck.analysis.auto_attributes import AutoAttributes
from sparsecheck.analysis.cues import estimate_cue, parse_intervention
from sparsecheck.analysis.cues.picture import render_cue
from sparsecheck.analysis.cards import CARD_THUMB, render_card
from sparsecheck.analysis.lime_features import LimeFeatureExplainer, Segmenter
from sparsecheck.data import SKIPPED_EXAMPLES, ImageDataset, InputSpec, load_dataset
from sparsecheck.errors import ConfigError, DataError
from sparsecheck.modalities.base import (
    AttributeMeasurer,
    Cue,
    CueEstimate,
    InvarianceTransform,
    LocalExplainer,
    Modality,
    Perturbation,
    Split,
    call_model,
)

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config

logger = logging.getLogger(__name__)

__all__ = ["ImageModality", "ImageAttributes", "PixelTransform"]


# --------------------------------------------------------------------------- automatic attributes
class ImageAttributes:
    """The image modality's :class:`~sparsecheck.modalities.base.AttributeMeasurer`: brightness,
    inversion, contrast, colour, sharpness, marks, bands, repeated artefacts (watermarks, logos),
    per-region intensity and colour, and the files' size and aspect, binned into a few levels
    (:class:`~sparsecheck.analysis.auto_attributes.AutoAttributes`), read batch by batch."""

    def __init__(self, seed: int = 0) -> None:
        self.auto = AutoAttributes(random_state=int(seed))

    @staticmethod
    def _batches(split: Split, rows: np.ndarray | None, batch_size: int, desc: str) -> Iterator[tuple[Any, Any]]:
        sizes = getattr(split, "original_sizes", None)
        step = max(1, int(batch_size))
        n = len(split) if rows is None else int(rows.size)
        for lo in progress(range(0, n, step), desc=desc, unit="batch"):
            if rows is None:
                index: Any = slice(lo, min(lo + step, n))
            else:
                index = rows[lo:lo + step]
            yield split.batch(index), None if sizes is None else sizes[index]

    def fit_transform(self, split: Split, *, batch_size: int, reference: Split | None = None) -> pd.DataFrame:
        return self.auto.fit_transform(self._batches(split, None, batch_size, "automatic attributes"))

    def transform(self, split: Split, rows: np.ndarray, *, batch_size: int) -> pd.DataFrame:
        return self.auto.transform(self._batches(split, np.asarray(rows), batch_size,
                                                 f"automatic attributes ({split.name})"))

    def to_dict(self) -> dict[str, Any]:
        return self.auto.to_dict()


# --------------------------------------------------------------------------- invariance transforms
@dataclass(frozen=True)
class PixelTransform:
    """One of the image invariance transforms, on a batch in [0, 255] pixel units.

    ``hflip`` mirrors left-right; ``brightness`` shifts every pixel by ``255 × magnitude``;
    ``noise`` adds gaussian noise of sigma ``255 × magnitude``; ``fgsm`` takes one signed-gradient
    step of size ``255 × magnitude`` away from the predicted class, through the input transform
    and the model. Returns a float32 tensor (the input transform takes it as it takes uint8).
    """

    name: str

    @property
    def uses_gradient(self) -> bool:
        return self.name == "fgsm"

    def check_magnitude(self, magnitude: float) -> None:
        if self.name in ("noise", "fgsm") and magnitude <= 0:
            raise ValueError(f"{self.name} needs a magnitude > 0 (in [0, 1] pixel intensity units)")
        if self.name == "brightness" and magnitude == 0:
            raise ValueError("brightness needs a nonzero magnitude (a shift in [0, 1] intensity units)")

    def apply(self, raw: Any, perturbation: Perturbation) -> Any:
        x = raw if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
        x = x.to(torch.float32)
        if self.name == "hflip":
            return x.flip(2)
        m = float(perturbation.magnitude)
        if self.name == "brightness":
            return (x + 255.0 * m).clamp(0.0, 255.0)
        if self.name == "noise":
            return (x + torch.randn(x.shape, generator=perturbation.generator) * (255.0 * m)).clamp(0.0, 255.0)
        # fgsm: gradients with respect to the pixels, through the input transform and the model
        p = perturbation
        x = x.detach().to(p.device).requires_grad_(True)
        note_forward(len(x))
        with torch.inference_mode(False), torch.enable_grad():
            logits = call_model(p.module, p.transform.transform(x, device=p.device))  # type: ignore[union-attr]
            loss = torch.nn.functional.cross_entropy(logits.float(), p.predicted.to(logits.device))  # type: ignore[union-attr]
            (grad,) = torch.autograd.grad(loss, x)
        return (x.detach() + 255.0 * m * grad.sign()).clamp(0.0, 255.0).cpu()


_TRANSFORMS: dict[str, InvarianceTransform] = {n: PixelTransform(n) for n in ("hflip", "brightness", "noise", "fgsm")}


# --------------------------------------------------------------------------- the modality
class ImageModality(Modality):
    """Images (module docstring)."""

    name = "image"
    noun = "image"
    found_from = "the pixels"

    # -- 1. splits
    def load_split(self, source: Any, *, name: str, config: "Config | None" = None,
                   transform: Any = None, class_names: list[str] | None = None) -> ImageDataset:
        geometry = getattr(transform, "geometry", None)
        options: dict[str, Any] = {}
        if config is not None:
            options = {"skip_unreadable": config.data.skip_unreadable, "num_workers": config.features.num_workers}
        return load_dataset(source, name=name, class_names=class_names, geometry=geometry, **options)

    def reconcile_splits(self, splits: dict[str, Any], transform: Any,
                         config: "Config | None" = None) -> tuple[dict[str, Any], Any]:
        """Bring grey splits next to colour ones to 3 channels (a file-backed all-grey folder), and
        refuse splits whose images differ in size or channels; the transform's geometry is dropped,
        since each split applies it as it reads an image."""
        if len({d.channels for d in splits.values()}) > 1:  # an all-grey folder next to colour ones
            splits = {s: d if d.in_memory else d.with_channels(3) for s, d in splits.items()}
        shapes = {s: d.image_shape for s, d in splits.items()}
        if len({sh[:2] for sh in shapes.values()}) > 1:
            raise DataError(f"image shapes differ between splits: {shapes}; set model.input.size, or "
                            f"model.input.resize with model.input.crop")
        if len({sh[2] for sh in shapes.values()}) > 1 and getattr(transform, "channels", None) is None:
            raise DataError(f"image channels differ between splits: {shapes}; set model.input.channels")
        return splits, transform.without_geometry() if isinstance(transform, InputSpec) else transform

    def describe_split(self, split: Any, config: "Config | None" = None) -> dict[str, Any]:
        """``image_shape``; with ``data.skip_unreadable``, the files left out (a count and the first few)."""
        out: dict[str, Any] = {"image_shape": list(split.image_shape)}
        if config is not None and config.data.skip_unreadable:
            out["skipped_unreadable"] = {
                "count": len(split.skipped_unreadable),
                "examples": [f"{f}: {why}" for f, why in split.skipped_unreadable[:SKIPPED_EXAMPLES]]}
        return out

    # -- 2. the model's input
    def input_transform(self, config: "Config", model: Any = None) -> InputSpec:
        if getattr(model, "tokenizer", None) is not None:
            raise ConfigError(f"{model.source} is a text model (it comes with a tokenizer): set data.modality: text",
                              key="data.modality", value=config.data.modality)
        return config.model.input_spec(model)

    # -- 3. rendering
    def render_card(self, card: Any, path: Path, *, top: Any = None, bottom: Any = None) -> Path:
        """Thumbnails of the top and bottom images, LIME overlays, then the card's words (PNG); the
        card records the thumbnails' edge (``card.thumb``), which the report lays out by."""
        written = render_card(card, path, top_images=top, bottom_images=bottom, thumb=CARD_THUMB)
        card.thumb = CARD_THUMB
        return written

    def render_cue(self, path: Path, *, estimate: CueEstimate | None, cue_name: str,
                   examples: Sequence[tuple[Any, str]], title: str) -> Path:
        return render_cue(path, estimate=estimate, cue_name=cue_name, examples=examples, title=title)

    # -- 4. the local explainer
    def explainer(self, *, num_samples: int, seed: int, convergence: float | None = None) -> LocalExplainer:
        return LimeFeatureExplainer(num_samples=int(num_samples), convergence=convergence, random_state=int(seed),
                                    segmenter=Segmenter(random_state=int(seed)))

    def sanity_probes(self, raw: Any) -> np.ndarray:
        """The images, their negatives and their vertical and horizontal mirrors."""
        images = np.asarray(raw)
        if images.ndim == 3:
            images = images[None]
        return np.concatenate([images, 255 - images, images[:, ::-1], images[:, :, ::-1]])

    # -- 5. automatic attributes
    def automatic_attributes(self, *, seed: int) -> AttributeMeasurer:
        return ImageAttributes(seed)

    # -- 6. cues
    def parse_intervention(self, spec: Mapping[str, Any], *, key: str) -> tuple[Cue, Cue | None]:
        return parse_intervention(spec, key=key)

    def estimate_cue(self, examples: Any, has_value: np.ndarray, labels: np.ndarray, *,
                     seed: int) -> CueEstimate | None:
        return estimate_cue(examples, has_value, labels, seed=int(seed))

    # -- 7. invariance
    def invariance_transforms(self) -> Mapping[str, InvarianceTransform]:
        return _TRANSFORMS
