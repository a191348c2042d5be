"""Tests of error breakdowns: counts against pandas groupby, intervals, bins, support, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsecheck.analysis.breakdown import (
    accuracy_by_attribute,
    accuracy_by_attribute_pair,
    accuracy_by_feature_activation,
    bin_labels,
    correct_array,
    encode_categories,
    quantile_bins,
)
from sparsecheck.analysis.stats import wilson_interval
from sparsecheck.errors import DataError, ParameterError


def prediction_table(seed: int = 0, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = rng.choice(np.array(["a", "b", "c", None], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    table = pd.DataFrame({"site": site, "scanner": rng.integers(0, 3, n),
                          "sex": rng.choice(["f", "m"], n)})
    table["correct"] = rng.random(n) > np.where(table.site == "b", 0.4, 0.1)
    return table


def check_intervals(frame: pd.DataFrame) -> None:
    hits = np.rint(frame["accuracy"] * frame["size"]).to_numpy()
    low, high = wilson_interval(hits, frame["size"].to_numpy())
    np.testing.assert_allclose(frame["ci_low"], low)
    np.testing.assert_allclose(frame["ci_high"], high)
    assert (frame["ci_low"] <= frame["accuracy"]).all() and (frame["accuracy"] <= frame["ci_high"]).all()
    np.testing.assert_allclose(frame["error_rate"], 1 - frame["accuracy"])


def test_by_attribute_matches_groupby_and_keeps_missing_values() -> None:
    table = prediction_table()
    out = accuracy_by_attribute(table, ["site", "scanner"])
    assert list(out.columns) == ["attribute", "value", "size", "accuracy", "error_rate", "ci_low", "ci_high"]
    for attr in ("site", "scanner"):
        expected = table.assign(key=table[attr].astype(object).where(table[attr].notna(), "nan").astype(str)) \
            .groupby("key")["correct"].agg(["size", "mean"])
        got = out[out.attribute == attr].set_index("value")
        assert sorted(got.index) == sorted(expected.index)
        np.testing.assert_array_equal(got.loc[expected.index, "size"], expected["size"])
        np.testing.assert_allclose(got.loc[expected.index, "accuracy"], expected["mean"])
    assert "nan" in set(out.value)
    check_intervals(out)


def test_by_attribute_min_support_filters_rows() -> None:
    table = prediction_table()
    full = accuracy_by_attribute(table, ["site"])
    small = int(full["size"].min())
    filtered = accuracy_by_attribute(table, ["site"], min_support=small + 1)
    assert len(filtered) == len(full) - int((full["size"] == small).sum())
    assert (filtered["size"] > small).all()


def test_by_attribute_pair_matches_groupby() -> None:
    table = prediction_table(1)
    out = accuracy_by_attribute_pair(table, ["site", "scanner", "sex"], min_support=5)
    keys = {tuple(r) for r in out[["attribute_1", "attribute_2"]].drop_duplicates().to_numpy()}
    assert keys == {("site", "scanner"), ("site", "sex"), ("scanner", "sex")}
    filled = table.assign(site=table.site.fillna("nan")).astype({"scanner": str})
    for (a, b), part in out.groupby(["attribute_1", "attribute_2"]):
        expected = filled.groupby([a, b])["correct"].agg(["size", "mean"])
        expected = expected[expected["size"] >= 5]
        got = part.set_index(["value_1", "value_2"]).sort_index()
        expected.index = expected.index.set_names(["value_1", "value_2"])
        expected = expected.sort_index()
        assert list(got.index) == list(expected.index)
        np.testing.assert_array_equal(got["size"], expected["size"])
        np.testing.assert_allclose(got["accuracy"], expected["mean"])
    check_intervals(out)


def test_feature_activation_bins_are_within_class_quantiles() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    labels = rng.integers(0, 2, n)
    # class 1 activations live on a 100x larger scale: global quantiles would lump class 0 together
    features = rng.normal(size=(n, 5)) * np.where(labels == 1, 100.0, 1.0)[:, None]
    correct = rng.random(n) < np.where(features[:, 2] > 0, 0.95, 0.6)
    class_features = {0: [2, 4], 1: [2]}
    out = accuracy_by_feature_activation(features, class_features, labels, correct, n_bins=4)
    assert list(out.columns) == ["class", "feature", "bin", "low", "high", "size", "accuracy",
                                 "error_rate", "ci_low", "ci_high"]
    for (cls, feat), part in out.groupby(["class", "feature"]):
        rows = labels == cls
        x = features[rows, feat]
        edges = np.unique(np.quantile(x, [0, 0.25, 0.5, 0.75, 1.0]))
        bins = (x[:, None] >= edges[1:-1][None, :]).sum(axis=1)  # independent of searchsorted
        expected = pd.DataFrame({"bin": bins, "correct": correct[rows]}).groupby("bin")["correct"] \
            .agg(["size", "mean"])
        np.testing.assert_array_equal(part["bin"], expected.index)
        np.testing.assert_array_equal(part["size"], expected["size"])
        np.testing.assert_allclose(part["accuracy"], expected["mean"])
        np.testing.assert_allclose(part["low"], edges[:-1])
        np.testing.assert_allclose(part["high"], edges[1:])
        assert (abs(part["size"] - rows.sum() / 4) <= 1).all()  # equal-count bins
    assert set(zip(out["class"], out["feature"])) == {(0, 2), (0, 4), (1, 2)}
    f2 = out[(out["class"] == 0) & (out.feature == 2)]
    assert f2["accuracy"].iloc[-1] > f2["accuracy"].iloc[0] + 0.2  # the effect is visible
    check_intervals(out)


def test_feature_activation_ties_merge_bins_and_support_filters() -> None:
    labels = np.zeros(10, dtype=int)
    relu = np.array([[0.0]] * 7 + [[1.0], [2.0], [3.0]])
    correct = np.array([True] * 7 + [False] * 3)
    out = accuracy_by_feature_activation(relu, {0: [0]}, labels, correct, n_bins=4)
    assert out["size"].sum() == 10 and out["size"].iloc[0] == 7 and out["accuracy"].iloc[0] == 1.0
    assert len(out) < 4
    filtered = accuracy_by_feature_activation(relu, {0: [0]}, labels, correct, n_bins=4, min_support=5)
    assert list(filtered["size"]) == [7]


def test_feature_activation_errors_name_the_problem() -> None:
    features = np.zeros((4, 3))
    labels, correct = np.array([0, 0, 1, 1]), np.ones(4, dtype=bool)
    with pytest.raises(ParameterError, match="feature 7 for class 0"):
        accuracy_by_feature_activation(features, {0: [7]}, labels, correct)
    with pytest.raises(DataError, match="labels has shape"):
        accuracy_by_feature_activation(features, {0: [0]}, labels[:3], correct)
    bad = features.copy()
    bad[0, 1] = np.nan
    with pytest.raises(DataError, match="feature 1 has non-finite"):
        accuracy_by_feature_activation(bad, {0: [1]}, labels, correct)
    with pytest.raises(ParameterError, match="'n_bins'"):
        accuracy_by_feature_activation(features, {0: [0]}, labels, correct, n_bins=0)


def test_bad_tables_are_named() -> None:
    table = prediction_table()
    with pytest.raises(DataError, match="'nope'"):
        accuracy_by_attribute(table, ["nope"])
    with pytest.raises(DataError, match="'correct'"):
        accuracy_by_attribute_pair(table.drop(columns="correct"), ["site", "sex"])
    table["correct"] = table["correct"].astype(object)
    table.loc[3, "correct"] = "yes"
    with pytest.raises(DataError, match="column 'correct' must hold booleans"):
        accuracy_by_attribute(table, ["site"])
    with pytest.raises(ParameterError, match="'min_support'"):
        accuracy_by_attribute(prediction_table(), ["site"], min_support=0)


def test_encoding_helpers() -> None:
    codes, labels = encode_categories(pd.Series([1, "1", None, 2.5], dtype=object))
    assert labels.tolist() == ["1", "2.5", "nan"] and codes.tolist() == [0, 0, 2, 1]
    codes, edges = quantile_bins(np.full(5, 3.0), 4)
    assert codes.tolist() == [0] * 5 and bin_labels(edges) == ["[3, 3]"]
    codes, edges = quantile_bins(np.array([np.nan, np.nan]), 4)
    assert codes.tolist() == [-1, -1] and edges.size == 0
    assert bin_labels(np.array([1.00001, 1.00002, 2.0])) == ["[1.00001, 1.00002)", "[1.00002, 2]"]
    assert correct_array(np.array([0.0, 1.0])).tolist() == [False, True]
