"""One finding per shortcut: when an automatic finding is the declared one seen again."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparsecheck.analysis.shortcuts import MIN_SHARED, MODE_MARGIN, NAMING_MARGIN, fold_other_sides, pool_findings
from sparsecheck.analysis.spurious import SpuriousFinding


def _finding(feature: int, attribute: str, value: str, *, features: list[int] | None = None,
             automatic: bool = False) -> SpuriousFinding:
    return SpuriousFinding("seven", feature, attribute, value, 0.3, True, {"confirmed_by_intervention": True},
                           f"seven on {attribute}={value}", automatic=automatic, features=list(features or []))


def _metadata(n: int = 200, marked: int = 60, overlap: int = 27, extra: int = 33) -> pd.DataFrame:
    """``marked`` images carry the declared mark; the automatic value holds ``overlap`` of them and
    ``extra`` unmarked ones (the demo: high contrast on 44% of the marked images' count)."""
    mark = np.array(["yes"] * marked + ["no"] * (n - marked))
    contrast = np.array(["low"] * n, dtype=object)
    contrast[:overlap] = "high"
    contrast[marked:marked + extra] = "high"
    return pd.DataFrame({"corner_mark": mark, "auto:contrast": contrast})


def test_an_automatic_finding_on_a_feature_the_declared_one_lists_is_the_same_shortcut():
    # the declared finding is led by feature 44 and lists 122 as carrying the same shortcut; an
    # automatic finding on 122 whose images overlap the mark's (27 of 60, above MIN_SHARED) is the
    # mark seen through contrast: one finding, listed as also seen as
    meta = _metadata()
    assert 27 / 60 >= MIN_SHARED
    declared = _finding(44, "corner_mark", "yes", features=[44, 122, 65])
    auto = _finding(122, "auto:contrast", "high", automatic=True)
    d, a = pool_findings([declared], [auto], meta, ["corner_mark"])
    assert a == [] and len(d) == 1
    assert [s["attribute"] for s in d[0].also_seen_as] == ["auto:contrast"]


def test_without_a_shared_feature_a_partial_overlap_is_not_enough():
    # 27 of 60 images in common is below MIN_OVERLAP: only a feature in common makes them one
    meta = _metadata()
    declared = _finding(44, "corner_mark", "yes", features=[44])
    auto = _finding(122, "auto:contrast", "high", automatic=True)
    d, a = pool_findings([declared], [auto], meta, ["corner_mark"])
    assert len(d) == 1 and [f.attribute for f in a] == ["auto:contrast"]


def test_a_shared_feature_on_other_images_is_another_shortcut():
    # a feature can carry two shortcuts (it fires on one cue, goes quiet on another): without shared
    # images the automatic finding stays apart
    meta = _metadata(overlap=3, extra=57)
    declared = _finding(44, "corner_mark", "yes", features=[44, 122])
    auto = _finding(122, "auto:contrast", "high", automatic=True)
    d, a = pool_findings([declared], [auto], meta, ["corner_mark"])
    assert len(d) == 1 and d[0].also_seen_as == [] and [f.attribute for f in a] == ["auto:contrast"]


def _pooled(*findings: tuple[str, str, int, tuple[float, float], float]) -> list[tuple[str, list[str]]]:
    """Automatic findings of class seven on feature 7, each ``(attribute, value, carriers, (train share
    in the class, in the others), score)`` whose value the first ``carriers`` of 300 images have,
    pooled: each reported finding's attribute and the attributes it is also seen as."""
    n = 300
    meta = pd.DataFrame({a: np.array([v] * k + ["none"] * (n - k), dtype=object) for a, v, k, _, _ in findings})
    auto = [SpuriousFinding("seven", 7, a, v, score, True,
                            {"confirmed_by_intervention": True, "train_share_in_class": tie[0],
                             "train_share_others": tie[1], "auc": 0.8},
                            f"seven on {a}={v}", automatic=True, features=[7]) for a, v, _, tie, score in findings]
    _, kept = pool_findings([], auto, meta, [])
    return [(f.attribute, [(s["attribute"], s.get("training_tie")) for s in f.also_seen_as]) for f in kept]


def test_the_value_training_ties_to_the_class_names_a_shortcut_seen_through_a_proxy():
    # noise on 40 of the sevens: "sharpness=high" holds them and 50 other images (a proxy,
    # found first: it scores higher); the feature that fires on the noise marks the 40. Training
    # ties the feature's mode to the class far more (0.86 vs 0.02) than the proxy (0.57 vs 0.18):
    # the mode names the shortcut and the proxy is listed as also seen as, with its tie
    assert _pooled(("auto:sharpness", "high", 90, (0.57, 0.18), 0.5), ("auto:feature_7", "on", 40, (0.86, 0.02), 0.3)
                   ) == [("auto:feature_7", [("auto:sharpness", 0.39)])]


def test_a_features_mode_must_tie_far_more_to_name_a_shortcut_instead_of_a_measured_property():
    # noise on the ants: "noise=high" marks them (86% of the class, 7% of the others in training);
    # the feature that fires on them was chosen for firing on its class and ties a little more
    # (92%, 1%): more than NAMING_MARGIN, less than MODE_MARGIN, so the measured property names it
    assert NAMING_MARGIN < (0.92 - 0.01) - (0.86 - 0.07) < MODE_MARGIN
    assert _pooled(("auto:feature_7", "on", 40, (0.92, 0.01), 0.5), ("auto:noise", "high", 40, (0.86, 0.07), 0.3)
                   ) == [("auto:noise", [("auto:feature_7", 0.91)])]


def test_of_two_measured_values_the_one_tied_more_names_the_shortcut():
    # a green mark in the top-left: "pattern_tl=green" holds half the marked images (42% / 1%),
    # "pattern_l=green" all of them (85% / 3%); the first scored higher, the second names it
    assert _pooled(("auto:pattern_tl", "green", 20, (0.42, 0.01), 0.6),
                   ("auto:pattern_l", "green", 40, (0.85, 0.03), 0.4)) == [("auto:pattern_l", [("auto:pattern_tl", 0.41)])]


def _folded(ants: tuple[str, str], n_ants_cue: int) -> list[tuple[str, str, list[str]]]:
    """Two classes of 100 test images each: the bees' feature fires on the bees (its own mode,
    ``auto:feature_17=on``), and an ants finding on ``ants`` = (attribute, value) whose value the
    first ``n_ants_cue`` ants carry. Folded: each kept finding's class, attribute and other sides."""
    n = 200
    mode = np.array(["off"] * 100 + ["on"] * 100, dtype=object)
    attr, value = ants
    other = np.array(["none"] * n, dtype=object)
    if value == "none":  # the ants' value is the absence of a band 90 of the bees carry
        other[110:] = "yellow"
    else:
        other[:n_ants_cue] = value
    meta = pd.DataFrame({"auto:feature_17": mode, attr: other})
    bees = SpuriousFinding("bees", 17, "auto:feature_17", "on", 0.5, True, {"weight": 0.9}, "bees", automatic=True)
    ant = SpuriousFinding("ants", 4, attr, value, 0.3, True, {"weight": 0.7}, "ants", automatic=True)
    return [(f.class_name, f.attribute, [o["class"] for o in f.other_sides]) for f in fold_other_sides([bees, ant], meta)]


def test_a_cue_on_the_other_class_is_not_folded_as_the_absence_of_a_cue_on_this_one():
    # a green band on 95 of the 100 ants: with the bees' mode, it covers 97.5% of the images, as
    # the absence of the mode would, but it is a cue of its own (band_right=green is not the state
    # of most images: 47.5% have it), so both findings stay
    assert _folded(("auto:band_right", "green"), 95) == [("bees", "auto:feature_17", []),
                                                         ("ants", "auto:band_right", [])]


def test_the_usual_state_of_another_attribute_is_folded_as_the_other_side():
    # the ants rely on "no band" where 90 of the bees carry a yellow one: most images (55%) have
    # no band, so the ants' finding is the bees' shortcut seen from the other side
    assert _folded(("auto:band_bottom", "none"), 0) == [("bees", "auto:feature_17", ["ants"])]
