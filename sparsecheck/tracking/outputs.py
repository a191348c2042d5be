"""The run's output files MLflow logs as artifacts: their names, the activations and test-feature
samples written for them (what ``monitor`` and ``compare`` read back), and which files of
an output directory belong to a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sparsecheck.outputs import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.pipeline.context import RunContext

#: activations of the used sparse features on the test split (see :func:`write_activations`)
ACTIVATIONS_FILE = "activations.npz"
#: the whole feature layer on (at most TEST_FEATURES_MAX_EXAMPLES of) the test split, float16
#: (see :func:`write_test_features`): what ``compare`` measures CKA on
TEST_FEATURES_FILE = "test_features.npz"
TEST_FEATURES_MAX_EXAMPLES = 2000
RESULTS_FILE = "results.json"
#: output files and folders logged as artifacts when present (besides ``ctx.artifacts``)
OUTPUT_ARTIFACTS = ("report.html", RESULTS_FILE, "junit.xml", ACTIVATIONS_FILE, TEST_FEATURES_FILE,
                    "sparse_layer", "features")


def write_activations(ctx: "RunContext", path: str | Path) -> Path | None:
    """Write the used sparse features' activations on the test split to ``path`` (``.npz``).

    The file holds ``ids`` (str, n), ``feature_ids`` (int64, k: the features the sparse layer
    uses, sorted), ``activations`` (float32, n × k: raw deep features, not standardised) and
    ``labels`` (int64, n) when the split is labelled. The compare and monitor commands match
    features across runs and measure drift with it.

    Without a sparse layer or a test split there is nothing to write: a file left at ``path`` by
    an earlier run in the same output directory is removed (it would be logged as this run's) and
    None is returned.
    """
    path = Path(path)
    layer = ctx.sparse_layer
    view = ctx.splits.get("test")
    if layer is None or view is None:
        path.unlink(missing_ok=True)
        return None
    used = np.asarray(layer.used_features(), dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(view.ids).astype(str),
        "feature_ids": used,
        "activations": np.ascontiguousarray(np.asarray(view.features)[:, used], dtype=np.float32),
    }
    if view.labels is not None:
        arrays["labels"] = np.asarray(view.labels, dtype=np.int64)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
    ctx.artifacts[path.name] = str(path)
    return path


def write_test_features(ctx: "RunContext", path: str | Path, *,
                        max_examples: int = TEST_FEATURES_MAX_EXAMPLES) -> Path | None:
    """Write the test split's whole feature layer, for at most ``max_examples`` examples, to ``path``.

    The file holds ``ids`` (str, m) and ``features`` (float16, m × d: raw deep features, clipped
    to float16's range), with ``m = min(n, max_examples)``: 2,000 examples of a 2,048-wide layer
    is 8 MB. When the split is larger, the examples kept are those whose ids hash lowest (SHA-1),
    so two runs over the same test data keep the same examples, and ``compare`` can measure the
    similarity of their representations (linear CKA) on them. Without a test split, a file left
    at ``path`` by an earlier run is removed and None is returned.
    """
    import hashlib

    path = Path(path)
    view = ctx.splits.get("test")
    if view is None:
        path.unlink(missing_ok=True)
        return None
    ids = np.asarray(view.ids).astype(str)
    if ids.size > max_examples:
        keys = np.array([hashlib.sha1(i.encode()).hexdigest() for i in ids])
        rows = np.sort(np.argsort(keys, kind="stable")[:max_examples])
    else:
        rows = np.arange(ids.size)
    features = np.asarray(view.features[rows], dtype=np.float32)
    limit = float(np.finfo(np.float16).max)
    features = np.clip(features, -limit, limit).astype(np.float16)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, ids=ids[rows], features=features)
    ctx.artifacts[path.name] = str(path)
    return path


def _output_artifacts(ctx: "RunContext") -> list[Path]:
    """Files and folders under the output directory that belong to this run."""
    out = Path(ctx.out_dir)
    wanted: list[Path] = []
    for name in OUTPUT_ARTIFACTS:
        if name == RESULTS_FILE:
            continue  # logged from memory by log_outputs, before the local file is written
        if name == "sparse_layer" and ctx.sparse_layer is None:
            continue  # a folder from an earlier run in the same --out is not this run's
        if name == "features" and not ctx.run_results.feature_cards:
            continue
        if name == ACTIVATIONS_FILE and ctx.sparse_layer is None:
            continue
        wanted.append(out / name)
    wanted.extend(Path(p) for name, p in ctx.artifacts.items() if name != RESULTS_FILE)
    seen: set[Path] = set()
    found: list[Path] = []
    root = out.resolve()
    for path in wanted:
        resolved = path.resolve()
        if resolved in seen or not resolved.exists() or not resolved.is_relative_to(root) or resolved == root:
            continue
        if any(parent in seen for parent in resolved.parents):
            continue  # already inside a logged folder
        seen.add(resolved)
        found.append(resolved)
    return found
