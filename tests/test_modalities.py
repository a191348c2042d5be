"""The modality seam: the registry, the config key, and the image implementation behind the interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsecheck.analysis.cues import Patch
from sparsecheck.config import Config
from sparsecheck.data import ImageDataset, InputSpec
from sparsecheck.errors import ConfigError, DataError, ParameterError
from sparsecheck.modalities import (
    AttributeMeasurer,
    Cue,
    ImageModality,
    InputTransform,
    InvarianceTransform,
    LocalExplainer,
    Modality,
    Perturbation,
    Split,
    get_modality,
    modality_names,
    register_modality,
)
from sparsecheck.modalities import unregister_modality
from tests.helpers import make_learned_net

BASE = {"model": {"path": "m.pt2"}, "data": {"train": "a.npz", "test": "b.npz"}}


class _Named(ImageModality):
    name = "image-twin"


def test_registry_knows_images_and_refuses_unknown_names() -> None:
    assert modality_names()[0] == "image"
    assert isinstance(get_modality(), ImageModality) and get_modality("image") is get_modality()
    with pytest.raises(ConfigError, match=r"data.modality: no modality 'smell'") as info:
        get_modality("smell")
    assert info.value.key == "data.modality"
    with pytest.raises(ParameterError, match="already registered"):
        register_modality(ImageModality())
    with pytest.raises(ParameterError, match="must be a Modality"):
        register_modality(object())  # type: ignore[arg-type]


def test_config_picks_the_modality_and_checks_it() -> None:
    assert Config.model_validate(BASE).data.modality == "image"
    with pytest.raises(Exception, match="no modality 'smell'"):
        Config.model_validate({**BASE, "data": {**BASE["data"], "modality": "smell"}})
    twin = register_modality(_Named())
    try:
        cfg = Config.model_validate({**BASE, "data": {**BASE["data"], "modality": "image-twin"}})
        assert get_modality(cfg.data.modality) is twin
    finally:
        unregister_modality("image-twin")


def test_declared_interventions_are_parsed_by_the_modality() -> None:
    ok = {**BASE["data"], "interventions": {"mark": {"value": "yes", "put": {"type": "patch"}}}}
    assert Config.model_validate({**BASE, "data": ok}).data.interventions["mark"]["value"] == "yes"
    bad = {**BASE["data"], "interventions": {"mark": {"value": "yes", "put": {"type": "sticker"}}}}
    with pytest.raises(Exception, match="data.interventions.mark"):
        Config.model_validate({**BASE, "data": bad})


def test_image_split_is_a_split_and_describes_itself() -> None:
    images = get_modality("image")
    x = np.zeros((6, 8, 8), np.uint8)
    split = images.load_split((x, np.arange(6) % 2), name="toy")
    assert isinstance(split, Split) and isinstance(split, ImageDataset)
    assert split.batch(slice(0, 3)).shape == (3, 8, 8, 1)
    assert images.describe_split(split) == {"image_shape": [8, 8, 1]}
    assert isinstance(images.input_transform(Config.model_validate(BASE)), InputTransform)


def test_reconcile_refuses_splits_of_different_sizes_and_drops_the_geometry() -> None:
    images = get_modality("image")
    a = images.load_split((np.zeros((4, 8, 8), np.uint8), np.zeros(4, int)), name="a")
    b = images.load_split((np.zeros((4, 9, 9), np.uint8), np.zeros(4, int)), name="b")
    with pytest.raises(DataError, match="image shapes differ between splits"):
        images.reconcile_splits({"train": a, "test": b}, InputSpec())
    splits, spec = images.reconcile_splits({"train": a, "test": a}, InputSpec(size=(8, 8)))
    assert spec.geometry is None and set(splits) == {"train", "test"}


def test_explainer_probes_attributes_and_cues_keep_their_contracts() -> None:
    images = get_modality("image")
    assert isinstance(images.explainer(num_samples=20, seed=3), LocalExplainer)
    x = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 1), dtype=np.uint8)
    probes = images.sanity_probes(x)
    assert probes.shape == (8, 8, 8, 1) and np.array_equal(probes[2:4], 255 - x)
    assert isinstance(images.automatic_attributes(seed=0), AttributeMeasurer)
    put, remove = images.parse_intervention({"put": {"type": "patch", "colour": [255, 255, 255]}}, key="k")
    assert isinstance(put, Cue) and remove is None
    assert put.apply_labelled(x, None).shape == x.shape


def test_estimated_cue_of_a_planted_patch() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 120, size=(240, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 120)
    has = rng.random(240) < 0.5
    x[has] = Patch(region="top-left", size=0.25, colour=(255, 255, 255)).apply(x[has])
    est = get_modality("image").estimate_cue(x, has, labels, seed=0)
    assert est is not None and isinstance(est.put, Cue)
    cued = est.put.apply_labelled(x[~has][:8], labels[~has][:8])
    assert cued[:, :3, :3].mean() > 200  # the estimated cue puts the bright corner on


def test_invariance_transforms_check_magnitudes_and_apply_to_raw_batches() -> None:
    transforms = get_modality("image").invariance_transforms()
    assert set(transforms) == {"hflip", "brightness", "noise", "fgsm"}
    assert all(isinstance(t, InvarianceTransform) for t in transforms.values())
    with pytest.raises(ValueError, match="noise needs a magnitude > 0"):
        transforms["noise"].check_magnitude(0.0)
    x = np.full((3, 8, 8, 1), 100, np.uint8)
    gen = torch.Generator().manual_seed(0)
    brighter = transforms["brightness"].apply(x, Perturbation(magnitude=0.1, generator=gen))
    assert torch.allclose(brighter, torch.full((3, 8, 8, 1), 125.5))
    net = make_learned_net()
    moved = transforms["fgsm"].apply(x, Perturbation(magnitude=0.05, generator=gen, module=net,
                                                     transform=InputSpec(), predicted=torch.zeros(3, dtype=torch.long)))
    assert moved.shape == (3, 8, 8, 1) and not torch.equal(moved, torch.as_tensor(x, dtype=torch.float32))
    assert transforms["fgsm"].uses_gradient and not transforms["noise"].uses_gradient


def test_every_method_of_the_interface_is_implemented_by_images() -> None:
    abstract = {name for name in dir(Modality) if getattr(getattr(Modality, name), "__isabstractmethod__", False)}
    assert abstract == {"load_split", "input_transform", "render_card", "render_cue", "explainer",
                        "automatic_attributes", "parse_intervention", "estimate_cue", "invariance_transforms"}
    ImageModality()  # instantiable: nothing abstract is left
