"""Sparse-layer assertions on a real SparseDecisionLayer fitted to features with a planted shortcut:
class "wolf" is recognised by a feature that fires on snow; "site" is harmless."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsecheck.analysis.stats import auc_effect, benjamini_hochberg
from sparsecheck.assertions import Assertion, AssertionContext, run_assertions
from sparsecheck.sparse import SparseDecisionLayer

NAMES = ["husky", "wolf", "fox"]


def associations(X: np.ndarray, meta: pd.DataFrame, features: np.ndarray) -> pd.DataFrame:
    """The tidy feature x attribute table, as the interpretation stage defines it (AUC, BH q-values)."""
    rows = []
    for f in features:
        for attribute in meta.columns:
            for value in sorted(meta[attribute].unique()):
                effect, p = auc_effect(X[:, f], (meta[attribute] == value).to_numpy())
                rows.append((int(f), attribute, str(value), effect, p))
    table = pd.DataFrame(rows, columns=["feature", "attribute", "value", "effect", "p_value"])
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    return table


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    n = 900
    y = rng.integers(0, 3, n)
    snow = np.where(y == 1, rng.random(n) < 0.8, rng.random(n) < 0.2)  # wolves mostly on snow
    site = rng.choice(["a", "b"], n)
    X = np.c_[2.0 * snow + rng.normal(0, 0.5, n),               # 0: fires on snow (the wolves' shortcut)
              2.0 * (y == 0) + rng.normal(0, 0.7, n),          # 1: husky
              2.0 * (y == 2) + rng.normal(0, 0.7, n),          # 2: fox
              rng.normal(size=(n, 5))].astype(np.float32)      # noise
    layer = SparseDecisionLayer(n_lambdas=8, solver="fista", device="cpu", max_epochs=300, tol=1e-4).fit(X, y)
    recorded = snow ^ (rng.random(n) < 0.1)  # the metadata is right 90% of the time: AUC about 0.9
    meta = pd.DataFrame({"background": np.where(recorded, "snow", "grass"), "site": site})
    fa = associations(X, meta, layer.used_features())
    pred = layer.predict(X)
    dense = np.where(rng.random(n) < 0.9, pred, (pred + 1) % 3)  # a "dense head" agreeing 90% of the time
    table = pd.DataFrame({"id": [f"x{i}" for i in range(n)], "label": y, "prediction": dense,
                          "confidence": rng.uniform(0.4, 1.0, n), "sparse_prediction": pred, **meta})
    data = AssertionContext(table, class_names=NAMES, sparse_layer=layer, feature_attributes=fa,
                            spurious_attributes=["background"])
    return data, layer, fa


def run1(a, data):
    return run_assertions([a], data)[0]


def test_planted_layer_uses_the_snow_feature_for_wolf(planted):
    _, layer, fa = planted
    assert layer.weight_[1, 0] > 0, layer.weight_
    snow = fa[(fa.feature == 0) & (fa.value == "snow")].iloc[0]
    assert 0.75 < snow.effect < 0.95 and snow.q_value < 1e-10


def test_no_reliance_catches_the_shortcut_and_passes_the_harmless_attribute(planted):
    data, layer, _ = planted
    r = run1(Assertion.no_reliance(class_="wolf", attribute="background"), data)
    assert r.status == "fail" and r.observed >= 1
    assert "wolf <- feature 0" in r.message and "snow AUC" in r.message
    v = r.details["violations"][0]
    assert (v["class"], v["feature"], v["attribute"], v["value"]) == ("wolf", 0, "background", "snow")
    assert v["weight"] == pytest.approx(float(layer.weight_[1, 0]))
    assert run1(Assertion.no_reliance(class_="*", attribute="site"), data).status == "pass"
    assert run1(Assertion.no_reliance(class_="husky", attribute="background"), data).status == "pass"
    # narrowed to a value the feature does not single out strongly enough, or a high effect floor
    assert run1(Assertion.no_reliance(class_="wolf", attribute="background", min_effect=0.49), data).status == "pass"
    assert run1(Assertion.no_reliance(class_="wolf", attribute="background",
                                      min_weight=float(layer.weight_[1, 0]) + 1), data).status == "pass"


def test_default_reliance_assertion_from_spurious_attributes(planted):
    from sparsecheck.assertions import parse_assertions

    import dataclasses

    data, _, _ = planted
    implied = parse_assertions([], spurious_attributes=["background"])
    # one rule, one count: it fails exactly on the spurious findings of the declared attributes
    finding = {"class": "wolf", "feature": 0, "attribute": "background", "value": "snow", "significant": True}
    other = dict(finding, attribute="site", value="a")
    suite = run_assertions(implied, dataclasses.replace(data, spurious_findings=[finding, other]))
    assert [(r.name, r.status, r.severity, r.observed) for r in suite] == [("no-spurious-reliance", "fail", "error", 1)]
    assert suite.exit_code() == 1
    # a strong association alone is not a finding: with none, the implied check passes
    suite = run_assertions(implied, dataclasses.replace(data, spurious_findings=[other]))
    assert [(r.name, r.status) for r in suite] == [("no-spurious-reliance", "pass")]


def test_no_reliance_refuses_to_judge_without_the_evidence(planted):
    data, layer, fa = planted
    r = run1(Assertion.no_reliance(attribute="hospital"), data)
    assert r.status == "error" and "no rows for attribute" in r.message
    bare = AssertionContext(data.table, class_names=NAMES, sparse_layer=layer)
    r = run1(Assertion.no_reliance(attribute="background"), bare)
    assert r.status == "error" and "feature/metadata associations" in r.message


def test_spurious_weight_share(planted):
    data, layer, _ = planted
    w = np.abs(layer.weight_)
    share = w[:, 0].sum() / w.sum()
    ok = run1(Assertion.spurious_weight_share(max=min(share + 0.05, 1.0)), data)
    bad = run1(Assertion.spurious_weight_share(max=share / 2), data)
    assert ok.status == "pass" and bad.status == "fail"
    assert bad.observed == pytest.approx(share)
    assert bad.details["per_class"]["wolf"] == pytest.approx(w[1, 0] / w[1].sum())
    assert run1(Assertion.spurious_weight_share(max=0.0, attribute="site"), data).status == "pass"


def test_max_features_per_class(planted):
    data, layer, _ = planted
    counts = (layer.weight_ != 0).sum(axis=1)
    assert run1(Assertion.max_features_per_class(max=int(counts.max())), data).status == "pass"
    bad = run1(Assertion.max_features_per_class(max=int(counts.max()) - 1), data)
    assert bad.status == "fail" and bad.observed == counts.max()
    assert bad.details["features_per_class"] == {NAMES[c]: int(counts[c]) for c in range(3)}


def test_sparse_dense_gap_and_agreement(planted):
    data, _, _ = planted
    t = data.table
    gap = (t.prediction == t.label).mean() - (t.sparse_prediction == t.label).mean()
    assert run1(Assertion.sparse_accuracy_gap(max_gap=gap + 0.01), data).status == "pass"
    bad = run1(Assertion.sparse_accuracy_gap(max_gap=gap - 0.01), data)
    assert bad.status == "fail" and bad.observed == pytest.approx(gap)
    agree = (t.prediction == t.sparse_prediction).mean()
    assert run1(Assertion.sparse_agreement(min=agree - 0.01), data).status == "pass"
    bad = run1(Assertion.sparse_agreement(min=agree + 0.01), data)
    assert bad.status == "fail" and bad.observed == pytest.approx(agree)
    assert set(bad.failing_examples["id"]) == set(t[t.prediction != t.sparse_prediction].id)
    # label-free: runs on a table without labels
    unlabeled = AssertionContext(t.drop(columns="label"), class_names=NAMES)
    assert run_assertions([Assertion.sparse_agreement(min=0.5)], unlabeled, needs_labels=False)[0].status == "pass"


def test_no_spurious_findings_reads_the_findings(planted):
    data, _, _ = planted
    finding = {"class": "wolf", "feature": 0, "attribute": "background", "value": "snow", "score": 0.4,
               "significant": True, "sentence": "class 'wolf' relies on feature 0"}
    ctx = AssertionContext(data.table, class_names=NAMES, spurious_findings=[finding])
    assert run1(Assertion.no_spurious_findings(class_="wolf"), ctx).status == "fail"
    assert run1(Assertion.no_spurious_findings(class_="husky"), ctx).status == "pass"
    assert run1(Assertion.no_spurious_findings(min_score=0.5), ctx).status == "pass"
    assert run1(Assertion.no_spurious_findings(), data).status == "error"  # the analysis did not run


def test_the_message_counts_findings_in_words():
    """One finding, two findings; shortcuts found from the pixels (not "shortcut found from the pixelss")."""
    finding = {"class": "wolf", "feature": 0, "attribute": "auto:mark_br", "value": "white", "score": 0.4}
    t = pd.DataFrame({"id": ["a", "b"], "label": [0, 1], "prediction": [0, 1]})
    one = AssertionContext(t, class_names=NAMES, automatic_findings=[finding], spurious_findings=[finding])
    two = AssertionContext(t, class_names=NAMES, automatic_findings=[finding, {**finding, "class": "husky"}],
                           spurious_findings=[finding, {**finding, "class": "husky"}])
    auto = Assertion.no_spurious_findings(source="automatic")
    assert run1(auto, one).message.startswith("1 shortcut found from the pixels for any class: wolf <- feature 0")
    assert run1(auto, two).message.startswith("2 shortcuts found from the pixels for any class: ")
    assert run1(Assertion.no_spurious_findings(), two).message.startswith("2 spurious findings for any class: ")


def test_numeric_attributes_count_by_correlation(planted):
    data, layer, fa = planted
    for r, expected in ((0.55, "fail"), (-0.55, "fail"), (0.3, "pass")):
        numeric = pd.DataFrame({"feature": [0], "attribute": ["age"], "value": [None], "effect": [r],
                                "p_value": [1e-9], "q_value": [1e-9], "kind": ["numeric"]})
        table = pd.concat([fa.assign(kind="categorical"), numeric], ignore_index=True)
        ctx = AssertionContext(data.table, class_names=NAMES, sparse_layer=layer, feature_attributes=table)
        result = run1(Assertion.no_reliance(class_="wolf", attribute="age"), ctx)
        assert result.status == expected, (r, result.message)
        if expected == "fail":
            assert f"r {r:.2f}" in result.message and result.details["violations"][0]["value"] is None
