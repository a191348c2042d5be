"""The modality seam holds: a second kind of input (tabular vectors, :mod:`tests.tabular`) runs the
whole pipeline end to end, stages untouched, and the run finds the shortcut planted in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparsecheck.config import parse_config
from sparsecheck.modalities import Modality, unregister_modality
from sparsecheck.pipeline import STAGES, run_pipeline
from tests.tabular import NAME, register, write_tabular_project


@pytest.fixture()
def tabular() -> Modality:
    modality = register()
    yield modality
    unregister_modality(NAME)


def test_the_tabular_stand_in_runs_every_stage(tmp_path: Path, tabular: Modality) -> None:
    raw = write_tabular_project(tmp_path)
    cfg = parse_config(raw, base_dir=tmp_path)
    ctx = run_pipeline(cfg, tmp_path / "out", device="cpu")
    assert ctx.modality is tabular and ctx.config.data.modality == NAME
    results = json.loads((tmp_path / "out" / "results.json").read_text())

    # every stage ran and none was skipped for want of images
    assert set(results["timings"]) >= {s.__name__.removesuffix("_stage") for s in STAGES}
    skipped = json.dumps(results.get("skipped", []))
    assert "image" not in skipped, skipped
    # the modality read the splits and described them
    assert results["data"]["test"]["columns"] == 6 and results["data"]["test"]["n"] == 300
    # the model beats chance and the sparse layer was fitted on its 12 hidden units
    assert results["dense"]["test_accuracy"] > 0.6
    assert np.asarray(ctx.sparse_layer.weight_).shape == (3, 12)
    # automatic attributes came from the modality
    assert results["auto_attributes"]["columns"] == ["auto:norm"]
    # the planted shortcut is found, and confirmed by putting column 5 on other classes' rows
    findings = results["spurious_findings"]
    tagged = [f for f in findings if f["attribute"] == "tag" and f["value"] == "yes"]
    assert tagged and tagged[0]["class"] == "zero", findings
    assert tagged[0]["evidence"].get("confirmed_by_intervention") is True, tagged[0]
    # local explanations and the sanity check ran with the modality's explainer, and the cards
    # were drawn by its renderer
    cards = [c for c in results["feature_cards"] if c["lime"] is not None]
    assert cards and all(c["lime"]["samples"] == 64 for c in cards)
    assert all((tmp_path / "out" / c["image"]).is_file() for c in cards)
    assert results["interpretation"]["sanity_checked"] >= 1
    # the invariance assertion used the modality's transform
    robust = next(a for a in results["assertions"] if a["name"] == "robust-to-noise")
    assert robust["status"] in ("pass", "fail") and robust["observed"] is not None
    assert np.isfinite(float(robust["observed"]))
