"""The first two stages: loading what a config names (the model, the splits through the run's
modality, precomputed features, metadata: :func:`load_stage`, :func:`load_inputs`) and the deep
features and logits of every split (:func:`extract_stage`: cached on disk, or precomputed).
The stages that follow are :mod:`sparsecheck.pipeline.stages`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsecheck.data import load_metadata
from sparsecheck.data.metadata import shared_ids
from sparsecheck.data.precomputed import PrecomputedFeatures, is_features, load_features
from sparsecheck.errors import ConfigError, DataError
from sparsecheck.features.extraction import extract_features
from sparsecheck.modalities import Modality, Split, get_modality
from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.results import DataSplitRecord, DenseHeadRecord, FeatureExtractionRecord, MlflowModelRecord, ModelRecord
from sparsecheck.sparse.dense import DenseHead

logger = logging.getLogger(__name__)


@dataclass
class Inputs:
    """What a config's ``model`` and ``data`` sections load to (:func:`load_inputs`).

    ``datasets`` holds the splits of examples (:class:`~sparsecheck.modalities.base.Split`: images,
    texts, ...), ``precomputed`` the splits of precomputed features
    (:class:`~sparsecheck.data.precomputed.PrecomputedFeatures`); ``model`` is None when the
    config names none (every split is features). ``input_spec`` is the modality's input transform
    as the splits' batches need it (for images without the geometry, which the datasets apply as
    they load each image); ``modality`` the kind of input (``data.modality``).
    """

    model: Any
    input_spec: Any
    datasets: dict[str, Split]
    precomputed: dict[str, PrecomputedFeatures]
    class_names: list[str]
    modality: Modality


def load_inputs(cfg: Any) -> Inputs:
    """Load the model, datasets and precomputed features named in a config; check they fit together.

    The splits are read by the config's modality (``data.modality``:
    :meth:`~sparsecheck.modalities.base.Modality.load_split`), with what of the input transform
    applies as each example is read (images: ``model.input.size``, or ``resize`` + ``crop``), and
    checked together (:meth:`~sparsecheck.modalities.base.Modality.reconcile_splits`).

    Raises
    ------
    ConfigError, DataError, ModelError
        naming the key or file (and the shapes) that do not fit.
    """
    modality = get_modality(cfg.data.modality)
    class_names = cfg.data.class_names
    paths = {s: getattr(cfg.data, s) for s in ("train", "val", "test") if getattr(cfg.data, s) is not None}
    precomputed: dict[str, PrecomputedFeatures] = {}
    for split, path in paths.items():
        try:
            if is_features(path):
                precomputed[split] = load_features(path, name=split, labels_required=True)
        except DataError as exc:
            raise DataError(f"data.{split}: {exc}") from exc
    # the model first: it may say how examples become its input (a torchvision preset, a tokenizer)
    needs_model = len(precomputed) < len(paths)
    model = cfg.model.load(tracking_uri=cfg.mlflow.tracking_uri) if needs_model or cfg.model.sources_given else None
    spec = modality.input_transform(cfg, model)
    if class_names is None and getattr(model, "class_names", None):
        class_names = list(model.class_names)  # a text model's id2label
    datasets: dict[str, Split] = {}
    for split, path in paths.items():
        if split in precomputed:
            continue
        try:
            datasets[split] = modality.load_split(path, name=split, config=cfg, transform=spec,
                                                  class_names=class_names)
        except DataError as exc:
            raise DataError(f"data.{split}: {exc}") from exc
        if datasets[split].labels is None:
            raise DataError(f"data.{split}: {path} has no labels ('y' or a 'label' column)")
    datasets, spec = modality.reconcile_splits(datasets, spec, cfg)
    if precomputed:
        _check_precomputed(cfg, precomputed, model)
    labelled = [*datasets.values(), *precomputed.values()]
    n_classes = max(int(d.labels.max()) for d in labelled) + 1  # type: ignore[union-attr]
    if class_names is None:
        first = datasets.get("train") or next(iter(datasets.values()), None)
        stored = next((p.meta.get("class_names") for p in precomputed.values() if p.meta.get("class_names")), None)
        class_names = (first.class_names if first is not None else None) or stored or \
            [str(i) for i in range(n_classes)]
        if len(class_names) < n_classes:
            class_names = [*class_names, *(str(i) for i in range(len(class_names), n_classes))]
    elif n_classes > len(class_names):
        worst = max(labelled, key=lambda d: int(d.labels.max()))  # type: ignore[union-attr]
        key = "data.class_names" if cfg.data.class_names is not None else "model"
        raise ConfigError(f"{len(class_names)} names but labels go up to {n_classes - 1} (in {worst.source}, "
                          f"{len(worst)} examples)", key=key)
    return Inputs(model, spec, datasets, precomputed, list(class_names), modality)


def _check_precomputed(cfg: Any, precomputed: dict[str, PrecomputedFeatures], model: Any) -> None:
    """Precomputed splits must agree with each other (width, logits, layer, model) and with the config."""
    def where(split: str) -> str:
        p = precomputed[split]
        return f"data.{split} {p.source} (features {tuple(p.features.shape)})"

    dims = {s: p.dim for s, p in precomputed.items()}
    if len(set(dims.values())) > 1:
        raise DataError("feature widths differ between splits: " + "; ".join(where(s) for s in dims))
    widths = {s: p.logits.shape[1] for s, p in precomputed.items() if p.logits is not None}
    if len(set(widths.values())) > 1:
        raise DataError("logits widths differ between splits: " + "; ".join(
            f"data.{s} {precomputed[s].source} (logits {tuple(precomputed[s].logits.shape)})" for s in widths))
    for what, key in (("layer", "layer"), ("model fingerprint", "model_fingerprint")):
        seen = {s: p.meta.get(key) for s, p in precomputed.items() if p.meta.get(key)}
        if len(set(seen.values())) > 1:
            raise DataError(f"the splits' features come from different {what}s: " + "; ".join(
                f"data.{s} {precomputed[s].source}: {v}" for s, v in seen.items()))
    layers = {p.meta.get("layer") for p in precomputed.values()} - {None}
    if cfg.model.feature_layer is not None and layers and cfg.model.feature_layer not in layers:
        raise ConfigError(f"the precomputed features were taken at layer {layers.pop()!r} (their meta.json)",
                          key="model.feature_layer", value=cfg.model.feature_layer)
    prints = {p.meta.get("model_fingerprint") for p in precomputed.values()} - {None}
    if model is not None and prints and model.fingerprint() not in prints:
        split, p = next((s, p) for s, p in precomputed.items() if p.meta.get("model_fingerprint"))
        raise ConfigError(f"the model's fingerprint {model.fingerprint()} is not the one data.{split}'s features "
                          f"were extracted with ({p.meta['model_fingerprint']}, in the meta.json of {p.source}); "
                          f"name that model, or none", key="model", value=model.source)


def load_stage(ctx: RunContext) -> None:
    """Load the datasets, precomputed features, metadata and model named in the config
    (:func:`load_inputs`) into the context, and describe them in the results."""
    cfg = ctx.config
    inputs = load_inputs(cfg)
    ctx.model = inputs.model
    ctx.class_names = inputs.class_names
    ctx.datasets = inputs.datasets
    ctx.precomputed = inputs.precomputed
    ctx.input_spec = inputs.input_spec
    ctx.modality = inputs.modality
    results = ctx.run_results
    results.modality = inputs.modality.name
    if ctx.model is not None:
        results.model = ModelRecord(source=ctx.model.source, kind=ctx.model.kind, fingerprint=ctx.model.fingerprint())
        if ctx.model.origin is not None:  # loaded from MLflow: which version, run and logged model
            results.mlflow_model = MlflowModelRecord.model_validate(ctx.model.origin.to_dict())
    else:  # what the features' meta.json says about the model that computed them
        stored = next((p.meta for p in inputs.precomputed.values() if p.meta.get("model_fingerprint")), {})
        results.model = ModelRecord(source=stored.get("model_source"), kind="precomputed features",
                                    fingerprint=stored.get("model_fingerprint"))
    data = {s: {"source": d.source, "n": len(d), **inputs.modality.describe_split(d, cfg), "digest": d.digest()}
            for s, d in inputs.datasets.items()}
    truncated = getattr(inputs.input_spec, "truncated", None)  # a text model's tokens beyond its maximum length
    if truncated is not None:
        for s, d in inputs.datasets.items():
            n = truncated(d.batch(slice(None)))
            data[s]["truncated"] = {"count": int(n), "max_length": int(inputs.input_spec.max_length)}
            if n:
                logger.warning("data.%s: %d of %d texts are longer than the model's %d tokens and are truncated", s, n,
                               len(d), inputs.input_spec.max_length)
    for s, p in inputs.precomputed.items():
        data[s] = {"source": p.source, "n": len(p), "kind": "precomputed features", "dim": p.dim, "digest": p.digest()}
    results.data = {s: DataSplitRecord.model_validate(data[s]) for s in ("train", "val", "test") if s in data}
    split_ids = {s: d.ids for s, d in {**inputs.datasets, **inputs.precomputed}.items()}
    for a, b, n, first in shared_ids({s: split_ids[s] for s in ("train", "val", "test") if s in split_ids}):
        logger.warning("%d ids are in both the %s and the %s split (e.g. %s): each is one example twice (a leak "
                       "between the splits) or two examples sharing one id%s", n, a, b, ", ".join(first),
                       " and one metadata row" if cfg.data.metadata is not None else "")


@dataclass
class _SplitArrays:
    """One split's arrays before they become a :class:`SplitView` (logits None: none stored)."""

    features: np.ndarray
    logits: np.ndarray | None
    ids: np.ndarray
    labels: np.ndarray | None
    own_metadata: pd.DataFrame | None
    layer: str | None


def extract_stage(ctx: RunContext) -> None:
    """Deep features and logits of every split: extracted (cached on disk), or read from the
    precomputed features a split names.

    Splits whose features carry no logits get those of a dense linear head refitted on the train
    features (:class:`~sparsecheck.sparse.dense.DenseHead`), recorded as the ``dense_head`` section.
    Sets the ``features`` section (each split's shape, cache use and seconds) and the model's
    ``feature_layer``.
    """
    cfg = ctx.config
    found: dict[str, _SplitArrays] = {}
    extracted: dict[str, FeatureExtractionRecord] = {}
    for split in ("train", "val", "test"):
        if split in ctx.precomputed:
            p = ctx.precomputed[split]
            found[split] = _SplitArrays(p.features, p.logits, p.ids, p.labels, p.metadata, p.layer)
            extracted[split] = FeatureExtractionRecord(n=len(p), dim=p.dim, from_cache=False, precomputed=True,
                                                       seconds=0.0)
        elif split in ctx.datasets:
            ds = ctx.datasets[split]
            fs = extract_features(ctx.model, ds, ctx.input_spec, layer=cfg.model.feature_layer,
                                  batch_size=cfg.features.batch_size, device=ctx.device,
                                  num_workers=cfg.features.num_workers, precision=cfg.features.precision,
                                  cache_dir=cfg.features.cache_dir, desc=split)
            if fs.logits.shape[1] < len(ctx.class_names):
                raise DataError(f"the model has {fs.logits.shape[1]} outputs but there are "
                                f"{len(ctx.class_names)} classes")
            found[split] = _SplitArrays(fs.features, fs.logits, ds.ids, ds.labels, ds.metadata, fs.layer)
            extracted[split] = FeatureExtractionRecord(n=len(fs), dim=int(fs.features.shape[1]),
                                                       from_cache=fs.from_cache, seconds=round(fs.seconds, 3))
    if extracted:
        ctx.run_results.features = extracted
    # precomputed splits next to extracted ones must be the same representation
    if len({a.features.shape[1] for a in found.values()}) > 1:
        raise DataError("feature widths differ between splits: " + "; ".join(
            f"data.{s} {getattr(cfg.data, s).name} (features {tuple(a.features.shape)})" for s, a in found.items()))
    layers = {s: a.layer for s, a in found.items() if a.layer}
    if len(set(layers.values())) > 1:
        raise DataError("the splits' features come from different layers: " + "; ".join(
            f"data.{s}: {layer}" for s, layer in layers.items()))
    for split, a in found.items():
        if a.logits is not None and a.logits.shape[1] < len(ctx.class_names):
            raise DataError(f"data.{split}: the logits have {a.logits.shape[1]} columns but there are "
                            f"{len(ctx.class_names)} classes")
    logits = _dense_logits(ctx, found)
    for split, a in found.items():
        meta = _metadata_for(ctx, a.ids, a.own_metadata, split)
        ctx.splits[split] = SplitView(split, a.ids, a.labels, a.features, logits[split], meta)
    ctx.feature_layer = next(iter(layers.values()), "")
    ctx.run_results.model.feature_layer = ctx.feature_layer or None  # type: ignore[union-attr]


def _dense_logits(ctx: RunContext, found: dict[str, _SplitArrays]) -> dict[str, np.ndarray]:
    """Each split's logits: its own, or (when its features carry none) a dense head's refitted on train."""
    out = {s: a.logits for s, a in found.items() if a.logits is not None}
    missing = [s for s in found if s not in out]
    if not missing:
        return out  # type: ignore[return-value]
    train = found["train"]
    head = DenseHead(n_classes=len(ctx.class_names), random_state=int(ctx.config.seed)).fit(train.features,
                                                                                            train.labels)
    for s in missing:
        out[s] = head.decision_function(found[s].features)
    logger.warning("no logits stored with the features of %s: the dense baseline is a linear head refitted on "
                   "the train features (train accuracy %.3f)", ", ".join(missing), head.train_accuracy_)
    ctx.run_results.dense_head = DenseHeadRecord(kind="refit", splits=missing, train_accuracy=head.train_accuracy_,
                                                 reason="the precomputed features carry no logits")
    return out  # type: ignore[return-value]


def _metadata_for(ctx: RunContext, ids: np.ndarray, own: pd.DataFrame | None, split: str) -> pd.DataFrame:
    """The split's metadata: ``data.metadata``, the split's own columns (a manifest's, or a
    Parquet features file's), or both joined on id.

    When both name the same column, ``data.metadata`` wins (logged as a warning).
    """
    path = ctx.config.data.metadata
    if path is None:
        return own.copy() if own is not None else pd.DataFrame({"id": ids})
    try:
        table = load_metadata(path, ids, id_column=ctx.config.data.id_column)
    except DataError as exc:
        raise DataError(f"data.metadata ({split} split): {exc}") from exc
    if own is None:
        return table
    clash = [c for c in own.columns if c != "id" and c in table.columns]
    if clash:
        logger.warning("%s split: columns %s are both in the split's own table and in data.metadata; using "
                       "data.metadata's", split, clash)
    extra = [c for c in own.columns if c != "id" and c not in table.columns]
    return pd.concat([table.reset_index(drop=True), own[extra].reset_index(drop=True)], axis=1)


def _no_examples(ctx: RunContext, split: str) -> str:
    """Why a step that needs the split's examples (and the model) cannot run on precomputed features."""
    source = ctx.precomputed[split].source if split in ctx.precomputed else split
    return f"data.{split} is precomputed features ({source}): there are no {ctx.modality.noun}s to run the model on"
