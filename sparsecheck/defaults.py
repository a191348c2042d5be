"""Default settings, each stated once: the libraries, the config and the CLI all read them here.

This module imports nothing, so the config and the CLI can read it without loading torch.

Examples
--------
>>> from sparsecheck.config import AnalysisConfig, SparseConfig
>>> SparseConfig().alpha == SPARSE["alpha"], AnalysisConfig().fdr == ANALYSIS["fdr"]
(True, True)
"""

from __future__ import annotations

__all__ = ["SPARSE", "ANALYSIS", "DRIFT_ALPHA", "DRIFT_PSI_THRESHOLD", "DRIFT_BINS"]

#: hyper-parameters of the sparse decision layer (``SparseDecisionLayer``, config ``sparse:``)
SPARSE = {
    "alpha": 0.99,
    "n_lambdas": 100,
    "lambda_min_ratio": 1e-3,
    "tolerance": 0.05,
    "features_per_class": None,
    "early_stop": True,  # stop the path once the validation accuracy is out of the selection's reach
    "solver": "auto",
    "precision": "fp32",  # how the fista solver holds the features: "bf16" halves their memory
    "max_epochs": None,
    "tol": None,
    "random_state": 0,
}

#: interpretation, slice and spurious-finding settings of a run (config ``analysis:``)
ANALYSIS = {
    # feature interpretation (sparsecheck.analysis.interpret)
    "top_k": 8,
    "explain": True,
    "explain_features": 12,  # features explained with LIME: those the results name first, then by total |weight|
    "explain_budget_s": None,  # seconds LIME and its sanity check may take in all (None: no limit)
    "lime_samples": 1000,  # the most perturbed images per explanation
    "lime_convergence": 0.95,  # stop sampling once LIME's weights stop changing this much (None: every sample)
    "card_images": 100,  # feature card pictures, in LIME's order (None: every used feature)
    # results.json lists the significant associations (q <= fdr), the strongest this many per feature
    # (None: every significant one); the whole table is the run's feature_attributes.parquet
    "associations_per_feature": 5,
    "lime_examples": 4,
    "sanity_check": True,
    "sanity_features": 3,
    "sanity_examples": 2,
    "sanity_threshold": 0.5,
    "sanity_cascade": False,
    # automatic image attributes (sparsecheck.analysis.auto_attributes) and interventions
    "auto_attributes": True,
    "interventions": True,
    "intervention_samples": 2000,  # images a cue is put on (or taken off), at most, per finding
    # spurious findings (sparsecheck.analysis.spurious): the decision rule's thresholds
    "spurious_min_auc": 0.6,
    "spurious_min_gap": 0.1,
    "spurious_min_ablation": 0.05,
    "spurious_min_group": 10,
    # an automatic finding's value is this much more frequent in its class's training images than in
    # the others' (share in the class minus share in the others)
    "spurious_min_enrichment": 0.15,
    # multiple testing, slices and breakdowns (sparsecheck.analysis.slices)
    "fdr": 0.05,
    "min_support": 20,
    "max_predicates": 2,
    "slices_top_k": 10,
    "feature_slice_features": 64,  # used features the feature slice search looks at (None: all)
}

#: monitoring: a feature drifts when its q-value < DRIFT_ALPHA and PSI >= DRIFT_PSI_THRESHOLD
DRIFT_ALPHA = 0.01
DRIFT_PSI_THRESHOLD = 0.1
#: quantile bins of the PSI
DRIFT_BINS = 10
