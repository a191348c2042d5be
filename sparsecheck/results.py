"""What a run found (:class:`RunResults`, the typed contract of ``results.json``), and the one
rule that turns it into a verdict.

``RunResults`` is what the stages fill and every view reads: ``results.json``, the report,
JUnit, MLflow params/metrics/tags, ``compare`` and ``monitor``. Its sections, one typed model
each, are in :mod:`sparsecheck.result_sections` (and importable from here). Its JSON Schema ships with the
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
('pass', '1.4', 'fail', 'warning')
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparsecheck.analysis.association import ASSOCIATION_COLUMNS
from sparsecheck.errors import DataError
from sparsecheck.outputs import jsonable, write_json_atomic
from sparsecheck.result_sections import (  # the sections, typed
    AssertionResult,
    AttributeAccuracyRecord,
    AutoAttributesSummary,
    ClassOrderRecord,
    DataSplitRecord,
    DenseHeadRecord,
    DenseSummary,
    ErrorBreakdowns,
    ErrorClusterRecord,
    FeatureAttributeRecord,
    FeatureCardRecord,
    FeatureExtractionRecord,
    FeatureSanityRecord,
    InterpretationSummary,
    LoggedModelRecord,
    MlflowModelRecord,
    MlflowRecord,
    ModelRecord,
    RegisteredVersionRecord,
    SkippedRecord,
    SliceRecord,
    SliceSearchSummary,
    SparseLayerSummary,
    SparseModelRecord,
    SpuriousAnalysisSummary,
    SpuriousFindingRecord,
    TableArtifactRecord,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["SEVERITY_RANK", "FAILING_STATUSES", "SCHEMA_VERSION", "SCHEMA_PATH", "FEATURE_ATTRIBUTES_FILE",
           "write_schema", "is_failing", "load_feature_attributes", "TableArtifactRecord",
           "failing_assertions", "gate_status", "RunResults", "AssertionResult", "SpuriousFindingRecord",
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
#: ``timings``, ``feature_cards``, ...); the content of a file is that of 1.2. 1.4:
#: ``spurious_analysis.feature_modes`` (the features tested as ``auto:feature_<id>`` attributes)
SCHEMA_VERSION = "1.4"
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
    """True when ``assertion`` (an :class:`AssertionResult`, or its record as results.json holds it)
    fails the gate."""
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
    ``assertions`` holds the engine's own :class:`AssertionResult` objects (results.json lists each
    whole, with its worst failing examples).
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
    assertions: list[AssertionResult] = Field(default_factory=list)
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
    def failing(self, fail_on: FailOn = "error") -> list[AssertionResult]:
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
