"""Text: the language half of the modality seam (:class:`~sparsecheck.modalities.base.Modality`).

Selected with ``data.modality: text``. A split is a :class:`~sparsecheck.text.data.TextDataset`
(a CSV, TSV, Parquet or JSONL manifest with a ``text`` column or the one ``data.text_column``
names, or a ``datasets`` directory); its raw batches are 1-D object arrays of ``str``. The
model's input transform is a :class:`~sparsecheck.text.models.TextInput` over the model's
tokenizer (padding, truncation at the model's maximum length); cards show word clouds and
highlighted texts (:mod:`sparsecheck.text.render`); the local explainer is LIME text on the
feature's activation (:mod:`sparsecheck.text.explain`); the automatic attributes are length,
class-tied terms, punctuation, casing, digits, URLs, handles and negation
(:mod:`sparsecheck.text.attributes`); cues insert or delete words (:mod:`sparsecheck.text.cues`);
the invariance transforms are ``typos``, ``names``, ``numbers``, ``neutral``, ``contractions`` and
``rules`` (:mod:`sparsecheck.text.invariance`).

Examples
--------
>>> from sparsecheck.modalities import get_modality
>>> text = get_modality("text")
>>> split = text.load_split(["a fine film", "dull"], name="toy")
>>> len(split), split.batch([1]).tolist(), text.noun
(2, ['dull'], 'text')
>>> sorted(text.invariance_transforms())
['contractions', 'names', 'neutral', 'numbers', 'rules', 'typos']
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from sparsecheck.errors import ConfigError, DataError
from sparsecheck.modalities.base import (
    AttributeMeasurer,
    Cue,
    CueEstimate,
    InvarianceTransform,
    LocalExplainer,
    Modality,
)
from sparsecheck.text.attributes import TextAttributes
from sparsecheck.text.cues import estimate_text_cue, parse_text_intervention
from sparsecheck.text.data import TextDataset, load_text_dataset
from sparsecheck.text.explain import LimeTextFeatureExplainer
from sparsecheck.text.invariance import TRANSFORMS
from sparsecheck.text.models import TextInput
from sparsecheck.text.render import render_text_card, render_text_cue
from sparsecheck.text.words import activation_words

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config

logger = logging.getLogger(__name__)

__all__ = ["TextModality"]


class TextModality(Modality):
    """Texts (module docstring)."""

    name = "text"
    noun = "text"
    found_from = "the text"

    # -- 1. splits
    def load_split(self, source: Any, *, name: str, config: "Config | None" = None,
                   transform: Any = None, class_names: list[str] | None = None) -> TextDataset:
        column = config.data.text_column if config is not None else None
        if isinstance(source, (list, tuple)) and source and all(isinstance(t, str) for t in source):
            return TextDataset.from_texts(list(source), name=name, class_names=class_names)
        if isinstance(source, tuple) and len(source) in (2, 3):  # (texts, labels[, ids]) in memory
            return TextDataset.from_texts(*source, name=name, class_names=class_names)
        return load_text_dataset(source, name=name, text_column=column, class_names=class_names)

    def reconcile_splits(self, splits: dict[str, Any], transform: Any,
                         config: "Config | None" = None) -> tuple[dict[str, Any], Any]:
        """Refuse splits whose label names map to different class lists (each manifest's sorted
        names, when neither the config nor the model names the classes)."""
        named = {s: d.class_names for s, d in splits.items() if d.class_names is not None}
        if len({tuple(v) for v in named.values()}) > 1:
            shown = "; ".join(f"data.{s}: {v}" for s, v in named.items())
            raise DataError(f"the splits' label names differ ({shown}); set data.class_names to fix the classes "
                            f"and their order")
        return splits, transform

    def describe_split(self, split: Any, config: "Config | None" = None) -> dict[str, Any]:
        info = split.describe()
        return {k: info[k] for k in ("words", "characters")}

    # -- 2. the model's input
    def input_transform(self, config: "Config", model: Any = None) -> TextInput | None:
        """The model's :class:`~sparsecheck.text.models.TextInput` (None without a model: every split
        is precomputed features)."""
        if model is None:
            return None
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ConfigError("data.modality: text needs a text model and its tokenizer: model.huggingface (a "
                              "directory saved with save_pretrained, tokenizer included), or model.factory / "
                              "model.uri with model.tokenizer", key="model")
        if "input" in config.model.model_fields_set:
            raise ConfigError("model.input says how images become input; a text model's input is its tokenizer's "
                              "(model.tokenizer, model.max_length)", key="model.input")
        return TextInput.for_model(tokenizer, getattr(model, "module", model), config.model.max_length)

    # -- 3. rendering
    def render_card(self, card: Any, path: Path, *, top: Any = None, bottom: Any = None) -> Path:
        return render_text_card(card, path, top=None if top is None else list(top),
                                bottom=None if bottom is None else list(bottom))

    def render_cue(self, path: Path, *, estimate: CueEstimate | None, cue_name: str,
                   examples: Sequence[tuple[Any, str]], title: str) -> Path:
        return render_text_cue(path, estimate=estimate, cue_name=cue_name, examples=examples, title=title)

    # -- 4. the local explainer
    def explainer(self, *, num_samples: int, seed: int, convergence: float | None = None) -> LocalExplainer:
        """LIME text on the feature's activation, ``num_samples`` perturbed texts per explanation
        (no adaptive sample size: ``convergence`` is not used; each explanation records what it drew)."""
        return LimeTextFeatureExplainer(num_samples=int(num_samples), random_state=int(seed))

    def feature_notes(self, split: Any, activations: np.ndarray, features: Sequence[int]) -> dict[int, dict[str, Any]]:
        """``words``: for each feature, the words and phrases whose texts activate it most and least
        (:func:`~sparsecheck.text.words.activation_words`, over the split)."""
        found = activation_words([str(t) for t in split.batch(slice(None))], activations, k=20)
        return {int(f): {"words": {"positive": [[t, v] for t, v in w["positive"]],
                                   "negative": [[t, v] for t, v in w["negative"]],
                                   "source": "mean standardised activation of the texts that contain them, shrunk "
                                             "by n / (n + 5)"}}
                for f, w in zip(features, found)}

    def sanity_probes(self, raw: Any) -> np.ndarray:
        """The texts, their words in reverse order, every other word of them, and upper-cased."""
        texts = [str(t) for t in (raw.tolist() if isinstance(raw, np.ndarray) else raw)]
        reverse = [" ".join(reversed(t.split())) or t for t in texts]
        halved = [" ".join(t.split()[::2]) or t for t in texts]
        upper = [t.upper() for t in texts]
        return np.asarray([*texts, *reverse, *halved, *upper], dtype=object)

    # -- 5. automatic attributes
    def automatic_attributes(self, *, seed: int) -> AttributeMeasurer:
        return TextAttributes(random_state=int(seed))

    # -- 6. cues
    def parse_intervention(self, spec: Mapping[str, Any], *, key: str) -> tuple[Cue, Cue | None]:
        return parse_text_intervention(spec, key=key)

    def estimate_cue(self, examples: Any, has_value: np.ndarray, labels: np.ndarray, *,
                     seed: int) -> CueEstimate | None:
        return estimate_text_cue(examples, has_value, labels, seed=int(seed))

    # -- 7. invariance
    def invariance_transforms(self) -> Mapping[str, InvarianceTransform]:
        return TRANSFORMS
