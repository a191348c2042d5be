"""What assertions run over: a prediction table plus whatever else the caller has.

A full pipeline run gives everything (:func:`sparsecheck.pipeline.stages.assertion_context`); a monitoring job or a
notebook may have only a prediction table, with or without labels. Assertions declare what they
need (``needs_labels``, ``requires``) and the engine reports an ``error`` result, naming what is
missing, instead of guessing.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"id": ["a", "b", "c"], "label": [0, 1, 1], "prediction": [0, 1, 0],
...                       "site": ["x", "y", "x"]})
>>> data = AssertionContext(table, class_names=["cat", "dog"])
>>> data.has_labels, data.n_classes, data.class_index("dog")
(True, 2, 1)
>>> codes, values = data.codes("site")
>>> codes.tolist(), values.tolist()
([0, 1, 0], ['x', 'y'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sparsecheck.analysis.breakdown import encode_categories
from sparsecheck.errors import DataError

__all__ = ["AssertionContext"]


_REQUIREMENT_HINTS = {
    "sparse_layer": "the sparse decision layer (set by the sparse stage)",
    "feature_attributes": "feature/metadata associations (set by the interpretation stage)",
    "model": "the model (set by the load stage)",
    "dataset": "the test images (set by the load stage)",
    "input_spec": "the input spec (model.input)",
    "spurious_findings": "spurious findings (set by the spurious-findings stage)",
    "sparse_predictions": "the sparse layer's predictions (a 'sparse_prediction' column; set by the sparse stage)",
}


@dataclass
class AssertionContext:
    """A prediction table and optional extras, with cached encodings shared by all assertions.

    Parameters
    ----------
    table : DataFrame
        The per-example prediction table (columns as in :mod:`sparsecheck.pipeline.context`: ``id``,
        ``label`` (optional), ``prediction``, ``confidence``, ``prob_<k>``, ``sparse_prediction``,
        metadata columns).
    class_names : list of str, optional
    sparse_layer : SparseDecisionLayer, optional
    feature_attributes : DataFrame, optional
        Columns feature, attribute, value, effect, p_value, q_value.
    spurious_findings : list, optional
        SpuriousFinding objects (or their dicts) on declared attributes; None when the analysis did not run.
    automatic_findings : list, optional
        Confirmed findings on automatic image attributes (the same analysis).
    spurious_attributes : list of str
    model : nn.Module or sparsecheck.data.Model, optional
    dataset : sparsecheck.data.ImageDataset, optional
        The images behind ``table`` (same order).
    input_spec : sparsecheck.data.InputSpec, optional
        The model's input transform (:class:`~sparsecheck.modalities.base.InputTransform`).
    device : str
    modality : Modality, optional
        The kind of input ``dataset`` holds (:mod:`sparsecheck.modalities`); None is images.
    run : sparsecheck.pipeline.RunContext, optional
        The whole run, for custom assertions that want more.
    split : str
    max_examples : int or None
        Failing examples kept per assertion, worst first (None: all).
    """

    table: pd.DataFrame
    class_names: list[str] | None = None
    sparse_layer: Any = None
    feature_attributes: pd.DataFrame | None = None
    spurious_findings: list[Any] | None = None
    automatic_findings: list[Any] | None = None
    spurious_attributes: Sequence[str] = ()
    model: Any = None
    dataset: Any = None
    input_spec: Any = None
    device: str = "cpu"
    #: the :class:`~sparsecheck.modalities.base.Modality` of ``dataset`` (None: images)
    modality: Any = None
    run: Any = None
    split: str = "test"
    max_examples: int | None = 1000
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.table, pd.DataFrame):
            raise DataError(f"the prediction table must be a DataFrame, got {type(self.table).__name__}")
        if not isinstance(self.table.index, pd.RangeIndex) or self.table.index.start != 0 \
                or self.table.index.step != 1:
            self.table = self.table.reset_index(drop=True)
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_labels(self) -> bool:
        return "label" in self.table.columns

    @property
    def ids(self) -> np.ndarray:
        if "id" not in self._cache:
            self._cache["id"] = (self.table["id"].astype(str).to_numpy() if "id" in self.table.columns
                                 else np.arange(len(self.table)).astype(str))
        return self._cache["id"]

    @property
    def prob_columns(self) -> list[str]:
        cols = [c for c in self.table.columns if isinstance(c, str) and c.startswith("prob_")
                and c[5:].isdigit()]
        return sorted(cols, key=lambda c: int(c[5:]))

    @property
    def n_classes(self) -> int:
        """From ``class_names``, else the ``prob_<k>`` columns, else the largest label/prediction + 1."""
        if self.class_names:
            return len(self.class_names)
        if self.prob_columns:
            return len(self.prob_columns)
        top = [int(self.table[c].max()) for c in ("label", "prediction") if c in self.table.columns
               and len(self.table)]
        return max(top, default=-1) + 1

    def class_name(self, index: int) -> str:
        return self.class_names[index] if self.class_names and 0 <= index < len(self.class_names) else str(index)

    def class_index(self, value: Any) -> int:
        """A class given by name or index → its index."""
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < max(self.n_classes, 1):
                raise DataError(f"class index {value} is out of range ({self.n_classes} classes)")
            return int(value)
        if self.class_names and str(value) in self.class_names:
            return self.class_names.index(str(value))
        if str(value).isdigit():
            return self.class_index(int(str(value)))
        raise DataError(f"unknown class {value!r} (classes: {self.class_names or list(range(self.n_classes))})")

    def classes(self, value: Any) -> list[int]:
        """``"*"`` → every class index; a name or index → ``[index]``."""
        return list(range(self.n_classes)) if value in ("*", None) else [self.class_index(value)]

    # ------------------------------------------------------------------ columns (cached)
    def column(self, name: str) -> np.ndarray:
        """A column as a numpy array; DataError names the column and what the table has."""
        if name not in self.table.columns:
            raise DataError(f"the prediction table has no {name!r} column "
                               f"(columns: {_preview(self.table.columns)})")
        key = ("col", name)
        if key not in self._cache:
            self._cache[key] = self.table[name].to_numpy()
        return self._cache[key]

    def labels(self) -> np.ndarray:
        if not self.has_labels:
            raise DataError("needs labels, but the prediction table has no 'label' column")
        key = ("labels",)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.table["label"].to_numpy(), dtype=np.int64)
        return self._cache[key]

    def predictions(self, head: str = "dense") -> np.ndarray:
        """Predicted class index per example from the ``dense`` head or the ``sparse`` layer."""
        col = "prediction" if head == "dense" else "sparse_prediction"
        if head == "sparse" and col not in self.table.columns:
            raise DataError("needs the sparse layer's predictions (no 'sparse_prediction' column; "
                               "the sparse stage did not run)")
        key = ("pred", col)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.column(col), dtype=np.int64)
        return self._cache[key]

    def correct(self, head: str = "dense") -> np.ndarray:
        key = ("correct", head)
        if key not in self._cache:
            self._cache[key] = self.predictions(head) == self.labels()
        return self._cache[key]

    def confidence(self) -> np.ndarray:
        """Max class probability of the dense head (``confidence`` column, else from ``prob_<k>``)."""
        key = ("confidence",)
        if key not in self._cache:
            if "confidence" in self.table.columns:
                self._cache[key] = np.asarray(self.table["confidence"].to_numpy(), dtype=np.float64)
            else:
                self._cache[key] = self.probabilities().max(axis=1)
        return self._cache[key]

    def probabilities(self) -> np.ndarray:
        """The ``prob_<k>`` columns as an (n, n_classes) float array."""
        key = ("probs",)
        if key not in self._cache:
            cols = self.prob_columns
            if not cols:
                raise DataError("needs class probabilities (no 'prob_<k>' columns in the prediction table)")
            self._cache[key] = self.table[cols].to_numpy(dtype=np.float64)
        return self._cache[key]

    def codes(self, attribute: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Integer group codes of an attribute (or the intersection of several) and the group labels.

        Values compare as strings; missing values form the group ``"nan"``. Labels of an
        intersection read ``"a=x, b=y"``.
        """
        attrs = (attribute,) if isinstance(attribute, str) else tuple(attribute)
        key = ("codes", attrs)
        if key in self._cache:
            return self._cache[key]
        if len(attrs) == 1:
            codes, labels = encode_categories(self.table[self._attr(attrs[0])])
        else:
            parts = [self.codes(a) for a in attrs]
            combined = np.zeros(len(self.table), dtype=np.int64)
            for c, lab in parts:
                combined = combined * max(len(lab), 1) + c
            codes, uniques = pd.factorize(combined, sort=True)
            codes = codes.astype(np.int64)
            labels_list = []
            for u in uniques:
                idx = []
                for c, lab in reversed(parts):
                    u, r = divmod(int(u), max(len(lab), 1))
                    idx.append(lab[r])
                labels_list.append(", ".join(f"{a}={v}" for a, v in zip(attrs, reversed(idx))))
            labels = np.asarray(labels_list, dtype=str)
        self._cache[key] = (codes, labels)
        return codes, labels

    def _attr(self, name: str) -> str:
        if name not in self.table.columns:
            raise DataError(f"no attribute {name!r} in the prediction table (columns: {_preview(self.table.columns)})")
        return name

    def missing(self, *what: str) -> list[str]:
        """Which of ``what`` (``labels``, ``sparse_predictions``, ``column:NAME`` or context attributes) this context lacks."""
        out = []
        for w in what:
            if w == "labels":
                ok = self.has_labels
            elif w == "sparse_predictions":
                ok = "sparse_prediction" in self.table.columns
            elif w.startswith("column:"):  # a metadata attribute the assertion slices by
                ok = w.partition(":")[2] in self.table.columns
            else:
                ok = getattr(self, w, None) is not None
            if not ok:
                out.append(w)
        return out

    def require(self, *what: str) -> None:
        """Raise DataError naming the first of ``what`` that this context lacks (see :meth:`missing`)."""
        for w in [m for m in self.missing(*what) if not m.startswith("column:")][:1]:  # columns: _attr says
            if w == "labels":
                self.labels()
            raise DataError(f"needs {_REQUIREMENT_HINTS.get(w, w)}, which this run does not have")


def _preview(columns: Any, n: int = 12) -> str:
    cols = [str(c) for c in columns]
    return ", ".join(cols[:n]) + (f", ... ({len(cols)} in all)" if len(cols) > n else "")
