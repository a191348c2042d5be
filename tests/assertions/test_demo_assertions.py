"""The demo's shipped assertions, end to end on the real demo (slow: builds and trains the demo).

The demo plants three problems and one harmless attribute (see sparsecheck.demo). Its assertions
must fail on the slices ``background=light`` (rare subgroup) and ``annotator=carol`` (mislabeled
subgroup), pass on ``site`` (harmless) and on ``corner_mark`` as a slice, and, once the sparse layer
and the feature/metadata associations exist, name class ``seven`` relying on ``corner_mark``.

Set ``SPARSECHECK_DEMO_DIR`` to a directory written by ``build_demo`` to skip the build.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

import sparsecheck.pipeline as pipeline
from sparsecheck.assertions import assertions_stage
from sparsecheck.config import parse_config
from sparsecheck.demo import build_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-assertions")
    given = os.environ.get("SPARSECHECK_DEMO_DIR")
    if given:
        shutil.copytree(given, root / "data")
        config_path = root / "data" / "config.yaml"
    else:
        config_path = build_demo(root / "data")
    raw = yaml.safe_load(config_path.read_text())
    if not raw.get("assertions"):
        pytest.fail(f"{config_path} predates the demo's assertions; rebuild it with build_demo")
    raw["sparse"]["n_lambdas"] = 30  # a shorter path than the demo's 100: same selection rule
    cfg = parse_config(raw, base_dir=config_path.parent)
    stages = list(pipeline.STAGES) + ([] if assertions_stage in pipeline.STAGES else [assertions_stage])
    ctx = pipeline.run_pipeline(cfg, root / "out", device="cpu", stages=stages)
    return ctx


def test_demo_assertions_catch_the_planted_slices_and_spare_site(demo_run):
    ctx = demo_run
    results = {a["name"]: a for a in ctx.results["assertions"]}
    slices = results["accuracy-by-slice"]
    assert slices["status"] == "fail" and slices["severity"] == "error"
    assert "background=light" in slices["message"] and "annotator=carol" in slices["message"]
    failing = {g["slice"] for g in slices["details"]["groups"] if g["evaluated"] and not g["passed"]}
    assert failing == {"background=light", "annotator=carol"}
    judged = {g["slice"] for g in slices["details"]["groups"] if g["evaluated"]}
    assert {"site=north", "site=south", "site=east", "corner_mark=yes"} <= judged
    assert ctx.results["status"] == "fail" and pipeline.exit_code_for(ctx) == 1
    assert json.loads((ctx.out_dir / "results.json").read_text())["status"] == "fail"
    assert (ctx.out_dir / "junit.xml").is_file()


def test_demo_reliance_assertions_name_seven_and_corner_mark(demo_run):
    ctx = demo_run
    results = {a["name"]: a for a in ctx.results["assertions"]}
    reliance, site = results["no-spurious-reliance"], results["site-is-harmless"]
    if ctx.feature_attributes is None:  # without the interpretation stage they must not pass silently
        assert reliance["status"] == site["status"] == "error"
        assert "feature/metadata associations" in reliance["message"]
    else:
        assert reliance["status"] == "fail"
        assert ["seven", "corner_mark"] in reliance["details"]["relying"]
        assert site["status"] == "pass"
