from pathlib import Path

import numpy as np
import pytest
import torch

from sparsecheck.data import ImageDataset, InputSpec, load_dataset, load_metadata
from sparsecheck.models import fingerprint_module, load_model
from sparsecheck.errors import DataError, ModelError
from tests.helpers import make_tiny_net, write_metadata, write_npz


def test_npz_round_trip_and_ids(tmp_path):
    ids = write_npz(tmp_path / "d.npz", 12)
    ds = load_dataset(tmp_path / "d.npz", name="d")
    assert len(ds) == 12 and ds.image_shape == (8, 8, 1)
    assert ds.ids.tolist() == ids.tolist()
    assert ds.batch(slice(0, 5)).shape == (5, 8, 8, 1)


def test_npz_without_ids_gets_positional_ids(tmp_path):
    write_npz(tmp_path / "d.npz", 4, with_ids=False)
    assert ImageDataset.from_npz(tmp_path / "d.npz", name="s").ids.tolist() == ["s/0", "s/1", "s/2", "s/3"]


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((4, 8), np.uint8), np.zeros(4, int), "shape (4, 8)"),
    (np.zeros((4, 8, 8), np.float32), np.zeros(4, int), "dtype float32"),
    (np.zeros((4, 8, 8), np.uint8), np.zeros(3, int), "'y' must have shape (4,)"),
    (np.zeros((4, 8, 8, 2), np.uint8), np.zeros(4, int), "C in (1, 3)"),
])
def test_bad_npz_arrays_are_named(tmp_path, x, y, message):
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(DataError) as err:
        ImageDataset.from_npz(tmp_path / "bad.npz")
    assert message in str(err.value) and "bad.npz" in str(err.value)


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset(tmp_path)
    assert len(ds) == 6 and ds.class_names == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.ids[0] == "cat/0.png" and ds.batch(slice(0, 4)).shape == (4, 6, 6, 3)
    with pytest.raises(DataError, match="not in data.class_names"):
        ImageDataset.from_folder(tmp_path, class_names=["cat"])


def test_metadata_join_and_missing_ids(tmp_path):
    write_metadata(tmp_path / "m.csv", [f"ex{i}" for i in range(10)])
    meta = load_metadata(tmp_path / "m.csv", np.array(["ex3", "ex1"]))
    assert meta["id"].tolist() == ["ex3", "ex1"]
    partial = load_metadata(tmp_path / "m.csv", np.array(["ex1", "zz1", "zz2"]))  # gaps: missing values
    assert partial["id"].tolist() == ["ex1", "zz1", "zz2"]
    assert partial["colour"].notna().tolist() == [True, False, False]
    with pytest.raises(DataError) as err:  # no id matches at all: the id column is wrong
        load_metadata(tmp_path / "m.csv", np.array(["zz1", "zz2"]))
    assert "none of the 2 example ids has a metadata row" in str(err.value) and "ex0" in str(err.value)


def test_metadata_parquet(tmp_path):
    import pandas as pd

    pd.DataFrame({"id": ["a", "b"], "k": [1, 2]}).to_parquet(tmp_path / "m.parquet")
    assert load_metadata(tmp_path / "m.parquet", np.array(["b"]))["k"].tolist() == [2]


def test_input_spec_resize_channels_normalise():
    x = np.full((2, 4, 4), 255, np.uint8)
    t = InputSpec(mean=(0.5,), std=(0.5,), size=(8, 8), channels=3).transform(x)
    assert t.shape == (2, 3, 8, 8) and torch.allclose(t, torch.ones_like(t))


def test_models_from_every_source_agree(tmp_path):
    net = make_tiny_net()
    x = torch.randn(3, 1, 8, 8)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    expected = net(x)
    for model in (load_model(path=tmp_path / "m.pt2"), load_model(path=tmp_path / "m.pt"),
                  load_model(factory="tests.helpers:make_tiny_net", weights=tmp_path / "w.pt")):
        assert torch.allclose(model.module(x), expected, atol=1e-5), model.kind
    assert load_model(factory="tests.helpers:make_tiny_net", weights=tmp_path / "w.pt").fingerprint() == \
        fingerprint_module(net)


def test_model_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        load_model(path=tmp_path / "nope.pt2")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        load_model(path=tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="cannot import factory"):
        load_model(factory="no_such_pkg.mod:f")
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ModelError, match="does not fit the model"):
        load_model(factory="tests.helpers:make_tiny_net", weights=tmp_path / "w.pt")


def test_torchvision_weights_through_torchvisions_cache_and_offline_switch(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("SPARSECHECK_OFFLINE", "1")  # nothing may be downloaded here
    with pytest.raises(ModelError, match="not in torchvision's cache and SPARSECHECK_OFFLINE forbids") as err:
        load_model(torchvision="resnet18", torchvision_weights="IMAGENET1K_V1")
    assert "resnet18-f37072fd.pth" in str(err.value)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), cached)  # a pre-filled cache, as torchvision leaves it
    model = load_model(torchvision="resnet18", torchvision_weights="IMAGENET1K_V1")
    assert model.fingerprint() == fingerprint_module(reference)
    # the weights' own preprocessing (resize 256, centre-crop 224, ImageNet statistics)
    assert model.preprocessing == {"scale": 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                   "resize": 256, "crop": 224}
    with pytest.raises(ModelError, match="no weights"):
        load_model(torchvision="resnet18", torchvision_weights="NOPE")


def test_the_same_id_in_two_splits_is_a_warning_with_the_count(tmp_path, caplog):
    from sparsecheck.config import parse_config
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import load_stage
    from tests.helpers import write_project

    raw = write_project(tmp_path)
    with np.load(tmp_path / "test.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["id"][:4] = [f"train-{i}" for i in range(4)]  # four test examples carry training ids
    np.savez(tmp_path / "test.npz", **arrays)
    caplog.set_level("WARNING", logger="sparsecheck")
    run_pipeline(parse_config(raw, base_dir=tmp_path), None, device="cpu", stages=[load_stage])
    shared = [r.getMessage() for r in caplog.records if "ids are in both" in r.getMessage()]
    assert shared == ["4 ids are in both the train and the test split (e.g. train-0, train-1, train-2): each is one "
                      "example twice (a leak between the splits) or two examples sharing one id and one metadata row"]
    caplog.clear()
    write_project(tmp_path)  # distinct ids again: no warning
    run_pipeline(parse_config(raw, base_dir=tmp_path), None, device="cpu", stages=[load_stage])
    assert not [r for r in caplog.records if "ids are in both" in r.getMessage()]
