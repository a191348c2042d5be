"""Conformance: the whole pipeline, from the command line, on the models and data users actually have.

Each cell saves a small model one of the ordinary ways (factory + state_dict, ``torch.export``
``.pt2``, scripted and traced TorchScript), runs ``sparsecheck run`` on it and checks that the run
finished (exit 0 or 1, a ``results.json``), took features from the layer a user would expect, and
explained and sanity-checked them on the model's own weights. Models are torchvision's resnet18,
mobilenet_v3_small, a small VisionTransformer, squeezenet1_1 (a convolutional head: no
``nn.Linear``) and a model returning an object with ``.logits``; then the other sources (timm,
a Hugging Face directory, torchvision weights from its cache) and the failure paths users hit.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from sparsecheck.cli import main
from tests.conftest import require
from tests.zoo import FAST, FORMATS, MODELS, NOT_APPLICABLE, SIZE, save_model, write_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXPECTED_LAYER = {"resnet18": "fc:input", "mobilenet_v3_small": "classifier.3:input", "vit": "heads.head:input",
                  "squeezenet1_1": "features", "logits_object": "classifier:input"}


def run(directory: Path, config: dict[str, Any], capsys: Any, *extra: str) -> tuple[int, dict[str, Any], str]:
    """``sparsecheck run`` in-process; returns the exit code, results.json (or {}) and stderr."""
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(path), "--out", str(directory / "out"), "--device", "cpu", *extra])
    err = capsys.readouterr().err
    results_path = directory / "out" / "results.json"
    return int(exit_.value.code), json.loads(results_path.read_text()) if results_path.is_file() else {}, err


def optional(name: str) -> Any:
    """An optional extra the test needs: skipped locally when missing, a failure under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError:
        require(False, f"the {name} package (pip install -e '.[test]')")


def fast_config(model: dict[str, Any], data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": model, "data": data, **FAST, "mlflow": {"enabled": False}, **extra}


def assert_finished_and_explained(code: int, results: dict[str, Any], err: str) -> None:
    assert code in (0, 1), err
    assert results["status"] in ("pass", "fail")
    assert results["sparse_layer"]["n_used_features"] >= 1
    assert not results.get("skipped"), results.get("skipped")
    assert results["interpretation"]["explained_examples"] >= 1  # LIME ran on the model
    sanity = results["feature_sanity"]
    assert sanity and all(s["spearman"] is not None for s in sanity)  # on its own randomised weights


CELLS = [(m, f) for m in MODELS for f in FORMATS if (m, f) not in NOT_APPLICABLE]


@pytest.mark.parametrize("name, fmt", CELLS, ids=[f"{m}-{f}" for m, f in CELLS])
def test_model_formats_run_end_to_end(tmp_path, capsys, name, fmt):
    code, results, err = run(tmp_path, fast_config(save_model(name, fmt, tmp_path), write_images(tmp_path)), capsys)
    assert_finished_and_explained(code, results, err)
    assert results["model"]["feature_layer"] == EXPECTED_LAYER[name]
    assert results["model"]["kind"] == {"factory": "factory", "pt2": "export"}.get(fmt, "torchscript")


@pytest.mark.parametrize("fmt", ["pt2", "scripted", "traced", "factory"])
def test_naming_the_head_is_refused_with_the_right_choice(tmp_path, capsys, fmt):
    model = save_model("resnet18", fmt, tmp_path)
    model["feature_layer"] = "fc"  # the head's output: the logits
    code, results, err = run(tmp_path, fast_config(model, write_images(tmp_path)), capsys)
    assert code == 2 and not results
    assert "feature_layer 'fc' gives the model's logits" in err and "'fc:input'" in err


@pytest.mark.parametrize("fmt", ["scripted", "traced"])
def test_torchscript_layers_are_named_as_in_the_original_module(tmp_path, capsys, fmt):
    model = save_model("mobilenet_v3_small", fmt, tmp_path)
    model["feature_layer"] = "avgpool"
    code, results, err = run(tmp_path, fast_config(model, write_images(tmp_path)), capsys)
    assert_finished_and_explained(code, results, err)
    assert results["model"]["feature_layer"] == "avgpool" and results["features"]["test"]["dim"] == 576
    model["feature_layer"] = "avgpol"
    code, _, err = run(tmp_path, fast_config(model, write_images(tmp_path)), capsys)
    assert code == 2 and "feature_layer 'avgpol' does not exist (did you mean 'avgpool'?)" in err
    assert "; layers: features, " in err and "in all)" in err  # the layers are listed


def test_timm_model_with_weights_file(tmp_path, capsys):
    timm = optional("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    torch.save(net.state_dict(), tmp_path / "resnet10t.pth")
    model = {"timm": "resnet10t", "weights": "resnet10t.pth", "factory_kwargs": {"num_classes": 3},
             "input": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    code, results, err = run(tmp_path, fast_config(model, write_images(tmp_path)), capsys)
    assert_finished_and_explained(code, results, err)
    assert results["model"]["kind"] == "timm" and results["model"]["feature_layer"] == "fc:input"


def test_hugging_face_directory_with_its_processor(tmp_path, capsys):
    transformers = optional("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=SIZE, patch_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    hidden_size=32, intermediate_size=64, num_labels=3)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "hf")
    transformers.ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3,
                                   image_std=[0.25] * 3).save_pretrained(tmp_path / "hf")
    code, results, err = run(tmp_path, fast_config({"huggingface": "hf"}, write_images(tmp_path)), capsys)
    assert_finished_and_explained(code, results, err)
    assert results["model"]["kind"] == "huggingface" and results["model"]["feature_layer"] == "classifier:input"


def test_metadata_missing_for_some_ids(tmp_path, capsys):
    data = write_images(tmp_path)
    import pandas as pd

    meta = pd.read_csv(tmp_path / "metadata.csv")
    meta.iloc[::3].to_csv(tmp_path / "metadata.csv", index=False)  # two thirds of the rows gone
    code, results, err = run(tmp_path, fast_config(save_model("resnet18", "pt2", tmp_path), data), capsys)
    assert_finished_and_explained(code, results, err)
    assert "have no metadata row" in err
    assert {r["attribute"] for r in results["accuracy_by_attribute"]} == {"site"}


def test_a_failed_first_run_does_not_break_the_next_one_in_the_same_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the embedded default: ./mlflow.db
    data = write_images(tmp_path)
    (tmp_path / "model.pt").write_text("this is not a model\n")
    bad = fast_config({"path": "model.pt"}, data)
    bad["mlflow"] = {"enabled": True, "experiment": "conformance"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    # a real process, as a user runs it: it exits while MLflow may still be creating its store
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-m", "sparsecheck.cli", "run", "config.yaml", "--out", "out"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a TorchScript file (not a zip archive)" in proc.stderr, proc.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if "mlflow.db" in p.name]
    assert leftovers in ([], ["mlflow.db"])  # no half-made store under any name
    good = fast_config(save_model("resnet18", "scripted", tmp_path), data)
    # (a TorchScript model's run logs only the sparse head, and says so under skipped: not this test's point)
    good["mlflow"] = {"enabled": True, "experiment": "conformance", "log_sparse_model": False}
    code, results, err = run(tmp_path, good, capsys)
    assert_finished_and_explained(code, results, err)
    assert results["mlflow"]["run_id"] and (tmp_path / "mlflow.db").is_file()


def test_a_half_made_store_is_explained_with_its_repair(tmp_path, capsys, monkeypatch):
    import sqlite3

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # what an interrupted migration leaves
        db.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256))")
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        db.execute("INSERT INTO alembic_version VALUES ('451aebb31d03')")
    config = fast_config(save_model("logits_object", "factory", tmp_path), write_images(tmp_path))
    config["mlflow"] = {"enabled": True}
    code, results, err = run(tmp_path, config, capsys)
    assert code == 3, err
    line = [ln for ln in err.splitlines() if ln.startswith("sparsecheck: error:")][0]
    assert "mlflow.db" in line and ("mlflow db upgrade" in line or "mv " in line)
    assert results["status"] in ("pass", "fail") and results["mlflow"] is None  # local outputs kept


def test_unreadable_model_files_say_what_they_are(tmp_path, capsys):
    data = write_images(tmp_path)
    net = __import__("tests.zoo", fromlist=["resnet18"]).resnet18()
    torch.save(net.state_dict(), tmp_path / "model.pt")  # a state_dict passed as model.path
    code, _, err = run(tmp_path, fast_config({"path": "model.pt"}, data), capsys)
    assert code == 2 and "not a TorchScript file but a state_dict" in err and "model.factory" in err
    assert "Warning" not in err and "warnings.warn" not in err, err  # no torch warnings around the line


def test_internal_errors_exit_3_and_name_the_traceback_file(tmp_path, capsys, monkeypatch):
    from sparsecheck.pipeline import run as pipeline_run

    def broken(ctx):
        raise RuntimeError("something inside sparsecheck broke")

    monkeypatch.setattr(pipeline_run, "STAGES", [pipeline_run.STAGES[0], broken])
    code, _, err = run(tmp_path, fast_config(save_model("logits_object", "factory", tmp_path),
                                             write_images(tmp_path)), capsys)
    assert code == 3
    assert "internal error: RuntimeError: something inside sparsecheck broke" in err
    where = err.split("the traceback is in ")[1].split(";")[0]
    assert "Traceback" in Path(where).read_text() and "broken" in Path(where).read_text()
    Path(where).unlink()


def test_a_failing_optional_stage_is_skipped_with_its_reason(tmp_path, capsys, monkeypatch):
    from sparsecheck.analysis import explain

    def no_sanity(*args, **kwargs):
        raise RuntimeError("this model cannot be randomised")

    monkeypatch.setattr(explain, "model_randomisation_test", no_sanity)
    code, results, err = run(tmp_path, fast_config(save_model("resnet18", "traced", tmp_path),
                                                   write_images(tmp_path)), capsys)
    assert code in (0, 1), err
    skipped = results["skipped"]
    assert skipped and skipped[0]["what"].startswith("sanity check of feature")
    assert "this model cannot be randomised" in skipped[0]["reason"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "optional step" in html and "this model cannot be randomised" in html


def test_torchscript_features_equal_the_modules_own(tmp_path):
    from sparsecheck.models import load_model
    from sparsecheck.features.taps import FeatureExtractor
    from tests.zoo import resnet18

    net = resnet18()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32))
    torch.jit.script(net).save(str(tmp_path / "s.pt"))
    torch.jit.trace(net, x).save(str(tmp_path / "t.pt"))
    for f in ("s.pt", "t.pt"):
        model = load_model(path=tmp_path / f)
        for layer in (None, "avgpool", "layer4", "layer3.1.conv2", "fc:input"):
            with FeatureExtractor(net, layer) as hooks, FeatureExtractor(model, layer) as graph:
                expected_logits, expected = hooks(x)
                logits, feats = graph(x)
            torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5, msg=f"{f} {layer}")
            torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-5)


def _photo_folder(root: Path, n_per_class: int, seed: int) -> list[Path]:
    """An ImageFolder of real image files: mixed sizes, PIL modes and formats, like a photo collection."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    modes = ["RGB", "L", "RGBA", "P", "CMYK", "LA"]
    files = []
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            h, w = int(rng.integers(24, 72)), int(rng.integers(24, 72))
            arr = rng.integers(0, 80, size=(h, w, 3), dtype=np.uint8)
            arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4, c] = 220
            mode = modes[i % len(modes)]
            img = Image.fromarray(arr).convert(mode)
            ext = ".jpg" if mode == "CMYK" or (mode in ("RGB", "L") and i % 2) else ".png"
            path = root / f"c{c}" / f"img{i}{ext}"
            img.save(path)
            files.append(path)
    return files


def test_image_folders_of_mixed_sizes_and_modes(tmp_path, capsys):
    for split, n, seed in (("train", 30, 0), ("val", 15, 1), ("test", 20, 2)):
        _photo_folder(tmp_path / split, n, seed)
    model = save_model("resnet18", "scripted", tmp_path)
    model["input"].update(resize=SIZE, crop=SIZE)
    data = {"train": "train", "val": "val", "test": "test"}
    code, results, err = run(tmp_path, fast_config(model, data), capsys)
    assert_finished_and_explained(code, results, err)
    assert results["data"]["test"]["n"] == 60 and results["data"]["test"]["image_shape"] == [SIZE, SIZE, 3]


def test_manifest_with_labels_by_name_and_metadata_columns(tmp_path, capsys):
    import pandas as pd

    files = _photo_folder(tmp_path / "photos", 35, 0)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"path": [str(f.relative_to(tmp_path)) for f in files],
                          "label": [f.parent.name for f in files],
                          "scanner": rng.choice(["s1", "s2"], len(files))})
    order = rng.permutation(len(table))
    table.iloc[order[:60]].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[order[60:]].to_parquet(tmp_path / "test.parquet", index=False)
    model = save_model("mobilenet_v3_small", "pt2", tmp_path)
    model["input"].update(size=[SIZE, SIZE])
    data = {"train": "train.csv", "test": "test.parquet", "class_names": ["c0", "c1", "c2"]}
    code, results, err = run(tmp_path, fast_config(model, data), capsys)
    assert_finished_and_explained(code, results, err)
    assert {r["attribute"] for r in results["accuracy_by_attribute"]} == {"scanner"}


def test_torchvision_weights_from_the_cache_with_their_own_preprocessing(tmp_path, capsys, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SPARSECHECK_OFFLINE", "1")
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    model = {"torchvision": "mobilenet_v3_small", "torchvision_weights": "IMAGENET1K_V1"}  # no model.input
    config = fast_config(model, write_images(tmp_path, n=(45, 30, 30)))
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2 and "SPARSECHECK_OFFLINE forbids" in err and Path(weights.url).name in err
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), cache / Path(weights.url).name)
    code, results, err = run(tmp_path, config, capsys)
    assert code in (0, 1) and results["status"] in ("pass", "fail"), err
    # resized to 256 and centre-cropped to 224, as the weights' transforms() say
    assert results["data"]["test"]["image_shape"] == [224, 224, 3], results["data"]
    assert results["model"]["source"] == "torchvision:mobilenet_v3_small:IMAGENET1K_V1"
