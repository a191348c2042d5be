"""The ready-made automation in examples/ runs: the GitHub Actions workflow's shell steps and the cron
wrapper, on a small project, with the real ``sparsecheck`` command.

What cannot run here is named: the workflow's ``uses:`` actions (checkout, setup-python, upload)
and its install step (a download) are not run, and ``gh`` (GitHub's CLI, which posts the comment)
is a recorder on PATH that keeps the comment it was given.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.helpers import QUICK_ANALYSIS, brightness_images, write_project

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "examples" / "github-actions" / "sparsecheck.yml"
CRON = REPO / "examples" / "cron"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"  # records what the workflow asks GitHub's CLI to post
    gh.write_text(f'#!/usr/bin/env bash\necho "$@" > {tmp}/gh-args\n'
                  f'while [ $# -gt 0 ]; do [ "$1" = --body-file ] && cp "$2" {tmp}/gh-comment.md; shift; done\n')
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO), **extra}


def _project(root: Path, *, experiment: str, assertions: list | None = None) -> dict[str, Any]:
    raw = write_project(root)
    raw["analysis"] = dict(QUICK_ANALYSIS)
    raw["sparse"] = {"n_lambdas": 10, "solver": "fista", "max_epochs": 50, "tol": 1e-3}
    raw["mlflow"] = {"experiment": experiment, "log_sparse_model": False}
    raw["assertions"] = assertions or []
    return raw


# --------------------------------------------------------------------------- GitHub Actions
_EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def _resolve(text: str, context: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        expr = match.group(1)
        if expr not in context:
            raise AssertionError(f"the test does not know the expression ${{{{ {expr} }}}}: teach it")
        return context[expr]
    return _EXPRESSION.sub(one, text)


def _condition(expr: str | None) -> bool:
    if expr is None:
        return True  # (no step here runs only on success after a failed step)
    allowed = {"always()": True, "github.event_name == 'pull_request'": True}
    parts = [p.strip() for p in expr.split("&&")]
    assert all(p in allowed for p in parts), f"unknown condition {expr!r}"
    return all(allowed[p] for p in parts)


def test_the_github_actions_workflow_gates_uploads_and_comments(tmp_path: Path) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True] == {"pull_request": None}  # YAML 1.1 reads the key `on` as true
    assert workflow["permissions"]["pull-requests"] == "write"
    work = tmp_path / "repo"
    work.mkdir()
    raw = _project(work, experiment="pr-gate",
                   assertions=[{"name": "accuracy at least 0.99", "type": "accuracy", "min": 0.99}])
    (work / workflow["env"]["SPARSECHECK_CONFIG"]).write_text(yaml.safe_dump(raw))
    output = tmp_path / "github-output"
    output.write_text("")
    env = _env(tmp_path, **{k: str(v) for k, v in workflow["env"].items()}, GITHUB_OUTPUT=str(output),
               GITHUB_EVENT_NAME="pull_request")
    steps = workflow["jobs"]["gate"]["steps"]
    ran, skipped, codes = [], [], {}
    for step in steps:
        name = step.get("name") or step.get("uses")
        if "uses" in step or "Install" in name:
            skipped.append(name)
            if step.get("uses", "").startswith("actions/upload-artifact"):
                upload = work / _resolve(step["with"]["path"], {"env.SPARSECHECK_OUT": env["SPARSECHECK_OUT"]})
                assert (upload / "report.html").is_file() and (upload / "results.json").is_file()
            continue
        if not _condition(step.get("if")):
            continue
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        context = {"steps.gate.outputs.code": outputs.get("code", ""), "github.token": "test-token",
                   "github.event.pull_request.number": "7", "env.SPARSECHECK_OUT": env["SPARSECHECK_OUT"]}
        step_env = {**env, **{k: _resolve(str(v), context) for k, v in (step.get("env") or {}).items()}}
        done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=step_env, capture_output=True,
                              text=True, timeout=600)
        codes[name] = done.returncode
        ran.append(name)
        assert done.returncode == 0 or name.startswith("Fail the job"), (name, done.stdout[-2000:], done.stderr[-3000:])
    assert skipped == ["actions/checkout@v4", "actions/setup-python@v5", "Install sparsecheck (CPU-only PyTorch)",
                       "Upload the report"]
    assert ran == ["Run the gate", "Write the verdict", "Comment the verdict on the pull request",
                   "Fail the job when the gate did not pass"]
    assert "code=1" in output.read_text()  # the failing assertion
    comment = (tmp_path / "gh-comment.md").read_text()
    assert comment.startswith("**sparsecheck: FAIL** (exit 1)")
    assert "- fail (error): accuracy at least 0.99:" in comment
    assert (tmp_path / "gh-args").read_text().split()[:3] == ["pr", "comment", "7"]
    assert codes["Fail the job when the gate did not pass"] == 1


# --------------------------------------------------------------------------- cron
def test_the_crontab_runs_the_wrapper_with_every_variable_it_needs() -> None:
    lines = [ln for ln in (CRON / "crontab").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    variables = dict(ln.split("=", 1) for ln in lines if re.match(r"^[A-Z_]+=", ln))
    schedule = [ln for ln in lines if not re.match(r"^[A-Z_]+=", ln)]
    assert len(schedule) == 1
    fields = schedule[0].split()
    minute, hour, dom, month, dow = fields[:5]
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24 and (dom, month, dow) == ("*", "*", "*")
    assert fields[5].endswith("examples/cron/monitor-nightly.sh")
    script = (CRON / "monitor-nightly.sh").read_text()
    required = set(re.findall(r"\$\{(SPARSECHECK_[A-Z_]+):\?", script))
    assert required and required <= set(variables)
    assert os.access(CRON / "monitor-nightly.sh", os.X_OK)


def test_the_nightly_wrapper_scores_the_newest_batch_and_alerts_on_drift(tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (work / "config.yaml").write_text(yaml.safe_dump(_project(work, experiment="nightly")))
    env = _env(tmp_path)
    from sparsecheck.config import load_config  # the reference run the gate logged (here in this process)
    from sparsecheck.pipeline import run_pipeline

    reference = run_pipeline(load_config(work / "config.yaml"), work / "reference", device="cpu", tracking_uri=uri)
    assert reference.results["status"] == "pass" and reference.results["mlflow"]["status"] == "FINISHED"
    batches = tmp_path / "incoming"
    batches.mkdir()
    rng = np.random.default_rng(7)
    levels = rng.integers(0, 3, 120)
    np.savez(batches / "monday.npz", x=brightness_images(rng, levels), y=levels,
             id=np.array([f"mon-{i}" for i in range(120)]))
    time.sleep(1.1)  # the newest by modification time is scored
    bright = np.full(120, 2)  # every image of the brightest class: the class mix and features shift
    np.savez(batches / "tuesday.npz", x=brightness_images(rng, bright), y=bright,
             id=np.array([f"tue-{i}" for i in range(120)]))
    alert = tmp_path / "notify.sh"
    alert.write_text(f'#!/usr/bin/env bash\necho "$1" > {tmp_path}/alerted\n')
    alert.chmod(alert.stat().st_mode | stat.S_IEXEC)
    env.update(SPARSECHECK_CONFIG=str(work / "config.yaml"), SPARSECHECK_BATCH_DIR=str(batches),
               SPARSECHECK_OUT_ROOT=str(tmp_path / "monitoring"), SPARSECHECK_TRACKING_URI=uri,
               SPARSECHECK_ALERT_COMMAND=str(alert))
    done = subprocess.run([str(CRON / "monitor-nightly.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr[-3000:])
    assert "tuesday.npz" in done.stdout and "ALERT" in done.stdout
    day = time.strftime("%Y-%m-%d")
    report = tmp_path / "monitoring" / day / "monitor.json"
    assert report.is_file() and (tmp_path / "alerted").read_text().strip() == str(report)
    # no batch at all: exit 2 with the reason
    shutil.rmtree(batches)
    batches.mkdir()
    empty = subprocess.run([str(CRON / "monitor-nightly.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 2 and "no batch in" in empty.stderr
