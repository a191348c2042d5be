"""Tests of LIME for a feature: the target is the feature's standardised activation, not a class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from sparsecheck.analysis.lime_features import (
    FeatureActivation,
    FeatureExplanation,
    LimeFeatureExplainer,
    Segmenter,
    overlay,
    positive_share_inside,
)
from sparsecheck.data import InputSpec
from sparsecheck.errors import ModelError, ParameterError
from sparsecheck.features.taps import FeatureExtractor
from tests.helpers import make_tiny_net

SIZE = 16
CORNER = (slice(0, 5), slice(0, 5))  # feature 0 looks here (redness)
OPPOSITE = (slice(11, 16), slice(11, 16))  # feature 1 looks here (brightness)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RegionNet(nn.Module):
    """Two hand-made features; the head uses only feature 1 (class 1 = bright bottom-right corner)."""

    def __init__(self, max_batch: int | None = None) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2)
        self.max_batch = max_batch
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.0, -6.0], [0.0, 6.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_batch is not None and x.shape[0] > self.max_batch:
            raise torch.OutOfMemoryError(f"batch of {x.shape[0]} does not fit")
        red = x[:, 0, CORNER[0], CORNER[1]].mean((1, 2)) - x[:, 1:, CORNER[0], CORNER[1]].mean((1, 2, 3))
        bright = x[:, :, OPPOSITE[0], OPPOSITE[1]].mean((1, 2, 3))
        return self.head(torch.stack([torch.relu(red), bright], dim=1))


def region(slices: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[slices] = True
    return mask


def images(n: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 50, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
    x[:, CORNER[0], CORNER[1]] = (230, 30, 20)
    x[:, OPPOSITE[0], OPPOSITE[1]] = 220
    return x


@pytest.fixture(scope="module")
def net() -> RegionNet:
    return RegionNet().eval()


def test_the_target_is_the_standardised_feature_activation(net):
    x = images(4)
    spec = InputSpec()
    mean, std = np.array([0.2, 0.4]), np.array([0.5, 2.0])
    with FeatureExtractor(net) as fx, torch.inference_mode():
        _, feats = fx(spec.transform(x))
    with FeatureActivation(net, [1, 0], input_spec=spec, mean=mean, std=std) as target:
        values = target(x)
        column = target.column(0)(x)
    expected = (feats.numpy() - mean) / std
    assert values.shape == (4, 2)
    assert np.allclose(values, expected[:, [1, 0]], atol=1e-6)
    assert np.allclose(column[:, 0], expected[:, 0], atol=1e-6)
    assert target.images_seen == 8


def test_lime_lands_on_each_features_region_not_on_the_class(net):
    x = images(2)
    explainer = LimeFeatureExplainer(num_samples=300, random_state=0)
    with FeatureActivation(net, [0, 1]) as target:
        redness = [explainer.explain(img, target.column(0), feature=0) for img in x]
        brightness = [explainer.explain(img, target.column(1), feature=1) for img in x]
    for e in redness:  # each corner is 25 of 256 pixels
        assert positive_share_inside(e, region(CORNER)) > 0.8
        assert e.feature == 0 and e.score > 0.8
    for e in brightness:
        assert positive_share_inside(e, region(OPPOSITE)) > 0.8

    # the class probability the head computes from feature 1 alone would point elsewhere
    def class_one(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(net(InputSpec().transform(batch)), 1)[:, 1:].numpy()

    by_class = explainer.explain(x[0], class_one)
    assert positive_share_inside(by_class, region(CORNER)) < 0.1


def test_lime_samples_go_through_the_model_in_one_batched_call(net):
    x = images(1)[0]
    with FeatureActivation(net, 0) as target:
        e = LimeFeatureExplainer(num_samples=250).explain(x, target)
        assert target.forward_calls == 1 and target.images_seen == 250
        assert 0 < e.forward_seconds <= e.seconds
    with FeatureActivation(net, 0) as target:
        LimeFeatureExplainer(num_samples=250, batch_size=100).explain(x, target)
        assert target.forward_calls == 3
    with FeatureActivation(net, 0, batch_size=64) as target:
        target(np.repeat(x[None], 130, axis=0))
        assert target.forward_calls == 3


def test_adaptive_sample_size_stops_once_the_weights_settle_and_keeps_the_full_runs_answer(net):
    """analysis.lime_convergence: fewer perturbed images, the same map as every sample gives."""
    x = images(2)
    full = LimeFeatureExplainer(num_samples=2000, random_state=0)
    quick = LimeFeatureExplainer(num_samples=2000, convergence=0.95, random_state=0)
    with FeatureActivation(net, [0, 1]) as target:
        slow = [full.explain(img, target.column(0), feature=0) for img in x]
        seen = target.images_seen
        fast = [quick.explain(img, target.column(0), feature=0) for img in x]
        fast_seen = target.images_seen - seen
        many = quick.explain_many(x[0], target, columns=[0, 1], features=[0, 1])
    assert [e.num_samples for e in slow] == [2000, 2000]
    assert all(e.num_samples < 2000 for e in fast) and fast_seen == sum(e.num_samples for e in fast)
    assert fast_seen * 3 <= seen
    for a, b in zip(fast, slow):
        assert np.corrcoef(a.weights, b.weights)[0, 1] > 0.95
        assert positive_share_inside(a, region(CORNER)) > 0.8
    # several columns stop together, once every one of them has settled
    assert many[0].num_samples == many[1].num_samples < 2000
    assert positive_share_inside(many[1], region(OPPOSITE)) > 0.8
    with pytest.raises(ParameterError, match="convergence"):
        LimeFeatureExplainer(convergence=1.5)


def test_out_of_memory_halves_the_batch_and_gives_the_same_values():
    x = np.repeat(images(1), 200, axis=0)
    with FeatureActivation(RegionNet().eval(), [0, 1]) as target:
        reference = target(x)
    with FeatureActivation(RegionNet(max_batch=60).eval(), [0, 1]) as target:
        values = target(x)
        assert target.forward_calls >= 4
    assert np.allclose(values, reference)


def test_explanations_are_seeded(net):
    x = images(1)[0]
    with FeatureActivation(net, 0) as target:
        a = LimeFeatureExplainer(num_samples=200, random_state=3).explain(x, target)
        b = LimeFeatureExplainer(num_samples=200, random_state=3).explain(x, target)
        c = LimeFeatureExplainer(num_samples=200, random_state=4).explain(x, target)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.segments, b.segments)
    assert not np.allclose(a.weights, c.weights)


def test_lime_own_hide_colour_cannot_hide_a_uniform_patch(net):
    """Why the default hides superpixels with the image's median: LIME's default (each superpixel's
    own mean colour) leaves a uniformly coloured marker exactly as it was."""
    x = images(1)[0]
    with FeatureActivation(net, 0) as target:
        median = LimeFeatureExplainer(num_samples=200).explain(x, target)
        own = LimeFeatureExplainer(num_samples=200, hide_color="lime").explain(x, target)
    assert positive_share_inside(median, region(CORNER)) > 0.8
    # only superpixels straddling the marker's edge (mixed colours) still change when "hidden"
    assert np.abs(own.weights[np.unique(own.segments[region(CORNER)])]).sum() < \
        0.3 * np.abs(median.weights[np.unique(median.segments[region(CORNER)])]).sum()


def test_grey_models_get_their_single_channel_back():
    net = make_tiny_net()
    x = np.random.default_rng(0).integers(0, 255, size=(2, 8, 8, 1), dtype=np.uint8)
    with FeatureActivation(net, 2, channels=1) as target:
        direct = target(x)
        via_rgb = target(np.repeat(x, 3, axis=-1))
        e = LimeFeatureExplainer(num_samples=50, segmenter=Segmenter(n_segments=6)).explain(x[0, ..., 0], target)
    assert np.allclose(direct, via_rgb)
    assert e.segments.shape == (8, 8) and e.image.shape == (8, 8, 3)
    assert e.activation == pytest.approx(direct[0, 0], abs=1e-6)


def test_segmenter_gives_dense_labels_for_small_images():
    x = images(1)[0]
    for seg in (Segmenter(n_segments=20), Segmenter(method="quickshift")):
        labels = seg(x)
        assert labels.shape == (SIZE, SIZE) and labels.min() == 0
        assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1)) and labels.max() >= 2
    assert Segmenter()(x[..., 0]).shape == (SIZE, SIZE)  # grey input
    with pytest.raises(ParameterError, match="'method'"):
        Segmenter(method="watershed")


def test_bad_use_is_refused_and_hooks_never_outlive_the_target(net):
    with pytest.raises(ModelError, match="feature 7 does not exist"):
        with FeatureActivation(net, 7) as target:
            target(images(1))
    assert not net.head._forward_hooks
    with pytest.raises(ParameterError, match="'std'"):
        FeatureActivation(net, 1, std=np.array([1.0, 0.0]))
    with pytest.raises(RuntimeError, match="outside"):
        FeatureActivation(net, 0)(images(1))
    with pytest.raises(ParameterError, match="'num_samples'"):
        LimeFeatureExplainer(num_samples=1)
    with pytest.raises(ParameterError, match="'hide_color'"):
        LimeFeatureExplainer(hide_color="blur")


def test_overlay_and_region_share_by_hand():
    segments = np.array([[0, 0, 1, 1]] * 4)
    e = FeatureExplanation(feature=0, image=np.full((4, 4, 3), 100, np.uint8), segments=segments,
                           weights=np.array([3.0, -1.0]), intercept=0.0, score=1.0, activation=1.0)
    inside = np.zeros((4, 4), bool)
    inside[:, 0] = True  # half of superpixel 0
    assert positive_share_inside(e, inside) == pytest.approx(0.5)
    assert positive_share_inside(e, ~inside) == pytest.approx(0.5)
    e.weights = np.array([-1.0, -2.0])
    assert np.isnan(positive_share_inside(e, inside))
    e.weights = np.array([2.0, -2.0])
    pic = overlay(e, scale=3, boundaries=False)
    assert pic.shape == (12, 12, 3) and 0.0 <= pic.min() and pic.max() <= 1.0
    assert pic[0, 0, 1] > pic[0, 0, 0] and pic[0, -1, 0] > pic[0, -1, 1]  # green left, red right
    assert e.to_dict()["n_segments"] == 2
