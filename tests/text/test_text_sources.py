"""Conformance for text: every text model source runs the whole pipeline from the command line.

Each cell saves a small text classifier one of the ways users keep them: Hugging Face directories
of BERT-, DistilBERT- and RoBERTa-shaped models built from a config with random weights and saved
with ``save_pretrained`` (tokenizer included), a factory with a safetensors state_dict and a named
tokenizer, and MLflow models of the ``transformers`` and ``pytorch`` flavours. Each run must finish
(exit 0 or 1, a results.json), take features at the input of the classification head, name the
classes by the model's ``id2label``, and explain and sanity-check a feature with LIME text on the
model's own weights. Then the refusals: custom code, pickled weights, no tokenizer, an image
model named as text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sparsecheck.cli import main
from tests.text.zoo import CLASSES, EXPECTED_TEXT_LAYER, FAST_TEXT, make_bag_of_tokens, save_hf, tokenizer, \
    write_text_splits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(directory: Path, config: dict[str, Any], capsys: Any, *extra: str) -> tuple[int, dict[str, Any], str]:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(path), "--out", str(directory / "out"), "--device", "cpu", *extra])
    err = capsys.readouterr().err
    results = directory / "out" / "results.json"
    return int(exit_.value.code), json.loads(results.read_text()) if results.is_file() else {}, err


def assert_text_run(code: int, results: dict[str, Any], err: str, layer: str) -> None:
    assert code in (0, 1), err
    assert results["modality"] == "text"
    assert results["model"]["feature_layer"] == layer
    assert set(results["sparse_layer"]["features_per_class"]) <= set(CLASSES)
    assert results["interpretation"]["explained_examples"] >= 1  # LIME text ran on the model
    sanity = results["feature_sanity"]
    assert sanity and all(s["spearman"] is not None for s in sanity)  # on its own randomised weights
    card = next(c for c in results["feature_cards"] if c["lime"])
    assert card["words"]["positive"] or card["words"]["negative"]
    assert results["data"]["test"]["truncated"]["max_length"] >= 2


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_hugging_face_directories_of_each_shape(tmp_path, capsys, arch):
    save_hf(arch, tmp_path / "model")
    config = {"model": {"huggingface": "model"}, "data": write_text_splits(tmp_path), **FAST_TEXT}
    code, results, err = run(tmp_path, config, capsys)
    assert_text_run(code, results, err, EXPECTED_TEXT_LAYER[arch])
    assert results["model"]["kind"] == "huggingface"
    assert (tmp_path / "out" / "report.html").is_file()


def test_factory_with_safetensors_weights_and_a_named_tokenizer(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file(make_bag_of_tokens(vocab_size=len(tokenizer())).state_dict(), str(tmp_path / "weights.safetensors"))
    tokenizer().backend_tokenizer.save(str(tmp_path / "tokenizer.json"))  # the tokenizers library's own file
    config = {"model": {"factory": "tests.text.zoo:make_bag_of_tokens", "factory_kwargs": {"vocab_size": len(tokenizer())},
                        "weights": "weights.safetensors", "tokenizer": "tokenizer.json", "max_length": 32},
              "data": {**write_text_splits(tmp_path), "class_names": CLASSES}, **FAST_TEXT}
    code, results, err = run(tmp_path, config, capsys)
    assert_text_run(code, results, err, "head:input")
    assert results["model"]["kind"] == "factory"
    assert results["data"]["test"]["truncated"]["max_length"] == 32


def test_mlflow_transformers_and_pytorch_flavours(tmp_path, capsys, monkeypatch):
    import mlflow

    from tests.text.zoo import hf_model

    uri = f"sqlite:///{tmp_path / 'models.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    tok = tokenizer()
    with mlflow.start_run():
        mlflow.transformers.log_model({"model": hf_model("distilbert"), "tokenizer": tok}, name="hf",
                                      task="text-classification", registered_model_name="sentiment-hf")
        mlflow.pytorch.log_model(make_bag_of_tokens(vocab_size=len(tok)), name="torch",
                                 registered_model_name="sentiment-torch", pip_requirements=["torch"],
                                 input_example=np.ones((2, 8), np.int64))  # pt2, MLflow's default format
    tok.save_pretrained(str(tmp_path / "tok"))
    data = write_text_splits(tmp_path)
    code, results, err = run(tmp_path, {"model": {"uri": "models:/sentiment-hf/1"}, "data": data, **FAST_TEXT,
                                        "mlflow": {"enabled": False, "tracking_uri": uri}}, capsys)
    assert_text_run(code, results, err, "classifier:input")
    assert results["mlflow_model"]["name"] == "sentiment-hf"
    (tmp_path / "out").rename(tmp_path / "out-hf")
    code, results, err = run(tmp_path, {"model": {"uri": "models:/sentiment-torch/1", "tokenizer": "tok"},
                                        "data": {**data, "class_names": CLASSES}, **FAST_TEXT,
                                        "mlflow": {"enabled": False, "tracking_uri": uri}}, capsys)
    assert_text_run(code, results, err, "head:input")
    assert results["model"]["kind"] == "mlflow"


# --------------------------------------------------------------------------- refusals
def _config(tmp_path: Path, **model: Any) -> dict[str, Any]:
    return {"model": {"huggingface": "model", **model}, "data": write_text_splits(tmp_path), **FAST_TEXT}


def test_custom_code_in_a_directory_is_refused(tmp_path, capsys):
    save_hf("bert", tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForSequenceClassification": "evil.EvilModel"}
    (tmp_path / "model" / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(tmp_path, _config(tmp_path), capsys)
    assert code == 2 and "config.json maps to custom code (auto_map)" in err and "trust_remote_code" in err


class _Boom:
    def __reduce__(self):  # unpickling would run this
        return (print, ("pwned",))


def test_pickled_weights_that_run_code_are_refused(tmp_path, capsys):
    save_hf("bert", tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").unlink()
    import torch

    torch.save({"weights": _Boom()}, str(tmp_path / "model" / "pytorch_model.bin"))
    code, _, err = run(tmp_path, _config(tmp_path), capsys)
    assert code == 2 and "pytorch_model.bin" in err and "weights_only" in err and "pwned" not in err


def test_a_directory_without_its_tokenizer_and_an_image_model_named_as_text(tmp_path, capsys):
    from tests.text.zoo import hf_model

    hf_model("bert").save_pretrained(str(tmp_path / "model"))
    code, _, err = run(tmp_path, _config(tmp_path), capsys)
    assert code == 2 and "no tokenizer saved with the model" in err
    config = _config(tmp_path)
    config["data"]["modality"] = "image"
    tokenizer().save_pretrained(str(tmp_path / "model"))
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2 and "is a text model (it comes with a tokenizer): set data.modality: text" in err


def test_text_settings_without_a_text_run_are_refused(tmp_path, capsys):
    save_hf("bert", tmp_path / "model")
    config = _config(tmp_path)
    config["data"]["modality"] = "image"
    config["data"]["text_column"] = "sentence"
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2 and "data.text_column goes with data.modality: text" in err
    config = _config(tmp_path)
    config["model"]["input"] = {"scale": 255}
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2 and "model.input" in err and "tokenizer" in err
