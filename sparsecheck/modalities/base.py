"""The modality seam: everything that depends on the kind of input, behind one interface.

A *modality* (images, text, ...) is what the pipeline, the analysis and the report ask whenever an
answer depends on what an example *is*. They never touch pixels or tokens themselves: they hand
opaque *raw batches* from a :class:`Split` to the modality's methods, and get back model input,
tables, pictures and numbers. A new kind of input implements :class:`Modality` and registers it
(:func:`sparsecheck.modalities.register_modality`); no stage changes.

The seven jobs, one section of :class:`Modality` each:

============================  =======================================================================
1. load and decode a split    :meth:`~Modality.load_split`, :meth:`~Modality.reconcile_splits`,
                              :meth:`~Modality.describe_split`
2. the model's input          :meth:`~Modality.input_transform` → :class:`InputTransform`
3. rendering examples         :meth:`~Modality.render_card` (a feature card's picture),
                              :meth:`~Modality.render_cue` (a confirmed cue, before/after)
4. the local explainer        :meth:`~Modality.explainer` → :class:`LocalExplainer` (LIME superpixels
                              for images, LIME text for text); :meth:`~Modality.sanity_probes`
5. automatic attributes       :meth:`~Modality.automatic_attributes` → :class:`AttributeMeasurer`
6. cues and interventions     :meth:`~Modality.parse_intervention`, :meth:`~Modality.estimate_cue`
                              → :class:`Cue` objects that apply to raw batches
7. invariance transforms      :meth:`~Modality.invariance_transforms` → :class:`InvarianceTransform`
============================  =======================================================================

Vocabulary
----------
raw batch
    What :meth:`Split.batch` returns and what cues and invariance transforms take and give back:
    the examples as stored, before the model's input transform. Opaque to the generic code,
    which only indexes it by rows (``raw[i]`` is one example, ``len(raw)`` the count). Images: a
    uint8 ``N×H×W×C`` array; text: a 1-D object array of ``str``; the tests' tabular stand-in: a
    float ``N×D`` array.
model input
    What :meth:`InputTransform.transform` returns and the model's ``forward`` takes: one tensor
    (images: float ``N×C×H×W``) or a mapping of named tensors passed as keyword arguments
    (text: ``input_ids``, ``attention_mask``). :func:`~sparsecheck.features.model_input.call_model`,
    :func:`~sparsecheck.features.model_input.batch_length` and
    :func:`~sparsecheck.features.model_input.output_tensor` (the logits of an output) handle both.
split
    One loaded data split (:class:`Split`): ids, labels, metadata, and its raw examples by rows.

Examples
--------
>>> from sparsecheck.modalities import get_modality
>>> image = get_modality("image")
>>> image.name, image.noun, sorted(image.invariance_transforms())
('image', 'image', ['brightness', 'fgsm', 'hflip', 'noise'])
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import torch

from sparsecheck.features.model_input import ModelInput, batch_length, call_model, output_tensor

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config

__all__ = ["Modality", "Split", "InputTransform", "ModelInput", "RawBatch", "Explanation", "LocalExplainer",
           "Target", "Cue", "CueEstimate", "AttributeMeasurer", "InvarianceTransform", "Perturbation",
           "call_model", "batch_length", "output_tensor"]

#: a batch of examples as stored (see the module docstring); opaque outside its modality
RawBatch = Any


# --------------------------------------------------------------------------- what a modality hands out
@runtime_checkable
class Split(Protocol):
    """One loaded data split: its examples' ids, labels and metadata, and their raw form by rows.

    Images: :class:`sparsecheck.data.ImageDataset`. Rows are positions ``0..n-1``; every array
    and table here is in that order.

    Attributes
    ----------
    name : str
        ``"train"``, ``"val"``, ``"test"``, or the name of a monitoring batch or selection pool.
    source : str
        Where it was read from (a path, ``"<memory>"``), for messages.
    ids : ndarray of str, shape (n,)
    labels : ndarray of int, shape (n,), or None for an unlabelled batch
    metadata : DataFrame or None
        The split's own per-example columns (a manifest's), ``id`` first, or None.
    class_names : list of str or None
        Class names the split itself declares (an ImageFolder's folders), else None.
    """

    name: str
    source: str
    ids: np.ndarray
    labels: np.ndarray | None
    metadata: pd.DataFrame | None
    class_names: list[str] | None

    def __len__(self) -> int: ...

    def batch(self, rows: slice | Sequence[int] | np.ndarray) -> RawBatch:
        """The raw examples at ``rows`` (a slice or integer positions), in that order."""

    def fingerprint(self) -> str:
        """A cheap identity of the split as the model sees it (files, sizes, how they are decoded):
        part of the feature-cache key."""

    def digest(self) -> str:
        """A content hash of the examples and labels, recorded in results.json and MLflow."""


@runtime_checkable
class InputTransform(Protocol):
    """How a raw batch becomes the model's input (images: scale, normalise, resize; text: tokenise).

    Its ``repr`` enters the feature-cache key, so two transforms that give different input must
    have different reprs.
    """

    def transform(self, raw: RawBatch, device: str | torch.device = "cpu") -> Any:
        """Model input (a tensor or a mapping of named tensors) for ``raw``, on ``device``."""


class Target(Protocol):
    """What a local explainer explains: a raw batch → ``(n, m)`` float64 values (the standardised
    activations of ``m`` features; :class:`sparsecheck.analysis.lime_features.FeatureActivation`).

    ``batch_size_for(example)`` (optional) says how many examples like ``example`` one forward
    call takes; ``forward_seconds`` counts the time spent in the model.
    """

    def __call__(self, raw: RawBatch) -> np.ndarray: ...


@runtime_checkable
class Explanation(Protocol):
    """A local explanation of one feature's activation on one example.

    ``attribution_map()`` returns one weight per input element (images: per pixel, ``(H, W)``;
    text: per token); the sanity check correlates maps of the same example under a trained and a
    randomised model, so two maps of one example always have the same shape. ``example`` is the
    explained raw example (for pictures); ``to_dict()`` a JSON-ready summary without arrays.
    """

    feature: int
    example: Any
    example_id: str | None
    num_samples: int
    seconds: float
    forward_seconds: float

    def attribution_map(self) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class LocalExplainer(Protocol):
    """LIME-like local explanations of feature activations (images: superpixels; text: words).

    ``last_batch_size_`` is the number of perturbed examples handed to the target per call in the
    last explanation (None before the first).
    """

    num_samples: int
    last_batch_size_: int | None

    def explain_many(self, example: Any, target: Target, *, columns: Sequence[int], features: Sequence[int],
                     example_id: str | None = None) -> list[Explanation]:
        """Explain several columns of ``target`` (``columns[j]`` is ``features[j]``'s) on one raw
        example (``split.batch([row])[0]``) from one set of perturbed examples."""

    def attribute(self, example: Any, target: Target) -> np.ndarray:
        """The attribution map of ``target``'s first column on one raw example."""


@runtime_checkable
class Cue(Protocol):
    """Something that can be put on (or taken off) examples: a patch, a tint (images), an inserted
    or removed token (text).

    ``apply_labelled(raw, labels)`` returns a new raw batch of the same length (labels: the
    examples' classes, or None; a cue may use them, e.g. to fill from the class's own examples).
    ``control`` is the cue that changes the same things without the content (a region copied
    from an example without the value), or None when the unchanged example is the control.
    ``name`` reads in a finding's sentence; ``to_dict()`` goes into results.json.
    """

    @property
    def name(self) -> str: ...

    @property
    def control(self) -> "Cue | None": ...

    def apply_labelled(self, raw: RawBatch, labels: np.ndarray | None) -> RawBatch: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class CueEstimate(Protocol):
    """A cue learned from the data: how the examples with a value differ from the others.

    ``put`` adds the value, ``remove`` takes it off (or None when it cannot be taken off);
    ``alternates`` are other estimates worth trying when this one is not confirmed.
    """

    put: Cue
    remove: Cue | None
    alternates: Sequence["CueEstimate"]

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class AttributeMeasurer(Protocol):
    """Automatic attributes of examples: properties measured from the examples themselves (image
    brightness and marks; text length and frequent tokens), binned into a few categorical levels,
    one column per attribute named ``auto:<name>``.

    ``fit_transform`` chooses the attributes and their levels on ``split`` (the test split) and
    returns its table; ``reference`` (the train split, when there is one) may inform the choice
    (text: which tokens are informative). ``transform`` measures other rows (a sample of the
    training examples) with the same choice. Tables have one row per row asked for, in order,
    and string or categorical columns. ``to_dict()`` summarises the choice for results.json
    (``columns``, ``levels``, ...).
    """

    def fit_transform(self, split: Split, *, batch_size: int, reference: Split | None = None) -> pd.DataFrame: ...

    def transform(self, split: Split, rows: np.ndarray, *, batch_size: int) -> pd.DataFrame: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class Perturbation:
    """What an invariance transform may use besides the raw batch.

    ``generator`` seeds its randomness; ``module`` and ``transform`` are the model and its input
    transform on ``device`` and ``predicted`` the model's classes on the batch, for a transform
    that follows the model's gradient (FGSM). ``rules`` are an assertion's semantically equivalent
    rewrite rules, ``(from, to)`` pairs (text's ``rules`` transform).
    """

    magnitude: float
    generator: torch.Generator
    module: Any = None
    transform: InputTransform | None = None
    device: Any = "cpu"
    predicted: torch.Tensor | None = None
    rules: tuple[tuple[str, str], ...] = ()


@runtime_checkable
class InvarianceTransform(Protocol):
    """A change the model's prediction should survive (images: flip, brightness, noise, FGSM;
    text: typos, swapped names, contractions).

    ``check_magnitude`` raises ValueError (with the reason) for a magnitude the transform cannot
    use; ``apply`` returns the changed raw batch (same length). ``uses_gradient`` is True when
    ``apply`` runs the model itself (the check then needs its own clean forward pass). A
    transform that leaves some examples as they are (text: ``names`` on a text without a name)
    may have ``changed(raw, moved) -> bool array``: only the changed examples are then checked.
    """

    name: str
    uses_gradient: bool

    def check_magnitude(self, magnitude: float) -> None: ...

    def apply(self, raw: RawBatch, perturbation: Perturbation) -> RawBatch: ...


# --------------------------------------------------------------------------- the interface
class Modality(abc.ABC):
    """Everything that depends on the kind of input (module docstring). One instance per kind,
    stateless: every method gets what it works on.

    Attributes
    ----------
    name : str
        The ``data.modality`` value that selects it (``"image"``, ``"text"``).
    noun : str
        What one example is called in messages and the report (``"image"``, ``"text"``).
    found_from : str
        Where findings without metadata come from, in the report (``"the pixels"``, ``"the text"``).
    """

    name: ClassVar[str]
    noun: ClassVar[str]
    #: where findings without metadata come from, in the report ("found from the pixels")
    found_from: ClassVar[str] = "the examples"

    # -- 1. load and decode a split ----------------------------------------------------------
    @abc.abstractmethod
    def load_split(self, source: Any, *, name: str, config: "Config | None" = None,
                   transform: InputTransform | None = None, class_names: list[str] | None = None) -> Split:
        """Read one split (a path, or an in-memory object the modality accepts).

        ``config`` gives the reading options (images: ``data.skip_unreadable``,
        ``features.num_workers``); ``transform`` the part of the model's input transform applied
        as each example is read (images: the geometry); ``class_names`` map label names to
        indices. A split without labels is returned with ``labels=None`` (the caller decides
        whether that is an error).

        Raises
        ------
        DataError
            naming the file (and the row) that cannot be read.
        """

    def reconcile_splits(self, splits: dict[str, Split], transform: InputTransform,
                         config: "Config | None" = None) -> tuple[dict[str, Split], InputTransform]:
        """Check that the splits fit one model together (images: the same shape and channels) and
        return them, possibly adjusted, with the transform to apply to their batches from now on.

        Raises DataError naming what differs. The default returns both unchanged.
        """
        return splits, transform

    def describe_split(self, split: Split, config: "Config | None" = None) -> dict[str, Any]:
        """What results.json's ``data.<split>`` says about the split besides ``source``, ``n`` and
        ``digest`` (images: ``image_shape``; text: ``max_tokens``). Default: nothing."""
        return {}

    # -- 2. the model's input ----------------------------------------------------------------
    @abc.abstractmethod
    def input_transform(self, config: "Config", model: Any = None) -> InputTransform:
        """The model's input transform: from the config (images: ``model.input``), else what the
        model declares (a torchvision weight's preset; a Hugging Face tokenizer)."""

    # -- 3. rendering ------------------------------------------------------------------------
    @abc.abstractmethod
    def render_card(self, card: Any, path: Path, *, top: RawBatch | None = None,
                    bottom: RawBatch | None = None) -> Path:
        """Draw a feature card (:class:`sparsecheck.analysis.interpret.FeatureCard`: its classes,
        associations, explanations and sanity verdict) with its top and bottom examples (raw
        batches, or None without examples) to ``path``, atomically; return the path written.

        The report inlines the file as an image, so write an image format (PNG, SVG). It may record
        layout hints on the card (images: ``card.thumb``, the thumbnails' edge in pixels).
        """

    @abc.abstractmethod
    def render_cue(self, path: Path, *, estimate: CueEstimate | None, cue_name: str,
                   examples: Sequence[tuple[Any, str]], title: str) -> Path:
        """Draw a confirmed cue: the estimate (None for a declared cue), then each ``(raw example,
        caption)`` (as it is, with the cue, the control) to ``path`` (an image), atomically."""

    # -- 4. the local explainer --------------------------------------------------------------
    @abc.abstractmethod
    def explainer(self, *, num_samples: int, seed: int, convergence: float | None = None) -> LocalExplainer:
        """A seeded local explainer (every explanation of one example draws the same perturbations,
        so a trained and a randomised model are compared sample for sample).

        ``num_samples`` is the most perturbed examples one explanation draws; with ``convergence``
        (``analysis.lime_convergence``) it may stop earlier, once its weights stop changing (an
        explainer without an adaptive sample size ignores it). Each explanation's ``num_samples``
        says how many it drew."""

    def feature_notes(self, split: Split, activations: np.ndarray, features: Sequence[int]) -> dict[int, dict[str, Any]]:
        """What a feature card adds about each feature, from its standardised ``activations``
        (``(n, len(features))``, the split's rows in order): ``{feature: {key: JSON-ready value}}``,
        merged into the card and its results.json entry (text: ``words``, the words and phrases of
        the feature's positive and negative activations). Default: nothing."""
        return {}

    def sanity_probes(self, raw: RawBatch) -> RawBatch:
        """Varied examples made from ``raw`` on which the sanity check tells "randomising this layer
        does not change the feature" from "the feature is constant". Default: ``raw`` itself."""
        return raw

    # -- 5. automatic attributes -------------------------------------------------------------
    @abc.abstractmethod
    def automatic_attributes(self, *, seed: int) -> AttributeMeasurer:
        """A fresh, seeded measurer of this modality's automatic attributes."""

    # -- 6. cues and interventions -----------------------------------------------------------
    @abc.abstractmethod
    def parse_intervention(self, spec: Mapping[str, Any], *, key: str) -> tuple[Cue, Cue | None]:
        """The ``(put, remove)`` cues of a declared intervention (``data.interventions.<attribute>``
        without its ``value``). Raises ConfigError naming ``key``."""

    @abc.abstractmethod
    def estimate_cue(self, examples: Any, has_value: np.ndarray, labels: np.ndarray, *,
                     seed: int) -> CueEstimate | None:
        """Learn the cue of a value from the data: how the examples with it (``has_value``) differ
        from those without, within classes. ``examples[rows]`` gives the raw batch of ``rows``
        (read lazily). None when no cue can be learned."""

    # -- 7. invariance -----------------------------------------------------------------------
    @abc.abstractmethod
    def invariance_transforms(self) -> Mapping[str, InvarianceTransform]:
        """The transforms ``invariance`` assertions may name, by name."""

    def __repr__(self) -> str:
        return f"<modality {self.name!r}>"
