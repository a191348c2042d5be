"""sparsecheck: debug PyTorch classifiers through a sparse decision layer.

The public API, imported lazily so ``import sparsecheck`` stays fast (MLflow and torch load on
first use)::

    from sparsecheck import load_config, run_pipeline
    ctx = run_pipeline(load_config("config.yaml"), "out/")
    ctx.run_results.status, ctx.sparse_layer.feature_table(), ctx.prediction_table("test")

Examples
--------
>>> import sparsecheck
>>> sparsecheck.SparseDecisionLayer().get_params()["alpha"]
0.99
"""

from __future__ import annotations

import importlib
from typing import Any

from sparsecheck._version import __version__

_EXPORTS = {
    # configuration and the pipeline
    "Config": "sparsecheck.config",
    "load_config": "sparsecheck.config",
    "run_pipeline": "sparsecheck.pipeline",
    "RunContext": "sparsecheck.pipeline",
    # loading
    "InputSpec": "sparsecheck.data",
    "ImageDataset": "sparsecheck.data",
    "Model": "sparsecheck.models",
    "load_model": "sparsecheck.models",
    "load_dataset": "sparsecheck.data",
    "load_metadata": "sparsecheck.data",
    # the sparse decision layer
    "FeatureExtractor": "sparsecheck.features.taps",
    "FeatureSet": "sparsecheck.features.cache",
    "extract_features": "sparsecheck.features.extraction",
    "SparseDecisionLayer": "sparsecheck.sparse.layer",
    # analysis
    "feature_associations": "sparsecheck.analysis.association",
    "SliceFinder": "sparsecheck.analysis.slices",
    "find_slices": "sparsecheck.analysis.slices",
    "find_spurious_features": "sparsecheck.analysis.spurious",
    # assertions
    "Assertion": "sparsecheck.assertions",
    "run_assertions": "sparsecheck.assertions",
    # comparison and monitoring
    "compare_runs": "sparsecheck.reports.compare",
    "monitor_batch": "sparsecheck.monitor",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsecheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
