"""The run configuration: a YAML file validated up front.

Unknown keys, wrong types, missing files and shape mismatches are rejected before any work starts,
with the key path and the offending value named. Relative paths are resolved against the
directory of the config file.

A minimal config::

    model:
      path: model.pt2            # or factory: pkg.mod:make_net + weights: net.pt
      input: {scale: 255, mean: [0.5], std: [0.5]}
    data:
      train: train.npz
      val: val.npz
      test: test.npz
      metadata: metadata.csv
      spurious_attributes: [background]
      class_names: [cat, dog]

Examples
--------
>>> cfg = Config.model_validate({"model": {"path": "m.pt2"}, "data": {"train": "a.npz", "test": "b.npz"}})
>>> cfg.sparse.alpha, cfg.features.batch_size
(0.99, 256)
>>> Config.model_validate({"model": {"path": "m.pt2"}, "data": {"train": "a.npz", "test": "b.npz"},
...                        "sparse": {"alpah": 1}})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Config
...
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from sparsecheck.assertions.spec import parse_assertions
from sparsecheck.data import InputSpec
from sparsecheck.data.precomputed import is_features
from sparsecheck.defaults import ANALYSIS, SPARSE
from sparsecheck.errors import ConfigError, brief
from sparsecheck.modalities import DEFAULT_MODALITY, get_modality, modality_names
from sparsecheck.models import load_model
from sparsecheck.analysis.spurious import PARAMETER_CONSTRAINTS as SPURIOUS
from sparsecheck.constraints import field_limits
from sparsecheck.sparse.constraints import PARAMETER_CONSTRAINTS as LAYER
from sparsecheck.tracking.registry import check_alias_name, parse_model_uri
from sparsecheck.yaml_input import read_yaml
from sparsecheck.assertions.pool import pool_assertions

__all__ = [
    "Config",
    "ModelConfig",
    "InputConfig",
    "DataConfig",
    "FeaturesConfig",
    "SparseConfig",
    "AnalysisConfig",
    "MlflowConfig",
    "SelectConfig",
    "load_config",
    "parse_config",
    "pool_assertions",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(_Strict):
    """How stored uint8 images become model input: ``(geometry(x) / scale - mean) / std``.

    The geometry is ``size: [H, W]`` (resize to exactly that), or torchvision's preset
    ``resize: N`` (shorter side to N) then ``crop: M`` or ``[H, W]`` (centre crop); it is applied
    to each image as it is loaded, so image files may differ in size.
    """

    scale: float = Field(255.0, gt=0)
    mean: list[float] | None = None
    std: list[float] | None = None
    size: tuple[int, int] | None = None
    resize: int | None = Field(None, ge=1)
    crop: int | tuple[int, int] | None = None
    channels: Literal[1, 3] | None = None
    channel_order: Literal["rgb", "bgr"] = "rgb"

    @field_validator("size", "crop")
    @classmethod
    def _positive_sides(cls, v: Any) -> Any:
        if v is not None and min((v, v) if isinstance(v, int) else v) < 1:
            raise ValueError("sides must be >= 1")
        return v

    @model_validator(mode="after")
    def _one_resize(self) -> "InputConfig":
        if self.size is not None and self.resize is not None:
            raise ValueError("give model.input.size (resize to H×W) or model.input.resize (shorter side, "
                             "usually with model.input.crop), not both")
        return self

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v

    def to_spec(self) -> Any:
        return InputSpec(scale=self.scale, mean=None if self.mean is None else tuple(self.mean),
                         std=None if self.std is None else tuple(self.std),
                         size=self.size, channels=self.channels, channel_order=self.channel_order,
                         resize=self.resize,
                         crop=(self.crop, self.crop) if isinstance(self.crop, int) else self.crop)


#: the keys of ``model:`` that name where the model comes from (exactly one, or none for features)
MODEL_SOURCES = ("path", "factory", "torchvision", "timm", "huggingface", "uri")


class ModelConfig(_Strict):
    """Where the model comes from (exactly one source) and how to read it.

    When every data split is precomputed features (:mod:`sparsecheck.data.precomputed`) the
    model is optional; when given, its fingerprint is checked against the features' ``meta.json``.

    ``feature_layer`` names a module as in the original ``nn.Module`` (``avgpool``, ``layer4``,
    ``classifier.1``); its *output* is taken, as in torchvision's feature extraction. ``NAME:input``
    takes the module's *input* instead (``fc:input`` is what the head ``fc`` sees, the default).

    ``uri`` is an MLflow model (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
    ``runs:/RUN_ID/PATH``, ``models:/m-...``) logged with the ``mlflow.pytorch`` flavour, loaded
    from the run's tracking server (``mlflow.tracking_uri`` / ``--tracking-uri``). The flavour
    unpickles, so load only models from your own tracking server. An MLflow model brings no
    preprocessing: ``input`` says how images become its input (default: divide by 255).

    ``trust_pickle`` (``--trust-pickle``): load a ``.pt2`` or TorchScript file (or an MLflow ``pt2``
    model) although its archive holds pickles, which loading runs as code; without it such a file
    is refused, naming the archive entry (see :mod:`sparsecheck.model_archives`).
    """

    path: Path | None = None
    factory: str | None = None
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None
    torchvision: str | None = None
    torchvision_weights: str = "DEFAULT"
    timm: str | None = None
    huggingface: Path | None = None
    #: a text model's tokenizer (a save_pretrained directory or a tokenizer.json): for model.factory
    #: and MLflow pytorch models, or instead of the one saved with model.huggingface
    tokenizer: Path | None = None
    #: tokens per text at most (default: the tokenizer's and the model's own limit, else 512)
    max_length: int | None = Field(None, ge=2)
    uri: str | None = None
    feature_layer: str | None = None
    input: InputConfig = Field(default_factory=InputConfig)
    trust_pickle: bool = False

    @field_validator("uri")
    @classmethod
    def _model_uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return parse_model_uri(v).uri  # ValueError names the URI and the accepted forms

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
        given = self.sources_given
        # settings of a source without the source (no model at all is for precomputed features)
        orphans = not given and (self.factory_kwargs or self.torchvision_weights != "DEFAULT")
        if len(given) > 1 or orphans:
            raise ValueError("give exactly one of " + ", ".join(f"model.{k}" for k in MODEL_SOURCES)
                             + f" (got {given or 'none'})")
        if self.weights is not None and self.factory is None and self.timm is None:
            raise ValueError("model.weights goes with model.factory or model.timm")
        if self.tokenizer is not None and not (self.factory or self.huggingface or self.uri):
            raise ValueError("model.tokenizer goes with a text model: model.huggingface, model.factory or model.uri")
        if self.path is not None and self.path.suffix not in (".pt2", ".pt", ".pth", ".ts"):
            raise ValueError(f"model.path must be a .pt2 exported program or a TorchScript .pt, got {self.path}")
        return self

    @property
    def sources_given(self) -> list[str]:
        """The model sources this section names (one, or none when every split is precomputed features)."""
        return [k for k in MODEL_SOURCES if getattr(self, k)]

    def load(self, *, tracking_uri: str | None = None) -> Any:
        """Load the model this section names (a :class:`sparsecheck.models.Model`); an MLflow
        ``uri`` is resolved against ``tracking_uri``.

        Raises
        ------
        ConfigError
            when it names none.
        """
        if not self.sources_given:
            raise ConfigError("required key is missing: give one of " + ", ".join(f"model.{k}" for k in MODEL_SOURCES)
                              + " (only splits of precomputed features can do without a model)", key="model")

        return load_model(path=self.path, factory=self.factory, weights=self.weights,
                          factory_kwargs=self.factory_kwargs, torchvision=self.torchvision,
                          torchvision_weights=self.torchvision_weights, timm=self.timm,
                          huggingface=self.huggingface, uri=self.uri, tracking_uri=tracking_uri,
                          trust_pickle=self.trust_pickle, tokenizer=self.tokenizer)

    def input_spec(self, model: Any = None) -> Any:
        """The :class:`~sparsecheck.data.InputSpec`: ``model.input`` when the config gives it, else
        the preprocessing the model's weights declare (torchvision, timm, Hugging Face), else the
        defaults (divide by 255)."""
        preset = getattr(model, "preprocessing", None)
        if "input" in self.model_fields_set or not preset:
            return self.input.to_spec()
        return InputConfig.model_validate(preset).to_spec()


class DataConfig(_Strict):
    """Data splits, metadata and what the model must not rely on.

    A split is an ``.npz``, an ImageFolder directory or a ``.csv``/``.parquet`` manifest
    (``path``, ``label``, optional ``id``, other columns are metadata), or precomputed features
    (a directory written by ``sparsecheck extract --out``, an ``.npz`` with ``features``, a Parquet
    file with a ``features`` column: :mod:`sparsecheck.data.precomputed`). ``skip_unreadable`` leaves
    out image files that cannot be decoded (after one full decoding pass) instead of failing.
    ``modality`` says what kind of input the splits hold (``image``, the default; see
    :func:`sparsecheck.modalities.modality_names`).
    """

    train: Path
    val: Path | None = None
    test: Path
    #: the kind of input (:mod:`sparsecheck.modalities`): how splits are read, explained and intervened on
    modality: str = DEFAULT_MODALITY
    #: the column of a text manifest that holds the texts (``data.modality: text``; default ``text``)
    text_column: str | None = None
    metadata: Path | None = None
    id_column: str = "id"
    class_names: list[str] | None = None
    spurious_attributes: list[str] = Field(default_factory=list)
    skip_unreadable: bool = False
    #: per spurious attribute: ``{value: V, put: CUE, remove: CUE or null}`` (see
    #: :func:`sparsecheck.analysis.cues.parse_intervention`)
    interventions: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("modality")
    @classmethod
    def _known_modality(cls, v: str) -> str:
        if v not in modality_names():
            raise ValueError(f"no modality {v!r} (known: {', '.join(modality_names())})")
        return v

    @model_validator(mode="after")
    def _check_interventions(self) -> "DataConfig":
        if self.text_column is not None and self.modality != "text":
            raise ValueError(f"data.text_column goes with data.modality: text (got data.modality: {self.modality})")
        modality = get_modality(self.modality)
        for attribute, spec in self.interventions.items():
            if not isinstance(spec, dict) or "value" not in spec:
                raise ValueError(f"data.interventions.{attribute} needs 'value' (the attribute value the cue "
                                 f"stands for) and 'put' (the cue), e.g. {{value: yes, put: {{type: patch}}}}")
            modality.parse_intervention({k: w for k, w in spec.items() if k != "value"},
                                        key=f"data.interventions.{attribute}")
        return self


class FeaturesConfig(_Strict):
    """Feature extraction settings."""

    batch_size: int = Field(256, ge=1)
    num_workers: int | str = "auto"  # "auto": min(4, CPUs) for image files, 0 for in-memory .npz data
    precision: Literal["fp32", "bf16"] = "fp32"
    cache_dir: Path | None = Path(".sparsecheck-cache")

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, v: int | str) -> int | str:
        if v != "auto" and not (isinstance(v, int) and v >= 0):
            raise ValueError("must be 'auto' or an int >= 0")
        return v


class SparseConfig(_Strict):
    """Hyper-parameters of the sparse decision layer (see SparseDecisionLayer); defaults in
    :data:`sparsecheck.defaults.SPARSE`."""

    alpha: float = Field(SPARSE["alpha"], **field_limits(LAYER, "alpha"))
    n_lambdas: int = Field(SPARSE["n_lambdas"], **field_limits(LAYER, "n_lambdas"))
    lambda_min_ratio: float = Field(SPARSE["lambda_min_ratio"], **field_limits(LAYER, "lambda_min_ratio"))
    tolerance: float = Field(SPARSE["tolerance"], **field_limits(LAYER, "tolerance"))
    features_per_class: int | None = Field(SPARSE["features_per_class"], **field_limits(LAYER, "features_per_class"))
    early_stop: bool = SPARSE["early_stop"]
    solver: Literal["auto", "fista", "glm_saga"] = SPARSE["solver"]
    precision: Literal["fp32", "bf16"] = SPARSE["precision"]
    max_epochs: int | None = Field(SPARSE["max_epochs"], **field_limits(LAYER, "max_epochs"))
    tol: float | None = Field(SPARSE["tol"], **field_limits(LAYER, "tol"))
    random_state: int = Field(SPARSE["random_state"], **field_limits(LAYER, "random_state"))


class AnalysisConfig(_Strict):
    """Interpretation and analysis settings; defaults in :data:`sparsecheck.defaults.ANALYSIS`."""

    top_k: int = Field(ANALYSIS["top_k"], ge=1)
    explain: bool = ANALYSIS["explain"]
    explain_features: int | None = Field(ANALYSIS["explain_features"], ge=1)  # LIME'd features, reader's need first
    explain_budget_s: float | None = Field(ANALYSIS["explain_budget_s"], gt=0)  # LIME + sanity time budget
    lime_samples: int = Field(ANALYSIS["lime_samples"], ge=10)
    lime_convergence: float | None = Field(ANALYSIS["lime_convergence"], gt=0, le=1)  # adaptive LIME sample size
    card_images: int | None = Field(ANALYSIS["card_images"], ge=0)  # card pictures, reader's need first
    # significant associations results.json lists per feature; the whole table: feature_attributes.parquet
    associations_per_feature: int | None = Field(ANALYSIS["associations_per_feature"], ge=0)
    lime_examples: int = Field(ANALYSIS["lime_examples"], ge=1)
    sanity_check: bool = ANALYSIS["sanity_check"]
    sanity_features: int = Field(ANALYSIS["sanity_features"], ge=1)
    sanity_examples: int = Field(ANALYSIS["sanity_examples"], ge=1)
    sanity_threshold: float = Field(ANALYSIS["sanity_threshold"], gt=0, le=1)
    sanity_cascade: bool = ANALYSIS["sanity_cascade"]
    auto_attributes: bool = ANALYSIS["auto_attributes"]
    interventions: bool = ANALYSIS["interventions"]
    intervention_samples: int = Field(ANALYSIS["intervention_samples"], ge=10)
    spurious_min_auc: float = Field(ANALYSIS["spurious_min_auc"], **field_limits(SPURIOUS, "min_auc"))
    spurious_min_gap: float = Field(ANALYSIS["spurious_min_gap"], **field_limits(SPURIOUS, "min_gap"))
    spurious_min_ablation: float = Field(ANALYSIS["spurious_min_ablation"], **field_limits(SPURIOUS, "min_ablation"))
    spurious_min_group: int = Field(ANALYSIS["spurious_min_group"], **field_limits(SPURIOUS, "min_group"))
    spurious_min_enrichment: float = Field(ANALYSIS["spurious_min_enrichment"], **field_limits(SPURIOUS, "min_enrichment"))
    fdr: float = Field(ANALYSIS["fdr"], **field_limits(SPURIOUS, "fdr"))
    min_support: int = Field(ANALYSIS["min_support"], ge=1)
    max_predicates: int = Field(ANALYSIS["max_predicates"], ge=1, le=4)
    slices_top_k: int = Field(ANALYSIS["slices_top_k"], ge=1)
    feature_slice_features: int | None = Field(ANALYSIS["feature_slice_features"], ge=1)


class MlflowConfig(_Strict):
    """Where runs are logged.

    ``promote_alias`` (e.g. ``validated``): when the model comes from the registry
    (``model.uri: models:/NAME/VERSION`` or ``models:/NAME@ALIAS``) and the gate passes, this alias
    is moved onto the checked version; a failing gate never moves it.
    """

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "sparsecheck"
    run_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    #: log the sparse layer as MLflow models (body + sparse head, and the head alone; pt2 format)
    log_sparse_model: bool = True
    #: register the logged sparse classifier as a new version of this registered model
    register_sparse_model: str | None = None
    #: set this alias on the registered model version that was checked, only when the gate passes
    promote_alias: str | None = None

    @field_validator("promote_alias")
    @classmethod
    def _alias(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return check_alias_name(v)


class SelectConfig(_Strict):
    """What ``sparsecheck select`` and ``sparsecheck weak-labels`` check on an unlabelled pool.

    ``assertions`` are label-free assertions run on the pool (and by ``monitor --correct``) besides
    the config's own label-free ones, never on the test split: typically a ``consistency`` over a
    key or a ``flicker`` over sequences, whose columns the pool has and the test split may not.
    They are declared as under ``assertions:`` and checked with the config.
    """

    assertions: list[dict[str, Any]] = Field(default_factory=list)


class Config(_Strict):
    """A whole run configuration.

    ``assertions`` holds the YAML mappings as written (they round-trip, and MLflow logs them);
    :func:`parse_config` parses them once, and :attr:`parsed_assertions` gives the result.
    """

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    sparse: SparseConfig = Field(default_factory=SparseConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    assertions: list[dict[str, Any]] = Field(default_factory=list)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    seed: int = 0

    # filled by load_config
    base_dir: Path = Field(default=Path("."), exclude=True)
    # (what they were parsed from, the Assertion objects): set by parse_config
    _parsed: tuple[str, list[Any]] | None = PrivateAttr(default=None)

    @property
    def parsed_assertions(self) -> list[Any]:
        """``assertions`` as :class:`~sparsecheck.assertions.Assertion` objects, with the implied
        ``better-than-chance`` (every config), ``no-spurious-reliance`` (``data.spurious_attributes``)
        and ``no-automatic-shortcuts`` (``analysis.auto_attributes`` and ``analysis.interventions``).

        Parsed by :func:`parse_config` (which reports a malformed one before any work starts);
        parsed again only when ``assertions``, ``data.spurious_attributes`` or
        ``data.class_names`` changed since.
        """
        automatic = bool(self.analysis.auto_attributes and self.analysis.interventions)
        key = repr((self.assertions, self.data.spurious_attributes, self.data.class_names, automatic))
        if self._parsed is None or self._parsed[0] != key:
            self._parsed = (key, parse_assertions(self.assertions, spurious_attributes=self.data.spurious_attributes,
                                                  class_names=self.data.class_names, chance_guard=True,
                                                  automatic_guard=automatic))
        return self._parsed[1]

    def use_model_uri(self, uri: str, *, key: str = "--model") -> None:
        """Make the MLflow model ``uri`` the model source (``--model``), in place of the config's.

        ``model.feature_layer``, ``model.input`` and ``model.trust_pickle`` are kept: they say how to
        read the model.

        Raises
        ------
        ConfigError
            naming ``key`` when ``uri`` is not an MLflow model URI.
        """
        kept = self.model.model_dump(include={"feature_layer", "input", "trust_pickle", "tokenizer", "max_length"},
                                     exclude_unset=True)
        try:
            self.model = ModelConfig.model_validate({**kept, "uri": uri})
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ConfigError(msg, key=key, value=uri) from None

    def check_promotion(self) -> None:
        """Refuse ``mlflow.promote_alias`` (``--promote-alias``) where there is no version to promote.

        Raises
        ------
        ConfigError
            when the model is not a registered version, or MLflow logging is off.
        """
        alias = self.mlflow.promote_alias
        if alias is None:
            return
        if self.model.uri is None or not parse_model_uri(self.model.uri).registered:
            raise ConfigError(f"alias {alias!r} can only be set on a registered model version: give the model as "
                              "models:/NAME/VERSION or models:/NAME@ALIAS (model.uri or --model)",
                              key="mlflow.promote_alias", value=alias)
        if not self.mlflow.enabled:
            raise ConfigError("needs mlflow.enabled: the verdict on the model version points at the "
                              "sparsecheck MLflow run", key="mlflow.promote_alias", value=alias)

    def to_flat_dict(self) -> dict[str, str]:
        """``{"sparse.alpha": "0.99", ...}`` for logging as MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = str(obj)

        walk("", self.model_dump(mode="json", exclude={"assertions", "base_dir", "select"}))
        out["assertions.count"] = str(len(self.assertions))
        if self.select.assertions:
            out["select.assertions.count"] = str(len(self.select.assertions))
        return out


def _format_loc(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif p in ("function-after", "function-before") or str(p).startswith(("function-", "tuple[", "list[")):
            continue
        else:
            parts.append(str(p))
    return ".".join(parts)


def _known_keys(loc: tuple) -> list[str]:
    """The keys a config section accepts, for the section at ``loc`` (``()`` is the top level)."""
    cls: Any = Config
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        cls = ann
    return [name for name, f in cls.model_fields.items() if not f.exclude]


def parse_config(raw: Any, *, base_dir: str | Path = ".", check_files: bool = True) -> Config:
    """Validate a config mapping (as read from YAML) and resolve its paths.

    Raises
    ------
    ConfigError
        naming the first offending key path and value.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {type(raw).__name__}")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # a misspelt key ("modle:") also makes the key it was meant to be missing: name the typo first
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key = _format_loc(err["loc"]) or "<root>"
        kind = err["type"]
        if kind == "extra_forbidden":
            hint = difflib.get_close_matches(str(err["loc"][-1]), _known_keys(err["loc"][:-1]), n=1)
            raise ConfigError("unknown key" + (f"; did you mean {hint[0]!r}?" if hint else ""), key=key) from None
        if kind == "missing":
            raise ConfigError("required key is missing", key=key) from None
        value = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        shown = brief(value) if not isinstance(value, dict) else "{...}"
        msg = msg if len(msg) <= 300 else msg[:297] + "..."  # a validator's message may quote the value
        raise ConfigError(f"{msg} (got {shown})", key=key, value=value) from None
    cfg.parsed_assertions  # noqa: B018 - parses them: a malformed assertion fails here, before any work
    if cfg.select.assertions:
        pool_assertions(cfg)  # select.assertions too
    base = Path(base_dir)
    cfg.base_dir = base
    _resolve_paths(cfg, base)
    if check_files:
        check_paths(cfg)
        _check_model_needed(cfg)
    return cfg


def _check_model_needed(cfg: Config) -> None:
    """Without a model source, every split must be precomputed features."""
    if cfg.model.sources_given:
        return
    for split in ("train", "val", "test"):
        path = getattr(cfg.data, split)
        if path is not None and not is_features(path):
            raise ConfigError(f"required key is missing: data.{split} ({path.name}) holds images, which need a "
                              f"model; only splits of precomputed features can do without one", key="model")


def _resolve_paths(cfg: Config, base: Path) -> None:
    def fix(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (base / p)

    cfg.model.path = fix(cfg.model.path)
    cfg.model.weights = fix(cfg.model.weights)
    cfg.model.huggingface = fix(cfg.model.huggingface)
    cfg.model.tokenizer = fix(cfg.model.tokenizer)
    for k in ("train", "val", "test", "metadata"):
        setattr(cfg.data, k, fix(getattr(cfg.data, k)))
    cfg.features.cache_dir = fix(cfg.features.cache_dir)


def check_paths(cfg: Config) -> None:
    """Every file the config names must exist."""
    checks = [("model.path", cfg.model.path), ("model.weights", cfg.model.weights),
              ("model.huggingface", cfg.model.huggingface), ("model.tokenizer", cfg.model.tokenizer),
              ("data.train", cfg.data.train), ("data.val", cfg.data.val), ("data.test", cfg.data.test),
              ("data.metadata", cfg.data.metadata)]
    for key, p in checks:
        if p is not None and not p.exists():
            tried = os.path.abspath(p)
            raise ConfigError(f"file not found: {tried}", key=key, value=tried)


def load_config(path: str | Path, *, check_files: bool = True) -> Config:
    """Read and validate a YAML config file.

    The file must be UTF-8, at most :data:`MAX_CONFIG_BYTES`, and expand to at most
    :data:`MAX_CONFIG_VALUES` values once its YAML aliases are followed
    (:func:`sparsecheck.yaml_input.read_yaml`).

    Raises
    ------
    ConfigError
        for a missing, unreadable, oversized or non-UTF-8 file, invalid YAML, unknown keys, wrong
        types or missing files.
    """
    path = Path(path)
    return parse_config(read_yaml(path), base_dir=path.parent, check_files=check_files)
