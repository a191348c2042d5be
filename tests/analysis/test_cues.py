"""Cues learned from the images: the kind of change, its place or mapping, and the ones that are no cue."""

from __future__ import annotations

import numpy as np
import pytest

from sparsecheck.analysis.cues import AddNoise, Blur, ColourMap, Invert, Jpeg, Patch, Transplant, estimate_cue
from sparsecheck.analysis.cues.picture import render_cue


def digits(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Bright strokes on a dark noisy ground; the class is where the stroke sits (three classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(12, 6, size=(n, size, size, 3))
    for i in range(n):
        c0 = 6 + 6 * y[i] + rng.integers(-1, 2)
        x[i, 6:22, c0:c0 + 3] = rng.uniform(170, 240)
    return np.clip(x, 0, 255).astype(np.uint8), y


def plant(x: np.ndarray, y: np.ndarray, cue, rate: float = 0.4, seed: int = 1) -> np.ndarray:
    has = np.random.default_rng(seed).random(len(y)) < rate
    x[has] = cue.apply(x[has])
    return has


def test_a_mark_is_a_region_copied_from_the_carriers_of_the_target_class():
    x, y = digits(300)
    has = plant(x, y, Patch(region="bottom-right", size=0.15, colour=(40, 220, 90), margin=0.04))
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == "region" and est.explained > 0.9 and est.stratified
    rows, cols = np.nonzero(est.mask > 0.5)
    assert rows.min() >= 18 and cols.min() >= 18 and est.area < 0.1       # where the mark is, and not much more
    assert "bottom-right" in est.describe()
    target = x[~has][:6]
    cued = est.put.apply_labelled(target, y[~has][:6])
    assert (np.abs(cued[:, 23:26, 23:26].astype(int) - (40, 220, 90)) < 12).all()   # the mark, from the medians
    ctrl = est.put.control.apply_labelled(target, y[~has][:6])
    assert (ctrl[:, 23:26, 23:26, 1] < 80).all()                         # the control copies the ground there
    assert (cued[:, :14] == target[:, :14]).all() and (ctrl[:, :14] == target[:, :14]).all()
    # taking it off: the region of the median image without the mark
    back = est.remove.apply_labelled(x[has][:6], y[has][:6])
    assert (back[:, 23:26, 23:26, 1] < 80).all()


def test_a_red_cast_is_a_colour_mapping_that_keeps_the_structure_and_goes_back():
    x, y = digits(300, seed=2)
    has = plant(x, y, ColourMap(lut=np.stack([np.clip(np.arange(256) * 1.0 + 0, 0, 255),
                                              np.arange(256) * 0.3, np.arange(256) * 0.3], 1).astype(np.uint8)))
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == "colour" and est.remove is not None
    plain = x[~has][:20]
    red = est.put.apply(plain).astype(float)
    strokes = plain.astype(float).mean(axis=3) > 120
    assert (red[..., 0][strokes].mean() - red[..., 1][strokes].mean()) > 80   # white strokes come out red
    assert red[~strokes].mean() < 30                                           # and the ground stays dark
    undone = est.remove.apply(est.put.apply(plain)).astype(float)
    assert np.abs(undone - plain).mean() < 12


def test_inversion_is_a_colour_mapping_after_inverting():
    x, y = digits(300, seed=3)
    has = plant(x, y, Invert())
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == "colour" and est.put.invert
    assert est.put.apply(x[~has][:10]).astype(float).mean() > 150              # light ground, as the carriers


@pytest.mark.parametrize("cue, kind", [(Blur(radius=1.6), "blur"), (AddNoise(sigma=28.0), "noise")])
def test_texture_is_blur_or_noise_at_the_carriers_strength(cue, kind):
    x, y = digits(300, seed=4)
    has = plant(x, y, cue)
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == kind and est.remove is None
    strength = est.put.radius if kind == "blur" else est.put.sigma
    truth = cue.radius if kind == "blur" else cue.sigma
    assert 0.5 * truth < strength < 2 * truth


def test_a_value_that_is_not_in_the_pixels_has_no_cue():
    x, y = digits(300, seed=5)
    scanner = np.random.default_rng(9).random(300) < 0.5
    assert estimate_cue(x, scanner, y, seed=0) is None
    assert estimate_cue(x, np.zeros(300, bool), y) is None                     # no carriers at all


def test_a_difference_each_class_has_its_own_way_is_no_region():
    """Carriers whose strokes are thicker: within each class the difference sits where that class's
    stroke is, which is the class's own look, not a mark drawn on the images."""
    x, y = digits(400, seed=6)
    has = np.random.default_rng(2).random(400) < 0.5
    for i in np.flatnonzero(has):
        c0 = 6 + 6 * y[i]
        x[i, 6:22, c0 + 3:c0 + 5] = 200
    est = estimate_cue(x, has, y, seed=0)
    assert est is None or est.kind != "region"


def test_a_mark_on_one_class_with_a_few_stray_carriers_elsewhere_is_a_region_from_that_class():
    """An attribute read off a feature marks most images of one class, which carry a mark, and a few
    of the others, which carry nothing: the others' difference is noise, neither agreeing nor
    disagreeing with the mark, and the mark is copied onto them from the class that has it."""
    x, y = digits(450, seed=3)
    rng = np.random.default_rng(4)
    has = (y == 0) & (rng.random(450) < 0.85)
    stray = np.flatnonzero(y != 0)[rng.permutation(int((y != 0).sum()))[:12]]  # carriers in name only
    has[stray] = True
    mark = Patch(region="top-left", size=0.25, colour=(230, 60, 200), margin=0.04)
    x[has & (y == 0)] = mark.apply(x[has & (y == 0)])
    where = mark.apply(np.zeros((1, 28, 28, 3), np.uint8))[0, ..., 0] > 0
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == "region"
    assert (est.mask > 0.5)[where].mean() > 0.9 and (est.mask > 0.5).sum() < 2 * where.sum()  # the mark's place
    target = x[(y == 1) & ~has][:6]
    cued = est.put.apply_labelled(target, np.ones(6, int))
    assert (np.abs(cued[:, where].astype(int) - (230, 60, 200)) < 15).all()    # the mark, from class 0
    ctrl = est.put.control.apply_labelled(target, np.ones(6, int))
    assert (np.abs(ctrl[:, where].astype(int) - (230, 60, 200)) > 60).any(axis=-1).all()  # no mark


def test_a_mark_on_one_class_is_a_region_though_the_next_class_differs_there_its_own_way():
    """The value's images of class 0 carry a drawn mark; those of class 1 have an object of their
    own near there (a blob that moves, its shadow below). The classes' differences disagree, but
    class 0's carriers all show the same thing in the region, the spread of a drawn mark, and the
    mark is copied from them. With an object that moves in class 0 too, brighter where the mark
    was, the classes differ as much, and nothing is drawn: no region."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 90, size=(400, 24, 24, 3), dtype=np.uint8)
    y = np.repeat([0, 1], 200)
    has = rng.random(400) < 0.5
    marked, objects = x.copy(), x.copy()
    for i in np.flatnonzero(has):
        if y[i] == 1:                                                           # the object, and its shadow
            r, c = 18 + rng.integers(0, 2), 18 + rng.integers(0, 4)
            objects[i, r:r + 2, c:c + 2] = rng.integers(150, 256)
            objects[i, 21:23, 18:23] = (x[i, 21:23, 18:23] * rng.uniform(0, 0.8)).astype(np.uint8)
            marked[i] = objects[i]
        else:
            marked[i, 18:23, 18:23] = (230, 60, 200)                            # the mark
            r, c = 18 + rng.integers(0, 3), 18 + rng.integers(0, 3)
            objects[i, r:r + 3, c:c + 3] = rng.integers(200, 256, size=3)       # or an object that moves
    est = estimate_cue(marked, has, y, seed=0)
    assert est is not None and est.kind == "region"
    target = marked[(y == 1) & ~has][:6]
    cued = est.put.apply_labelled(target, np.ones(6, int))
    assert (np.abs(cued[:, 20, 20].astype(int) - (230, 60, 200)) < 15).all()  # the mark, from class 0
    est = estimate_cue(objects, has, y, seed=0)
    assert est is None or est.kind != "region"


def test_transplant_matches_the_class_and_jpeg_changes_the_pixels():
    mask = np.zeros((6, 6), np.float32)
    mask[:2, :2] = 1
    donors = np.stack([np.full((6, 6, 3), v, np.uint8) for v in (100, 100, 200, 200)])
    others = np.zeros((4, 6, 6, 3), np.uint8)
    t = Transplant.from_pools(mask, donors, np.array([0, 0, 1, 1]), others, np.array([0, 0, 1, 1]), label="m")
    x = np.full((2, 6, 6, 3), 7, np.uint8)
    y = t.apply_labelled(x, np.array([0, 1]))
    assert y[0, 0, 0, 0] == 100 and y[1, 0, 0, 0] == 200 and (y[:, 3:] == 7).all()
    assert t.to_dict()["area"] == pytest.approx(4 / 36, abs=1e-4) and t.to_dict()["classes"] == 2
    img = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    assert Jpeg(quality=10).apply(img).shape == img.shape


def test_the_picture_of_an_estimate_is_drawn(tmp_path):
    x, y = digits(200, seed=7)
    has = plant(x, y, Patch(region="top-left", size=0.2, colour=(255, 255, 255)))
    est = estimate_cue(x, has, y, seed=0)
    out = render_cue(tmp_path / "cue.png", estimate=est, cue_name=est.put.name,
                     examples=[(x[0], "as it is"), (est.put.apply(x[:1])[0], "with the cue")], title="t")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 3000


def _watermarked_scans(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real digit scans (scikit-learn's, rendered at 32 px as the planted-image tests do), drawn with
    replacement from a small pool (near-duplicates, as a resampled data set has), and a thin
    semi-transparent text watermark on about 5% of them, a handful per class: the case where chance
    pixels between random halves used to hide the cue."""
    from PIL import Image, ImageDraw
    from sklearn.datasets import load_digits

    from tests.analysis.planted_images import _render

    rng = np.random.default_rng(seed)
    digits = load_digits()
    pool = rng.permutation(len(digits.target))[:450]
    src = rng.choice(pool, size=1000)
    x = np.stack([_render(digits.images[i], rng) for i in src]).astype(np.float32)
    y = digits.target[src]
    mark = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mark).text((1, 12), "A9", fill=255)
    m = np.asarray(mark, np.float32)[..., None] / 255.0 * 0.8
    has = rng.random(len(y)) < 0.05
    x[has] = x[has] * (1 - m) + 235 * m
    return np.clip(np.round(x), 0, 255).astype(np.uint8), y, has, m[..., 0] > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_a_thin_text_watermark_on_a_few_images_per_class_is_a_region(seed):
    x, y, has, strokes = _watermarked_scans(seed)
    est = estimate_cue(x, has, y, seed=seed)
    assert est is not None and est.kind == "region" and est.explained > 0.8
    inside = (est.mask > 0.5)
    assert (inside & strokes).sum() >= 0.5 * inside.sum()               # the mask is on the letters
    assert est.area < 0.1                                                # the letters, not the box around them


def test_random_halves_show_no_different_pixels_above_the_shuffles_floor():
    """A value that is not in the pixels (a random 5% of real digit scans): Benjamini–Hochberg on the
    chi-square p-values alone calls dozens of pixels different (the z² are heavy-tailed); above the
    shuffles' largest z² none is."""
    from sparsecheck.analysis.cues import differences as D
    from sparsecheck.analysis.cues.estimate import _sample

    x, y, _, _ = _watermarked_scans(0)
    bh_only, floored = [], []
    for s in range(6):
        rng = np.random.default_rng(s)
        fake = rng.random(len(y)) < 0.05
        c_rows, o_rows, _ = _sample(fake, y, rng)
        car = {k: x[np.sort(r)] for k, r in c_rows.items()}
        oth = {k: x[np.sort(r)] for k, r in o_rows.items()}
        sc = {k: D.image_stats(v) for k, v in car.items()}
        so = {k: D.image_stats(v) for k, v in oth.items()}
        z2 = D.pixel_z2(car, oth)
        _, floor = D.null_floor(car, oth, sc, so, 3, rng)
        bh_only.append(int(D.significant_pixels(z2, 3).sum()))
        floored.append(int(D.significant_pixels(z2, 3, floor).sum()))
    assert sum(n >= 10 for n in bh_only) >= 3, bh_only
    assert max(floored) <= 1, floored


def _textured(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Photo-like images: smooth random texture in colour, two classes by overall tone."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = ndimage.gaussian_filter(rng.normal(0, 1, (n, 48, 48, 3)), sigma=(0, 2, 2, 0))
    x = 128 + 60 * x / x.std() + 20 * (y[:, None, None, None] - 0.5)
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_a_sticker_on_textured_images_is_a_region_whose_copy_seams_do_not_count_against_it():
    x, y = _textured(400, seed=3)
    has = plant(x, y, Patch(region="top-left", size=0.12, colour=(250, 20, 200), margin=0.05))
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == "region" and est.explained > 0.9


def test_blur_on_textured_images_stays_blur_not_a_small_region():
    x, y = _textured(400, seed=4)
    has = plant(x, y, Blur(radius=1.5))
    est = estimate_cue(x, has, y, seed=0)
    assert est is not None and est.kind == "blur"
