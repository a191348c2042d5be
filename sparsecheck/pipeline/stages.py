"""The pipeline's stages: each reads the config and what earlier stages left in the
:class:`~sparsecheck.pipeline.context.RunContext`, calls a library function, and records its part.

This is the only code that knows both the run context and the libraries (``sparse/``,
``analysis/``, ``assertions/``), which take arrays, tables and parameters. In order:

========================  ====================================================================
``load_stage``            the model, datasets, precomputed features and metadata the config names
                          (in :mod:`sparsecheck.pipeline.loading`)
``extract_stage``         deep features and logits of every split (cached on disk, or precomputed;
                          in :mod:`sparsecheck.pipeline.loading`)
``dense_stage``           the model's own accuracy, overall and by metadata value
``auto_attributes_stage`` automatic attributes (``auto:*``) of the test split (the modality's)
``sparse_stage``          the sparse decision layer (:class:`~sparsecheck.sparse.SparseDecisionLayer`)
``interpret_stage``       feature cards (:func:`~sparsecheck.analysis.interpret.interpret_features`)
``slices_stage``          slices and error breakdowns (:func:`~sparsecheck.analysis.slices.analyse_errors`)
``spurious_stage``        spurious findings (:func:`~sparsecheck.analysis.spurious.find_spurious_features`)
``assertions_stage``      the config's assertions (:func:`~sparsecheck.assertions.run_assertions`)
``explain_stage``         LIME and its sanity check, for the features the results name first
                          (:func:`~sparsecheck.analysis.explain.explain_cards`)
========================  ====================================================================

LIME comes last because which features get explained depends on what a reader of the results
needs: the features of the spurious findings, of the failing assertions and of the top slices.
"""

from __future__ import annotations

import dataclasses
import logging
import time
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
from sparsecheck.analysis.feature_modes import FeatureModes, feature_modes
from sparsecheck.analysis.interpret import explain_cards, explanation_order, interpret_features
from sparsecheck.analysis.shortcuts import fold_other_sides, pool_findings, training_prevalence, untied_attributes
from sparsecheck.analysis.slices import analyse_errors
from sparsecheck.analysis.spurious import MAX_REVIEW, find_spurious_features
from sparsecheck.assertions import DEFAULT_AUTOMATIC, AssertionContext, run_assertions
from sparsecheck.errors import ConfigError, DataError, SparsecheckError
from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.pipeline.intervene import Intervener
from sparsecheck.reports.evidence import featured_features
from sparsecheck.reports.junit import write_junit
from sparsecheck.results import (
    AttributeAccuracyRecord,
    AutoAttributesSummary,
    DenseSummary,
    ErrorBreakdowns,
    ErrorClusterRecord,
    FeatureAttributeRecord,
    FeatureCardRecord,
    FeatureSanityRecord,
    InterpretationSummary,
    SliceRecord,
    SliceSearchSummary,
    SparseLayerSummary,
    SpuriousAnalysisSummary,
    SpuriousFindingRecord,
)
from sparsecheck.sparse import SparseDecisionLayer
from sparsecheck.pipeline.loading import Inputs, _no_examples, extract_stage, load_inputs, load_stage

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


def dense_stage(ctx: RunContext) -> None:
    """Accuracy of the model's own head, overall and by every metadata value.

    On the test split it also records the chance rate (the share of the most frequent class) and,
    when the predictions match the labels far better under another order of the classes
    (:func:`~sparsecheck.analysis.chance.diagnose_class_order`), that order as
    the ``dense`` section's ``class_order``, with a warning: ``data.class_names`` (or an ImageFolder's
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
    ctx.run_results.dense = DenseSummary.model_validate(dense)
    table = ctx.prediction_table("test")
    attrs = [a for a in ctx.attributes]
    rows = accuracy_by_attribute(table, attrs).to_dict("records") if attrs else []
    ctx.run_results.accuracy_by_attribute = [AttributeAccuracyRecord.model_validate(r) for r in rows]
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
    it cannot measure is skipped with the reason. Sets the ``auto_attributes`` section (columns,
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
    ctx.splits["test"] = view.with_columns(table)
    # the same attributes on (a sample of) the training examples: a shortcut is a property the
    # training data ties to a class, and the spurious stage asks for that of automatic findings
    train_rows = 0
    if train is not None:
        rows = _train_sample(ctx, len(train))
        try:
            ctx.train_attributes = (auto.transform(train, rows, batch_size=step),
                                    np.asarray(ctx.splits["train"].labels)[rows])
            train_rows = int(rows.size)
        except Exception as exc:  # the test split's attributes stand without it
            ctx.skip(f"{what} of the train split", exception_reason(exc))
    ctx.run_results.auto_attributes = AutoAttributesSummary.model_validate(
        {**auto.to_dict(), "split": "test", "train_rows": train_rows, "seconds": round(time.perf_counter() - start, 3)})


def sparse_stage(ctx: RunContext) -> None:
    """Fit the sparse decision layer on train features (validation split for selection).

    Sets the ``sparse_layer`` section (dense vs sparse accuracy, features per class, the path),
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
    r = SparseLayerSummary.model_validate({
        "dense_accuracy": float(np.mean(dense_pred == test.labels)),
        "sparse_accuracy": float(np.mean(sparse_pred == test.labels)),
        "agreement": float(np.mean(sparse_pred == dense_pred)),
        **summary,
    })
    ctx.run_results.sparse_layer = r
    if ctx.out_dir is not None:
        out = Path(ctx.out_dir)
        layer.save(out / "sparse_layer", overwrite=True)
        layer.plot_path(out / "sparse_path.png")
        ctx.artifacts["sparse_layer"] = str(out / "sparse_layer")
        ctx.artifacts["sparse_path.png"] = str(out / "sparse_path.png")
    logger.info("sparse layer: %.1f features/class on average (max %d), test accuracy %.3f vs dense %.3f",
                r.mean_features_per_class, r.max_features_per_class, r.sparse_accuracy, r.dense_accuracy)


def _interpreted_split(ctx: RunContext) -> str:
    return "test" if "test" in ctx.splits else list(ctx.splits)[-1]


def interpret_stage(ctx: RunContext) -> None:
    """Interpret every feature of ``ctx.sparse_layer`` on the test split (else the last split):
    top and bottom examples, classes, associations with the metadata, a card each. LIME comes
    later (:func:`explain_stage`), once the results say which features a reader needs.

    Reads ``ctx.config.analysis.top_k``, ``fdr``, ``associations_per_feature`` and
    ``ctx.config.seed``. Sets ``ctx.feature_attributes`` (the whole tidy association table; the
    outputs write it to ``feature_attributes.parquet``), ``ctx.feature_cards`` and
    the sections ``feature_attributes`` (the significant associations, the strongest of each feature:
    :func:`~sparsecheck.analysis.association.strongest_significant`), ``feature_cards``,
    ``feature_sanity`` and ``interpretation``. The cards' pictures are drawn by :func:`explain_stage`, once the
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
    _record_interpretation(ctx, found.to_results(), with_associations=True)


def _record_interpretation(ctx: RunContext, found: dict[str, Any], *, with_associations: bool) -> None:
    """Set the interpretation's sections (:meth:`~sparsecheck.analysis.interpret.Interpretation.to_results`)."""
    results = ctx.run_results
    if with_associations:
        results.feature_attributes = [FeatureAttributeRecord.model_validate(r) for r in found["feature_attributes"]]
    results.feature_cards = [FeatureCardRecord.model_validate(c) for c in found["feature_cards"]]
    results.feature_sanity = [FeatureSanityRecord.model_validate(r) for r in found["feature_sanity"]]
    results.interpretation = InterpretationSummary.model_validate(found["interpretation"])


def explain_stage(ctx: RunContext) -> None:
    """LIME on the features a reader of the results needs, then the model-randomisation sanity check.

    The order (:func:`~sparsecheck.analysis.interpret.explanation_order`): the features the
    results name (:func:`~sparsecheck.reports.evidence.featured_features`: spurious findings,
    failing assertions, top feature slices), then features tied to a declared spurious attribute,
    then by total ``|weight|``; the first ``analysis.explain_features`` of them, within
    ``analysis.explain_budget_s`` seconds. Perturbed images go to the model in batches sized to
    the device. Draws the card pictures (``features/feature_<id>.png``, for the first
    ``analysis.card_images`` features in the same order). Updates the cards and the sections
    ``feature_cards``, ``feature_sanity`` and ``interpretation`` (its ``explain`` entry: how many were explained
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
    order = explanation_order(ctx.sparse_layer, featured_features(ctx.run_results.to_dict()), found.associations,
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
    _record_interpretation(ctx, found.to_results(), with_associations=False)


def slices_stage(ctx: RunContext) -> None:
    """Slices, feature slices and error breakdowns of the test prediction table.

    :func:`~sparsecheck.analysis.slices.analyse_errors` with ``max_predicates``,
    ``min_support``, ``slices_top_k`` and ``fdr`` from ``ctx.config.analysis``. Sets
    ``ctx.slices`` and the sections ``slices`` (best first), ``slice_search``, ``feature_slices``,
    ``error_breakdowns`` (``by_pair``, ``by_feature_activation``) and ``error_clusters``.
    """
    if "test" not in ctx.splits:
        raise DataError("slices need the test split; run the extract stage first")
    acfg = ctx.config.analysis
    found = analyse_errors(ctx.prediction_table("test"), ctx.attributes, features=ctx.splits["test"].features,
                           layer=ctx.sparse_layer, class_names=ctx.class_names, max_predicates=acfg.max_predicates,
                           min_support=acfg.min_support, top_k=acfg.slices_top_k, fdr=acfg.fdr,
                           feature_slice_features=acfg.feature_slice_features)
    ctx.slices = list(found.slices)
    sections = found.to_results()
    results = ctx.run_results
    results.slices = [SliceRecord.model_validate(s) for s in sections["slices"]]
    results.slice_search = SliceSearchSummary.model_validate(sections["slice_search"])
    results.feature_slices = [SliceRecord.model_validate(s) for s in sections["feature_slices"]]
    results.error_breakdowns = ErrorBreakdowns.model_validate(sections["error_breakdowns"])
    results.error_clusters = [ErrorClusterRecord.model_validate(c) for c in _error_clusters(ctx)]


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
    on the test split, within classes, and its significant rows set as the ``feature_attributes`` section).
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

    Sets ``ctx.spurious_findings`` and ``ctx.automatic_findings``, and the sections ``spurious_findings``
    (highest score first), ``automatic_findings``, ``associations_to_review`` (the same for the
    metadata attributes *not* declared spurious, at most :data:`~sparsecheck.analysis.spurious.MAX_REVIEW`)
    and ``spurious_analysis``.
    """
    if ctx.sparse_layer is None:
        raise ConfigError("spurious findings need the sparse decision layer; run sparse_stage before "
                          "spurious_stage", key="stages")
    view = ctx.splits.get("test")
    if view is None or view.labels is None:
        raise DataError("spurious findings need the labelled test split; run the extract stage first")
    declared = [str(a) for a in ctx.config.data.spurious_attributes]
    modes = _feature_modes(ctx)
    view = ctx.splits["test"]
    attributes = list(ctx.attributes)
    unknown = [a for a in declared if a not in attributes]
    if unknown:
        raise ConfigError(f"not a metadata column (columns: {attributes})", key="data.spurious_attributes",
                          value=unknown)
    automatic = [a for a in attributes if is_auto(a) and a not in declared]
    others = [a for a in attributes if a not in declared and a not in automatic]
    associations = _association_table(ctx)
    if modes is not None and len(modes.test.columns):
        used = ctx.sparse_layer.used_features()
        associations = pd.concat([associations, feature_associations(
            np.asarray(view.features[:, used]), view.metadata, features=used, attributes=list(modes.test.columns),
            strata=view.labels)], ignore_index=True)
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
    if modes is not None:
        auto_prevalence = {**(auto_prevalence or {}), **training_prevalence(
            modes.train, modes.train_labels, list(modes.train.columns))}
    # a declared attribute that training ties to no class cannot be a learned shortcut: reviewed
    untied = (untied_attributes(declared_prevalence, declared, acfg.spurious_min_enrichment)
              if declared_prevalence is not None else {})
    for a, d in untied.items():
        logger.info("spurious features: %s is declared spurious, but in training no value of it is more frequent in "
                    "one class than in the others by %s or more (largest: %.3f): a model cannot have learned a "
                    "shortcut from it; its associations are listed for review", a,
                    acfg.spurious_min_enrichment, d)
    declared = [a for a in declared if a not in untied]
    others = [*others, *untied]
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
    results = ctx.run_results
    results.spurious_findings = [SpuriousFindingRecord.model_validate(f.to_dict()) for f in ctx.spurious_findings]
    results.automatic_findings = [SpuriousFindingRecord.model_validate(f.to_dict())
                                  for f in ctx.automatic_findings or []]
    results.associations_to_review = [SpuriousFindingRecord.model_validate(f.to_dict())
                                      for f in (review.findings if review else [])[:MAX_REVIEW]]
    results.spurious_analysis = SpuriousAnalysisSummary.model_validate({
        "split": "test", "attributes": declared, "review_attributes": others, "automatic_attributes": automatic,
        "n_candidates": 0 if found is None else int(len(found.candidates)),
        "n_review_candidates": 0 if review is None else int(len(review.candidates)),
        "n_automatic_candidates": 0 if auto is None else int(len(auto.candidates)),
        "interventions": tested, "cues_estimated": estimated,
        "feature_modes": modes.to_dict()["features"] if modes is not None else [],
        # declared, but tied to no class in training (largest difference in share): reviewed instead
        "untied_attributes": {a: round(float(d), 4) for a, d in untied.items()},
        "params": {"fdr": float(acfg.fdr), **params},
    })
    if not declared:
        logger.info("spurious findings: no data.spurious_attributes declared; only associations to review")
    for finding in [*ctx.spurious_findings[:3], *(ctx.automatic_findings or [])[:3]]:
        logger.info("spurious finding: %s", finding.sentence)


def _train_sample(ctx: RunContext, n: int) -> np.ndarray:
    """The sorted rows of the training split that automatic attributes are measured on: a seeded
    sample of at most :data:`TRAIN_SAMPLE`."""
    return np.sort(np.random.default_rng(int(ctx.config.seed)).permutation(n)[:TRAIN_SAMPLE])


def _feature_modes(ctx: RunContext) -> FeatureModes | None:
    """The ``auto:feature_<id>`` columns (:mod:`~sparsecheck.analysis.feature_modes`), added to the
    test split's metadata; None when automatic attributes or interventions are off (such a column
    becomes a finding only by intervention) or there is no labelled train split."""
    acfg = ctx.config.analysis
    view = ctx.splits["test"]
    if not (acfg.auto_attributes and acfg.interventions) or ctx.model is None or "test" in ctx.precomputed:
        return None
    train = ctx.splits.get("train")
    if train is None or train.labels is None:
        return None
    rows = _train_sample(ctx, len(train))  # a memory-mapped train split is read at these rows only
    modes = feature_modes(ctx.sparse_layer, view.features, np.asarray(train.features[rows]), train.labels[rows])
    ctx.splits["test"] = view.with_columns(modes.test)
    logger.info("spurious features: %d features fire in two modes and are tested as automatic attributes (%s)",
                len(modes.test.columns), ", ".join(modes.test.columns) or "none")
    return modes


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
    if not ctx.run_results.feature_attributes:
        acfg = ctx.config.analysis
        ctx.run_results.feature_attributes = [FeatureAttributeRecord.model_validate(r) for r in association_records(
            strongest_significant(table, fdr=acfg.fdr, per_feature=acfg.associations_per_feature))]
    return table


def assertion_context(ctx: RunContext, split: str = "test") -> AssertionContext:
    """Everything a pipeline run knows about ``split``, for the assertions."""
    return AssertionContext(table=ctx.prediction_table(split), class_names=list(ctx.class_names) or None,
                            sparse_layer=ctx.sparse_layer, feature_attributes=ctx.feature_attributes,
                            spurious_findings=(list(ctx.spurious_findings) if ctx.spurious_findings or
                                               ctx.run_results.recorded("spurious_findings") else None),
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
    Sets ``ctx.assertion_results`` (a SuiteResult) and the ``assertions`` section (its
    :class:`~sparsecheck.results.AssertionResult` objects), and writes ``junit.xml`` into
    ``ctx.out_dir``.
    """
    suite = ctx.config.parsed_assertions
    if ctx.automatic_findings is None:  # nothing was looked for from the pixels: the implied check has no evidence
        implied = [a for a in suite if a.implied and a.name == DEFAULT_AUTOMATIC and a.enabled]
        if implied:
            ctx.skip(f"assertion {DEFAULT_AUTOMATIC}", _why_no_automatic(ctx))
            suite = [a for a in suite if a not in implied]
    result = run_assertions(suite, assertion_context(ctx, "test"))
    ctx.assertion_results = result
    ctx.run_results.assertions = result.results
    if ctx.out_dir is not None:
        path = write_junit(result, Path(ctx.out_dir) / "junit.xml")
        ctx.artifacts["junit.xml"] = str(path)


STAGES: list[Stage] = [load_stage, extract_stage, dense_stage, auto_attributes_stage, sparse_stage,
                       interpret_stage, slices_stage, spurious_stage, assertions_stage, explain_stage]
