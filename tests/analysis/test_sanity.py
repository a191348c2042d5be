"""Tests of the model-randomisation sanity check (Adebayo et al. 2018) for feature explanations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from sparsecheck.analysis.lime_features import FeatureActivation, LimeFeatureExplainer
from sparsecheck.analysis.sanity import (
    EdgeAttributor,
    map_correlation,
    model_randomisation_test,
    randomised_models,
)
from sparsecheck.errors import ModelError, ParameterError
from sparsecheck.modalities import get_modality
from sparsecheck.models import Model, fingerprint_module

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def corner_net() -> nn.Sequential:
    """Pixels → 4 hidden units → 2 classes. Unit 0 measures the redness of the top-left 5×5 corner
    through its (learned-looking) weights, so its focus lives in parameters a randomisation redraws."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        w = torch.zeros(4, 3, SIZE, SIZE)
        w[0, 0, :5, :5] = 1.0
        w[0, 1:, :5, :5] = -0.5
        w[1:, :, 11:, 11:] = 0.3
        net[1].weight.copy_(w.reshape(4, -1) / 25.0)
        net[1].bias.zero_()
        net[3].weight.copy_(torch.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]))
    return net.eval()


def images(n: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
    x[:, :5, :5] = (230, 30, 20)
    x[:, 11:, 11:] = 200
    return x


def probes(x: np.ndarray) -> np.ndarray:
    """The image modality's probes: the images, their negatives and mirrors."""
    return get_modality("image").sanity_probes(x)


class Counting:
    """Wraps an attributor and counts its calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def attribute(self, image, target):
        self.calls += 1
        return self.inner.attribute(image, target)


def test_an_explainer_that_ignores_the_model_is_caught():
    edge = Counting(EdgeAttributor())
    result = model_randomisation_test(corner_net(), 0, images(), probes=probes(images()), explainer=edge)
    assert result.spearman == pytest.approx(1.0) and not result.trustworthy
    card = result.card()
    assert card["spearman"] == pytest.approx(1.0) and card["trustworthy"] is False
    changed = [s for s in result.cascade if s.changes_feature]
    assert [layer for layer, _ in card["cascade"]] == [s.layer for s in changed] and changed
    assert all(rho == pytest.approx(1.0) for _, rho in card["cascade"])
    assert all(s.spearman == pytest.approx(1.0) for s in result.cascade)


def test_lime_on_the_feature_changes_when_the_model_is_randomised():
    lime = Counting(LimeFeatureExplainer(num_samples=300, random_state=0))
    result = model_randomisation_test(corner_net(), 0, images(), probes=probes(images()), explainer=lime, cascade=True)
    assert result.spearman < 0.3 and result.trustworthy, result.to_dict()
    assert [s.layer for s in result.cascade] == ["3", "1"]
    head, hidden = result.cascade
    # randomising the head (above the feature) leaves the feature alone: not re-explained
    assert not head.changes_feature and head.spearman == pytest.approx(1.0)
    assert hidden.changes_feature
    assert lime.calls == 2 * 2  # the originals and the step that changed the feature
    d = result.to_dict()
    assert set(d) >= {"feature", "spearman", "trustworthy", "threshold", "per_example", "cascade"}
    assert len(d["per_example"]) == 2


def test_original_maps_can_be_reused_and_give_the_same_answer():
    explainer = LimeFeatureExplainer(num_samples=200, random_state=1)
    x = images()
    with FeatureActivation(corner_net(), 0) as target:
        maps = [explainer.attribute(img, target) for img in x]
    fresh = model_randomisation_test(corner_net(), 0, x, probes=probes(x), explainer=explainer, cascade=False)
    reused = model_randomisation_test(corner_net(), 0, x, probes=probes(x), explainer=explainer, cascade=False, original_maps=maps)
    assert reused.spearman == pytest.approx(fresh.spearman)
    assert [s.layer for s in reused.cascade] == ["all"]


def test_randomised_copies_cascade_from_the_top_and_leave_the_model_alone():
    net = corner_net()
    before = fingerprint_module(net)
    original = {k: v.clone() for k, v in net.state_dict().items()}
    steps = []
    for name, m in randomised_models(net, random_state=0):
        steps.append((name, {k: v.clone() for k, v in m.state_dict().items()}))
    assert fingerprint_module(net) == before
    assert [n for n, _ in steps] == ["3", "1"]
    first, second = steps[0][1], steps[1][1]
    assert not torch.equal(first["3.weight"], original["3.weight"])
    assert torch.equal(first["1.weight"], original["1.weight"])  # not yet
    assert torch.equal(second["3.weight"], first["3.weight"])  # cumulative
    assert not torch.equal(second["1.weight"], original["1.weight"])
    # seeded, and scaled like the original
    again = list(randomised_models(net, random_state=0, cascade=False))
    assert len(again) == 1 and again[0][0] == "all"
    assert torch.equal(again[0][1].state_dict()["1.weight"], second["1.weight"])
    w0, w1 = original["1.weight"], second["1.weight"]
    assert float(w1.std()) == pytest.approx(float(w0.std()), rel=0.05)
    assert float(w1.mean()) == pytest.approx(float(w0.mean()), abs=0.05 * float(w0.std()))


def test_exported_programs_are_randomised_in_a_copy():
    net = corner_net()
    program = torch.export.export(net, (torch.zeros(2, 3, SIZE, SIZE),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    model = Model(program.module(), "export", "corner.pt2", program)
    state_before = {k: v.detach().clone() for k, v in program.state_dict.items()}
    x = images(3)
    with FeatureActivation(model, [0, 1, 2]) as t:
        reference = t(x)
    names = []
    for name, randomised in randomised_models(model, random_state=2):
        names.append(name)
        assert randomised.program is not program and randomised.kind == "export"
        with FeatureActivation(randomised, [0, 1, 2]) as t:
            values = t(x)
    assert names == ["3", "1"]
    assert not np.allclose(values, reference)
    for k, v in program.state_dict.items():
        assert torch.equal(v.detach(), state_before[k])


def test_map_correlation_edge_cases():
    a = np.arange(16.0).reshape(4, 4)
    assert map_correlation(a, a) == pytest.approx(1.0)
    assert map_correlation(a, -a) == pytest.approx(-1.0)
    assert map_correlation(a, np.zeros_like(a)) == 0.0  # the explanation vanished: changed
    assert map_correlation(np.zeros_like(a), np.zeros_like(a)) == 1.0
    with pytest.raises(ParameterError, match="differ in size"):
        map_correlation(a, a[:2])


def test_bad_input_is_refused():
    with pytest.raises(ParameterError, match="'threshold'"):
        model_randomisation_test(corner_net(), 0, images(), probes=probes(images()), explainer=EdgeAttributor(), threshold=1.5)
    with pytest.raises(ParameterError, match="'images'"):
        model_randomisation_test(corner_net(), 0, np.zeros((0, 4, 4, 3), np.uint8), explainer=EdgeAttributor())
    with pytest.raises(ModelError, match="no parameters"):
        list(randomised_models(nn.Sequential(nn.Flatten())))


@pytest.mark.parametrize("save", ["script", "trace"])
def test_torchscript_models_are_randomised_in_a_copy(tmp_path, save):
    net = corner_net()
    saved = torch.jit.script(net) if save == "script" else torch.jit.trace(net, torch.zeros(1, 3, SIZE, SIZE))
    saved.save(str(tmp_path / "m.pt"))
    model = Model(torch.jit.load(str(tmp_path / "m.pt")), "torchscript", "m.pt")
    before = fingerprint_module(model.module)
    steps = [(name, fingerprint_module(m.module)) for name, m in randomised_models(model)]
    assert [name for name, _ in steps] == ["3", "1"]  # its own layer names, from the top
    assert len({fp for _, fp in steps} | {before}) == 3 and fingerprint_module(model.module) == before
    # and the LIME sanity check runs on it: the corner feature's explanation does not survive
    result = model_randomisation_test(model, 0, images(1), probes=probes(images(1)), layer="2",
                                      explainer=LimeFeatureExplainer(num_samples=200, random_state=0))
    assert result.trustworthy and result.spearman < 0.5, result
