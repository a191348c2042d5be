"""Tests of drift measures: PSI by hand, KS against scipy, the BH + PSI-floor rule, class mix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from sparsecheck.outputs import write_json_atomic
from sparsecheck.analysis.drift import class_mix_drift, feature_drift, psi, quantile_edges
from sparsecheck.analysis.stats import benjamini_hochberg
from sparsecheck.errors import DataError, ParameterError


# ----------------------------------------------------------------------------- PSI
def test_psi_matches_a_hand_computation() -> None:
    ref = np.array([0.0] * 50 + [1.0] * 50)        # one edge at 0.5 from the quantiles
    new = np.array([0.0] * 20 + [1.0] * 80)
    edges = quantile_edges(ref, bins=2)
    assert edges.tolist() == [0.5]
    r = (np.array([50, 50]) + 0.5) / 101
    b = (np.array([20, 80]) + 0.5) / 101
    expected = float(np.sum((b - r) * np.log(b / r)))
    assert psi(ref, new, bins=2) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.35  # a 30-point swing is a major shift


def test_point_mass_gets_its_own_bin() -> None:
    # a ReLU feature: 60% zeros. Moving mass between zero and positive values must register.
    rng = np.random.default_rng(0)
    ref = np.where(rng.random(4000) < 0.6, 0.0, rng.exponential(size=4000))
    edges = quantile_edges(ref, bins=10)
    assert edges[0] == 0.0 and np.all(np.diff(edges) > 0)
    fewer_zeros = np.where(rng.random(4000) < 0.3, 0.0, rng.exponential(size=4000))
    assert psi(ref, fewer_zeros) > 0.25
    same = np.where(rng.random(4000) < 0.6, 0.0, rng.exponential(size=4000))
    assert psi(ref, same) < 0.02


def test_constant_reference_feature() -> None:
    ref = np.zeros(500)
    assert quantile_edges(ref).tolist() == [0.0]
    assert psi(ref, np.zeros(300)) < 1e-3  # only the half-count smoothing differs
    assert psi(ref, np.ones(300)) > 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=200),
       st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=200), st.integers(2, 20))
def test_psi_is_non_negative_and_zero_on_itself(a: list[float], b: list[float], bins: int) -> None:
    assert psi(np.array(a), np.array(b), bins) >= -1e-12
    assert psi(np.array(a), np.array(a), bins) == pytest.approx(0.0, abs=1e-12)


def test_psi_rejects_empty_samples() -> None:
    with pytest.raises(DataError, match="finite"):
        psi(np.array([np.nan, np.nan]), np.array([1.0]))


# ----------------------------------------------------------------------------- feature drift
def test_feature_drift_columns_agree_with_scipy_and_bh() -> None:
    rng = np.random.default_rng(1)
    ref, new = rng.normal(size=(800, 6)), rng.normal(size=(500, 6))
    new[:, 2] += 0.8
    new[:, 4] *= 2.0
    drift = feature_drift(ref, new, features=[3, 8, 13, 21, 34, 55])
    table = drift.table
    assert table["feature"].tolist() == [3, 8, 13, 21, 34, 55]
    for j in range(6):
        res = sst.ks_2samp(ref[:, j], new[:, j], method="asymp")  # both samples >= 200 rows
        assert table["ks_statistic"].iloc[j] == pytest.approx(res.statistic)
        assert table["p_value"].iloc[j] == pytest.approx(res.pvalue, rel=1e-6, abs=1e-300)
        assert table["psi"].iloc[j] == pytest.approx(psi(ref[:, j], new[:, j]))
    np.testing.assert_allclose(table["q_value"], benjamini_hochberg(table["p_value"].to_numpy()))
    assert drift.drifted_features[0] in (13, 34) and set(drift.drifted_features) == {13, 34}
    assert drift.alert
    assert drift.top(2)["feature"].tolist()[0] in (13, 34)


def test_small_samples_use_exact_ks_p_values() -> None:
    rng = np.random.default_rng(6)
    ref, new = rng.normal(size=(60, 2)), rng.normal(0.7, 1, size=(40, 2))
    table = feature_drift(ref, new).table
    for j in range(2):
        assert table["p_value"].iloc[j] == pytest.approx(sst.ks_2samp(ref[:, j], new[:, j], method="exact").pvalue)


def test_no_drift_false_alarm_rate_is_small() -> None:
    # 100 batches of 20 features from the reference distribution: alarms must be rare (uncorrected
    # KS at 5% would alarm on about 64% of them)
    rng = np.random.default_rng(2)
    ref = rng.gamma(2.0, size=(1500, 20))
    alarms = sum(feature_drift(ref, rng.gamma(2.0, size=(600, 20))).alert for _ in range(100))
    assert alarms <= 3, alarms


def test_psi_floor_silences_trivial_but_significant_shifts() -> None:
    # with 40k rows a 0.08-sd shift is highly significant but practically negligible
    rng = np.random.default_rng(3)
    ref, new = rng.normal(size=(40000, 1)), rng.normal(0.08, 1.0, size=(40000, 1))
    drift = feature_drift(ref, new)
    row = drift.table.iloc[0]
    assert row["q_value"] < 1e-6 and row["psi"] < 0.1
    assert not drift.alert
    assert feature_drift(ref, new, psi_threshold=0.0).alert  # the q-value alone would alarm


def test_feature_drift_input_checks() -> None:
    ref = np.zeros((10, 3))
    with pytest.raises(DataError, match="same columns"):
        feature_drift(ref, np.zeros((10, 2)))
    with pytest.raises(DataError, match="2 feature ids for 3 columns"):
        feature_drift(ref, np.zeros((10, 3)), features=[1, 2])
    with pytest.raises(DataError, match="at least 2 rows"):
        feature_drift(ref, np.zeros((1, 3)))
    bad = np.zeros((10, 3))
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        feature_drift(ref, bad)
    with pytest.raises(ParameterError, match="'alpha' parameter must be a float in \\(0, 1\\). Got 1.5"):
        feature_drift(ref, ref, alpha=1.5)
    with pytest.raises(ParameterError, match="'bins'"):
        feature_drift(ref, ref, bins=1)


def test_feature_drift_to_dict_is_json(tmp_path) -> None:
    rng = np.random.default_rng(4)
    drift = feature_drift(rng.normal(size=(100, 2)), rng.normal(3, 1, size=(100, 2)), features=[7, 9])
    write_json_atomic(tmp_path / "d.json", drift.to_dict())
    loaded = json.loads((tmp_path / "d.json").read_text())
    assert loaded["n_drifted"] == 2 and sorted(loaded["drifted_features"]) == [7, 9]
    assert {r["feature"] for r in loaded["features"]} == {7, 9}


# ----------------------------------------------------------------------------- class mix
def test_class_mix_chi_square_matches_scipy() -> None:
    ref, new = [300, 250, 0, 450], [100, 90, 0, 310]
    mix = class_mix_drift(ref, new, class_names=["a", "b", "c", "d"])
    expected = sst.chi2_contingency(np.array([[300, 250, 450], [100, 90, 310]]), correction=False)
    assert mix.chi2 == pytest.approx(expected.statistic) and mix.dof == 2
    assert mix.p_value == pytest.approx(expected.pvalue)
    shares = mix.shares().set_index("class")
    assert shares.loc["d", "batch_share"] == pytest.approx(0.62)


def test_class_mix_drift_rule() -> None:
    rng = np.random.default_rng(5)
    p = np.full(10, 0.1)
    ref = rng.multinomial(2000, p)
    quiet = sum(class_mix_drift(ref, rng.multinomial(1000, p)).drifted for _ in range(100))
    assert quiet <= 2
    q = p.copy()
    q[7], q[0] = 0.3, 0.0  # the cue class takes over
    q /= q.sum()
    mix = class_mix_drift(ref, rng.multinomial(1000, q))
    assert mix.drifted and mix.psi > 0.1
    # a significant but small change stays below the PSI floor
    small = class_mix_drift(ref * 50, rng.multinomial(50000, np.r_[0.11, np.full(9, 0.89 / 9)]))
    assert small.p_value < 0.01 and not small.drifted


def test_class_mix_degenerate_and_bad_input() -> None:
    only = class_mix_drift([10, 0], [5, 0])
    assert only.p_value == 1.0 and not only.drifted
    with pytest.raises(DataError, match="same length"):
        class_mix_drift([1, 2], [1, 2, 3])
    with pytest.raises(DataError, match="at least one prediction"):
        class_mix_drift([0, 0], [1, 2])
    with pytest.raises(DataError, match="3 class names for 2"):
        class_mix_drift([1, 2], [1, 2], class_names=["a", "b", "c"])
