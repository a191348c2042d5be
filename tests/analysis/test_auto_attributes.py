"""Automatic image attributes on synthetic images whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparsecheck.analysis.auto_attributes import (AUTO_PREFIX, AutoAttributes, hue_family, image_properties,
                                                  is_auto, stream_properties)
from sparsecheck.analysis.cues import AddNoise, Blur, Invert, Jpeg, Patch, Tint
from sparsecheck.errors import DataError, ParameterError


def digits_like(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Bright blobby strokes on a dark, noisy background, greyish (a slight random colour cast)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size), np.float32)
    for i in range(n):
        r0, c0 = rng.integers(8, size - 14, size=2)
        x[i, r0:r0 + 10, c0:c0 + 3] = rng.uniform(150, 255)
        x[i, r0:r0 + 3, c0:c0 + 8] = rng.uniform(150, 255)
    x = x + rng.normal(0, 15, x.shape)
    rgb = x[..., None] * rng.uniform(0.9, 1.0, size=(n, 1, 1, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def planted():
    """600 images: 100 red-tinted, 100 with a bright top-left corner, 100 inverted, 100 blurred."""
    x = digits_like(600)
    groups = {"red": slice(0, 100), "corner": slice(100, 200), "inverted": slice(200, 300),
              "blurred": slice(300, 400)}
    x[groups["red"]] = Tint(colour=(220, 20, 20), strength=0.5).apply(x[groups["red"]])
    x[groups["corner"]] = Patch(region="top-left", size=0.2, colour=(255, 255, 255)).apply(x[groups["corner"]])
    x[groups["inverted"]] = Invert().apply(x[groups["inverted"]])
    x[groups["blurred"]] = Blur(radius=1.5).apply(x[groups["blurred"]])
    props = image_properties(x)
    auto = AutoAttributes().fit(props)
    return x, groups, props, auto, auto.transform(props)


def share(table: pd.DataFrame, rows: slice | np.ndarray, column: str, value: str) -> float:
    return float((table[column].iloc[rows] == value).mean())


def test_red_tint_is_hue_red_and_only_there(planted):
    _, g, _, _, t = planted
    assert share(t, g["red"], "auto:hue", "red") == 1.0
    assert share(t, slice(100, 600), "auto:hue", "red") == 0.0
    assert share(t, g["red"], "auto:colourfulness", "high") == 1.0


def auto_of(planted) -> AutoAttributes:
    return planted[3]


def test_bright_corner_is_a_white_mark_in_its_zone(planted):
    _, g, _, _, t = planted
    assert share(t, g["corner"], "auto:mark_tl", "white") == 1.0
    others = np.r_[0:100, 300:600]                      # not inverted (a light background lights corners)
    assert share(t, others, "auto:mark_tl", "none") == 1.0
    # no image has a mark in the bottom-right zone: one value, so the column is dropped
    assert "auto:mark_br" not in t.columns and "auto:mark_br" in auto_of(planted).dropped_
    # a thin frame through every corner and an inverted image's light corners are not a mark
    x = digits_like(200, seed=3)
    x[:100, 0, :] = x[:100, -1, :] = x[:100, :, 0] = x[:100, :, -1] = 150
    x[100:] = Invert().apply(x[100:])
    x[150:, 1:6, 1:6] = 0                                # a dark mark on the light ones
    framed = AutoAttributes().fit_transform(image_properties(x))
    assert (framed["auto:mark_tl"].iloc[:150] == "none").all()
    assert (framed["auto:mark_tl"].iloc[150:] == "black").all()


@pytest.mark.parametrize("zone, rows, cols", [("t", slice(1, 5), slice(14, 18)), ("r", slice(14, 18), slice(27, 31)),
                                              ("bl", slice(27, 31), slice(1, 5)), ("b", slice(28, 32), slice(12, 16))])
def test_a_mark_of_one_and_a_half_percent_is_seen_in_every_zone(zone, rows, cols):
    x = digits_like(120, seed=5)
    x[:40, rows, cols] = (40, 200, 255)                  # 4×4 on 32×32: 1.6% of the image
    t = AutoAttributes().fit_transform(image_properties(x))
    assert share(t, slice(0, 40), f"auto:mark_{zone}", "cyan") >= 0.95
    assert share(t, slice(40, 120), f"auto:mark_{zone}", "none") == 1.0


def test_bands_frames_and_the_colour_of_foreground_and_background():
    x = digits_like(160, seed=6)
    x[:40, -6:] = np.round(0.3 * x[:40, -6:] + 0.7 * 255).astype(np.uint8)          # a whitened bottom band
    x[40:80, :2], x[40:80, -2:], x[40:80, :, :2], x[40:80, :, -2:] = 120, 120, 120, 120   # a grey frame
    strokes = x[80:120].astype(np.float32).mean(axis=3) > 100
    x[80:120][strokes] = (230, 30, 30)                                               # red strokes
    x[120:][~(x[120:].astype(np.float32).mean(axis=3) > 100)] = (20, 20, 140)        # a blue background
    t = AutoAttributes().fit_transform(image_properties(x))
    assert share(t, slice(0, 40), "auto:band_bottom", "white") == 1.0
    assert share(t, np.r_[80:160], "auto:band_bottom", "none") == 1.0
    assert share(t, slice(40, 80), "auto:frame", "grey") == 1.0 and share(t, np.r_[0:40, 80:160], "auto:frame",
                                                                           "none") == 1.0
    assert share(t, slice(80, 120), "auto:fg_colour", "red") == 1.0
    assert share(t, slice(80, 120), "auto:bg_colour", "black") == 1.0
    assert share(t, slice(120, 160), "auto:bg_colour", "blue") == 1.0
    assert share(t, slice(120, 160), "auto:fg_colour", "red") == 0.0


def test_noise_and_jpeg_have_levels_of_their_own():
    x = digits_like(150, seed=7)
    x[:50] = AddNoise(sigma=30.0).apply(x[:50])
    x[50:100] = Jpeg(quality=5).apply(x[50:100])
    props = image_properties(x)
    assert props["noise"].iloc[:50].min() > props["noise"].iloc[50:].max()
    # a 32-pixel digit has few 8-pixel blocks: JPEG shows on average, not on every image
    assert props["blockiness"].iloc[50:100].mean() > props["blockiness"].iloc[100:].mean() + 0.5
    t = AutoAttributes().fit_transform(props)
    assert share(t, slice(0, 50), "auto:noise", "high") == 1.0
    assert share(t, slice(50, 100), "auto:blockiness", "high") > share(t, slice(100, 150), "auto:blockiness", "high")


def test_inverted_digits_are_inverted_yes(planted):
    _, g, _, _, t = planted
    assert share(t, g["inverted"], "auto:inverted", "yes") == 1.0
    assert share(t, np.r_[0:200, 300:600], "auto:inverted", "yes") == 0.0
    assert share(t, g["inverted"], "auto:brightness", "high") == 1.0


def test_blur_lowers_sharpness(planted):
    _, g, props, _, t = planted
    assert props["sharpness"].iloc[g["blurred"]].max() < props["sharpness"].iloc[400:600].min()
    assert share(t, g["blurred"], "auto:sharpness", "low") == 1.0
    assert share(t, slice(400, 600), "auto:sharpness", "low") == 0.0


def test_sizes_and_aspect():
    x = digits_like(90)
    sizes = np.array([[100, 100]] * 30 + [[100, 200]] * 30 + [[400, 200]] * 30)   # (height, width)
    props = image_properties(x, sizes)
    assert props["aspect"].tolist() == [1.0] * 30 + [2.0] * 30 + [0.5] * 30
    t = AutoAttributes().fit_transform(props)
    assert t["auto:aspect"].tolist() == ["mid"] * 30 + ["high"] * 30 + ["low"] * 30
    assert t["auto:height"].tolist() == ["low"] * 60 + ["high"] * 30
    with pytest.raises(DataError, match="original_sizes"):
        image_properties(x, sizes[:10])


def test_columns_are_prefixed_and_constant_ones_dropped(planted):
    _, _, _, auto, t = planted
    assert list(t.columns) == auto.columns_
    assert all(c.startswith(AUTO_PREFIX) and is_auto(c) for c in t.columns)
    # no original sizes: height, width and aspect are the array's, the same for all → dropped
    assert {"auto:height", "auto:width", "auto:aspect"} <= set(auto.dropped_)
    assert all(t[c].nunique() > 1 for c in t.columns)
    assert set(auto.to_dict()["columns"]) == set(t.columns)


def test_streaming_equals_all_at_once(planted):
    x, _, props, auto, t = planted
    sizes = np.tile([32, 32], (len(x), 1))
    streamed = stream_properties((x[i:i + 37], sizes[i:i + 37]) for i in range(0, len(x), 37))
    pd.testing.assert_frame_equal(streamed, props, rtol=1e-9, atol=1e-12)
    t2 = AutoAttributes().fit((x[i:i + 50] for i in range(0, len(x), 50))).transform(
        (x[i:i + 64] for i in range(0, len(x), 64)))
    pd.testing.assert_frame_equal(t2, t)


def test_grey_and_single_channel_images():
    x = digits_like(40)[..., 0]                           # (n, H, W)
    props = image_properties(x)
    assert props["hue_strength"].max() == 0.0 and props["hue"].isna().all()
    np.testing.assert_allclose(props["brightness"], image_properties(x[..., None])["brightness"])


def test_quantile_binning_gives_equal_shares():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(300, 8, 8, 3), dtype=np.uint8)
    t = AutoAttributes(binning="quantile").fit_transform(image_properties(x))
    counts = t["auto:brightness"].value_counts()
    assert set(counts.index) == {"low", "mid", "high"} and counts.min() >= 99


def test_a_mode_gets_its_own_level_with_natural_breaks():
    """15% of images much brighter: natural breaks isolate them; tertiles would mix them in."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 40, size=(400, 8, 8, 3), dtype=np.uint8)
    x[:60] += 200
    t = AutoAttributes().fit_transform(image_properties(x))
    assert (t["auto:brightness"].iloc[:60] == "high").all() and (t["auto:brightness"].iloc[60:] != "high").all()


def test_hue_families():
    assert hue_family(np.array([0.0, 30, 60, 120, 180, 230, 275, 320, np.nan]), np.ones(9), 0.05).tolist() == \
        ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "grey"]


def test_errors():
    with pytest.raises(ParameterError, match="levels"):
        AutoAttributes(levels=9).fit(image_properties(digits_like(5)))
    with pytest.raises(ParameterError, match="not fitted"):
        AutoAttributes().transform(image_properties(digits_like(5)))
    with pytest.raises(DataError, match="uint8"):
        image_properties(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(DataError, match="no image batches"):
        stream_properties(iter([]))


def test_public_names_resolve():
    import importlib

    for mod in ("sparsecheck.analysis.auto_attributes", "sparsecheck.analysis.interventions",
                "sparsecheck.analysis.error_clusters", "sparsecheck.analysis.image_measures",
                "sparsecheck.analysis.cues"):
        module = importlib.import_module(mod)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{mod}.{name}"
