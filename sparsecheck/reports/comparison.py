"""What a comparison of two runs holds (:class:`RunComparison`) and its records: assertion, slice,
metric, spurious-finding and class-feature changes, and the check that both runs saw the same test
data; how they are found is :mod:`sparsecheck.reports.compare`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sparsecheck.analysis.matching import FeatureMatching
from sparsecheck.analysis.representation import RepresentationSimilarity
from sparsecheck.reports.compare_render import to_html, to_markdown


@dataclass(frozen=True)
class AssertionChange:
    """One assertion in A and B.

    ``change``: newly_failing (passed in A), fixed, still_failing, passing, added, added_failing
    (only in B), removed (only in A). Only newly_failing error-severity assertions are regressions.
    """

    name: str
    severity: str
    status_a: str | None
    status_b: str | None
    change: str
    observed_a: Any = None
    observed_b: Any = None
    threshold: Any = None
    message: str = ""

    @property
    def is_regression(self) -> bool:
        return self.change == "newly_failing" and self.severity == "error"


@dataclass(frozen=True)
class SliceChange:
    """One slice in A and/or B. ``change``: worse, better, unchanged, new, gone."""

    predicates: dict[str, str]
    change: str
    size_a: int | None = None
    error_rate_a: float | None = None
    ci_a: tuple[float, float] | None = None
    size_b: int | None = None
    error_rate_b: float | None = None
    ci_b: tuple[float, float] | None = None
    q_value_b: float | None = None
    significant_b: bool = False

    @property
    def label(self) -> str:
        return " & ".join(f"{k}={v}" for k, v in self.predicates.items()) or "(all)"

    @property
    def is_regression(self) -> bool:
        return self.change == "worse" or (self.change == "new" and self.significant_b)


@dataclass(frozen=True)
class MetricDelta:
    """A scalar metric in A and B (None where a run lacks it)."""

    name: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class SpuriousChange:
    """A spurious finding (class relies on a feature tied to attribute=value). ``change``: new, resolved, persisting."""

    class_name: str
    attribute: str
    value: str
    change: str
    feature_a: int | None = None
    feature_b: int | None = None
    score_a: float | None = None
    score_b: float | None = None
    sentence: str = ""
    same_feature: bool | None = None  # persisting: is B's feature the match of A's?

    @property
    def is_regression(self) -> bool:
        return self.change == "new"


@dataclass(frozen=True)
class ClassFeature:
    """A feature of one run used by a class, with its weight and best ``|r|`` with the other run."""

    feature: int
    weight: float | None
    best_correlation: float | None = None
    nearest: int | None = None  # the other run's feature that correlates most with it


@dataclass(frozen=True)
class KeptFeature:
    """A class uses the same feature in both runs (``feature_a`` ≙ ``feature_b``)."""

    feature_a: int
    feature_b: int
    correlation: float
    weight_a: float | None
    weight_b: float | None


@dataclass(frozen=True)
class ClassFeatureChange:
    """How one class's features changed from A to B."""

    class_name: str
    kept: list[KeptFeature]
    lost: list[ClassFeature]
    gained: list[ClassFeature]
    n_a: int
    n_b: int

    @property
    def changed(self) -> bool:
        return bool(self.lost or self.gained)


@dataclass(frozen=True)
class EvaluationDataCheck:
    """Were both runs evaluated on the same test data? ``same`` is None when a run records no digest."""

    same: bool | None
    digest_a: str | None
    digest_b: str | None
    message: str


@dataclass
class RunComparison:
    """The comparison of run B against run A.

    Attributes
    ----------
    run_a, run_b : str
    status_a, status_b : str or None
    assertions, slices, metrics, spurious, features : lists of the change records
    matching : FeatureMatching or None
        None when the features could not be matched (no activations, different models).
    regressions : list of str
        One line per regression; empty means none.
    notes : list of str
        What could not be compared, and why.
    representation : RepresentationSimilarity or None
        Linear CKA between the runs' feature layers; None when neither run logged them.
    test_data : EvaluationDataCheck or None
        Whether the two runs' test data are the same (by digest).
    model_a, model_b : dict or None
        The model version each side stands for, when it was given as a model URI
        (see :mod:`sparsecheck.champion`): ``given``, ``label``, ``name``, ``version``, the check's ``run_id``...
    """

    run_a: str
    run_b: str
    status_a: str | None
    status_b: str | None
    assertions: list[AssertionChange]
    slices: list[SliceChange]
    metrics: list[MetricDelta]
    spurious: list[SpuriousChange]
    features: list[ClassFeatureChange]
    matching: FeatureMatching | None
    regressions: list[str]
    notes: list[str] = field(default_factory=list)
    representation: RepresentationSimilarity | None = None
    test_data: EvaluationDataCheck | None = None
    model_a: dict[str, Any] | None = None
    model_b: dict[str, Any] | None = None

    @property
    def has_regression(self) -> bool:
        """True when B regressed against A (the command then exits 1)."""
        return bool(self.regressions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (compare.json)."""
        def slice_dict(s: SliceChange) -> dict[str, Any]:
            d = asdict(s)
            d["ci_a"] = None if s.ci_a is None else list(s.ci_a)
            d["ci_b"] = None if s.ci_b is None else list(s.ci_b)
            return d

        return {
            "run_a": self.run_a, "run_b": self.run_b, "status_a": self.status_a, "status_b": self.status_b,
            "has_regression": self.has_regression, "regressions": list(self.regressions),
            "assertions": [asdict(a) for a in self.assertions],
            "slices": [slice_dict(s) for s in self.slices],
            "metrics": [{**asdict(m), "delta": m.delta} for m in self.metrics],
            "spurious_findings": [asdict(s) for s in self.spurious],
            "features_by_class": [asdict(c) for c in self.features],
            "feature_matching": None if self.matching is None else self.matching.to_dict(),
            "representation": None if self.representation is None else self.representation.to_dict(),
            "test_data": None if self.test_data is None else asdict(self.test_data),
            "notes": list(self.notes),
            "model_a": self.model_a, "model_b": self.model_b,
        }

    # ------------------------------------------------------------------ rendering
    def to_markdown(self) -> str:
        """The comparison as Markdown (what ``sparsecheck compare`` prints); see :mod:`.compare_render`."""
        return to_markdown(self)

    def to_html(self) -> str:
        """A self-contained HTML page, verdict and what changed first; see :mod:`.compare_render`."""
        return to_html(self)
