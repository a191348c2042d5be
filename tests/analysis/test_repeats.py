"""Repeated artefacts (sparsecheck.analysis.repeats): found where the same thing sits at the same
place on many images, whatever its shape; silent on clean real images."""

from __future__ import annotations

import numpy as np
import pytest

from sparsecheck.analysis.auto_attributes import AutoAttributes, image_properties
from sparsecheck.analysis.image_measures import downsample
from sparsecheck.analysis.repeats import RepeatedPatterns, zone_pixels
from tests.conftest import require
from tests.planted.tasks import _digits, _photos, photos_root


def textured(n: int, seed: int = 0, size: int = 48) -> np.ndarray:
    """Busy random-texture images (no blank backdrop to stand out from)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(n, size // 4, size // 4, 3))
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.uint8)


def glyphs(seed: int, h: int, w: int) -> np.ndarray:
    """A fixed, non-uniform pattern (about half its pixels set), like the strokes of a word."""
    return np.random.default_rng(seed).random((h, w)) < 0.5


def stamp(x: np.ndarray, rows: slice, cols: slice, pattern: np.ndarray, colour, alpha: float = 1.0) -> np.ndarray:
    y = x.astype(np.float32)
    part = y[:, rows, cols]
    part[:, pattern] = (1 - alpha) * part[:, pattern] + alpha * np.asarray(colour, np.float32)
    y[:, rows, cols] = part
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def patterns_of(x: np.ndarray, seed: int = 0) -> tuple[RepeatedPatterns, dict[str, np.ndarray]]:
    zones = zone_pixels(downsample(x.astype(np.float32)))
    finder = RepeatedPatterns(random_state=seed).fit(zones)
    return finder, finder.transform(zones)


def test_a_textured_mark_repeated_on_some_images_is_found_in_its_zone_by_its_colour():
    x = textured(400)
    carriers = np.zeros(len(x), bool)
    carriers[:80] = True
    x[carriers] = stamp(x[carriers], slice(2, 8), slice(34, 46), glyphs(1, 6, 12), (250, 250, 250))
    _, cols = patterns_of(x)
    values = cols["auto:pattern_tr"]
    assert set(values[carriers]) == {"white"}
    assert (values[~carriers] == "none").all()
    assert set(cols) == {"auto:pattern_tr"}, "no other zone has a template"


def test_a_mark_of_a_few_pixels_on_a_blank_backdrop_is_found_and_a_black_one_is_not_an_artefact():
    """On digits-like images (a blank backdrop), a thin coloured mark in a corner is found; the
    backdrop's own colour where strokes usually reach is the object's absence, not a template."""
    rng = np.random.default_rng(3)
    x = np.zeros((300, 32, 32, 3), np.uint8)
    x[:, 8:24, 12:20] = 200                                        # an "object" in the middle
    reach = rng.random(300) < 0.7
    x[reach, 2:9, 12:20] = 200                                      # most objects reach the top zone
    x[:40] = stamp(x[:40], slice(26, 31), slice(1, 8), glyphs(2, 5, 7), (240, 40, 40))
    _, cols = patterns_of(x)
    assert set(cols) == {"auto:pattern_bl"}
    assert set(cols["auto:pattern_bl"][:40]) == {"red"} and (cols["auto:pattern_bl"][40:] == "none").all()


def test_a_mark_at_a_different_place_on_each_image_is_not_a_repeat():
    rng = np.random.default_rng(4)
    x = textured(300, seed=4)
    pattern = glyphs(5, 6, 10)
    for i in range(60):
        r, c = int(rng.integers(0, 42)), int(rng.integers(0, 38))
        x[i:i + 1] = stamp(x[i:i + 1], slice(r, r + 6), slice(c, c + 10), pattern, (255, 0, 255))
    _, cols = patterns_of(x)
    assert cols == {}


def test_templates_fitted_on_one_split_name_the_carriers_of_another():
    x = textured(300, seed=6)
    x[:60] = stamp(x[:60], slice(40, 46), slice(2, 14), glyphs(7, 6, 12), (0, 200, 255))
    finder, _ = patterns_of(x)
    other = textured(100, seed=8)
    other[:30] = stamp(other[:30], slice(40, 46), slice(2, 14), glyphs(7, 6, 12), (0, 200, 255))
    values = finder.transform(zone_pixels(downsample(other.astype(np.float32))))["auto:pattern_bl"]
    assert set(values[:30]) == {"cyan"} and (values[30:] == "none").all()


def test_auto_attributes_carry_the_pattern_columns_and_record_the_templates():
    x = textured(300, seed=9)
    x[:50] = stamp(x[:50], slice(0, 6), slice(18, 30), glyphs(10, 6, 12), (255, 255, 0))
    auto = AutoAttributes(random_state=0)
    table = auto.fit_transform(image_properties(x))
    assert set(table["auto:pattern_t"][:50]) == {"yellow"} and (table["auto:pattern_t"][50:] == "none").all()
    assert auto.to_dict()["patterns"] == {"t": [{"value": "yellow", "share": pytest.approx(50 / 300, abs=1e-3),
                                                 "area": auto.to_dict()["patterns"]["t"][0]["area"]}]}


@pytest.mark.parametrize("source", ["digits", "photos"])
def test_clean_real_images_have_no_repeated_pattern(source):
    """Real digits (scikit-learn) and the real ants/bees photos (../shared/data), with nothing
    planted: no template in any zone, on three draws of each."""
    if source == "photos":
        require(photos_root() is not None, "the ants/bees photos in ../shared/data")
    for seed in range(3):
        x = (_digits(seed, (60, 20, 800)) if source == "digits" else _photos(seed))["test"][0]
        finder, cols = patterns_of(x, seed)
        assert cols == {}, (seed, finder.to_dict())


def test_transform_before_fit_is_a_parameter_error():
    from sparsecheck.errors import ParameterError

    with pytest.raises(ParameterError, match="not fitted"):
        RepeatedPatterns().transform(zone_pixels(np.zeros((2, 12, 12, 3))))
