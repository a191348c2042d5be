"""Automatic attributes read off the model's own features (``auto:feature_<id>``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from sparsecheck.analysis.feature_modes import MAX_OTHERS_SHARE, feature_modes, is_feature_mode, otsu_threshold
from sparsecheck.analysis.shortcuts import pool_findings
from sparsecheck.analysis.spurious import SpuriousFinding


def _task(seed: int = 0, n: int = 3000):
    """Three classes; feature 0 fires on a cue tied to class 2 (90% of it, 2% of the rest), feature
    1 grades class 2's shape and fires on class 1 too (its look-alike), feature 2 is one Gaussian,
    feature 3 fires on the cue too but only class 0 weighs it, negatively."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    cue = rng.random(n) < np.where(y == 2, 0.9, 0.02)
    look = (y == 2) | ((y == 1) & (rng.random(n) < 0.6))
    x = np.c_[np.where(cue, 6.0, 0.0) + rng.normal(0, 0.5, n),
              np.where(look, 5.0, 0.0) + rng.normal(0, 0.5, n),
              rng.normal(0, 1, n),
              np.where(cue, 6.0, 0.0) + rng.normal(0, 0.5, n)]
    layer = SimpleNamespace(weight_=np.array([[0.0, -1.0, 0.0, -1.0], [0.0, 0.0, 0.5, 0.0], [1.0, 1.0, 0.5, 0.0]]))
    return x, y, cue, layer


def test_a_feature_that_fires_on_a_cue_gives_a_column_that_marks_the_cue():
    x, y, cue, layer = _task()
    test = slice(2000, None)
    modes = feature_modes(layer, x[test], x[:2000], y[:2000])
    # only the cue's feature: the shape feature fires on 60% of class 1's images (above
    # MAX_OTHERS_SHARE), the Gaussian has one mode, and feature 3 no class weighs positively
    assert list(modes.test.columns) == ["auto:feature_0"] and is_feature_mode("auto:feature_0")
    assert ((modes.test["auto:feature_0"] == "on").to_numpy() == cue[test]).mean() > 0.99
    # the training rows get the same column, with the test split's threshold
    assert ((modes.train["auto:feature_0"] == "on").to_numpy() == cue[:2000]).mean() > 0.99
    assert modes.separation[0] > 5 and 0 < modes.threshold[0] < 6
    assert modes.to_dict()["features"] == [{"feature": 0, "threshold": modes.threshold[0],
                                            "separation": modes.separation[0]}]


def test_a_look_alike_class_rules_a_feature_out_even_when_the_average_is_low():
    # ten classes: the feature fires on class 9 and on 60% of class 8; over the nine other classes
    # that is under MAX_OTHERS_SHARE on average, but one class has it on most of its images
    rng = np.random.default_rng(1)
    y = np.arange(5000) % 10
    on = (y == 9) | ((y == 8) & (rng.random(5000) < 0.6))
    assert on[y != 9].mean() < MAX_OTHERS_SHARE
    x = (np.where(on, 5.0, 0.0) + rng.normal(0, 0.5, 5000))[:, None]
    layer = SimpleNamespace(weight_=np.r_[np.zeros((9, 1)), np.ones((1, 1))])
    assert feature_modes(layer, x, x, y).test.columns.tolist() == []


def test_otsu_splits_two_modes_and_reports_their_separation():
    t, d = otsu_threshold(np.r_[np.zeros(50), np.full(50, 10.0)] + np.random.default_rng(0).normal(0, 1, 100))
    assert 3 < t < 7 and d > 5
    assert otsu_threshold(np.ones(10)) == (1.0, 0.0)
    assert otsu_threshold(np.random.default_rng(0).normal(0, 1, 5000))[1] < 3  # one Gaussian: no two modes


def test_a_measured_attribute_names_the_shortcut_a_feature_mode_also_sees():
    # the feature's own column tracks its feature perfectly (AUC 1), but says only that the feature
    # fires: the measured property of the same images names the finding
    meta = pd.DataFrame({"auto:mark_br": ["white"] * 30 + ["none"] * 70,
                         "auto:feature_7": ["on"] * 31 + ["off"] * 69})

    def finding(attribute: str, value: str, auc: float) -> SpuriousFinding:
        return SpuriousFinding("seven", 7, attribute, value, 0.3, True, {"confirmed_by_intervention": True,
                                                                         "auc": auc}, "", automatic=True)

    for order in (1, -1):
        pair = [finding("auto:feature_7", "on", 1.0), finding("auto:mark_br", "white", 0.9)][::order]
        _, (kept,) = pool_findings([], pair, meta, [])
        assert kept.attribute == "auto:mark_br"
        assert [s["attribute"] for s in kept.also_seen_as] == ["auto:feature_7"]
