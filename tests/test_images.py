"""Image files as they come: PIL modes, EXIF, 16 bits, mixed sizes, manifests, unreadable files.

Every image here is a real file written with PIL into ``tmp_path``; pixel values are chosen so
that a wrong conversion (clipping, a lost rotation, alpha dropped on black) shows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sparsecheck.data import (ImageDataset, ImageGeometry, InputSpec, decode_image, load_dataset,
                              resolve_num_workers)
from sparsecheck.errors import DataError, ParameterError
from sparsecheck.features.extraction import extract_features
from tests.helpers import make_tiny_net


def _noise(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    return rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def _folder(root: Path, sizes: dict[str, list[tuple[int, int]]], *, seed: int = 0, mode: str = "RGB",
            suffix: str = ".png") -> Path:
    """An ImageFolder with one image of each (height, width) per class."""
    rng = np.random.default_rng(seed)
    for cls, hw in sizes.items():
        (root / cls).mkdir(parents=True)
        for k, (h, w) in enumerate(hw):
            img = Image.fromarray(_noise(rng, h, w, 3 if mode == "RGB" else 1))
            img.save(root / cls / f"{k}{suffix}")
    return root


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------- modes
def _pixel(path: Path, channels: int | None = None) -> tuple:
    im = decode_image(path, channels)
    return im.mode, np.asarray(im)[0, 0].tolist()


def test_every_pil_mode_decodes_to_8_bit_l_or_rgb(tmp_path):
    p = tmp_path
    Image.new("L", (4, 4), 100).save(p / "l.png")
    Image.new("1", (4, 4), 1).save(p / "one.png")
    Image.new("LA", (4, 4), (0, 0)).save(p / "la.png")  # fully transparent black: white over white
    Image.new("RGB", (4, 4), (10, 20, 30)).save(p / "rgb.png")
    Image.new("RGBA", (4, 4), (255, 0, 0, 128)).save(p / "rgba.png")  # half-transparent red over white
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.save(p / "p.png")
    pal.save(p / "p_transparent.png", transparency=1)  # index 1 is transparent: white
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(p / "cmyk.jpg", quality=100)  # cyan
    assert _pixel(p / "l.png") == ("L", 100)
    assert _pixel(p / "one.png") == ("L", 255)
    assert _pixel(p / "la.png") == ("L", 255)
    assert _pixel(p / "rgb.png") == ("RGB", [10, 20, 30])
    mode, (r, g, b) = _pixel(p / "rgba.png")
    assert mode == "RGB" and r == 255 and 126 <= g <= 128 and 126 <= b <= 128
    assert _pixel(p / "p.png") == ("RGB", [0, 200, 0])
    assert _pixel(p / "p_transparent.png") == ("RGB", [255, 255, 255])
    mode, (r, g, b) = _pixel(p / "cmyk.jpg")
    assert mode == "RGB" and r < 10 and g > 245 and b > 245
    assert _pixel(p / "l.png", channels=3) == ("RGB", [100, 100, 100])


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    im = decode_image(tmp_path / "deep.png")
    assert im.mode == "L"
    assert np.asarray(im)[0].tolist() == [0, 100, 4, 128, 255]  # round(v * 255 / 65535)


def test_exif_orientation_is_applied(tmp_path):
    # stored 40 wide × 20 high, red on the left, blue on the right; orientation 6 = rotate 90° clockwise
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "a").mkdir()
    Image.fromarray(arr).save(tmp_path / "a" / "rotated.jpg", exif=exif.tobytes(), quality=95)
    img = np.asarray(decode_image(tmp_path / "a" / "rotated.jpg"))
    assert img.shape == (40, 20, 3)  # upright: now taller than wide
    assert img[2, 10, 0] > 200 and img[2, 10, 2] < 60  # the left (red) half is on top
    assert img[-3, 10, 2] > 200 and img[-3, 10, 0] < 60
    ds = ImageDataset.from_folder(tmp_path)
    assert ds.image_shape == (40, 20, 3)  # read from the header, orientation included
    assert ds.batch(slice(None)).shape == (1, 40, 20, 3)


def test_channels_are_decided_per_dataset(tmp_path):
    grey = _folder(tmp_path / "grey", {"a": [(6, 6)], "b": [(6, 6)]}, mode="L")
    Image.new("1", (6, 6), 0).save(grey / "a" / "bits.png")
    assert ImageDataset.from_folder(grey).image_shape == (6, 6, 1)
    assert ImageDataset.from_folder(grey).batch(slice(None)).shape == (3, 6, 6, 1)
    Image.new("RGB", (6, 6), (1, 2, 3)).save(grey / "b" / "colour.png")
    mixed = ImageDataset.from_folder(grey)
    batch = mixed.batch(slice(None))
    assert mixed.channels == 3 and batch.shape == (4, 6, 6, 3)
    assert (batch[0, ..., 0] == batch[0, ..., 1]).all()  # a grey image repeated into RGB


# --------------------------------------------------------------------------- geometry
def test_mixed_sizes_need_a_geometry_and_the_error_says_which_keys(tmp_path):
    root = _folder(tmp_path / "f", {"cat": [(48, 64), (50, 30)], "dog": [(20, 20)]})
    with pytest.raises(DataError) as err:
        ImageDataset.from_folder(root)
    msg = str(err.value)
    assert "differ in size" in msg and "model.input.size" in msg
    assert "model.input.resize" in msg and "model.input.crop" in msg
    with pytest.raises(DataError, match="set model.input.crop too"):
        ImageDataset.from_folder(root, geometry=ImageGeometry(resize=32))


@pytest.mark.parametrize("resize, crop", [(32, (24, 24)), (16, (24, 20)), (None, (24, 24))])
def test_resize_and_crop_match_torchvision_on_pil_images(tmp_path, resize, crop):
    import torchvision.transforms as T

    root = _folder(tmp_path / "f", {"cat": [(48, 64), (50, 30)], "dog": [(20, 20), (64, 40)]}, seed=1)
    geometry = ImageGeometry(resize=resize, crop=crop)
    ds = load_dataset(root, geometry=geometry) if resize else None
    if resize is None:  # crop alone pads and crops images of different sizes to one size too
        ds = ImageDataset.from_folder(root, geometry=geometry)
    ops = ([T.Resize(resize)] if resize else []) + [T.CenterCrop(crop)]
    reference = np.stack([np.asarray(T.Compose(ops)(Image.open(f).convert("RGB"))) for f in ds._files])
    batch = ds.batch(slice(None))
    assert batch.shape == (4, *crop, 3) and ds.image_shape == (*crop, 3)
    np.testing.assert_array_equal(batch, reference)


def test_size_resizes_every_file_to_one_shape(tmp_path):
    root = _folder(tmp_path / "f", {"cat": [(48, 64)], "dog": [(20, 20)]})
    ds = load_dataset(root, geometry=InputSpec(size=(16, 12)).geometry)
    assert ds.batch(slice(None)).shape == (2, 16, 12, 3) and ds.image_shape == (16, 12, 3)


def test_spec_geometry_on_tensors_matches_torchvision_tensor_transforms():
    import torchvision.transforms.v2 as T

    x = np.random.default_rng(0).integers(0, 256, (2, 30, 50, 3), dtype=np.uint8)
    spec = InputSpec(resize=20, crop=(16, 16))
    ours = spec.transform(x)
    ref = T.Compose([T.Resize(20, antialias=True), T.CenterCrop(16)])(
        torch.as_tensor(x).permute(0, 3, 1, 2).float()) / 255
    assert ours.shape == (2, 3, 16, 16)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert spec.without_geometry().transform(x).shape == (2, 3, 30, 50)


def test_geometry_parameters_are_checked():
    with pytest.raises(ParameterError, match="exclude each other"):
        ImageGeometry(size=(8, 8), resize=8)
    with pytest.raises(ParameterError, match="'crop' parameter"):
        ImageGeometry(crop=(0, 4))


def test_workers_give_the_same_features_on_mixed_size_files(tmp_path):
    root = _folder(tmp_path / "f", {"a": [(9, 12), (8, 8), (16, 10)], "b": [(12, 9), (10, 10)]}, mode="L")
    ds = load_dataset(root, geometry=ImageGeometry(resize=8, crop=(8, 8)))
    net = make_tiny_net()
    one = extract_features(net, ds, InputSpec(), batch_size=2, device="cpu", num_workers=0)
    two = extract_features(net, ds, InputSpec(), batch_size=2, device="cpu", num_workers=2)
    np.testing.assert_array_equal(one.features, two.features)
    assert one.features.shape == (5, 6)


def test_num_workers_auto_is_for_files_only(tmp_path):
    import os

    root = _folder(tmp_path / "f", {"a": [(4, 4)]})
    assert resolve_num_workers("auto", load_dataset(root)) == min(4, os.cpu_count() or 1)
    arrays = ImageDataset.from_arrays(np.zeros((2, 4, 4), np.uint8), np.zeros(2, int))
    assert resolve_num_workers("auto", arrays) == 0 and resolve_num_workers(3, arrays) == 3


# --------------------------------------------------------------------------- manifests
def _images(root: Path, names: list[str], *, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_noise(rng, 6, 6)).save(root / n)


def test_manifest_with_class_names_and_metadata(tmp_path):
    _images(tmp_path / "imgs", ["x/a.png", "x/b.png", "c.png"])
    pd.DataFrame({"path": ["imgs/x/a.png", "imgs/x/b.png", "imgs/c.png"], "label": ["dog", "cat", "dog"],
                  "site": ["n", "s", "n"], "age": [1, 2, 3]}).to_csv(tmp_path / "m.csv", index=False)
    ds = load_dataset(tmp_path / "m.csv")
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [1, 0, 1]
    assert ds.ids.tolist() == ["imgs/x/a.png", "imgs/x/b.png", "imgs/c.png"]  # id defaults to the path
    assert ds.metadata.columns.tolist() == ["id", "site", "age"] and ds.metadata["site"].tolist() == ["n", "s", "n"]
    assert ds.batch(slice(None)).shape == (3, 6, 6, 3)
    np.testing.assert_array_equal(ds.image(2), np.asarray(Image.open(tmp_path / "imgs/c.png")))
    given = load_dataset(tmp_path / "m.csv", class_names=["dog", "cat", "bird"])
    assert given.labels.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match=r"labels \['cat'\] are not in data.class_names"):
        load_dataset(tmp_path / "m.csv", class_names=["dog"])


def test_manifest_parquet_with_index_labels_and_ids(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    pd.DataFrame({"id": ["one", "two"], "path": [str(tmp_path / "a.png"), "b.png"], "label": [2, 0],
                  "weather": ["rain", "sun"]}).to_parquet(tmp_path / "m.parquet")
    ds = load_dataset(tmp_path / "m.parquet")
    assert ds.ids.tolist() == ["one", "two"] and ds.labels.tolist() == [2, 0] and ds.class_names is None
    assert ds.metadata.to_dict("list") == {"id": ["one", "two"], "weather": ["rain", "sun"]}
    sub = ds.subset(np.array([1]))
    assert sub.metadata["weather"].tolist() == ["sun"] and sub.ids.tolist() == ["two"]


def test_manifest_errors_name_the_problem(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["cat", "3"]}).to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(DataError, match="mixes class names and integer indices"):
        load_dataset(tmp_path / "mixed.csv")
    pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "nopath.csv", index=False)
    with pytest.raises(DataError, match="needs a 'path' column"):
        load_dataset(tmp_path / "nopath.csv")
    pd.DataFrame({"path": ["a.png", "gone.png"], "label": [0, 1]}).to_csv(tmp_path / "gone.csv", index=False)
    with pytest.raises(DataError, match=r"gone\.png: image file not found"):
        load_dataset(tmp_path / "gone.csv")


def _pipeline_config(tmp_path: Path, **data: object) -> object:
    from sparsecheck.config import parse_config

    raw = {"model": {"factory": "tests.helpers:make_tiny_net", "input": {"resize": 8, "crop": 8}},
           "data": {"train": "train.csv", "test": "test.csv", **data},
           "features": {"cache_dir": None, "num_workers": 0}, "mlflow": {"enabled": False}}
    return parse_config(raw, base_dir=tmp_path)


def _grey_manifest(tmp_path: Path, split: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name = f"{split}/{i}.png"
        (tmp_path / split).mkdir(exist_ok=True)
        Image.fromarray(_noise(rng, int(rng.integers(8, 20)), int(rng.integers(8, 20)), 1)).save(tmp_path / name)
        rows.append({"path": name, "label": i % 3, "colour": ["red", "blue"][i % 2]})
    pd.DataFrame(rows).to_csv(tmp_path / f"{split}.csv", index=False)
    return [r["path"] for r in rows]


def test_pipeline_uses_manifest_metadata_and_merges_data_metadata(tmp_path):
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import extract_stage, load_stage

    train_ids = _grey_manifest(tmp_path, "train", 12, 0)
    test_ids = _grey_manifest(tmp_path, "test", 9, 1)
    ctx = run_pipeline(_pipeline_config(tmp_path), None, device="cpu", stages=[load_stage, extract_stage])
    assert ctx.results["data"]["train"]["image_shape"] == [8, 8, 1]
    meta = ctx.splits["test"].metadata
    assert meta["id"].tolist() == test_ids and meta["colour"].tolist()[:2] == ["red", "blue"]
    assert ctx.attributes == ["colour"]
    assert "skipped_unreadable" not in ctx.results["data"]["train"]

    table = pd.DataFrame({"id": train_ids + test_ids, "colour": "green", "site": "north"})
    table.to_csv(tmp_path / "meta.csv", index=False)
    ctx = run_pipeline(_pipeline_config(tmp_path, metadata="meta.csv"), None, device="cpu",
                       stages=[load_stage, extract_stage])
    meta = ctx.splits["test"].metadata
    assert sorted(meta.columns) == ["colour", "id", "site"] and set(meta["colour"]) == {"green"}


# --------------------------------------------------------------------------- unreadable files
@pytest.fixture
def folder_with_truncated_jpeg(tmp_path):
    root = _folder(tmp_path / "f", {"a": [(32, 32)] * 3, "b": [(32, 32)] * 3}, suffix=".jpg")
    _truncate(root / "b" / "1.jpg", 0.8)  # past the header: only decoding finds it
    return root


def test_truncated_jpeg_is_a_data_error_naming_the_file(folder_with_truncated_jpeg):
    ds = ImageDataset.from_folder(folder_with_truncated_jpeg)  # the header is intact: found on decoding
    bad = folder_with_truncated_jpeg / "b" / "1.jpg"
    with pytest.raises(DataError) as err:
        ds.batch(slice(None))
    assert err.value.path == bad and str(err.value).startswith(str(bad)) and "truncated" in str(err.value)


def test_corrupt_file_inside_a_dataloader_worker_names_the_file(folder_with_truncated_jpeg):
    ds = ImageDataset.from_folder(folder_with_truncated_jpeg)
    with pytest.raises(DataError) as err:
        extract_features(make_tiny_net(), ds, InputSpec(channels=1), batch_size=2, device="cpu", num_workers=2)
    bad = folder_with_truncated_jpeg / "b" / "1.jpg"
    assert err.value.path == bad and "Traceback" not in str(err.value) and "worker" not in str(err.value)
    assert err.value.exit_code == 2


def test_skip_unreadable_drops_and_counts_bad_files(folder_with_truncated_jpeg, caplog):
    root = folder_with_truncated_jpeg
    (root / "a" / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"junk\.png: cannot read image"):
        ImageDataset.from_folder(root)
    with caplog.at_level(logging.WARNING, logger="sparsecheck.data"):
        ds = ImageDataset.from_folder(root, skip_unreadable=True, num_workers=2)
    assert len(ds) == 5 and "b/1.jpg" not in ds.ids.tolist() and "a/junk.png" not in ds.ids.tolist()
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]  # labels stay with their images
    assert sorted(Path(f).name for f, _ in ds.skipped_unreadable) == ["1.jpg", "junk.png"]
    assert "skipped 2 unreadable of 7 images" in caplog.text
    assert ds.batch(slice(None)).shape == (5, 32, 32, 3)


def test_pipeline_reports_skipped_files(tmp_path):
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import extract_stage, load_stage

    _grey_manifest(tmp_path, "train", 12, 0)
    _grey_manifest(tmp_path, "test", 6, 1)
    _truncate(tmp_path / "train" / "4.png", 0.6)
    with pytest.raises(DataError, match=r"train/4\.png: cannot decode image"):
        run_pipeline(_pipeline_config(tmp_path), None, device="cpu", stages=[load_stage, extract_stage])
    ctx = run_pipeline(_pipeline_config(tmp_path, skip_unreadable=True), None, device="cpu",
                       stages=[load_stage, extract_stage])
    skipped = ctx.results["data"]["train"]["skipped_unreadable"]
    assert skipped["count"] == 1 and "train/4.png" in skipped["examples"][0]
    assert ctx.results["data"]["test"]["skipped_unreadable"] == {"count": 0, "examples": []}
    view = ctx.splits["train"]
    assert len(view) == 11 and "train/4.png" not in view.ids.tolist()
    assert view.metadata["id"].tolist() == view.ids.tolist()


# --------------------------------------------------------------------------- config keys
def test_config_keys_for_geometry_and_workers():
    from sparsecheck.config import parse_config
    from sparsecheck.errors import ConfigError

    def cfg(input_: dict, features: dict | None = None):
        return parse_config({"model": {"path": "m.pt2", "input": input_}, "data": {"train": "a.csv", "test": "b"},
                             "features": features or {}}, check_files=False)

    spec = cfg({"resize": 256, "crop": 224}).model.input.to_spec()
    assert spec.geometry == ImageGeometry(resize=256, crop=(224, 224))
    assert cfg({"size": [32, 48]}).model.input.to_spec().geometry == ImageGeometry(size=(32, 48))
    assert cfg({}).features.num_workers == "auto" and cfg({}).data.skip_unreadable is False
    with pytest.raises(ConfigError, match="model.input: give model.input.size .* or model.input.resize"):
        cfg({"size": [8, 8], "resize": 8})
    with pytest.raises(ConfigError, match="model.input.crop"):
        cfg({"crop": [0, 4]})
    with pytest.raises(ConfigError, match="features.num_workers: must be 'auto' or an int >= 0"):
        cfg({}, {"num_workers": -1})
