"""Blended strips (sparsecheck.analysis.blends): a fade towards a colour, seen because many images share it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from sparsecheck.analysis.auto_attributes import AutoAttributes, image_properties
from sparsecheck.analysis.blends import Blends, blend_stats
from sparsecheck.analysis.image_measures import backdrop
from sparsecheck.errors import ParameterError


def textured(n: int, seed: int) -> np.ndarray:
    """Photo-like images: smooth random colour fields with some fine texture, 64 px."""
    rng = np.random.default_rng(seed)
    coarse = ndimage.zoom(rng.normal(0, 1, (n, 8, 8, 3)), (1, 8, 8, 1), order=1)
    fine = ndimage.gaussian_filter(rng.normal(0, 1, (n, 64, 64, 3)), (0, 1, 1, 0))
    x = 128 + 45 * coarse + 30 * fine + rng.normal(0, 30, (n, 1, 1, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def fade(x: np.ndarray, side: str, width: int, colour: tuple[int, int, int], strength: float) -> np.ndarray:
    y = x.astype(np.float32)
    region = {"bottom": np.s_[:, -width:], "top": np.s_[:, :width], "left": np.s_[:, :, :width],
              "right": np.s_[:, :, -width:]}[side]
    y[region] = (1 - strength) * y[region] + strength * np.asarray(colour, np.float32)
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("side, width, colour, strength", [("bottom", 12, (240, 240, 240), 0.55),
                                                            ("left", 6, (170, 40, 160), 0.6),
                                                            ("top", 3, (40, 200, 60), 0.7)])
def test_a_half_strength_fade_over_texture_is_found_on_its_images_only(side, width, colour, strength):
    x = textured(300, seed=width)
    has = np.random.default_rng(1).random(len(x)) < 0.3
    x[has] = fade(x[has], side, width, colour, strength)
    auto = AutoAttributes(random_state=0)
    table = auto.fit_transform(image_properties(x))
    column = f"auto:blend_{side}"
    assert column in table.columns
    on = table[column].to_numpy() != "none"
    assert on[has].mean() >= 0.85 and on[~has].mean() <= 0.03
    assert set(table[column][on]) == {auto.blends_.templates_[side]["value"]}
    assert auto.to_dict()["blends"][side]["squeeze"] < 0.7       # the strip's spread squeezed to about 1 - strength
    json.dumps(auto.to_dict())
    # the band attribute's fixed threshold sees a fade towards white over mid-grey photos, not a
    # half-strength fade towards a colour near the photos' own
    band = table[f"auto:band_{side}"].to_numpy() != "none"
    assert on[has].mean() >= band[has].mean()
    if side == "left":
        assert band[has].mean() < 0.5


def test_clean_textures_and_blank_backdrops_give_no_blend():
    x = textured(300, seed=5)
    stats = blend_stats(x)
    assert Blends().fit(stats, backdrop(x.astype(np.float32))).templates_ == {}
    # strokes drawn on black near the edges squeeze the black strip beside them: that is the
    # strokes' outline, "faded towards" the backdrop itself, not something put on the images
    rng = np.random.default_rng(2)
    digits = np.zeros((300, 32, 32, 3), np.uint8)
    for i in range(300):
        r0, c0 = rng.integers(2, 6, 2)
        digits[i, r0:28, c0:c0 + 3] = 255
        digits[i, r0:r0 + 3, c0:27] = 255
    finder = Blends().fit(blend_stats(digits), backdrop(digits.astype(np.float32)))
    assert finder.templates_ == {} and finder.transform(blend_stats(digits)) == {}


def test_parameters_are_checked():
    with pytest.raises(ParameterError, match="not fitted"):
        Blends().transform(np.zeros((2, 4, 7, 4)))
    with pytest.raises(ParameterError, match="min_share"):
        Blends(min_share=0.0).fit(np.zeros((2, 4, 7, 4)), np.zeros((2, 3)))
