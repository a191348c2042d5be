"""Findings that hold: a planted shortcut is confirmed by intervention, with and without metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from sparsecheck.config import parse_config
from sparsecheck.pipeline import run_pipeline
from tests.zoo import write_corner_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = {"factory": "tests.zoo:corner_net", "input": {"scale": 255.0, "mean": [0.5] * 3, "std": [0.25] * 3}}
FAST = {"sparse": {"n_lambdas": 20}, "analysis": {"explain": False}, "mlflow": {"enabled": False},
        "features": {"cache_dir": None}}


def run(tmp_path, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config = parse_config({"model": MODEL, "data": data, **FAST, **extra}, base_dir=tmp_path)
    run_pipeline(config, tmp_path / "out", device="cpu")
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_without_metadata_the_shortcut_is_found_from_the_pixels_and_confirmed(tmp_path):
    results = run(tmp_path, write_corner_task(tmp_path, with_metadata=False))
    found = results["automatic_findings"]
    assert found, results["spurious_analysis"]
    top = found[0]
    assert (top["class"], top["attribute"], top["value"], top["automatic"]) == ("c1", "auto:mark_tl", "white", True)
    evidence = top["evidence"]
    assert evidence["confirmed_by_intervention"] and "confirmed by intervention" in top["sentence"]
    # the training data tied the mark to the class (95% of c1, 3% of the rest)
    assert evidence["train_share_in_class"] > 0.85 and evidence["train_share_others"] < 0.1
    put = evidence["intervention"]
    assert put["flip_rate"] > 0.5 and put["baseline_rate"] < 0.1, put
    # the cue was learned from the images: a region where the mark is, copied with a control
    cue = put["cue_estimate"]
    assert cue["kind"] == "region" and "top-left" in cue["description"] and put["control"]
    assert (tmp_path / "out" / cue["image"]).is_file()
    # one shortcut, one finding: nothing else is found on the pixels
    assert [(f["class"], f["attribute"]) for f in found] == [("c1", "auto:mark_tl")]
    assert results["spurious_findings"] == [] and "auto:mark_tl" in results["auto_attributes"]["columns"]
    # the implied warning names it; the gate still passes on warnings
    (implied,) = [a for a in results["assertions"] if a["name"] == "no-automatic-shortcuts"]
    assert (implied["status"], implied["severity"], implied["observed"]) == ("fail", "warning", len(found))
    assert results["status"] == "pass"
    # the report shows it as a finding, with the cue's picture and the intervention in words
    html = (tmp_path / "out" / "report.html").read_text()
    assert "an automatic image attribute; confirmed by intervention" in html
    assert "The cue, learned from the images: a region of" in html and "Intervention: with the cue put on" in html
    assert 'class="cue"' in html and "1 spurious finding (0 on declared attributes, 1 found from the pixels" in html
    assert results["forward_passes"]["spurious"] > 0


def test_a_declared_attribute_without_an_intervention_is_confirmed_by_the_learned_cue(tmp_path):
    data = write_corner_task(tmp_path)
    data.update(spurious_attributes=["corner", "site"])
    results = run(tmp_path, data)
    findings = results["spurious_findings"]
    assert [(f["class"], f["attribute"], f["value"]) for f in findings] == [("c1", "corner", "yes")]
    (f,) = findings
    assert f["evidence"]["confirmed_by_intervention"] and f["evidence"]["intervention"]["cue_estimate"]["kind"] == \
        "region"
    # the automatic attribute of the same images is the same shortcut: listed, not counted again
    assert any(a["attribute"] == "auto:mark_tl" for a in f["also_seen_as"])
    assert results["automatic_findings"] == []
    (implied,) = [a for a in results["assertions"] if a["name"] == "no-spurious-reliance"]
    assert implied["observed"] == 1 and results["status"] == "fail"


def test_a_declared_attribute_with_an_intervention_is_confirmed_and_counted_once(tmp_path):
    data = write_corner_task(tmp_path)
    data.update(spurious_attributes=["corner"],
                interventions={"corner": {"value": "yes", "put": {"type": "patch", "region": "top-left",
                                                                  "size": 0.19, "colour": [255, 255, 255]}}})
    results = run(tmp_path, data)
    findings = results["spurious_findings"]
    assert [(f["class"], f["attribute"], f["value"]) for f in findings] == [("c1", "corner", "yes")]
    assert findings[0]["evidence"]["confirmed_by_intervention"]
    (implied,) = [a for a in results["assertions"] if a["name"] == "no-spurious-reliance"]
    assert implied["status"] == "fail" and implied["observed"] == len(findings) == 1  # one rule, one count
    assert results["status"] == "fail"


def test_automatic_attributes_and_interventions_can_be_switched_off(tmp_path):
    results = run(tmp_path, write_corner_task(tmp_path, with_metadata=False),
                  analysis={"explain": False, "auto_attributes": False})
    assert "auto_attributes" not in results and results["automatic_findings"] == []
    assert not any(a.startswith("auto:") for a in results["spurious_analysis"]["review_attributes"])


def test_a_shortcut_no_pixel_measure_sees_is_found_through_the_models_own_feature(tmp_path):
    # the pixel measures left out (their stage not run): the corner is still found, as the mode
    # of the class's feature that fires on it (feature 3, the corner's mean), put on other images
    from sparsecheck.pipeline.stages import STAGES, auto_attributes_stage

    data = write_corner_task(tmp_path, with_metadata=False)
    config = parse_config({"model": MODEL, "data": data, **FAST}, base_dir=tmp_path)
    run_pipeline(config, tmp_path / "out", device="cpu", stages=[s for s in STAGES if s is not auto_attributes_stage])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "auto_attributes" not in results
    # the centre's colour channels (0-2) tell the classes apart and fire in two modes too; they are
    # tested, and no cue is learned from them (each class's images all have its colour)
    modes = results["spurious_analysis"]["feature_modes"]
    assert 3 in [m["feature"] for m in modes], modes
    (found,) = results["automatic_findings"]
    assert (found["class"], found["attribute"], found["value"]) == ("c1", "auto:feature_3", "on")
    put = found["evidence"]["intervention"]
    # only putting the cue on counts for a feature's own mode: no remover was measured
    assert put["confirmed_by"] == ["put"] and put["remove"] is None and put["n_remove"] == 0
    assert put["cue_estimate"]["kind"] == "region" and "top-left" in put["cue_estimate"]["description"]
    assert results["status"] == "pass"  # a warning: no-automatic-shortcuts names it
    (implied,) = [a for a in results["assertions"] if a["name"] == "no-automatic-shortcuts"]
    assert implied["observed"] == 1
