"""Unnamed slices: a planted high-error region is found and described; pure noise gives nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsecheck.analysis.error_clusters import ErrorCluster, find_error_clusters
from sparsecheck.errors import DataError, ParameterError


def planted(seed: int, n: int = 3000, d: int = 12):
    """Four blobs of the feature space; in blob 0 (feature 5 high, feature 2 low) the model errs 60%."""
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, 4, size=n)
    centres = rng.normal(0, 1, size=(4, d))
    centres[0, 5], centres[0, 2] = 4.0, -3.0
    X = centres[blob] + rng.normal(size=(n, d))
    X = (X - X.mean(0)) / X.std(0)
    correct = np.where(blob == 0, rng.random(n) > 0.6, rng.random(n) > 0.08)
    return X, correct, blob


def test_finds_and_describes_the_planted_cluster():
    X, correct, blob = planted(0)
    ids = np.array([f"ex{i}" for i in range(len(X))])
    found = find_error_clusters(X, correct, ids=ids, feature_ids=np.arange(100, 112), seed=0)
    assert found, "the planted cluster was not found"
    top = found[0]
    members = np.zeros(len(X), bool)
    members[top.member_rows] = True
    # the top cluster lies in the planted blob; error-weighted k-means may split the blob into
    # several clusters, which together cover most of it and little else
    assert (blob[members] == 0).mean() > 0.9
    union = np.zeros(len(X), bool)
    union[np.concatenate([c.member_rows for c in found])] = True
    assert union[blob == 0].mean() > 0.5 and (blob[union] == 0).mean() > 0.8
    assert len(found) == 1 and len(top.parts) > 1          # the fragments are merged into one failure mode
    unmerged = find_error_clusters(X, correct, seed=0, merge_similarity=None)
    assert len(unmerged) == len(top.parts) and all(len(c.parts) == 1 for c in unmerged)
    assert top.error_rate > 0.45 and top.ci_low > top.rest_error_rate and top.q_value <= 0.05 and top.p_value < 1e-20
    assert {f["feature"] for f in top.features[:2]} == {105, 102}
    assert next(f for f in top.features if f["feature"] == 105)["z"] > 1.5
    assert next(f for f in top.features if f["feature"] == 102)["z"] < -1.5
    # examples: misclassified members, by id
    assert 0 < len(top.examples) <= 8
    index = {v: i for i, v in enumerate(ids)}
    assert all(not correct[index[e]] and members[index[e]] for e in top.examples)
    d = top.to_dict()
    json.dumps(d)
    assert d["kind"] == "cluster" and d["size"] == top.size and d["features"][0]["feature"] in (105, 102)
    assert "errors" in top.describe()
    # every reported cluster is significant and worse than the rest; sorted by error rate
    assert all(c.q_value <= 0.05 and c.error_rate > c.rest_error_rate for c in found)
    assert [c.error_rate for c in found] == sorted((c.error_rate for c in found), reverse=True)


def test_pure_noise_reports_nothing():
    """Errors independent of the features: across 10 seeds, at most one reported cluster in all."""
    reported = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        X = rng.normal(size=(1000, 10))
        correct = rng.random(1000) > 0.15
        reported += len(find_error_clusters(X, correct, seed=seed))
    assert reported <= 1


def test_same_seed_same_answer_and_small_inputs():
    X, correct, _ = planted(1, n=1200)
    a = [c.to_dict() for c in find_error_clusters(X, correct, seed=4)]
    b = [c.to_dict() for c in find_error_clusters(X, correct, seed=4)]
    assert a == b
    assert find_error_clusters(X[:30], correct[:30], seed=0) == []          # too few to cluster
    assert find_error_clusters(X, np.ones(len(X), bool), seed=0) == []      # no errors at all


def test_errors():
    X, correct, _ = planted(2, n=200)
    with pytest.raises(DataError, match="correct"):
        find_error_clusters(X, correct[:10])
    with pytest.raises(DataError, match="2-D"):
        find_error_clusters(X[:, 0], correct)
    with pytest.raises(ParameterError, match="k_max"):
        find_error_clusters(X, correct, k_max=1)
    with pytest.raises(ParameterError, match="fdr"):
        find_error_clusters(X, correct, fdr=1.5)
    assert ErrorCluster.__dataclass_fields__.keys() >= {"size", "error_rate", "q_value", "features", "examples"}
