"""Tests of the feature × metadata association table: effects, p-values, BH, strata, numeric attributes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from sparsecheck.analysis import association as assoc_mod
from sparsecheck.analysis.association import (
    ASSOCIATION_COLUMNS,
    auc_effects,
    feature_associations,
    top_associations,
)
from sparsecheck.analysis.stats import auc_effect, benjamini_hochberg
from sparsecheck.errors import DataError, ParameterError


def planted(seed: int = 0, n: int = 1200, n_features: int = 12):
    """Feature 3 fires on snow; 'site' is drawn at random; 'age' is numeric and drives feature 5."""
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame({
        "background": rng.choice(["snow", "grass"], n, p=[0.3, 0.7]),
        "site": rng.choice(["north", "south", "east"], n),
        "age": rng.uniform(20, 80, n),
    })
    acts = np.maximum(rng.normal(size=(n, n_features)), 0.0)  # ReLU-like: many ties at 0
    acts[:, 3] += 1.5 * (meta["background"] == "snow")
    acts[:, 5] += 0.03 * meta["age"].to_numpy()
    return acts, meta


# ----------------------------------------------------------------------------- the effect itself


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 60), ties=st.booleans())
def test_vectorised_auc_matches_the_reference_implementation(seed, n, ties):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, 3))
    if ties:
        A = np.round(A)  # heavy ties exercise the tie correction
    masks = rng.random((4, n)) < 0.4
    auc, p = auc_effects(A, masks)
    for i in range(4):
        for j in range(3):
            ref_auc, ref_p = auc_effect(A[:, j], masks[i])
            if np.isnan(ref_auc):
                assert np.isnan(auc[i, j]) and np.isnan(p[i, j])
            else:
                assert auc[i, j] == pytest.approx(ref_auc, abs=1e-12)
                assert p[i, j] == pytest.approx(ref_p, rel=1e-9, abs=1e-15)


def test_each_feature_is_ranked_once_not_once_per_value(monkeypatch):
    calls = []
    real = assoc_mod._st.rankdata

    def counting(a, *args, **kw):
        calls.append(np.shape(a))
        return real(a, *args, **kw)

    monkeypatch.setattr(assoc_mod._st, "rankdata", counting)
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"colour": rng.choice(list("abcdefgh"), 500)})  # 8 values
    feature_associations(rng.normal(size=(500, 20)), meta)
    assert calls == [(500, 20)]  # one call, all features at once, for all 8 values


def test_a_single_stratum_changes_nothing_and_strata_remove_a_class_confound():
    rng = np.random.default_rng(1)
    n = 2000
    y = rng.integers(0, 2, n)
    # "hospital B" is frequent in class 1; the feature encodes the class, not the hospital
    hospital = np.where(rng.random(n) < np.where(y == 1, 0.8, 0.2), "B", "A")
    acts = (2.0 * y + rng.normal(size=n))[:, None]
    masks = (hospital == "B")[None]
    plain_auc, plain_p = auc_effects(acts, masks)
    one_auc, one_p = auc_effects(acts, masks, strata=np.zeros(n))
    assert one_auc == pytest.approx(plain_auc) and one_p == pytest.approx(plain_p)
    strat_auc, strat_p = auc_effects(acts, masks, strata=y)
    assert plain_auc[0, 0] > 0.7 and plain_p[0, 0] < 1e-50  # confounded: looks like a hospital detector
    assert abs(strat_auc[0, 0] - 0.5) < 0.05 and strat_p[0, 0] > 0.01  # within classes: nothing
    # and a real within-class effect survives stratification
    acts2 = acts + 1.0 * masks.T
    s_auc, s_p = auc_effects(acts2, masks, strata=y)
    assert s_auc[0, 0] > 0.7 and s_p[0, 0] < 1e-20


def test_stratified_auc_pools_the_within_stratum_u_statistics():
    rng = np.random.default_rng(2)
    v = rng.normal(size=300)
    m = rng.random(300) < 0.3
    s = rng.integers(0, 3, 300)
    u = sum(sst.mannwhitneyu(v[(s == k) & m], v[(s == k) & ~m]).statistic for k in range(3))
    pairs = sum(int(((s == k) & m).sum()) * int(((s == k) & ~m).sum()) for k in range(3))
    auc, _ = auc_effects(v[:, None], m[None], strata=s)
    assert auc[0, 0] == pytest.approx(u / pairs)


# ----------------------------------------------------------------------------- the table


def test_planted_association_is_found_and_the_harmless_attribute_is_not():
    acts, meta = planted()
    table = feature_associations(acts, meta, features=np.arange(100, 112))
    assert list(table.columns[:6]) == ASSOCIATION_COLUMNS
    top = table.iloc[0]
    assert (int(top.feature), top.attribute, top.value) == (103, "background", "snow")
    assert top.effect > 0.8 and top.q_value < 1e-20 and top.kind == "categorical"
    site = table[table["attribute"] == "site"]
    assert len(site) == 12 * 3
    assert (site["q_value"] >= 0.05).all(), site.sort_values("q_value").head()
    assert (site["attribute_q"] >= 0.05).all()
    age = table[table["attribute"] == "age"]
    best_age = age.sort_values("strength", ascending=False).iloc[0]
    assert int(best_age.feature) == 105 and best_age.kind == "numeric" and best_age.value is None
    r, p = sst.pearsonr(acts[:, 5], meta["age"])
    assert best_age.effect == pytest.approx(r) and best_age.p_value == pytest.approx(p)


def test_q_values_are_benjamini_hochberg_over_distinct_tests():
    acts, meta = planted(seed=3)
    table = feature_associations(acts, meta)
    # a binary attribute's two values are one test: identical p and q, counted once
    bg = table[table["attribute"] == "background"].sort_values(["feature", "value"])
    snow, grass = bg[bg["value"] == "snow"], bg[bg["value"] == "grass"]
    assert np.allclose(snow["effect"].to_numpy() + grass["effect"].to_numpy(), 1.0)
    assert np.allclose(snow["q_value"].to_numpy(), grass["q_value"].to_numpy())
    distinct = pd.concat([table[table["attribute"] != "background"], snow])
    expected = benjamini_hochberg(distinct["p_value"].to_numpy())
    assert np.allclose(distinct["q_value"].to_numpy(), expected)
    assert len(distinct) == 12 * (1 + 3 + 1)
    assert (table["q_value"] >= table["p_value"] - 1e-15).all()


def test_the_attribute_screen_keeps_a_random_attribute_quiet():
    """BH alone flags a harmless attribute in many draws when there are many real associations;
    the attribute-level screen (Simes, then BH over attributes) keeps it near the nominal 5%."""
    rng = np.random.default_rng(4)
    n, F = 600, 16
    meta = pd.DataFrame({"cue": rng.choice(["yes", "no"], n)})
    acts = rng.normal(size=(n, F)) + np.linspace(0.0, 1.0, F) * (meta["cue"] == "yes").to_numpy()[:, None]
    draws = 60
    bh_hits = screened_hits = 0
    for _ in range(draws):
        meta["site"] = rng.choice(["a", "b", "c", "d"], n)
        t = feature_associations(acts, meta)
        site = t[t["attribute"] == "site"]
        bh_hits += bool((site["q_value"] < 0.05).any())
        screened_hits += bool(((site["q_value"] < 0.05) & (site["attribute_q"] < 0.05)).any())
    assert screened_hits / draws <= 0.12, (bh_hits, screened_hits)
    assert screened_hits <= bh_hits


def test_missing_values_small_groups_and_ids_are_handled():
    rng = np.random.default_rng(5)
    n = 400
    meta = pd.DataFrame({"id": [f"x{i}" for i in range(n)],
                         "scanner": rng.choice(["s1", "s2", "rare"], n, p=[0.5, 0.49, 0.01]),
                         "code": rng.integers(1, 4, n)})
    meta.loc[:39, "scanner"] = None
    acts = rng.normal(size=(n, 2))
    table = feature_associations(acts, meta, categorical=["code"], min_count=10)
    assert "id" not in set(table["attribute"])
    assert set(table[table["attribute"] == "scanner"]["value"]) == {"s1", "s2"}  # 'rare' < min_count
    s1 = table[(table["attribute"] == "scanner") & (table["value"] == "s1") & (table["feature"] == 0)].iloc[0]
    keep = meta["scanner"].notna().to_numpy()
    ref = auc_effect(acts[keep, 0], (meta["scanner"][keep] == "s1").to_numpy())
    assert s1.effect == pytest.approx(ref[0]) and s1.n == int((meta["scanner"] == "s1").sum())
    assert set(table[table["attribute"] == "code"]["value"]) == {"1", "2", "3"}


def test_bad_input_names_what_is_wrong():
    acts, meta = planted(n=100)
    with pytest.raises(DataError, match="metadata has 99 rows"):
        feature_associations(acts, meta.iloc[:99])
    with pytest.raises(DataError, match="no metadata column"):
        feature_associations(acts, meta, attributes=["weather"])
    with pytest.raises(ParameterError, match="'features'"):
        feature_associations(acts, meta, features=[1, 2])
    bad = acts.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        feature_associations(bad, meta)


def test_top_associations_lists_the_firing_side_of_a_binary_attribute_once():
    acts, meta = planted()
    table = feature_associations(acts, meta)
    top = top_associations(table, 3, k=5)
    assert top[0] == {"attribute": "background", "value": "snow", "effect": pytest.approx(top[0]["effect"]),
                      "q_value": pytest.approx(top[0]["q_value"])}
    assert [a["attribute"] for a in top].count("background") == 1
    assert len(top) == 5 and set(top[0]) == {"attribute", "value", "effect", "q_value"}
    strengths = [abs(a["effect"] - 0.5) if a["attribute"] != "age" else abs(a["effect"]) / 2 for a in top]
    assert strengths == sorted(strengths, reverse=True)
    assert top_associations(table.iloc[:0], 3) == []


def test_blocks_of_feature_columns_give_the_same_table(monkeypatch):
    """The tests run on blocks of columns (bounded memory at 2048 features); the table is the same,
    row for row, as in one block: q-values, binary attributes counted once, the order."""
    rng = np.random.default_rng(0)
    n, F = 600, 90
    X = rng.standard_normal((n, F)).astype(np.float32)
    meta = pd.DataFrame({"id": range(n), "bg": rng.choice(["a", "b", "c"], n), "flag": rng.choice(["y", "n"], n),
                         "x": rng.standard_normal(n)})
    X[:, 5] += (meta["bg"] == "a").to_numpy() * 1.0
    strata = rng.integers(0, 4, n)
    whole = feature_associations(X, meta, strata=strata)
    monkeypatch.setattr(assoc_mod, "_BLOCK_BYTES", 8 * n * 13)  # 13 columns a block, the last one short
    blocked = feature_associations(X, meta, strata=strata)
    assert len(whole) == F * (3 + 2 + 1) and whole["q_value"].min() < 0.01  # bg, flag's two values, x
    pd.testing.assert_frame_equal(whole, blocked)
