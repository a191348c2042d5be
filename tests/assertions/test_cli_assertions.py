"""Assertions through the command line: exit 0 when all hold, 1 when an error-severity one fails,
2 for a malformed one (named, with its key, before any work); junit.xml and the terminal table."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from sparsecheck.cli import main
from sparsecheck.pipeline import run as pipeline_run
from sparsecheck.pipeline import stages
from tests.helpers import write_project


@pytest.fixture(autouse=True)
def assertion_pipeline(monkeypatch):
    """The real command, loading, extraction and dense evaluation, then the assertion stage; the
    later analysis stages (sparse layer, interpretation, ...) are left out to keep this fast."""
    monkeypatch.setattr(pipeline_run, "STAGES", [stages.load_stage, stages.extract_stage, stages.dense_stage,
                                                 stages.assertions_stage])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-assertions")
    cfg = write_project(root, n=30)
    cfg["data"]["class_names"] = ["a", "b", "c"]
    return root, cfg


HOLDING = [
    {"name": "accuracy-floor", "type": "accuracy", "min": 0.0},
    {"name": "recall-each-class", "type": "recall", "class": "*", "min": 0.0},
    {"name": "by-site", "type": "accuracy", "by": ["site", "colour"], "min": 0.0, "min_support": 5},
    {"name": "prediction-table", "type": "prediction_schema"},
    {"name": "calibration", "type": "ece", "max": 1.0},
]
#: what every config implies, first; the project's model learned its labels, so it passes
RUN = ["better-than-chance", *(a["name"] for a in HOLDING)]


def run_cli(capsys, root, cfg, assertions, *extra):
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({**cfg, "assertions": assertions}))
    out = root / f"out-{len(list(root.glob('out-*')))}"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(path), "--out", str(out), "--device", "cpu", *extra])
    stdout, stderr = capsys.readouterr()
    return exit_.value.code, stdout, stderr, out


def test_all_holding_exits_0_with_junit_and_table(project, capsys):
    root, cfg = project
    code, stdout, stderr, out = run_cli(capsys, root, cfg, HOLDING)
    assert code == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "pass"
    assert [a["name"] for a in results["assertions"]] == RUN
    assert {a["status"] for a in results["assertions"]} == {"pass"}
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == str(len(RUN)) and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert stdout.startswith(f"Assertions: {len(RUN)} pass, 0 fail, 0 error")
    for name in RUN:
        assert name in stdout
    assert "status: pass" in stderr


def test_a_failing_error_assertion_exits_1_and_is_named(project, capsys):
    root, cfg = project
    specs = HOLDING + [{"name": "impossible-accuracy", "type": "accuracy", "min": 1.0}]
    code, stdout, stderr, out = run_cli(capsys, root, cfg, specs)
    assert code == 1, stderr
    line = next(ln for ln in stdout.splitlines() if "impossible-accuracy" in ln)
    assert "FAIL" in line and "error" in line
    assert "status: fail" in stderr
    results = json.loads((out / "results.json").read_text())
    failed = [a for a in results["assertions"] if a["status"] != "pass"]
    assert [a["name"] for a in failed] == ["impossible-accuracy"] and results["status"] == "fail"
    case = next(c for c in ET.parse(out / "junit.xml").getroot().iter("testcase")
                if c.get("name") == "impossible-accuracy")
    assert case.find("failure").get("message").startswith("[error] accuracy below 1.000")


def test_a_failing_warning_exits_0_unless_fail_on_warning(project, capsys):
    root, cfg = project
    specs = HOLDING + [{"name": "impossible-warning", "type": "accuracy", "min": 1.0, "severity": "warning"}]
    code, stdout, stderr, _ = run_cli(capsys, root, cfg, specs)
    assert code == 0, stderr
    assert "FAIL" in next(ln for ln in stdout.splitlines() if "impossible-warning" in ln)
    code, _, _, _ = run_cli(capsys, root, cfg, specs, "--fail-on", "warning")
    assert code == 1


@pytest.mark.parametrize("bad, needle", [
    ({"name": "broken-floor", "type": "accuracy", "min": "not-a-number"}, "assertion 'broken-floor', key 'min'"),
    ({"name": "typo-type", "type": "acuracy", "min": 0.5}, "assertion 'typo-type', key 'type'"),
    ({"name": "extra-key", "type": "accuracy", "min": 0.5, "floor": 0.2}, "assertion 'extra-key', key 'floor'"),
    ({"name": "bad-class", "type": "recall", "class": "zebra", "min": 0.5}, "assertion 'bad-class', key 'class'"),
])
def test_a_malformed_assertion_exits_2_before_any_work(project, capsys, bad, needle):
    root, cfg = project
    code, stdout, stderr, out = run_cli(capsys, root, cfg, HOLDING + [bad])
    assert code == 2
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("sparsecheck: error:")]
    assert len(lines) == 1 and needle in lines[0], stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists()  # rejected at config load: no output directory, no model loaded
