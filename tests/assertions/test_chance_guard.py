"""The implied better-than-chance guard through the command line, as a new user meets it: ImageFolder
class folders whose alphabetical order is not the model's output order, no ``data.class_names``.

The model (tests.helpers.make_learned_net) answers 0, 1, 2 for dark, mid and bright images; the
folders are named ``dark``, ``mid`` and ``bright``, which sort as bright, dark, mid."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sparsecheck.cli import main
from sparsecheck.pipeline import run as pipeline_run
from sparsecheck.pipeline import stages
from tests.helpers import brightness_images, make_learned_net

OUTPUT_ORDER = ["dark", "mid", "bright"]  # what the model's outputs 0, 1, 2 mean


@pytest.fixture(autouse=True)
def quick_pipeline(monkeypatch):
    """The real command, loading, extraction and dense evaluation, then the assertion stage."""
    monkeypatch.setattr(pipeline_run, "STAGES", [stages.load_stage, stages.extract_stage, stages.dense_stage,
                                                 stages.assertions_stage])


def _folders(root: Path, n: int, *, seed: int, wrong: float = 0.0) -> None:
    """``n`` PNG images per split in class folders; a ``wrong`` share of them in another class's folder."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        level = rng.integers(0, 3, n)
        images = brightness_images(rng, level)
        folder = np.where(rng.random(n) < wrong, (level + rng.integers(1, 3, n)) % 3, level)
        for i, (img, k) in enumerate(zip(images, folder)):
            d = root / split / OUTPUT_ORDER[k]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{split}-{i}.png")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("chance-guard")
    torch.save(make_learned_net().state_dict(), root / "weights.pt")
    _folders(root / "folders", 60, seed=0)
    _folders(root / "noisy", 240, seed=1, wrong=0.45)
    return root


def run_cli(capsys, root: Path, name: str, data: dict, assertions: list | None = None):
    cfg = {"model": {"factory": "tests.helpers:make_tiny_net", "weights": "weights.pt", "input": {"scale": 255.0}},
           "data": data, "features": {"batch_size": 32, "cache_dir": "cache"}, "mlflow": {"enabled": False},
           **({"assertions": assertions} if assertions is not None else {})}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(root / f"{name}.yaml"), "--out", str(root / f"out-{name}"), "--device", "cpu"])
    stdout, stderr = capsys.readouterr()
    return exit_.value.code, stdout, stderr, json.loads((root / f"out-{name}" / "results.json").read_text())


def _message_column(table: str) -> str:
    """The terminal table's message column, its wrapped lines joined."""
    return " ".join(line.split("│")[6].strip() for line in table.splitlines() if line.startswith("│"))


def _splits(folder: str, **extra) -> dict:
    return {s: f"{folder}/{s}" for s in ("train", "val", "test")} | extra


def test_folders_in_another_order_fail_the_gate_naming_the_class_order(project, capsys):
    code, stdout, stderr, results = run_cli(capsys, project, "no-names", _splits("folders"))
    assert code == 1 and "status: fail" in stderr
    assert results["dense"]["test_accuracy"] == 0.0  # bright/dark/mid numbered 0/1/2: every answer misnamed
    (guard,) = [a for a in results["assertions"] if a["status"] != "pass"]
    assert (guard["name"], guard["severity"], guard["observed"]) == ("better-than-chance", "error", 0.0)
    cause = ("data.class_names (it is not set, so the classes are numbered in the sorted order of their folder or "
             "label names) is probably not the model's output order; a matching order would be [dark, mid, bright]")
    assert "is not significantly above chance" in guard["message"] and cause in guard["message"]
    order = results["dense"]["class_order"]
    assert order["order"] == OUTPUT_ORDER and order["matched_accuracy"] == 1.0 and order["moved"] == 3
    assert f"WARNING dense head: test accuracy 0.000; the model's outputs look like a different class order" in stderr
    assert "a matching order would be [dark, mid, bright]" in _message_column(stdout)  # text, not rich markup
    case = next(c for c in ET.parse(project / "out-no-names" / "junit.xml").getroot().iter("testcase")
                if c.get("name") == "better-than-chance")
    assert "[dark, mid, bright]" in case.find("failure").get("message")
    report = (project / "out-no-names" / "report.html").read_text()
    assert 'id="class-order"' in report and "a matching order would be [dark, mid, bright]" in report
    # the order it suggests is the one that passes
    code, _, stderr, results = run_cli(capsys, project, "named", _splits("folders", class_names=order["order"]))
    assert code == 0, stderr
    assert [(a["name"], a["status"]) for a in results["assertions"]] == [("better-than-chance", "pass")]
    assert results["dense"]["test_accuracy"] == 1.0 and "class_order" not in results["dense"]
    assert 'id="class-order"' not in (project / "out-named" / "report.html").read_text()


def test_the_guard_can_be_switched_off_and_the_cause_is_still_named(project, capsys):
    off = [{"name": "better-than-chance", "enabled": False}]
    code, _, stderr, results = run_cli(capsys, project, "off", _splits("folders"), off)
    assert code == 0, stderr
    assert results["assertions"] == [] and results["status"] == "pass"
    assert results["dense"]["class_order"]["order"] == OUTPUT_ORDER  # a warning still says why accuracy is 0
    down = [{"name": "better-than-chance", "severity": "warning"}]
    code, _, _, results = run_cli(capsys, project, "warning", _splits("folders"), down)
    assert code == 0 and [(a["severity"], a["status"]) for a in results["assertions"]] == [("warning", "fail")]


def test_a_bad_model_above_chance_passes(project, capsys):
    code, _, stderr, results = run_cli(capsys, project, "noisy", _splits("noisy", class_names=OUTPUT_ORDER))
    assert code == 0, stderr
    (guard,) = results["assertions"]
    assert guard["status"] == "pass" and 0.45 < guard["observed"] < 0.65  # 45% of the labels are wrong
    assert guard["observed"] >= guard["threshold"] and "class_order" not in results["dense"]
    assert f"chance {results['dense']['test_chance_rate']:.3f}" in guard["message"]
