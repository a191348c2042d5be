"""The pipeline's stages: each reads the config and what earlier stages left in the
:class:`~sparsecheck.pipeline.context.RunContext`, calls a library function, and records its part.

This is the only code that knows both the run context and the libraries (``sparse/``,
``analysis/``, ``assertions/``), which take arrays, tables and parameters. In order:

========================  ====================================================================
``load_stage``            the model, datasets, precomputed features and metadata the config names
``extract_stage``         deep features and logits of every split (cached on disk, or precomputed)
``dense_stage``           the model's own accuracy, overall and by metadata value
``auto_attributes_stage`` automatic attributes (``auto:*``) of the test split (the modality's)
``sparse_stage``          the sparse decision layer (:class:`~sparsecheck.sparse.SparseDecisionLayer`)
``interpret_stage``       feature cards (:func:`~sparsecheck.analysis.interpret.interpret_features`)
``slices_stage``          slices and error breakdowns (:func:`~sparsecheck.analysis.slices.analyse_errors`)
``spurious_stage``        spurious findings (:func:`~sparsecheck.analysis.spurious.find_spurious_features`)
``assertions_stage``      the config's assertions (:func:`~sparsecheck.assertions.run_assertions`)
``explain_stage``         LIME and its sanity check, for the features the results name first
                          (:func:`~sparsecheck.analysis.interpret.explain_cards`)
========================  ====================================================================

LIME comes last because which features get explained depends on what a reader of the results
needs: the features of the spurious findings, of the failing assertions and of the top slices.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sparsecheck._runtime import exception_reason, torch_threads
from sparsecheck.analysis.association import association_records, feature_associations, strongest_significant
from sparsecheck.analysis.auto_attributes import is_auto
from sparsecheck.analysis.breakdown import accuracy_by_attribute
from sparsecheck.analysis.chance import chance_test, diagnose_class_order
from sparsecheck.analysis.error_clusters import find_error_clusters
from sparsecheck.analysis.interpret import explain_cards, explanation_order, interpret_features
from sparsecheck.analysis.shortcuts import fold_other_sides, pool_findings, training_prevalence
from sparsecheck.analysis.slices import analyse_errors
from sparsecheck.analysis.spurious import MAX_REVIEW, find_spurious_features
from sparsecheck.assertions import DEFAULT_AUTOMATIC, AssertionContext, run_assertions
from sparsecheck.data import load_metadata
from sparsecheck.data.metadata import shared_ids
from sparsecheck.data.precomputed import PrecomputedFeatures, is_features, load_features
from sparsecheck.errors import ConfigError, DataError, SparsecheckError
from sparsecheck.features.extraction import extract_features
from sparsecheck.modalities import Modality, Split, get_modality
from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.pipeline.intervene import Intervener
from sparsecheck.reports.evidence import featured_features
from sparsecheck.reports.junit import write_junit
from sparsecheck.sparse import SparseDecisionLayer
from sparsecheck.sparse.dense import DenseHead

logger = logging.getLogger(__name__)

__all__ = ["Stage", "STAGES", "Inputs", "load_inputs",
           "load_stage", "extract_stage", "dense_stage", "sparse_stage", "interpret_stage",
           "slices_stage", "spurious_stage", "assertions_stage", "assertion_context", "auto_attributes_stage",
           "explain_stage"]

Stage = Callable[[RunContext], None]

# below this many feature values (rows × features) the CPU path solver runs on one thread
SMALL_CPU_PROBLEM = 4_000_000
#: training images the automatic attributes are measured on (a seeded sample), for the training
#: prevalence of each value per class
TRAIN_SAMPLE = 5000
#: thresholds of the spurious-finding rule, read from ``config.analysis.spurious_<name>``
SPURIOUS_PARAMS = ("min_auc", "min_gap", "min_ablation", "min_group")


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
    ctx.results["modality"] = inputs.modality.name
    if ctx.model is not None:
        ctx.results["model"] = {"source": ctx.model.source, "kind": ctx.model.kind,
                                "fingerprint": ctx.model.fingerprint()}
        if ctx.model.origin is not None:  # loaded from MLflow: which version, run and logged model
            ctx.results["mlflow_model"] = ctx.model.origin.to_dict()
    else:  # what the features' meta.json says about the model that computed them
        stored = next((p.meta for p in inputs.precomputed.values() if p.meta.get("model_fingerprint")), {})
        ctx.results["model"] = {"source": stored.get("model_source"), "kind": "precomputed features",
                                "fingerprint": stored.get("model_fingerprint")}
    ctx.results["data"] = {s: {"source": d.source, "n": len(d), **inputs.modality.describe_split(d, cfg),
                               "digest": d.digest()} for s, d in inputs.datasets.items()}
    truncated = getattr(inputs.input_spec, "truncated", None)  # a text model's tokens beyond its maximum length
    if truncated is not None:
        for s, d in inputs.datasets.items():
            n = truncated(d.batch(slice(None)))
            ctx.results["data"][s]["truncated"] = {"count": int(n), "max_length": int(inputs.input_spec.max_length)}
            if n:
                logger.warning("data.%s: %d of %d texts are longer than the model's %d tokens and are truncated", s, n,
                               len(d), inputs.input_spec.max_length)
    for s, p in inputs.precomputed.items():
        ctx.results["data"][s] = {"source": p.source, "n": len(p), "kind": "precomputed features", "dim": p.dim,
                                  "digest": p.digest()}
    ctx.results["data"] = {s: ctx.results["data"][s] for s in ("train", "val", "test") if s in ctx.results["data"]}
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
    features (:class:`~sparsecheck.sparse.dense.DenseHead`), recorded in ``results["dense_head"]``.
    """
    cfg = ctx.config
    found: dict[str, _SplitArrays] = {}
    for split in ("train", "val", "test"):
        if split in ctx.precomputed:
            p = ctx.precomputed[split]
            found[split] = _SplitArrays(p.features, p.logits, p.ids, p.labels, p.metadata, p.layer)
            ctx.results.setdefault("features", {})[split] = {
                "n": len(p), "dim": p.dim, "from_cache": False, "precomputed": True, "seconds": 0.0}
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
            ctx.results.setdefault("features", {})[split] = {
                "n": len(fs), "dim": int(fs.features.shape[1]), "from_cache": fs.from_cache,
                "seconds": round(fs.seconds, 3)}
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
    ctx.results["model"]["feature_layer"] = ctx.feature_layer or None


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
    ctx.results["dense_head"] = {"kind": "refit", "splits": missing, "train_accuracy": head.train_accuracy_,
                                 "reason": "the precomputed features carry no logits"}
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


def dense_stage(ctx: RunContext) -> None:
    """Accuracy of the model's own head, overall and by every metadata value.

    On the test split it also records the chance rate (the share of the most frequent class) and,
    when the predictions match the labels far better under another order of the classes
    (:func:`~sparsecheck.analysis.chance.diagnose_class_order`), that order as
    ``results["dense"]["class_order"]``, with a warning: ``data.class_names`` (or an ImageFolder's
    alphabetical order) is then probably not the model's output order.
    """
    dense: dict[str, Any] = {}
    for split, view in ctx.splits.items():
        dense[f"{split}_accuracy"] = float(np.mean(view.dense_predictions == view.labels))
    test = ctx.splits.get("test")
    if test is not None and test.labels is not None and len(test):
        dense["test_chance_rate"] = chance_test(test.labels, test.dense_predictions).chance_rate
        order = diagnose_class_order(test.labels, test.dense_predictions, ctx.class_names,
                                     names_set=ctx.config.data.class_names is not None)
        if order is not None:
            dense["class_order"] = order.to_dict()
            logger.warning("dense head: test accuracy %.3f; %s", order.accuracy, order.sentence())
    ctx.results["dense"] = dense
    table = ctx.prediction_table("test")
    attrs = [a for a in ctx.attributes]
    if attrs:
        ctx.results["accuracy_by_attribute"] = accuracy_by_attribute(table, attrs).to_dict("records")
    else:
        ctx.results["accuracy_by_attribute"] = []
    unknown = sorted(set(ctx.config.data.spurious_attributes) - set(attrs))
    if unknown:
        raise ConfigError(f"not a metadata column (columns: {attrs})", key="data.spurious_attributes",
                          value=unknown)
    logger.info("dense head: test accuracy %.3f", dense.get("test_accuracy", float("nan")))


def auto_attributes_stage(ctx: RunContext) -> None:
    """Automatic attributes (``auto:*``) of the test split, added to its metadata.

    Properties the modality measures from the examples themselves, binned into a few levels
    (:meth:`~sparsecheck.modalities.base.Modality.automatic_attributes`; images: brightness,
    inversion, contrast, colour, sharpness, marks and bands, per-region intensity and colour, the
    size and aspect of the files): the association, slice and spurious machinery then finds the
    classic shortcuts without any metadata. Off with ``analysis.auto_attributes: false``; a split
    it cannot measure is skipped with the reason. Writes ``results["auto_attributes"]`` (columns,
    levels, seconds).
    """
    if not ctx.config.analysis.auto_attributes or "test" not in ctx.splits:
        return
    what = f"automatic {ctx.modality.noun} attributes"
    if "test" not in ctx.datasets:
        ctx.skip(what, _no_examples(ctx, "test"))
        return
    ds, view = ctx.datasets["test"], ctx.splits["test"]
    step = max(1, int(ctx.config.features.batch_size))
    start = time.perf_counter()
    train = ctx.datasets.get("train") if ctx.splits.get("train") is not None else None
    try:
        auto = ctx.modality.automatic_attributes(seed=int(ctx.config.seed))
        table = auto.fit_transform(ds, batch_size=step, reference=train)
    except Exception as exc:  # optional: a run without them still has the user's metadata
        ctx.skip(what, exception_reason(exc))
        return
    meta = view.metadata.reset_index(drop=True).copy()
    for col in table.columns:
        if col not in meta.columns:
            meta[col] = table[col].to_numpy()
    ctx.splits["test"] = SplitView(view.name, view.ids, view.labels, view.features, view.logits, meta)
    # the same attributes on (a sample of) the training examples: a shortcut is a property the
    # training data ties to a class, and the spurious stage asks for that of automatic findings
    train_rows = 0
    if train is not None:
        rows = np.sort(np.random.default_rng(int(ctx.config.seed)).permutation(len(train))[:TRAIN_SAMPLE])
        try:
            ctx.train_attributes = (auto.transform(train, rows, batch_size=step),
                                    np.asarray(ctx.splits["train"].labels)[rows])
            train_rows = int(rows.size)
        except Exception as exc:  # the test split's attributes stand without it
            ctx.skip(f"{what} of the train split", exception_reason(exc))
    ctx.results["auto_attributes"] = {**auto.to_dict(), "split": "test", "train_rows": train_rows,
                                      "seconds": round(time.perf_counter() - start, 3)}


def sparse_stage(ctx: RunContext) -> None:
    """Fit the sparse decision layer on train features (validation split for selection).

    Writes ``results["sparse_layer"]`` (dense vs sparse accuracy, features per class, the path),
    saves the layer under ``out_dir/sparse_layer`` and the path plot as ``sparse_path.png``.
    """
    sc = ctx.config.sparse
    layer = SparseDecisionLayer(alpha=sc.alpha, n_lambdas=sc.n_lambdas, lambda_min_ratio=sc.lambda_min_ratio,
                                tolerance=sc.tolerance, features_per_class=sc.features_per_class,
                                early_stop=sc.early_stop, precision=sc.precision,
                                solver=sc.solver, max_epochs=sc.max_epochs, tol=sc.tol, device=ctx.device,
                                random_state=sc.random_state)
    train, val = ctx.splits["train"], ctx.splits.get("val")
    n, d = train.features.shape
    small = ctx.device == "cpu" and n * d <= SMALL_CPU_PROBLEM
    with torch_threads(1 if small else None):
        layer.fit(train.features, train.labels,
                  None if val is None else val.features, None if val is None else val.labels)
    ctx.sparse_layer = layer
    test = ctx.splits["test"]
    sparse_pred = layer.predict(np.asarray(test.features))
    dense_pred = test.dense_predictions
    names = [ctx.class_names[int(c)] for c in layer.classes_]
    summary = layer.to_dict(names)
    ctx.results["sparse_layer"] = {
        "dense_accuracy": float(np.mean(dense_pred == test.labels)),
        "sparse_accuracy": float(np.mean(sparse_pred == test.labels)),
        "agreement": float(np.mean(sparse_pred == dense_pred)),
        **summary,
    }
    if ctx.out_dir is not None:
        out = Path(ctx.out_dir)
        layer.save(out / "sparse_layer", overwrite=True)
        layer.plot_path(out / "sparse_path.png")
        ctx.artifacts["sparse_layer"] = str(out / "sparse_layer")
        ctx.artifacts["sparse_path.png"] = str(out / "sparse_path.png")
    r = ctx.results["sparse_layer"]
    logger.info("sparse layer: %.1f features/class on average (max %d), test accuracy %.3f vs dense %.3f",
                r["mean_features_per_class"], r["max_features_per_class"], r["sparse_accuracy"],
                r["dense_accuracy"])


def _interpreted_split(ctx: RunContext) -> str:
    return "test" if "test" in ctx.splits else list(ctx.splits)[-1]


def interpret_stage(ctx: RunContext) -> None:
    """Interpret every feature of ``ctx.sparse_layer`` on the test split (else the last split):
    top and bottom examples, classes, associations with the metadata, a card each. LIME comes
    later (:func:`explain_stage`), once the results say which features a reader needs.

    Reads ``ctx.config.analysis.top_k``, ``fdr``, ``associations_per_feature`` and
    ``ctx.config.seed``. Sets ``ctx.feature_attributes`` (the whole tidy association table; the
    outputs write it to ``feature_attributes.parquet``), ``ctx.feature_cards`` and
    ``results["feature_attributes"]`` (the significant associations, the strongest of each feature:
    :func:`~sparsecheck.analysis.association.strongest_significant`), ``["feature_cards"]``,
    ``["feature_sanity"]``, ``["interpretation"]``. The cards' pictures are drawn by :func:`explain_stage`, once the
    results say which cards a reader needs.
    """
    if ctx.sparse_layer is None:
        raise SparsecheckError("the interpretation stage needs a fitted sparse layer (ctx.sparse_layer); "
                               "run the sparse stage before it")
    acfg = ctx.config.analysis
    split = _interpreted_split(ctx)
    view = ctx.splits[split]
    if split not in ctx.datasets:  # precomputed features: the cards show activations, no pictures
        ctx.skip("top-example thumbnails", _no_examples(ctx, split))  # LIME's skip: explain_stage
    found = interpret_features(
        ctx.sparse_layer, view.features, view.ids, view.metadata, view.labels, class_names=ctx.class_names,
        model=ctx.model, dataset=ctx.datasets.get(split), input_spec=ctx.input_spec, modality=ctx.modality,
        feature_layer=ctx.config.model.feature_layer, device=ctx.device, seed=int(getattr(ctx.config, "seed", 0)),
        out_dir=None, on_skip=ctx.skip, split=split, top_k=acfg.top_k, explain=False,  # pictures: explain_stage
        spurious_attributes=ctx.config.data.spurious_attributes, fdr=acfg.fdr,
        associations_per_feature=acfg.associations_per_feature)
    ctx.interpretation = found
    ctx.feature_attributes = found.associations
    ctx.feature_cards = found.cards
    ctx.artifacts.update(found.artifacts)
    ctx.results.update(found.to_results())


def explain_stage(ctx: RunContext) -> None:
    """LIME on the features a reader of the results needs, then the model-randomisation sanity check.

    The order (:func:`~sparsecheck.analysis.interpret.explanation_order`): the features the
    results name (:func:`~sparsecheck.reports.evidence.featured_features`: spurious findings,
    failing assertions, top feature slices), then features tied to a declared spurious attribute,
    then by total ``|weight|``; the first ``analysis.explain_features`` of them, within
    ``analysis.explain_budget_s`` seconds. Perturbed images go to the model in batches sized to
    the device. Draws the card pictures (``features/feature_<id>.png``, for the first
    ``analysis.card_images`` features in the same order). Updates the cards, ``results["feature_cards"]``,
    ``["feature_sanity"]`` and ``["interpretation"]`` (its ``explain`` entry: how many were explained
    and why any the results name was not; those are also listed under ``skipped``).
    """
    found = ctx.interpretation
    if found is None or ctx.sparse_layer is None:
        return
    acfg = ctx.config.analysis
    split = _interpreted_split(ctx)
    dataset = ctx.datasets.get(split)
    off = None if acfg.explain else "analysis.explain is false"
    if off is None and (ctx.model is None or dataset is None):
        off = f"LIME needs the model and the {ctx.modality.noun}s, and this run has features only"
        ctx.skip("LIME feature explanations and their sanity check", off)
    order = explanation_order(ctx.sparse_layer, featured_features(ctx.results), found.associations,
                              ctx.config.data.spurious_attributes, acfg.explain_features, fdr=acfg.fdr)
    explain_cards(found, ctx.sparse_layer, model=ctx.model, dataset=dataset, input_spec=ctx.input_spec,
                  modality=ctx.modality,
                  feature_layer=ctx.config.model.feature_layer, device=ctx.device, seed=int(ctx.config.seed),
                  out_dir=ctx.out_dir, on_skip=ctx.skip, order=order, limit=acfg.explain_features,
                  budget_s=acfg.explain_budget_s, lime_examples=acfg.lime_examples, lime_samples=acfg.lime_samples,
                  lime_convergence=acfg.lime_convergence, sanity_check=acfg.sanity_check, sanity_features=acfg.sanity_features,
                  sanity_examples=acfg.sanity_examples, sanity_threshold=acfg.sanity_threshold,
                  sanity_cascade=acfg.sanity_cascade, card_images=acfg.card_images, off_reason=off)
    ctx.artifacts.update(found.artifacts)
    results = found.to_results()
    ctx.results.update({k: results[k] for k in ("feature_cards", "feature_sanity", "interpretation")})


def slices_stage(ctx: RunContext) -> None:
    """Slices, feature slices and error breakdowns of the test prediction table.

    :func:`~sparsecheck.analysis.slices.analyse_errors` with ``max_predicates``,
    ``min_support``, ``slices_top_k`` and ``fdr`` from ``ctx.config.analysis``. Sets
    ``ctx.slices`` and ``results["slices"]`` (best first), ``["slice_search"]``,
    ``["feature_slices"]`` and ``["error_breakdowns"]`` (``by_pair``, ``by_feature_activation``).
    """
    if "test" not in ctx.splits:
        raise DataError("slices need the test split; run the extract stage first")
    acfg = ctx.config.analysis
    found = analyse_errors(ctx.prediction_table("test"), ctx.attributes, features=ctx.splits["test"].features,
                           layer=ctx.sparse_layer, class_names=ctx.class_names, max_predicates=acfg.max_predicates,
                           min_support=acfg.min_support, top_k=acfg.slices_top_k, fdr=acfg.fdr,
                           feature_slice_features=acfg.feature_slice_features)
    ctx.slices = list(found.slices)
    ctx.results.update(found.to_results())
    ctx.results["error_clusters"] = _error_clusters(ctx)


def _error_clusters(ctx: RunContext) -> list[dict[str, Any]]:
    """Unnamed slices: clusters of the model's errors in the sparse feature space, each described
    by the features that define it (:func:`~sparsecheck.analysis.error_clusters.find_error_clusters`),
    so a failure mode that no attribute names still gets a row."""
    view, layer = ctx.splits["test"], ctx.sparse_layer
    if layer is None or view.labels is None:
        return []
    used = np.asarray(layer.used_features(), dtype=np.int64)
    if used.size == 0:
        return []
    z = (np.asarray(view.features[:, used], dtype=np.float64) - np.asarray(layer.mean_)[used]) / np.asarray(layer.std_)[used]
    acfg = ctx.config.analysis
    try:
        clusters = find_error_clusters(z, view.dense_predictions == view.labels, ids=view.ids, feature_ids=used,
                                       min_size=acfg.min_support, fdr=acfg.fdr, seed=int(ctx.config.seed))
    except Exception as exc:  # optional: the named slices stand without them
        ctx.skip("unnamed slices (error clusters)", exception_reason(exc))
        return []
    return [c.to_dict() for c in clusters]


def spurious_stage(ctx: RunContext) -> None:
    """Spurious findings for the declared spurious attributes, automatic findings, and associations
    to review for the rest.

    Runs :func:`~sparsecheck.analysis.spurious.find_spurious_features` on the test split with the
    fitted sparse layer, the model's own predictions and the feature × attribute association table
    (``ctx.feature_attributes``, left by the interpretation stage, or, when absent, computed here
    on the test split, within classes, and its significant rows written to ``results["feature_attributes"]``).
    ``fdr`` and the thresholds (``spurious_<name>`` for each of :data:`SPURIOUS_PARAMS`) come
    from ``ctx.config.analysis``.

    Suspicions are tested by intervention (:class:`~sparsecheck.pipeline.intervene.Intervener`):
    the cue is a declared ``data.interventions`` entry, or one estimated from the test images that
    carry the value. A confirmed intervention stands in for an under-powered accuracy-gap test;
    automatic attributes need one to become a finding.

    One finding per shortcut: a class's findings on the absence of a value that another finding's
    cue explains are folded under it (:func:`~sparsecheck.analysis.spurious.fold_other_sides`), and
    declared and automatic attributes that mark the same images give one finding, under the declared
    name (:func:`~sparsecheck.analysis.spurious.pool_findings`).

    Writes ``ctx.spurious_findings`` and ``ctx.automatic_findings``, ``results["spurious_findings"]``
    (highest score first), ``results["automatic_findings"]``, ``results["associations_to_review"]``
    (the same for the metadata attributes *not* declared spurious, at most
    :data:`~sparsecheck.analysis.spurious.MAX_REVIEW`) and ``results["spurious_analysis"]``.
    """
    if ctx.sparse_layer is None:
        raise ConfigError("spurious findings need the sparse decision layer; run sparse_stage before "
                          "spurious_stage", key="stages")
    view = ctx.splits.get("test")
    if view is None or view.labels is None:
        raise DataError("spurious findings need the labelled test split; run the extract stage first")
    declared = [str(a) for a in ctx.config.data.spurious_attributes]
    attributes = list(ctx.attributes)
    unknown = [a for a in declared if a not in attributes]
    if unknown:
        raise ConfigError(f"not a metadata column (columns: {attributes})", key="data.spurious_attributes",
                          value=unknown)
    automatic = [a for a in attributes if is_auto(a) and a not in declared]
    others = [a for a in attributes if a not in declared and a not in automatic]
    associations = _association_table(ctx)
    acfg = ctx.config.analysis
    params = {k: getattr(acfg, f"spurious_{k}") for k in SPURIOUS_PARAMS}
    kwargs = dict(class_names=ctx.class_names, fdr=acfg.fdr, **params)
    args = (ctx.sparse_layer, view.features, view.labels, view.dense_predictions, view.metadata, associations)
    # how often each value came with each class in training: evidence for every finding, and for an
    # automatic one a condition (a model learns a shortcut only from what training ties to a class)
    train = ctx.splits.get("train")
    declared_prevalence = (training_prevalence(train.metadata, train.labels, declared)
                           if train is not None and train.labels is not None and declared else None)
    auto_prevalence = (training_prevalence(ctx.train_attributes[0], ctx.train_attributes[1], automatic)
                       if ctx.train_attributes is not None else None)
    with Intervener(ctx) as intervene:
        found = (find_spurious_features(*args, declared, intervene=intervene, prevalence=declared_prevalence,
                                        **kwargs) if declared else None)
        auto = (find_spurious_features(*args, automatic, intervene=intervene, require_intervention=True,
                                       max_share=0.5, prevalence=auto_prevalence,
                                       min_enrichment=acfg.spurious_min_enrichment, **kwargs)
                if automatic and intervene is not None else None)
        tested = intervene.count if intervene is not None else 0
        estimated = intervene.estimated if intervene is not None else 0
    review = find_spurious_features(*args, others, **kwargs) if others else None
    meta = view.metadata.reset_index(drop=True)
    auto_found = [dataclasses.replace(f, automatic=True) for f in (auto.findings if auto else [])]
    pooled = [*pool_findings(found.findings if found else [], auto_found, meta, declared)]
    kept = fold_other_sides([*pooled[0], *pooled[1]], meta)
    declared_found = [f for f in kept if not f.automatic]
    automatic_found = [f for f in kept if f.automatic]
    ctx.spurious_findings = sorted(declared_found, key=lambda f: -f.score)
    ctx.automatic_findings = sorted(automatic_found, key=lambda f: -f.score) if auto is not None else None
    ctx.results["spurious_findings"] = [f.to_dict() for f in ctx.spurious_findings]
    ctx.results["automatic_findings"] = [f.to_dict() for f in ctx.automatic_findings or []]
    ctx.results["associations_to_review"] = [f.to_dict() for f in (review.findings if review else [])][:MAX_REVIEW]
    ctx.results["spurious_analysis"] = {
        "split": "test", "attributes": declared, "review_attributes": others, "automatic_attributes": automatic,
        "n_candidates": 0 if found is None else int(len(found.candidates)),
        "n_review_candidates": 0 if review is None else int(len(review.candidates)),
        "n_automatic_candidates": 0 if auto is None else int(len(auto.candidates)),
        "interventions": tested, "cues_estimated": estimated,
        "params": {"fdr": float(acfg.fdr), **params},
    }
    if not declared:
        logger.info("spurious findings: no data.spurious_attributes declared; only associations to review")
    for finding in [*ctx.spurious_findings[:3], *(ctx.automatic_findings or [])[:3]]:
        logger.info("spurious finding: %s", finding.sentence)


def _association_table(ctx: RunContext) -> pd.DataFrame:
    """The feature × attribute associations the interpretation stage left in the context, or, when
    it did not run, the same table computed here on the test split (used features, within-class
    comparisons: the class labels as strata)."""
    if ctx.feature_attributes is not None:
        return ctx.feature_attributes
    view = ctx.splits["test"]
    used = ctx.sparse_layer.used_features()
    logger.info("spurious findings: no feature associations in the context; computing them on the test split")
    table = feature_associations(np.asarray(view.features[:, used]), view.metadata, features=used,
                                 attributes=ctx.attributes, strata=view.labels)
    ctx.feature_attributes = table
    if not ctx.results.get("feature_attributes"):
        acfg = ctx.config.analysis
        ctx.results["feature_attributes"] = association_records(
            strongest_significant(table, fdr=acfg.fdr, per_feature=acfg.associations_per_feature))
    return table


def assertion_context(ctx: RunContext, split: str = "test") -> AssertionContext:
    """Everything a pipeline run knows about ``split``, for the assertions."""
    return AssertionContext(table=ctx.prediction_table(split), class_names=list(ctx.class_names) or None,
                            sparse_layer=ctx.sparse_layer, feature_attributes=ctx.feature_attributes,
                            spurious_findings=(list(ctx.spurious_findings) if ctx.spurious_findings or
                                               "spurious_findings" in ctx.results else None),
                            automatic_findings=ctx.automatic_findings,
                            spurious_attributes=list(ctx.config.data.spurious_attributes),
                            model=ctx.model, dataset=ctx.datasets.get(split), input_spec=ctx.input_spec,
                            device=ctx.device, modality=ctx.modality, run=ctx, split=split)


def _why_no_automatic(ctx: RunContext) -> str:
    acfg = ctx.config.analysis
    if not acfg.auto_attributes:
        return "analysis.auto_attributes is false"
    if not acfg.interventions:
        return "analysis.interventions is false: an automatic finding needs one to be confirmed"
    if "test" in ctx.precomputed:
        return _no_examples(ctx, "test")
    if ctx.model is None:
        return "this run has no model to intervene on"
    return f"no automatic {ctx.modality.noun} attribute varies on the test split"


def assertions_stage(ctx: RunContext) -> None:
    """Run the config's assertions (and the implied ones) on the test split.

    The assertions were parsed with the config (:attr:`sparsecheck.config.Config.parsed_assertions`).
    Sets ``ctx.assertion_results`` (a SuiteResult) and ``ctx.results["assertions"]`` (list of dicts
    with name, status, severity, observed, threshold, message, family, failing_examples, ...), and
    writes ``junit.xml`` into ``ctx.out_dir``.
    """
    suite = ctx.config.parsed_assertions
    if ctx.automatic_findings is None:  # nothing was looked for from the pixels: the implied check has no evidence
        implied = [a for a in suite if a.implied and a.name == DEFAULT_AUTOMATIC and a.enabled]
        if implied:
            ctx.skip(f"assertion {DEFAULT_AUTOMATIC}", _why_no_automatic(ctx))
            suite = [a for a in suite if a not in implied]
    result = run_assertions(suite, assertion_context(ctx, "test"))
    ctx.assertion_results = result
    ctx.results["assertions"] = result.to_dicts()
    if ctx.out_dir is not None:
        path = write_junit(result, Path(ctx.out_dir) / "junit.xml")
        ctx.artifacts["junit.xml"] = str(path)


STAGES: list[Stage] = [load_stage, extract_stage, dense_stage, auto_attributes_stage, sparse_stage,
                       interpret_stage, slices_stage, spurious_stage, assertions_stage, explain_stage]
