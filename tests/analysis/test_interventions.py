"""Cue transforms do what they say on the pixels; the sequential intervention confirms a real reliance only,
shares its images across classes and keeps its error rate."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from sparsecheck.analysis.cues import (CUES, Background, Blur, Border, CallableCue, Erase, Invert, Patch, Tint,
                                       parse_cue, parse_intervention)
from sparsecheck.analysis.interventions import (FIRST_LOOK, CueTrial, InterventionResult, first_look, look_sizes,
                                                measure_intervention)
from sparsecheck.analysis.stats import mcnemar_exact
from sparsecheck.errors import ConfigError, DataError, ModelError, ParameterError


def images(n: int = 4, size: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 100, size=(n, size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------- transforms, pixel by pixel

@pytest.mark.parametrize("region, rows, cols", [
    ("top-left", slice(0, 4), slice(0, 4)), ("top-right", slice(0, 4), slice(16, 20)),
    ("bottom-left", slice(16, 20), slice(0, 4)), ("bottom-right", slice(16, 20), slice(16, 20)),
    ("centre", slice(8, 12), slice(8, 12))])
def test_patch_paints_exactly_its_square(region, rows, cols):
    x = images()
    y = Patch(region=region, size=0.2, colour=(255, 10, 20)).apply(x)
    assert (y[:, rows, cols] == [255, 10, 20]).all()
    outside = np.ones((20, 20), bool)
    outside[rows, cols] = False
    assert (y[:, outside] == x[:, outside]).all()
    assert y.dtype == np.uint8 and y.shape == x.shape


def test_patch_margin_and_input_untouched():
    x = images()
    before = x.copy()
    y = Patch(region="top-left", size=0.2, colour=(255, 255, 255), margin=0.05).apply(x)
    assert (y[:, 1:5, 1:5] == 255).all() and (y[:, 0] == x[:, 0]).all()
    assert (x == before).all()


def test_border_frames_every_edge_only():
    x = images()
    y = Border(width=2, colour=(128, 128, 128)).apply(x)
    for edge in (y[:, :2], y[:, -2:], y[:, :, :2], y[:, :, -2:]):
        assert (edge == 128).all()
    assert (y[:, 2:-2, 2:-2] == x[:, 2:-2, 2:-2]).all()


def test_tint_blends_towards_the_colour_and_undo_restores():
    x = images()
    t = Tint(colour=(200, 30, 30), strength=0.5)
    y = t.apply(x)
    expected = np.round(0.5 * x.astype(float) + 0.5 * np.array([200, 30, 30]))
    assert np.abs(y.astype(float) - expected).max() <= 0.5
    assert (y[..., 0].astype(int) > y[..., 1]).mean() > 0.95
    back = Tint(colour=(200, 30, 30), strength=0.5, undo=True).apply(y)
    assert np.abs(back.astype(int) - x).max() <= 1


def test_invert_and_blur():
    x = images()
    assert (Invert().apply(x) == 255 - x).all()
    sharp = np.zeros((1, 15, 15, 3), np.uint8)
    sharp[0, :, 7:] = 255                                   # a vertical edge
    y = Blur(radius=1.5).apply(sharp)
    row = y[0, 7, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and 0 < row[6] < 128 < row[7] < 255
    assert np.abs(np.diff(row)).max() < 255


def test_background_repaints_the_backdrop_not_the_object():
    x = np.full((2, 12, 12, 3), 10, np.uint8)
    x[:, 4:8, 4:8] = 220
    x[1] = 255 - x[1]                                       # light backdrop, dark object
    y = Background(colour=(0, 0, 255), tolerance=30).apply(x)
    assert (y[:, 0, 0] == [0, 0, 255]).all() and (y[:, 2, 9] == [0, 0, 255]).all()
    assert (y[:, 4:8, 4:8] == x[:, 4:8, 4:8]).all()


def test_erase_takes_a_mark_off_with_the_images_own_backdrop():
    x = np.full((3, 32, 32, 3), 20, np.uint8)
    x[1] = 230                                            # a light image
    x[:, 12:20, 12:20] = 128                              # the object, untouched
    x[2, 0, :] = x[2, -1, :] = x[2, :, 0] = x[2, :, -1] = 150   # a thin frame does not set the backdrop
    x[:, 1:7, 1:7] = (40, 80, 255)                        # a mark 1 px in
    y = Erase(region="top-left", size=0.25).apply(x)
    assert (y[0, :8, :8] == 20).all() and (y[1, :8, :8] == 230).all() and (y[2, :8, :8] == 20).all()
    assert (y[:, 12:20, 12:20] == 128).all() and (y[:, 8:] == x[:, 8:]).all()
    grey = Erase(region="bottom-right", size=0.25).apply(x[..., 0])  # N×H×W too
    assert grey.shape == x.shape[:3] and (grey[0, 24:, 24:] == 20).all()


def test_grey_images_take_colour_as_luminance():
    x = np.zeros((2, 10, 10), np.uint8)
    y = Patch(region="top-left", size=0.3, colour=(255, 255, 255)).apply(x)
    assert y.shape == x.shape and (y[:, :3, :3] == 255).all()
    assert Border(width=1, colour=(100, 100, 100)).apply(x[..., None])[0, 0, 0, 0] == 100


# ---------------------------------------------------------------- config parsing and the callable cue

def test_parse_every_type_round_trips():
    specs = [{"type": "patch", "region": "centre", "size": 0.1, "colour": [1, 2, 3]},
             {"type": "border", "width": 3, "colour": [9, 9, 9]},
             {"type": "tint", "colour": [200, 30, 30], "strength": 0.6},
             {"type": "invert"}, {"type": "blur", "radius": 2.0},
             {"type": "background", "colour": [0, 0, 0], "tolerance": 25},
             {"type": "erase", "region": "bottom-left", "size": 0.3, "margin": 0.05}]
    for spec in specs:
        cue = parse_cue(spec)
        assert isinstance(cue, CUES[spec["type"]])
        assert parse_cue(cue.to_dict()) == cue
        json.dumps(cue.to_dict())


@pytest.mark.parametrize("spec, key, match", [
    ({"type": "patch", "region": "middle"}, "i.put.region", "region"),
    ({"type": "patch", "colour": [300, 0, 0]}, "i.put.colour", r"\[r, g, b\]"),
    ({"type": "patch", "shape": "round"}, "i.put.shape", "unknown parameter"),
    ({"type": "tint", "strength": 1.5}, "i.put.strength", "strength"),
    ({"type": "border", "width": 0}, "i.put.width", "width"),
    ({"type": "callable"}, "i.put", "function"),
])
def test_bad_specs_name_the_key(spec, key, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_intervention({"put": spec}, key="i")
    assert info.value.key == key


def test_parse_intervention_shape_errors():
    with pytest.raises(ConfigError, match="put"):
        parse_intervention({"remove": {"type": "invert"}}, key="x")
    with pytest.raises(ConfigError) as info:
        parse_intervention({"put": {"type": "invert"}, "take": None}, key="x")
    assert info.value.key == "x.take"


def test_callable_cue_imports_by_name_and_errors_name_the_key(monkeypatch):
    mod = types.ModuleType("user_cues_for_test")
    mod.stamp = lambda x, value=255: np.where(np.arange(x.shape[2])[None, None, :, None] < 2, value, x).astype(np.uint8)
    mod.not_callable = 3
    mod.wrong_shape = lambda x: x[:, :5]
    monkeypatch.setitem(sys.modules, "user_cues_for_test", mod)
    cue = parse_cue({"type": "callable", "function": "user_cues_for_test:stamp", "kwargs": {"value": 7}},
                    key="data.interventions.mark.put")
    assert isinstance(cue, CallableCue) and cue.name == "callable(user_cues_for_test:stamp)"
    y = cue.apply(images())
    assert (y[:, :, :2] == 7).all()
    for target, match in (("user_cues_for_test:missing", "no attribute"), ("no_such_module_xyz:f", "cannot import"),
                          ("user_cues_for_test:not_callable", "not callable"), ("nocolon", "package.module")):
        with pytest.raises(ConfigError, match=match) as info:
            parse_cue({"type": "callable", "function": target}, key="data.interventions.mark.put")
        assert info.value.key == "data.interventions.mark.put.function"
    with pytest.raises(ModelError, match="shape"):
        CallableCue("user_cues_for_test:wrong_shape").apply(images())


# ---------------------------------------------------------------- the sequential test on toy models

def corner_model(x: np.ndarray) -> np.ndarray:
    """Class 2 iff the top-left 4×4 is bright, else class = a (noisy) function of the mean colour."""
    bright = x[:, :4, :4].mean(axis=(1, 2, 3)) > 150
    other = (x[:, 8:, 8:].mean(axis=(1, 2, 3)) > 50).astype(int)
    pred = np.where(bright, 2, other)
    p = np.full((len(x), 3), 0.05)
    p[np.arange(len(x)), pred] = 0.9
    return p


def blind_model(x: np.ndarray) -> np.ndarray:
    """Ignores the corner: class from the centre's brightness, 2 for a band of it."""
    m = x[:, 8:, 8:].mean(axis=(1, 2, 3))
    pred = np.where(m > 50.5, 2, (m > 48).astype(int))
    p = np.full((len(x), 3), 0.05)
    p[np.arange(len(x)), pred] = 0.9
    return p


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 100, size=(900, 20, 20, 3), dtype=np.uint8)
    y = rng.integers(0, 3, size=900)
    has = (y == 2) & (rng.random(900) < 0.8)
    x[has] = Patch(region="top-left", size=0.2, colour=(255, 255, 255)).apply(x[has])
    return x, y, has


PUT = {"type": "patch", "region": "top-left", "size": 0.2, "colour": [255, 255, 255]}
REMOVE = {"type": "patch", "region": "top-left", "size": 0.2, "colour": [0, 0, 0]}
ELSEWHERE = {"type": "patch", "region": "bottom-right", "size": 0.2, "colour": [255, 255, 255]}


def test_look_sizes_double_up_to_the_sample():
    assert look_sizes(500) == [34, 68, 136, 272, 500] and look_sizes(34) == [34] and look_sizes(7) == [7]


def test_a_model_that_uses_the_cue_is_confirmed_at_the_first_look(toy):
    x, y, has = toy
    r = measure_intervention(corner_model, x, y, 2, PUT, REMOVE, has_cue=has, batch_size=64, seed=0,
                             class_name="two")
    assert r.confirmed and r.confirmed_by == ["put"] and r.stopped_at == 1 and r.looks > 1
    assert r.n_put == FIRST_LOOK and r.flip_rate == 1.0 and r.baseline_rate == 0.0 and r.flipped_to == FIRST_LOOK
    assert r.n_remove == 0                      # decided: taking it off is not asked
    assert 64 <= r.images <= 80                 # cued and original images (a share of class two's skipped)
    assert "into 'two'" in r.describe() and r.describe().endswith("confirmed at the first look")
    d = r.to_dict()
    json.dumps(d)
    assert d["confirmed"] is True and d["cue"].startswith("patch(top-left")


def test_taking_the_cue_off_confirms_when_putting_it_elsewhere_does_nothing(toy):
    x, y, has = toy
    r = measure_intervention(corner_model, x, y, 2, ELSEWHERE, REMOVE, has_cue=has, batch_size=64, seed=0)
    assert r.confirmed and r.confirmed_by == ["remove"]
    assert r.recall_before == 1.0 and r.recall_after == 0.0 and r.lost == r.n_remove
    assert "lowers recall from 100% to 0.0%" in r.describe()


def test_a_model_that_ignores_the_cue_is_ruled_out_early(toy):
    x, y, has = toy
    r = measure_intervention(blind_model, x, y, 2, PUT, REMOVE, has_cue=has, batch_size=100, seed=0)
    assert not r.confirmed and r.confirmed_by == []
    assert r.stopped_at < r.looks               # futility: no need to look at every image
    assert abs(r.flip_rate - r.baseline_rate) < 0.05
    assert "not confirmed" in r.describe()


def test_a_cue_that_flips_nothing_is_ruled_out_at_the_third_look(toy):
    # the looks are placed for the margin: 0 flips in 4 x first images is the first count whose
    # one-sided 95% upper bound is under it (at 32, 64, 128 this took the fourth look, 256 images)
    x, y, has = toy

    def constant(batch):
        return np.tile([0.5, 0.3, 0.2], (len(batch), 1))

    for margin in (0.02, 0.05):
        r = measure_intervention(constant, x, y, 2, PUT, None, has_cue=has, batch_size=50, seed=0, margin=margin)
        assert not r.confirmed and r.flipped_to == 0
        assert r.stopped_at == 3 and r.n_put == 4 * first_look(margin) < r.looks * first_look(margin) * 2
    assert first_look(0.02) == FIRST_LOOK == 34
    with pytest.raises(ParameterError, match="margin"):
        first_look(0.0)


def test_known_probabilities_cost_no_forward_pass(toy):
    x, y, has = toy
    seen = []

    def spy(batch):
        seen.append(len(batch))
        return corner_model(batch)

    base = corner_model(x)
    r = measure_intervention(spy, x, y, 2, PUT, None, has_cue=has, base_probs=base, batch_size=16, seed=0)
    assert r.confirmed and sum(seen) == r.images and r.n_put <= r.images <= 40 and max(seen) <= 16


def test_one_trial_serves_every_class_from_the_same_cued_images(toy):
    x, y, has = toy
    trial = CueTrial(corner_model, x, y, PUT, None, has_cue=has, base_probs=corner_model(x), seed=0)
    first = trial.measure(2)
    spent = trial.images_used
    second = trial.measure(0)                   # class 0 reads the cued images class 2 paid for
    assert first.confirmed and not second.confirmed
    assert trial.images_used - spent <= second.n_put - first.n_put + 32
    assert trial.example(2) is not None and y[trial.example(2)[0]] != 2


def test_the_sequential_test_keeps_its_error_rate_on_a_cue_the_model_ignores():
    """Over 40 null trials (the cue changes nothing the model reads) at alpha 0.05, confirmations
    stay within what the level allows (binomial: 6 or more of 40 has probability below 1%)."""
    rng = np.random.default_rng(11)
    confirmed = 0
    for seed in range(40):
        x = rng.integers(0, 100, size=(300, 12, 12, 3), dtype=np.uint8)
        y = rng.integers(0, 3, size=300)

        def noisy(batch, rng=np.random.default_rng(seed)):
            p = rng.dirichlet(np.ones(3), size=len(batch))   # answers that ignore the pixels
            return p

        r = measure_intervention(noisy, x, y, 1, PUT, REMOVE, seed=seed, alpha=0.05)
        confirmed += r.confirmed
    assert confirmed <= 5


def test_batching_and_sampling(toy):
    x, y, has = toy
    a = measure_intervention(corner_model, x, y, 2, PUT, None, batch_size=7, seed=0)
    b = measure_intervention(corner_model, x, y, 2, PUT, None, batch_size=1000, seed=0)
    assert a.to_dict() == b.to_dict() and a.n_remove == 0 and a.remove is None
    seen = []

    def spy(batch):
        seen.append(len(batch))
        return blind_model(batch)

    s = measure_intervention(spy, x, y, 2, PUT, REMOVE, sample=50, batch_size=16, seed=1)
    assert s.n_put <= 50 and s.n_remove <= 50 and max(seen) <= 16


def test_mcnemar_and_errors(toy):
    x, y, _ = toy
    assert mcnemar_exact(10, 0) == pytest.approx(0.5 ** 10)
    assert mcnemar_exact(3, 3) > 0.5
    with pytest.raises(DataError, match="rows"):
        measure_intervention(corner_model, x[:10], y, 2, PUT)
    with pytest.raises(ModelError, match="predict_proba"):
        measure_intervention(lambda b: np.zeros((len(b) + 1, 2)), x, y, 2, PUT)
    with pytest.raises(ConfigError):
        measure_intervention(corner_model, x, y, 2, {"type": "nope"})


def test_result_fields_are_documented():
    documented = InterventionResult.__doc__
    for name in InterventionResult.__dataclass_fields__:
        stem = name.replace("_ci_low", "").replace("_ci_high", "")
        assert stem in documented or name in documented, name
