"""`sparsecheck demo --text` end to end, as a user runs it: a fresh directory, the real CLI.

The demo trains a 2-layer BERT on shipped SST-2 sentences with three planted facts (a spurious
token, a mislabelled source, a harmless site). One demo run is shared by the checks below: the
planted token is a confirmed finding with metadata (and also seen from the text's automatic
attributes), and without metadata (the same config, its metadata dropped); the mislabelled source
is the top slice; the harmless site is flagged nowhere; exit 1 with the same counts in the verdict
and the assertions; the documented monitoring commands (the ones the demo prints) alert on the
drifted batch only. The demo and monitoring lines are docs/text.md's, run verbatim.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def documented_text_demo_commands() -> list[str]:
    """The documentation's ``sparsecheck demo --text`` line and its monitoring lines (docs/text.md),
    run verbatim below (tests/test_readme.py checks that no other text demo line is documented)."""
    from tests.test_readme import TEXT_DEMO, doc_text

    blocks = re.findall(r"```bash\n(.*?)```", doc_text(), flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith(TEXT_DEMO)]


def _run_line(line: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """A documented ``sparsecheck ...`` line as it is written, from ``cwd``."""
    return subprocess.run([sys.executable, "-m", "sparsecheck", *shlex.split(line)[1:]], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("text-demo-cwd")
    (line,) = [ln for ln in documented_text_demo_commands() if ln.startswith("sparsecheck demo --text")]
    run = _run_line(line, work, 900)
    out = work / "sparsecheck-text-demo"
    assert (out / "results.json").is_file(), run.stderr[-3000:]
    return {"work": work, "out": out, "run": run, "results": json.loads((out / "results.json").read_text()),
            "truth": json.loads((out / "data" / "truth.json").read_text())}


@pytest.fixture(scope="module")
def without_metadata(demo) -> dict[str, Any]:
    """The demo's own config with its metadata, its declared spurious attribute and the assertions
    over metadata removed: only the text is left to find the token from."""
    data = demo["out"] / "data"
    config = yaml.safe_load((data / "config.yaml").read_text())
    del config["data"]["metadata"], config["data"]["spurious_attributes"]
    config["assertions"] = [a for a in config["assertions"] if "by" not in a and "attribute" not in a]
    config["mlflow"] = {"enabled": False}
    (data / "no-metadata.yaml").write_text(yaml.safe_dump(config))
    out = demo["work"] / "no-metadata-out"
    run = subprocess.run([sys.executable, "-m", "sparsecheck", "run", str(data / "no-metadata.yaml"), "--out",
                          str(out), "--device", "cpu"], cwd=demo["work"], env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert (out / "results.json").is_file(), run.stderr[-3000:]
    return {"run": run, "results": json.loads((out / "results.json").read_text())}


def _confirmed(finding: dict[str, Any]) -> bool:
    return bool(finding["evidence"].get("confirmed_by_intervention"))


def test_the_planted_token_is_a_confirmed_finding_with_metadata(demo):
    r, cue = demo["results"], demo["truth"]["cue"]
    assert r["modality"] == "text" and r["model"]["kind"] == "huggingface"
    found = [f for f in r["spurious_findings"] if f["class"] == cue["class"]]
    assert found and (found[0]["attribute"], found[0]["value"]) == (cue["attribute"], cue["value"])
    assert _confirmed(found[0])
    estimate = found[0]["evidence"]["intervention"]["cue_estimate"]
    assert estimate["kind"] == "term" and estimate["term"] == cue["token"]  # the token, estimated from the texts
    seen = {(s["attribute"], s["value"]) for s in found[0]["also_seen_as"]}
    assert (f"auto:has:{cue['token']}", "yes") in seen  # the text's own attributes mark the same texts
    card = next(c for c in r["feature_cards"] if c["feature"] == found[0]["feature"])
    assert card["lime"] and (card["words"]["positive"] or card["words"]["negative"])


def test_the_planted_token_is_a_confirmed_finding_without_metadata(demo, without_metadata):
    r, cue = without_metadata["results"], demo["truth"]["cue"]
    assert without_metadata["run"].returncode in (0, 1), without_metadata["run"].stderr[-3000:]
    assert r["spurious_findings"] == []
    auto = [f for f in r["automatic_findings"] if f["class"] == cue["class"]]
    assert auto and (auto[0]["attribute"], auto[0]["value"]) == (f"auto:has:{cue['token']}", "yes")
    assert _confirmed(auto[0])
    shortcuts = next(a for a in r["assertions"] if a["name"] == "no-automatic-shortcuts")
    assert shortcuts["status"] == "fail" and cue["token"] in shortcuts["message"]
    rule = r["auto_attributes"]["rule"]
    assert "chosen on the train split" in rule  # the terms are chosen by a stated rule, on train


def test_the_mislabelled_source_is_the_top_slice(demo):
    slices = demo["results"]["slices"]
    truth = demo["truth"]["mislabeled"]
    # the top slice is the source, alone
    assert slices[0]["predicates"] == {truth["attribute"]: truth["value"]}, slices[0]
    assert slices[0]["q_value"] < 0.05  # the fdr
    by_source = next(a for a in demo["results"]["assertions"] if a["name"] == "accuracy-by-source")
    assert by_source["status"] == "fail" and "source=forum" in by_source["message"]


def test_the_harmless_attribute_is_nowhere(demo):
    r = demo["results"]
    harmless = demo["truth"]["harmless"]["attribute"]
    assert not any(f["attribute"] == harmless for f in r["spurious_findings"] + r["automatic_findings"])
    assert not any(harmless in s["predicates"] and s["q_value"] < 0.05 for s in r["slices"])
    assert not any(a["attribute"] == harmless and a["q_value"] is not None and a["q_value"] < 0.05
                   for a in r["feature_attributes"])
    assert not any(f["attribute"] == harmless for f in r["associations_to_review"])
    status = {a["name"]: a["status"] for a in r["assertions"]}
    assert status["site-is-harmless"] == "pass" and status["accuracy-by-site"] == "pass"


def test_exit_1_with_the_same_counts_in_the_verdict_and_the_assertions(demo):
    run, r = demo["run"], demo["results"]
    assert run.returncode == 1, run.stderr[-3000:]
    assert r["status"] == "fail" and "status: fail" in run.stderr
    failed = [a for a in r["assertions"] if a["status"] == "fail"]
    errors = [a for a in failed if a["severity"] == "error"]
    passed = sum(a["status"] == "pass" for a in r["assertions"])
    assert {a["name"] for a in errors} == {"no-spurious-reliance", "accuracy-by-source"}
    summary = re.search(r"Assertions: (\d+) pass, (\d+) fail", run.stdout + run.stderr)
    assert summary and (int(summary[1]), int(summary[2])) == (passed, len(failed))
    reliance = next(a for a in r["assertions"] if a["name"] == "no-spurious-reliance")
    assert reliance["observed"] == len(r["spurious_findings"]) == 1
    html = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (demo["out"] / "report.html").read_text()))
    assert f"{len(errors)} error-severity assertions failed ({passed} of {len(r['assertions'])} passed)" in html
    assert f"spurious findings {len(r['spurious_findings'])} {len(r['spurious_findings'])} declared · " \
           f"{len(r['automatic_findings'])} from the text" in html


def test_the_documented_monitoring_commands_alert_on_the_drifted_batch_only(demo):
    printed = [ln.strip() for ln in demo["run"].stderr.splitlines() if ln.strip().startswith("sparsecheck monitor ")]
    lines = [ln for ln in documented_text_demo_commands() if ln.startswith("sparsecheck monitor ")]
    assert lines == printed and len(lines) == 2, demo["run"].stderr[-2000:]  # the demo prints what the docs say
    codes = {}
    for line in lines:
        proc = _run_line(line, demo["work"], 600)
        codes["drifted" if "drifted" in line else "like-test"] = (proc.returncode, proc.stdout + proc.stderr)
    assert codes["like-test"][0] == 0, codes["like-test"][1][-2000:]
    assert codes["drifted"][0] == 1, codes["drifted"][1][-2000:]
    for name in ("like-test", "drifted"):
        saved = json.loads((Path(demo["work"]) / f"monitor-text-{name}" / "monitor.json").read_text())
        assert saved["alert"] is (name == "drifted")
