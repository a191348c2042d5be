"""The sections of ``results.json``, one typed model each, which
:class:`~sparsecheck.results.RunResults` assembles (and :mod:`sparsecheck.results` re-exports).

A record types the fields the contract names and keeps any others; what a stage hands in may hold
numpy values, tuples and paths, made JSON-ready first as results.json holds them. An assertion's
result (:class:`AssertionResult`) is the engine's own object: it keeps its failing examples as a
table and is made JSON-ready when written.

Why one module of ~500 lines: it is one list, the sections of the contract, each a short model.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Mapping

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializationInfo,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

from sparsecheck.outputs import jsonable

__all__ = ["AssertionResult", "EXAMPLES_IN_JSON", "FeatureWeight", "PathPoint", "ClassOrderRecord", "DenseSummary",
           "SparseLayerSummary", "FeatureAttributeRecord", "TableArtifactRecord", "SpuriousFindingRecord", "SliceRecord",
           "MlflowRecord", "DataSplitRecord", "LoggedModelRecord", "RegisteredVersionRecord",
           "SparseModelRecord", "MlflowModelRecord", "SkippedRecord", "ModelRecord",
           "FeatureExtractionRecord", "AttributeAccuracyRecord", "FeatureCardRecord", "FeatureSanityRecord",
           "InterpretationSummary", "SliceSearchSummary", "ErrorBreakdowns", "ErrorClusterRecord",
           "AutoAttributesSummary", "SpuriousAnalysisSummary", "DenseHeadRecord"]


class _Record(BaseModel):
    """A results.json record: the contract's fields are typed; more fields are allowed (kept).

    What a stage hands in may hold numpy values, tuples and paths: they are made JSON-ready
    first (:func:`sparsecheck.outputs.jsonable`; a non-finite float becomes None), as results.json
    holds them.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _json_ready(cls, data: Any) -> Any:
        return jsonable(data) if isinstance(data, Mapping) else data


#: failing examples of an assertion that results.json keeps (the full list stays in memory)
EXAMPLES_IN_JSON = 20


def _examples_table(rows: Any) -> pd.DataFrame:
    """Failing examples as a table: a DataFrame as it is, records (as results.json holds them) as
    rows; none: the empty table with the ``id`` and ``severity`` columns."""
    if isinstance(rows, pd.DataFrame):
        return rows
    table = pd.DataFrame(list(rows or []))
    if len(table.columns):
        return table
    return pd.DataFrame({"id": pd.Series(dtype=str), "severity": pd.Series(dtype=np.float64)})


def _examples_records(table: pd.DataFrame, info: SerializationInfo) -> list[dict[str, Any]]:
    """The worst ``max_examples`` (serialisation context; default :data:`EXAMPLES_IN_JSON`) as records."""
    limit = (info.context or {}).get("max_examples", EXAMPLES_IN_JSON)
    return jsonable((table if limit is None else table.head(limit)).to_dict("records"))


#: failing examples: a DataFrame in memory, records in results.json
FailingExamples = Annotated[pd.DataFrame, PlainValidator(_examples_table), PlainSerializer(_examples_records),
                            WithJsonSchema({"type": "array", "items": {"type": "object"}})]


class AssertionResult(BaseModel):
    """One assertion's result: what an assertion function returns (:meth:`outcome`), what the
    engine reports, and what results.json lists under ``assertions``, the report, JUnit,
    ``compare``, ``monitor`` and the MLflow metrics read.

    ``status`` is ``pass``, ``fail`` (the assertion ran and did not hold) or ``error`` (it raised,
    or what it needs was missing; ``error`` holds the traceback, ``message`` ``"Type: message"``).
    ``failing_examples`` has the columns ``id``, ``severity`` (higher is worse) and any context,
    worst first, at most the engine's ``max_examples`` rows (results.json keeps the worst
    :data:`EXAMPLES_IN_JSON`); ``n_failing`` counts them all (default: the rows given).
    Whether it fails the run is the gate's rule (:func:`sparsecheck.results.is_failing`).
    """

    model_config = ConfigDict(extra="allow")

    name: str
    status: Literal["pass", "fail", "error"]
    severity: Literal["error", "warning"] = "error"
    observed: Any = None
    threshold: Any = None
    message: str = ""
    family: str = "custom"
    type: str = "custom"
    #: what the assertion looks at, in words
    scope: str = ""
    n_failing: int = 0
    failing_examples: FailingExamples = Field(default_factory=lambda: _examples_table(None))
    needs_labels: bool = False
    seconds: float = 0.0
    #: the traceback when the status is ``error``
    error: str | None = None
    #: the user's description
    description: str = ""
    #: JSON-ready extras (e.g. the per-slice table)
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("message", "scope", "description", "details", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any, info: ValidationInfo) -> Any:
        return ({} if info.field_name == "details" else "") if v is None else v

    def model_post_init(self, context: Any, /) -> None:
        if "n_failing" not in self.model_fields_set:
            self.n_failing = len(self.failing_examples)
        # an assertion is written whole: every field counts as set, so that results.json (which
        # writes the fields that were set) lists the defaults too
        self.__pydantic_fields_set__.update(type(self).model_fields)

    @field_serializer("seconds")
    def _rounded(self, v: float) -> float:
        return round(float(v), 4)

    @classmethod
    def outcome(cls, passed: bool, observed: Any = None, threshold: Any = None, message: str = "",
                examples: pd.DataFrame | None = None, n_failing: int | None = None,
                details: dict[str, Any] | None = None) -> "AssertionResult":
        """What an assertion function returns: did it hold, what was seen, which examples failed
        (:data:`sparsecheck.assertions.Outcome` is this, under the name custom assertions have
        always used). The engine fills in the assertion's name, severity, family, type and timing,
        and sorts the examples.

        Parameters
        ----------
        passed : bool
        observed : float, int or str, optional
            The measured value (the worst slice's accuracy, the number of failing examples, ...).
        threshold : float, int or str, optional
            What ``observed`` was compared with (default: the assertion's own).
        message : str
            One line a person can act on; name the slice, class or feature at fault.
        examples : DataFrame, optional
            Failing examples: an ``id`` column, a ``severity`` column (higher is worse) and any
            context columns. Order does not matter; results sort by severity.
        n_failing : int, optional
            How many examples failed when ``examples`` was cut short (default ``len(examples)``).
        details : dict, optional
            JSON-ready extras (e.g. the per-slice table).

        Examples
        --------
        >>> r = AssertionResult.outcome(False, observed=3, threshold=0, message="3 images unreadable")
        >>> r.status, r.passed, r.n_failing
        ('fail', False, 0)
        """
        given = {} if n_failing is None else {"n_failing": int(n_failing)}
        return cls(name="", status="pass" if passed else "fail", observed=observed, threshold=threshold,
                   message=message, failing_examples=examples, details=details, **given)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __eq__(self, other: object) -> bool:  # the failing examples are a table: compare the records
        if not isinstance(other, AssertionResult):
            return NotImplemented
        return self.to_dict(None) == other.to_dict(None)

    def to_dict(self, max_examples: int | None = EXAMPLES_IN_JSON) -> dict[str, Any]:
        """The JSON-ready record results.json holds, with the worst ``max_examples`` failing
        examples (None: all of them)."""
        return jsonable(self.model_dump(context={"max_examples": max_examples}))

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "AssertionResult":
        """A result from its record (:meth:`to_dict`, or one read back from results.json)."""
        return cls.model_validate(dict(record))


class FeatureWeight(_Record):
    feature: int
    weight: float | None


class PathPoint(_Record):
    lambda_: float | None = Field(alias="lambda")
    nnz: int
    val_accuracy: float | None = None


class ClassOrderRecord(_Record):
    """The predictions match the labels far better under another order of the classes
    (:func:`sparsecheck.analysis.chance.diagnose_class_order`): ``data.class_names`` is probably
    not the model's output order."""

    accuracy: float
    matched_accuracy: float
    order: list[str]
    moved: int
    message: str


class DenseSummary(_Record):
    """The model's own head: accuracy per split (``<split>_accuracy``), the test split's chance
    rate (share of its most frequent class) and, when found, a class-order mix-up."""

    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    test_chance_rate: float | None = None
    class_order: ClassOrderRecord | None = None


class SparseLayerSummary(_Record):
    """Dense vs sparse accuracy, the features each class uses, and the regularisation path."""

    dense_accuracy: float | None = None
    sparse_accuracy: float | None = None
    #: share of the test examples on which the sparse layer predicts what the model's head predicts
    agreement: float | None = None
    features_per_class: dict[str, list[FeatureWeight]] = Field(default_factory=dict)
    path: list[PathPoint] = Field(default_factory=list)
    sparsity: float | None = None
    mean_features_per_class: float | None = None
    max_features_per_class: int | None = None
    n_used_features: int | None = None
    selected_lambda: float | None = None
    selected_index: int | None = None
    val_accuracy: float | None = None
    solver: str | None = None


class FeatureAttributeRecord(_Record):
    """How one used feature associates with one metadata value."""

    feature: int
    attribute: str
    value: Any = None
    effect: float | None = None
    p_value: float | None = None
    q_value: float | None = None


class TableArtifactRecord(_Record):
    """A table too large for results.json, written as a file beside it.

    ``path`` is relative to the directory of the results file (and to the MLflow run's artifact
    root, where the file is logged too); ``rows`` and ``columns`` describe the whole table;
    ``listed`` says which of its rows results.json lists inline: ``q_value <= fdr``, at most
    ``per_feature`` of each feature (None: all), ``rows`` of them.
    """

    path: str
    format: Literal["parquet"] = "parquet"
    rows: int = Field(ge=0)
    columns: list[str] = Field(default_factory=list)
    listed: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = PurePosixPath(v.replace("\\", "/"))
        if not v or p.is_absolute() or ":" in v or ".." in p.parts:
            raise ValueError(f"must be a path relative to the results file, without '..', got {v!r}")
        return v


class SpuriousFindingRecord(_Record):
    """A class relying on a feature that fires on an attribute it must not rely on: one per shortcut.

    ``features`` lists every feature of the class carrying the shortcut (``feature`` leads);
    ``other_sides`` the findings on the absence of the value folded under it; ``also_seen_as`` the
    attributes marking the same images (``attribute``, ``value``, ``agreement``; for a finding
    merged in, its ``feature``, ``automatic`` and ``training_tie``: the share of the class's training
    images with the value minus the others'); ``automatic``: found on an automatic image attribute.
    """

    class_: str = Field(alias="class")
    feature: int
    attribute: str
    value: Any = None
    score: float | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    sentence: str = ""
    features: list[int] = Field(default_factory=list)
    other_sides: list[dict[str, Any]] = Field(default_factory=list)
    also_seen_as: list[dict[str, Any]] = Field(default_factory=list)
    automatic: bool = False


class SliceRecord(_Record):
    """A slice of the test data (attribute = value predicates) and how the model fails on it."""

    predicates: dict[str, Any]
    size: int
    error_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    q_value: float | None = None
    errors: int | None = None
    score: float | None = None
    #: ``q_value <= analysis.fdr``
    significant: bool | None = None


class MlflowRecord(_Record):
    """Where the run is logged, and the status its MLflow run was closed with (``FINISHED``;
    ``FAILED`` when logging failed; ``RUNNING`` when it could not be closed: the next run in its
    experiment closes it). results.json is written after that status is set."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    status: Literal["FINISHED", "FAILED", "KILLED", "RUNNING"] | None = None


class DataSplitRecord(_Record):
    """One data split: where it came from, its size and its content digest.

    ``digest`` (:meth:`sparsecheck.data.ImageDataset.digest`) is the digest of the split's
    MLflow dataset input; two runs over the same data have the same one.
    """

    source: str | None = None
    n: int | None = None
    digest: str | None = None
    #: ``precomputed features`` for a split that names features instead of examples (then ``dim``)
    kind: str | None = None
    dim: int | None = None


class LoggedModelRecord(_Record):
    """A model logged to the run's MLflow run (an MLflow 3 logged model)."""

    name: str
    model_uri: str
    model_id: str | None = None


class RegisteredVersionRecord(_Record):
    """A version of a registered model."""

    name: str
    version: str


class SparseModelRecord(_Record):
    """The sparse layer as MLflow models: with the model's body (``classifier``; None when the
    body could not be logged, the reason under ``skipped``) and alone (``head``)."""

    classifier: LoggedModelRecord | None = None
    head: LoggedModelRecord | None = None
    registered: RegisteredVersionRecord | None = None


class MlflowModelRecord(_Record):
    """Where the model came from when it was loaded from MLflow (``model.uri`` / ``--model``)."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    tracking_uri: str | None = None


class SkippedRecord(_Record):
    """An optional step that could not run here, and why."""

    what: str
    reason: str


class ModelRecord(_Record):
    """The model the run checked: where it came from, its kind, its fingerprint (the digest that
    ``monitor``, ``compare`` and the MLflow tags tell models apart by) and the layer whose input
    is the features. A run on precomputed features records what their ``meta.json`` says."""

    source: str | None = None
    kind: str | None = None
    fingerprint: str | None = None
    feature_layer: str | None = None


class FeatureExtractionRecord(_Record):
    """One split's deep features: their shape, whether they came from the cache (or were
    precomputed), and the seconds the extraction took."""

    n: int | None = None
    dim: int | None = None
    from_cache: bool = False
    precomputed: bool = False
    seconds: float | None = None


class AttributeAccuracyRecord(_Record):
    """The model's accuracy on the test examples with one metadata value."""

    attribute: str | None = None
    value: Any = None
    size: int | None = None
    accuracy: float | None = None
    error_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


class FeatureCardRecord(_Record):
    """What one used feature of the sparse layer is: the classes that weigh it, its picture
    (relative to results.json), its top and bottom examples, its strongest associations, and its
    LIME explanation and sanity check when it got them."""

    feature: int
    classes: list[dict[str, Any]] = Field(default_factory=list)
    image: str | None = None
    top_examples: list[Any] = Field(default_factory=list)
    bottom_examples: list[Any] = Field(default_factory=list)
    associations: list[dict[str, Any]] = Field(default_factory=list)
    lime: Any = None
    sanity: dict[str, Any] | None = None


class FeatureSanityRecord(_Record):
    """The model-randomisation sanity check of one feature's explanation: the rank correlation
    between the explanations of the trained and of a randomised model (low: trustworthy)."""

    feature: int
    spearman: float | None = None
    trustworthy: bool | None = None
    threshold: float | None = None


class InterpretationSummary(_Record):
    """How the features were interpreted: on which split, how many, and what LIME explained
    (``explain``: the order, the limit, and why a feature the results name was not explained)."""

    split: str | None = None
    used_features: int | None = None
    top_k: int | None = None
    explain: dict[str, Any] | None = None


class SliceSearchSummary(_Record):
    """What the slice search looked at: the test rows, their error rate, the tests it ran."""

    n_rows: int | None = None
    error_rate: float | None = None
    n_tests: int | None = None
    min_support: int | None = None
    columns: list[str] = Field(default_factory=list)


class ErrorBreakdowns(_Record):
    """Accuracy by pairs of values (``by_pair``) and by bins of a used feature's activation within
    a class (``by_feature_activation``)."""

    by_pair: list[dict[str, Any]] = Field(default_factory=list)
    by_feature_activation: list[dict[str, Any]] = Field(default_factory=list)


class ErrorClusterRecord(_Record):
    """An unnamed slice: a cluster of the model's errors in the sparse feature space, described by
    the features that define it."""

    kind: str | None = None
    features: list[dict[str, Any]] = Field(default_factory=list)
    size: int | None = None
    errors: int | None = None
    error_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    q_value: float | None = None


class AutoAttributesSummary(_Record):
    """The automatic attributes (``auto:*``) measured on a split: their columns, how they were
    binned, how many training examples were measured too, and the seconds it took."""

    columns: list[str] = Field(default_factory=list)
    split: str | None = None
    train_rows: int = 0
    seconds: float | None = None


class SpuriousAnalysisSummary(_Record):
    """What the spurious-finding search looked at: the declared, reviewed and automatic attributes,
    the candidates each gave, the interventions run, the features that fire in two modes (``feature_modes``), the declared attributes training ties to no
    class (``untied_attributes``, reviewed instead) and the rule's thresholds (``params``)."""

    split: str | None = None
    attributes: list[str] = Field(default_factory=list)
    review_attributes: list[str] = Field(default_factory=list)
    automatic_attributes: list[str] = Field(default_factory=list)
    n_candidates: int = 0
    n_review_candidates: int = 0
    n_automatic_candidates: int = 0
    interventions: int = 0
    cues_estimated: int = 0
    #: the features tested as ``auto:feature_<id>`` attributes: id, Otsu threshold, separation (Ashman's D)
    feature_modes: list[dict[str, Any]] = Field(default_factory=list)
    untied_attributes: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)


class DenseHeadRecord(_Record):
    """The dense baseline, when the precomputed features of some splits carry no logits: a linear
    head refitted on the train features gives theirs."""

    kind: str | None = None
    splits: list[str] = Field(default_factory=list)
    train_accuracy: float | None = None
    reason: str | None = None
