"""Metric-threshold assertions against independent computations (scikit-learn, pandas groupby,
the shared Wilson interval), on passing and failing inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.assertions import Assertion, AssertionContext, run_assertions
from tests.assertions._data import CLASS_NAMES, planted_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return planted_table()


def run1(assertion, table, **extras):
    return run_assertions([assertion], table, **extras)[0]


def groups(result) -> pd.DataFrame:
    return pd.DataFrame(result.details["groups"])


def test_accuracy_overall_matches_sklearn_and_gates_both_ways(table):
    acc = accuracy_score(table.label, table.prediction)
    ok = run1(Assertion.accuracy(min=acc - 0.01), table)
    bad = run1(Assertion.accuracy(min=acc + 0.01), table)
    assert ok.status == "pass" and bad.status == "fail"
    assert ok.observed == pytest.approx(acc) and bad.observed == pytest.approx(acc)
    assert bad.threshold == pytest.approx(acc + 0.01)
    # the failing examples are exactly the errors, most confident first
    wrong = table[table.prediction != table.label]
    assert bad.n_failing == len(wrong)
    top = wrong.sort_values("confidence", ascending=False).head(len(bad.failing_examples))
    assert bad.failing_examples["id"].tolist()[:5] == top["id"].tolist()[:5]
    assert bad.failing_examples["severity"].is_monotonic_decreasing


def test_slices_match_groupby_and_name_the_planted_slice(table):
    r = run1(Assertion.accuracy(by=["group", "site"], max_drop=0.1, min_support=30), table)
    g = groups(r).set_index("slice")
    expected = table.groupby("group").correct.mean()
    assert g.loc["group=g2", "value"] == pytest.approx(expected["g2"])
    assert g.loc["site=east", "value"] == pytest.approx(table[table.site == "east"].correct.mean())
    lo, hi = wilson_interval(np.array([table[table.group == "g2"].correct.sum()]), np.array([(table.group == "g2").sum()]))
    assert g.loc["group=g2", "ci_low"] == pytest.approx(lo[0]) and g.loc["group=g2", "ci_high"] == pytest.approx(hi[0])
    overall = table.correct.mean()
    assert r.status == "fail" and r.threshold == pytest.approx(overall - 0.1)
    assert "group=g2" in r.message and "site=" not in r.message.split(":", 1)[1]
    assert r.observed == pytest.approx(expected["g2"])
    failing_groups = set(r.failing_examples["group"])
    assert failing_groups == {"group=g2"}
    ids = set(r.failing_examples["id"])
    assert ids <= set(table[(table.group == "g2") & ~table.correct].id)
    # the harmless attribute alone passes
    assert run1(Assertion.accuracy(by=["site"], max_drop=0.1), table).status == "pass"


def test_min_support_leaves_tiny_slices_unjudged(table):
    r = run1(Assertion.accuracy(by=["batch"], min=0.5, min_support=30), table)
    g = groups(r).set_index("slice")
    assert not g.loc["batch=rare", "evaluated"] and g.loc["batch=rare", "n"] == 12
    assert r.status == "pass" and "not judged" in r.message
    assert run1(Assertion.accuracy(by=["batch"], min=0.5, min_support=10), table).status == "fail"


def test_confidence_fails_a_slice_only_when_its_whole_interval_is_below():
    rng = np.random.default_rng(1)
    n = 400
    t = pd.DataFrame({"id": [f"x{i}" for i in range(n)], "label": np.zeros(n, int),
                      "site": np.where(np.arange(n) < 40, "small", "big")})
    correct = np.r_[np.arange(40) < 30, rng.random(n - 40) < 0.85]  # small slice: 0.75 observed
    t["prediction"] = np.where(correct, 0, 1)
    point = run1(Assertion.accuracy(by=["site"], min=0.8, min_support=20), t)
    interval = run1(Assertion.accuracy(by=["site"], min=0.8, min_support=20, confidence=0.95), t)
    assert point.status == "fail" and interval.status == "pass"  # 0.75 < 0.8, but [0.60, 0.86] reaches it
    strict = run1(Assertion.accuracy(by=["site"], min=0.9, min_support=20, confidence=0.95), t)
    assert strict.status == "fail" and "site=small" in strict.message


def test_recall_and_precision_per_class_match_sklearn(table):
    rec = recall_score(table.label, table.prediction, average=None)
    prec = precision_score(table.label, table.prediction, average=None)
    r = run1(Assertion.recall(class_="*", min=0.0), table, class_names=CLASS_NAMES)
    p = run1(Assertion.precision(class_="*", min=0.0), table, class_names=CLASS_NAMES)
    assert r.status == p.status == "pass"
    assert [r.details["overall"][c] for c in CLASS_NAMES] == pytest.approx(list(rec))
    assert [p.details["overall"][c] for c in CLASS_NAMES] == pytest.approx(list(prec))
    worst = int(np.argmin(rec))
    bad = run1(Assertion.recall(class_=CLASS_NAMES[worst], min=float(rec[worst]) + 0.01), table,
               class_names=CLASS_NAMES)
    assert bad.status == "fail" and bad.observed == pytest.approx(rec[worst]) and CLASS_NAMES[worst] in bad.message
    ids = set(bad.failing_examples["id"])
    assert ids == set(table[(table.label == worst) & ~table.correct].id)


def test_recall_per_slice_compares_with_the_class_own_overall(table):
    r = run1(Assertion.recall(class_="bee", by=["group"], max_drop=0.15), table, class_names=CLASS_NAMES)
    g = groups(r).set_index("slice")
    sub = table[table.label == 1]
    assert g.loc["group=g2", "value"] == pytest.approx(sub[sub.group == "g2"].correct.mean())
    assert g.loc["group=g2", "overall"] == pytest.approx(sub.correct.mean())
    assert r.status == "fail" and "bee in group=g2" in r.message
    assert set(r.failing_examples["id"]) == set(sub[(sub.group == "g2") & ~sub.correct].id)


def test_macro_f1_matches_sklearn_overall_and_per_slice(table):
    f1 = f1_score(table.label, table.prediction, average="macro")
    assert run1(Assertion.macro_f1(min=f1 - 0.005), table).status == "pass"
    bad = run1(Assertion.macro_f1(min=f1 + 0.005), table)
    assert bad.status == "fail" and bad.observed == pytest.approx(f1)
    r = run1(Assertion.macro_f1(by=["group"], max_drop=0.1), table)
    g = groups(r).set_index("slice")
    sub = table[table.group == "g2"]
    assert g.loc["group=g2", "value"] == pytest.approx(f1_score(sub.label, sub.prediction, average="macro"))
    assert r.status == "fail"


def _ece(conf, correct, bins=15):
    b = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(abs(correct[b == i].mean() - conf[b == i].mean()) * (b == i).mean() for i in range(bins) if (b == i).any())


def test_ece_matches_a_direct_computation(table):
    expected = _ece(table.confidence.to_numpy(), table.correct.to_numpy())
    ok = run1(Assertion.ece(max=expected + 0.01), table)
    bad = run1(Assertion.ece(max=expected - 0.01), table)
    assert ok.status == "pass" and bad.status == "fail"
    assert ok.observed == pytest.approx(expected)
    per = run1(Assertion.ece(by=["group"], max_increase=0.05), table)
    sub = table[table.group == "g2"]
    assert groups(per).set_index("slice").loc["group=g2", "value"] == pytest.approx(
        _ece(sub.confidence.to_numpy(), sub.correct.to_numpy()))


def test_sparse_head_uses_the_sparse_predictions(table):
    sparse_acc = table.sparse_correct.mean()
    r = run1(Assertion.accuracy(min=0.0, head="sparse"), table)
    assert r.observed == pytest.approx(sparse_acc)
    missing = run1(Assertion.accuracy(min=0.0, head="sparse"), table.drop(columns="sparse_prediction"))
    assert missing.status == "error" and "sparse_prediction" in missing.message


def test_intersections_of_attributes(table):
    r = run1(Assertion.accuracy(by=[["group", "site"]], min=0.0, min_support=1), table)
    g = groups(r)
    assert len(g) == 6 and "group=g2, site=east" in set(g.slice)
    row = g.set_index("slice").loc["group=g2, site=east"]
    assert row["value"] == pytest.approx(table[(table.group == "g2") & (table.site == "east")].correct.mean())


def test_rows_with_unknown_labels_are_ignored_and_said(table):
    t = table.copy()
    t.loc[:4, "label"] = 99
    r = run1(Assertion.accuracy(min=0.0), t, class_names=CLASS_NAMES)
    assert "5 rows" in r.message
    assert r.observed == pytest.approx((t.label[5:] == t.prediction[5:]).mean())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from(["a", "b", "c"])),
                min_size=1, max_size=60))
def test_slice_accuracy_equals_groupby_on_random_tables(rows):
    t = pd.DataFrame(rows, columns=["label", "prediction", "site"])
    t.insert(0, "id", [f"r{i}" for i in range(len(t))])
    r = run1(Assertion.accuracy(by=["site"], min=0.5, min_support=1), t)
    g = groups(r).set_index("slice")["value"]
    expected = (t.label == t.prediction).groupby(t.site).mean()
    for site, acc in expected.items():
        assert g[f"site={site}"] == pytest.approx(acc)
    assert (r.status == "pass") == bool((expected >= 0.5).all())


def test_metric_needs_labels():
    t = pd.DataFrame({"id": ["a"], "prediction": [0]})
    data = AssertionContext(t)
    assert not data.has_labels
    r = run_assertions([Assertion.accuracy(min=0.5)], data)[0]
    assert r.status == "error" and "label" in r.message
