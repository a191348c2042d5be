"""The run context: everything one pipeline run knows, handed from stage to stage.

Each stage (extraction, sparse layer, interpretation, slices, spurious findings, assertions,
reports) reads what earlier stages left here and adds its own part. Assertions and reports only
read it.

The per-example *prediction table* (:meth:`RunContext.prediction_table`) is the common currency of
slices, assertions and monitoring. Its columns:

``id`` (str), ``label`` (int), ``prediction`` (int, the model's own dense head),
``confidence`` (float, max probability), ``correct`` (bool), ``prob_<k>`` for every class index k
(float, softmax of the dense head), ``sparse_prediction`` and ``sparse_correct`` when a sparse
layer exists, then one column per metadata attribute (named as in the metadata table).
"""

from __future__ import annotations

import logging

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sparsecheck.analysis.stats import softmax
from sparsecheck.modalities import Modality, get_modality
from sparsecheck.results import RunResults

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from sparsecheck.config import Config
    from sparsecheck.data.precomputed import PrecomputedFeatures
    from sparsecheck.modalities import Split

__all__ = ["SplitView", "RunContext"]


logger = logging.getLogger(__name__)


class _ResultsView(dict):  # type: ignore[type-arg]
    """results.json's content as a dict, for reading: a section is set on ``ctx.run_results``,
    typed, and a write here would be lost, so it is refused."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ctx.results is read-only (a view of ctx.run_results): set the typed section instead, "
                        "e.g. ctx.run_results.sparse_layer = SparseLayerSummary(...)")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse  # type: ignore[assignment]


@dataclass
class SplitView:
    """One data split after feature extraction.

    Attributes
    ----------
    name : str
        ``"train"``, ``"val"``, ``"test"`` or a monitoring batch name.
    ids : ndarray of str, shape (n,)
    labels : ndarray of int, shape (n,) or None for unlabeled batches
    features : ndarray of float32, shape (n, d)
        Deep features (the input of the feature layer); may be a read-only memory map.
    logits : ndarray of float32, shape (n, n_classes)
        Output of the model's own (dense) head on the same examples.
    metadata : DataFrame
        One row per example in the same order as ``ids``; one column per attribute.
    """

    name: str
    ids: np.ndarray
    labels: np.ndarray | None
    features: np.ndarray
    logits: np.ndarray
    metadata: pd.DataFrame

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def with_columns(self, table: pd.DataFrame) -> "SplitView":
        """The same split with ``table``'s columns (one row per example, in order) added to its
        metadata; a column the metadata already has is kept as it is."""
        meta = self.metadata.reset_index(drop=True).copy()
        for col in table.columns:
            if col not in meta.columns:
                meta[col] = table[col].to_numpy()
        return SplitView(self.name, self.ids, self.labels, self.features, self.logits, meta)

    @property
    def dense_predictions(self) -> np.ndarray:
        return np.asarray(self.logits).argmax(axis=1)


@dataclass
class RunContext:
    """State of one run. Stages fill the optional attributes and their sections of ``run_results``
    (the typed results.json, :class:`~sparsecheck.results.RunResults`); ``results`` is its dict."""

    config: "Config"
    class_names: list[str]
    splits: dict[str, SplitView]
    model: "nn.Module | None" = None
    #: the splits of examples (:class:`~sparsecheck.modalities.base.Split`), by name
    datasets: dict[str, "Split"] = field(default_factory=dict)
    #: the kind of input (``data.modality``): everything that depends on it goes through this
    modality: "Modality" = field(default_factory=get_modality)
    #: splits that name precomputed features instead of images (no pictures, no model needed)
    precomputed: dict[str, "PrecomputedFeatures"] = field(default_factory=dict)
    input_spec: Any = None  # the modality's InputTransform (images: sparsecheck.data.InputSpec)
    feature_layer: str = ""
    device: str = "cpu"
    out_dir: Any = None  # pathlib.Path of --out, when writing outputs
    sparse_layer: Any = None  # sparsecheck.sparse.SparseDecisionLayer once fitted
    feature_attributes: pd.DataFrame | None = None  # tidy: feature, attribute, value, effect, p_value, q_value
    feature_cards: list[Any] = field(default_factory=list)
    #: the interpretation stage's :class:`~sparsecheck.analysis.interpret.Interpretation` (LIME adds to it)
    interpretation: Any = None
    slices: list[Any] = field(default_factory=list)
    spurious_findings: list[Any] = field(default_factory=list)
    #: confirmed findings on automatic image attributes (no metadata named them); None when none
    #: were looked for (no automatic attributes, or no interventions to confirm them)
    automatic_findings: list[Any] | None = None
    #: the automatic attributes of a sample of the training images, and their labels
    train_attributes: "tuple[pd.DataFrame, np.ndarray] | None" = None
    assertion_results: Any = None
    #: what results.json will hold, typed section by section as the stages set them; ``status`` is
    #: the gate's verdict once the stages have run (``pass`` until then)
    run_results: RunResults = field(default_factory=lambda: RunResults(status="pass"))
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path of files written under --out
    #: what was written on the registered model version after the run (tracking.registry.Verdict)
    verdict: Any = None

    def __post_init__(self) -> None:
        if self.modality is None:
            data = getattr(self.config, "data", None)
            self.modality = get_modality(getattr(data, "modality", None))

    def skip(self, what: str, reason: str) -> None:
        """Record that an optional part of the run could not run here, and why; the run goes on.

        The entry lands in the ``skipped`` section (and so in results.json and the report).
        """
        logger.warning("skipped %s: %s", what, reason)
        self.run_results.record_skip(what, reason)

    @property
    def results(self) -> dict[str, Any]:
        """What results.json holds, as a JSON-ready dict to read (the stages set their sections on
        :attr:`run_results`; writing a key here raises TypeError)."""
        return _ResultsView(self.run_results.to_dict())

    @property
    def attributes(self) -> list[str]:
        """Metadata attribute names (columns of the metadata table other than ``id``)."""
        test = self.splits.get("test") or next(iter(self.splits.values()))
        return [c for c in test.metadata.columns if c != "id"]

    def prediction_table(self, split: str = "test") -> pd.DataFrame:
        """The per-example prediction table of ``split`` (see the module docstring for columns)."""
        view = self.splits[split]
        prob = softmax(np.asarray(view.logits, dtype=np.float64))
        pred = prob.argmax(axis=1)
        table: dict[str, Any] = {"id": view.ids.astype(str)}
        if view.labels is not None:
            table["label"] = view.labels.astype(np.int64)
        table["prediction"] = pred.astype(np.int64)
        table["confidence"] = prob.max(axis=1)
        if view.labels is not None:
            table["correct"] = pred == view.labels
        for k in range(prob.shape[1]):
            table[f"prob_{k}"] = prob[:, k]
        if self.sparse_layer is not None:
            sp = np.asarray(self.sparse_layer.predict(np.asarray(view.features)))
            table["sparse_prediction"] = sp.astype(np.int64)
            if view.labels is not None:
                table["sparse_correct"] = sp == view.labels
        df = pd.DataFrame(table)
        meta = view.metadata.reset_index(drop=True)
        for col in meta.columns:
            if col != "id" and col not in df.columns:
                df[col] = meta[col].to_numpy()
        return df
