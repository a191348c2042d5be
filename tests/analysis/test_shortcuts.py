"""One finding per shortcut: when an automatic finding is the declared one seen again."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparsecheck.analysis.shortcuts import MIN_SHARED, pool_findings
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
