"""What a run found (:class:`RunResults`, the typed contract of ``results.json``), and the one
rule that turns it into a verdict.

``RunResults`` is what the stages fill and every view reads: ``results.json``, the report,
JUnit, MLflow params/metrics/tags, ``compare`` and ``monitor``. Its JSON Schema ships with the
package (``sparsecheck/schema/results.schema.json``, regenerated from these models by
``python -m sparsecheck.results``); ``schema_version`` says which contract a file follows, and
:meth:`RunResults.from_json` reads this version, the older 1.x ones and the unversioned one, or
refuses a file with a message that says why.

Tables that grow with the features × the metadata values are files next to ``results.json`` that
it points to: the whole feature × metadata-value association table is ``feature_attributes.parquet``
(:class:`TableArtifactRecord` under ``feature_attributes_table``; :func:`load_feature_attributes`
reads it), and ``feature_attributes`` lists only the significant associations, the strongest of
each feature (``analysis.associations_per_feature``). Files from before 1.1 hold the whole table
inline; :func:`load_feature_attributes` reads those too.

The gate rule lives here and nowhere else: a run fails when an assertion at or above the chosen
severity (``error`` by default) has status ``fail`` or ``error`` — an assertion that raised counts
as failing, because a gate must not pass on a crash. ``results.json``, the report, JUnit, MLflow
tags, ``compare`` and ``monitor`` all ask :func:`gate_status` / :func:`failing_assertions`.

Examples
--------
>>> checks = [{"name": "acc", "status": "pass", "severity": "error"},
...           {"name": "recall", "status": "fail", "severity": "warning"}]
>>> gate_status(checks), gate_status(checks, fail_on="warning")
('pass', 'fail')
>>> [a["name"] for a in failing_assertions(checks, fail_on="warning")]
['recall']
>>> r = RunResults.from_dict({"status": "pass", "assertions": checks})
>>> r.status, r.schema_version, r.gate("warning"), r.assertions[1].severity
('pass', '1.3', 'fail', 'warning')
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sparsecheck.analysis.association import ASSOCIATION_COLUMNS
from sparsecheck.errors import DataError
from sparsecheck.outputs import jsonable, write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["SEVERITY_RANK", "FAILING_STATUSES", "SCHEMA_VERSION", "SCHEMA_PATH", "FEATURE_ATTRIBUTES_FILE",
           "write_schema", "is_failing", "load_feature_attributes", "TableArtifactRecord",
           "failing_assertions", "gate_status", "RunResults", "AssertionRecord", "SpuriousFindingRecord",
           "SliceRecord", "FeatureAttributeRecord", "SparseLayerSummary", "MlflowRecord", "MlflowModelRecord",
           "SkippedRecord", "DataSplitRecord", "SparseModelRecord", "LoggedModelRecord", "RegisteredVersionRecord",
           "DenseSummary", "ClassOrderRecord", "ModelRecord", "FeatureExtractionRecord", "AttributeAccuracyRecord",
           "FeatureCardRecord", "FeatureSanityRecord", "InterpretationSummary", "SliceSearchSummary",
           "ErrorBreakdowns", "ErrorClusterRecord", "AutoAttributesSummary", "SpuriousAnalysisSummary",
           "DenseHeadRecord", "results_mapping"]

#: the contract's version: the major number changes when a reader of the old one would misread.
#: 1.1: ``feature_attributes`` lists the significant associations; the whole table is the
#: artifact ``feature_attributes_table`` points to. 1.2: one spurious finding per shortcut (``features``,
#: ``other_sides``, ``also_seen_as``, ``automatic``), ``forward_passes`` per stage, ``mlflow.status``
#: (the MLflow run's final status). 1.3: every section is typed (``model``, ``data``, ``features``,
#: ``timings``, ``feature_cards``, ...); the content of a file is that of 1.2
SCHEMA_VERSION = "1.3"
#: the whole association table, next to results.json (and among the MLflow run's artifacts)
FEATURE_ATTRIBUTES_FILE = "feature_attributes.parquet"
#: the JSON Schema of results.json, shipped with the package
SCHEMA_PATH = Path(__file__).with_name("schema") / "results.schema.json"

#: assertion severities, lowest first
SEVERITY_RANK = {"warning": 0, "error": 1}
#: statuses that count against the gate (``error``: the assertion itself raised)
FAILING_STATUSES = ("fail", "error")

FailOn = Literal["error", "warning"]


def _get(assertion: Any, key: str, default: Any = None) -> Any:
    if isinstance(assertion, Mapping):
        return assertion.get(key, default)
    return getattr(assertion, key, default)


def is_failing(assertion: Any, fail_on: FailOn = "error") -> bool:
    """True when ``assertion`` (a results.json record or an AssertionResult) fails the gate."""
    if fail_on not in SEVERITY_RANK:
        raise ValueError(f"fail_on must be one of {sorted(SEVERITY_RANK)}, got {fail_on!r}")
    severity = _get(assertion, "severity") or "error"
    return (_get(assertion, "status") in FAILING_STATUSES
            and SEVERITY_RANK.get(severity, SEVERITY_RANK["error"]) >= SEVERITY_RANK[fail_on])


def failing_assertions(assertions: Iterable[Any] | None, fail_on: FailOn = "error") -> list[Any]:
    """The assertions that fail the gate at ``fail_on`` severity, in their order."""
    return [a for a in assertions or [] if is_failing(a, fail_on)]


def gate_status(assertions: Iterable[Any] | None, fail_on: FailOn = "error") -> str:
    """``"fail"`` when any assertion fails the gate, else ``"pass"``."""
    return "fail" if failing_assertions(assertions, fail_on) else "pass"


# --------------------------------------------------------------------------- the typed contract
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


class AssertionRecord(_Record):
    """One assertion's outcome."""

    name: str
    status: Literal["pass", "fail", "error"]
    severity: Literal["error", "warning"] = "error"
    observed: Any = None
    threshold: Any = None
    message: str | None = None


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
    attributes marking the same images; ``automatic``: found on an automatic image attribute.
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
    the candidates each gave, the interventions run, the declared attributes training ties to no
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
    untied_attributes: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)


class DenseHeadRecord(_Record):
    """The dense baseline, when the precomputed features of some splits carry no logits: a linear
    head refitted on the train features gives theirs."""

    kind: str | None = None
    splits: list[str] = Field(default_factory=list)
    train_accuracy: float | None = None
    reason: str | None = None


class RunResults(BaseModel):
    """The typed contract of ``results.json``, section by section, built as the run goes.

    Each stage sets its sections (``ctx.run_results.dense = DenseSummary(...)``); an assigned
    section is validated into its model. :meth:`to_dict` writes the sections that were set, so a
    section a stage did not reach (no ``auto_attributes`` when they are off, no ``dense_head``
    when every split carries logits) is absent from results.json, as before 1.3.

    The sections typed in 1.3 (``features``, ``accuracy_by_attribute``, ``feature_cards``, ...)
    went unchecked before: their fields are optional, beyond a card's and a sanity check's
    ``feature``, so that an older file still loads.

    ``feature_attributes`` lists the significant associations (all of them before 1.1); the
    whole table is the file ``feature_attributes_table`` points to (:func:`load_feature_attributes`).
    Every section a run writes is typed; a record may carry more fields than it types (kept).
    ``status`` must agree with the gate rule over ``assertions`` (:func:`gate_status`).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=True)

    status: Literal["pass", "fail"]
    schema_version: str = SCHEMA_VERSION
    sparsecheck_version: str | None = None
    #: when the run started (ISO 8601, UTC)
    created: str | None = None
    model: ModelRecord | None = None
    mlflow_model: MlflowModelRecord | None = None
    data: dict[str, DataSplitRecord] | None = None
    #: each split's deep features (extracted, cached or precomputed)
    features: dict[str, FeatureExtractionRecord] | None = None
    dense: DenseSummary | None = None
    accuracy_by_attribute: list[AttributeAccuracyRecord] = Field(default_factory=list)
    sparse_layer: SparseLayerSummary | None = None
    feature_attributes: list[FeatureAttributeRecord] = Field(default_factory=list)
    feature_attributes_table: TableArtifactRecord | None = None
    spurious_findings: list[SpuriousFindingRecord] = Field(default_factory=list)
    slices: list[SliceRecord] = Field(default_factory=list)
    assertions: list[AssertionRecord] = Field(default_factory=list)
    mlflow: MlflowRecord | None = None
    #: where the model and solvers ran (``cpu``, ``cuda``, ...)
    device: str | None = None
    #: the kind of input (``data.modality``: ``image``, ``text``, ...)
    modality: str | None = None
    dense_head: DenseHeadRecord | None = None
    auto_attributes: AutoAttributesSummary | None = None
    feature_cards: list[FeatureCardRecord] = Field(default_factory=list)
    feature_sanity: list[FeatureSanityRecord] = Field(default_factory=list)
    interpretation: InterpretationSummary | None = None
    slice_search: SliceSearchSummary | None = None
    feature_slices: list[SliceRecord] = Field(default_factory=list)
    error_breakdowns: ErrorBreakdowns | None = None
    error_clusters: list[ErrorClusterRecord] = Field(default_factory=list)
    automatic_findings: list[SpuriousFindingRecord] = Field(default_factory=list)
    #: associations of the attributes not declared spurious, to review (as findings, at most MAX_REVIEW)
    associations_to_review: list[SpuriousFindingRecord] = Field(default_factory=list)
    spurious_analysis: SpuriousAnalysisSummary | None = None
    #: seconds each stage took
    timings: dict[str, float | None] = Field(default_factory=dict)
    #: images each stage ran the model on (stages that ran it); the extraction's are its splits' sizes
    forward_passes: dict[str, int] = Field(default_factory=dict)
    sparse_model: SparseModelRecord | None = None
    skipped: list[SkippedRecord] = Field(default_factory=list)

    def recorded(self, section: str) -> bool:
        """True when the run set ``section`` (a file: the section is in it)."""
        return section in self.model_fields_set

    def record_skip(self, what: str, reason: str) -> None:
        """Add ``what`` to ``skipped``: an optional step that could not run here, and why."""
        self.skipped = [*self.skipped, SkippedRecord(what=what, reason=reason)]

    # -- the verdict
    def failing(self, fail_on: FailOn = "error") -> list[AssertionRecord]:
        """The assertions that fail the gate at ``fail_on`` severity."""
        return failing_assertions(self.assertions, fail_on)

    def gate(self, fail_on: FailOn = "error") -> str:
        """``"pass"`` or ``"fail"`` at ``fail_on`` severity."""
        return gate_status(self.assertions, fail_on)

    # -- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict that results.json holds (aliases such as ``class`` and ``lambda``):
        the sections that were set (read from a file: those it holds), in the contract's order."""
        return jsonable(self.model_dump(by_alias=True, exclude_unset=True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "results") -> "RunResults":
        """Read a results mapping of this contract, of an older 1.x one or of the unversioned one.

        Raises
        ------
        DataError
            naming ``source`` and what does not fit: a newer major version, a missing or
            malformed contract section, or a status that disagrees with the assertions.
        """
        if not isinstance(data, Mapping):
            raise DataError(f"{source}: results must be a JSON object, got {type(data).__name__}")
        version = str(data.get("schema_version") or "0")
        major = version.split(".")[0]
        if major not in ("0", SCHEMA_VERSION.split(".")[0]):
            raise DataError(f"{source}: results.json schema_version {version} was written by a newer "
                            f"sparsecheck (this one reads {SCHEMA_VERSION} and older); upgrade sparsecheck")
        try:
            results = cls.model_validate(dict(data))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            older = " (a results.json from before schema_version 1.0)" if major == "0" else ""
            raise DataError(f"{source}{older}: {where}: {err['msg']}; re-run the check with this "
                            f"sparsecheck to compare against it") from None
        if results.status != results.gate():
            raise DataError(f"{source}: status {results.status!r} disagrees with its assertions "
                            f"({len(results.failing())} fail the gate); the file was edited or is corrupt")
        return results

    @classmethod
    def from_json(cls, path: str | Path) -> "RunResults":
        """Read a ``results.json`` file (see :meth:`from_dict`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read results: {exc}", path=path) from exc
        return cls.from_dict(data, source=str(path))

    def to_json(self, path: str | Path) -> None:
        """Write results.json atomically (see :func:`sparsecheck.outputs.write_json_atomic`)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of results.json (what ``sparsecheck/schema/results.schema.json`` holds)."""
        schema = cls.model_json_schema(by_alias=True, mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://sparsecheck/results-{SCHEMA_VERSION}.schema.json"
        schema["title"] = "sparsecheck results.json"
        return schema


def results_mapping(results: "RunResults | Mapping[str, Any]") -> Mapping[str, Any]:
    """What a reader of results reads: a :class:`RunResults` as the dict results.json holds, a
    mapping (a results.json as loaded, perhaps partial) as it is.

    >>> results_mapping(RunResults(status="pass", timings={"load": 0.1}))
    {'status': 'pass', 'timings': {'load': 0.1}}
    """
    return results.to_dict() if isinstance(results, RunResults) else results


def load_feature_attributes(results: str | Path) -> "pd.DataFrame":
    """The whole feature × metadata-value association table of the run whose ``results.json`` is
    at ``results`` (a file, or the run's output directory).

    Reads the file ``feature_attributes_table`` points to, relative to the results file; a
    results.json from before 1.1, which holds the whole table inline, gives its
    ``feature_attributes`` list as a table.

    Raises
    ------
    DataError
        the results file cannot be read or does not fit the contract, or the table it points to
        is missing, unreadable or not the one described (another row count).
    """
    import pandas as pd


    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    run = RunResults.from_json(path)
    pointer = run.feature_attributes_table
    if pointer is None:
        rows = [r.model_dump(by_alias=True) for r in run.feature_attributes]
        return pd.DataFrame(rows, columns=list(dict.fromkeys([*ASSOCIATION_COLUMNS, *(k for r in rows for k in r)])))
    table_path = path.parent / pointer.path
    if not table_path.is_file():
        raise DataError(f"the association table {pointer.path!r} that {path.name} points to is missing; "
                        f"copy it along with the results file", path=table_path)
    try:
        table = pd.read_parquet(table_path)
    except Exception as exc:
        raise DataError(f"cannot read the association table: {exc}", path=table_path) from exc
    if len(table) != pointer.rows:
        raise DataError(f"the association table has {len(table)} rows but {path.name} says {pointer.rows}: "
                        f"it belongs to another run", path=table_path)
    return table


def write_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Write the JSON Schema of :class:`RunResults` to ``path`` (by default the shipped file).

    Run it when the models change (``python -m sparsecheck.results``); a test checks that the
    shipped file is the models' schema.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(RunResults.json_schema(), indent=2) + "\n", encoding="utf-8")
    logger.info("wrote the results schema to %s", path)
    return path


if __name__ == "__main__":  # pragma: no cover
    from sparsecheck import results  # the package's module (its logger is sparsecheck.results), not __main__
    from sparsecheck.logs import setup_logging  # only command-line entry points configure output

    setup_logging(0, False)
    results.write_schema()
