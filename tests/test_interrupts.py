"""Interrupts with real processes and real signals: one line saying where the command stopped, exit
128 + the signal, no half-written output, and MLflow runs that never stay RUNNING for ever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.helpers import QUICK_ANALYSIS, write_project

REPO = Path(__file__).resolve().parents[1]


class _Process:
    """``python -m sparsecheck ARGS`` (or ``python -c CODE``) whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], cwd: Path, **env: str) -> None:
        environ = {**os.environ, "PYTHONPATH": str(REPO), "SPARSECHECK_HEARTBEAT_S": "0.2", **env}
        self.proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=environ, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"never printed {text!r}:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> int:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(10)
        return self.proc.returncode


def _project(root: Path, *, mlflow_on: bool, factory: str | None = None) -> Path:
    raw = write_project(root)
    if factory:
        raw["model"] = {"factory": factory, "input": {"scale": 255.0}}
    raw["analysis"] = dict(QUICK_ANALYSIS)
    raw["sparse"] = {"n_lambdas": 10, "solver": "fista", "max_epochs": 50, "tol": 1e-3}
    raw["mlflow"] = ({"enabled": True, "tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "interrupts"}
                     if mlflow_on else {"enabled": False})
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    return root / "config.yaml"


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_stage_prints_one_line_and_leaves_no_output(tmp_path, sig, code):
    config = _project(tmp_path, mlflow_on=False, factory="tests.helpers:make_slow_net")
    out = tmp_path / "new" / "out"
    run = _Process(["-m", "sparsecheck", "run", str(config), "--out", str(out), "--device", "cpu"], tmp_path,
                   SLOW_NET_S="0.7")
    run.wait_for("extracted head:input features of train")  # val is being extracted now, batch by batch
    run.proc.send_signal(sig)
    assert run.finish() == code, "\n".join(run.lines)
    ours = [line for line in run.lines if line.startswith("sparsecheck:")]
    assert ours == [f"sparsecheck: interrupted during the extract stage; nothing was written to {out}"], run.lines
    assert not any("Traceback" in line for line in run.lines)
    assert not (tmp_path / "new").exists()


def _runs(uri: str, experiment: str = "interrupts") -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _await_running_run(uri: str, run: _Process, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.proc.poll() is None:
        try:
            found = [r for r in _runs(uri) if r.info.status == "RUNNING"]
        except Exception:  # the store is being created by the other process
            found = []
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no RUNNING run appeared:\n" + "\n".join(run.lines[-30:]))


def test_sigterm_while_logging_marks_the_mlflow_run_killed_and_writes_no_results(tmp_path):
    config = _project(tmp_path, mlflow_on=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    run = _Process(["-m", "sparsecheck", "run", str(config), "--out", str(out), "--device", "cpu"], tmp_path)
    running = _await_running_run(uri, run)  # logging the sparse layer as MLflow models takes seconds
    first_beat = json.loads(running.data.tags["sparsecheck.heartbeat"])["beat"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the heartbeat renews while the run is open
        beat = json.loads(mlflow.MlflowClient(uri).get_run(running.info.run_id).data.tags["sparsecheck.heartbeat"])
        if beat["beat"] > first_beat or run.proc.poll() is not None:
            break
        time.sleep(0.1)
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 143, "\n".join(run.lines)
    assert beat["beat"] > first_beat and beat["pid"] == run.proc.pid
    line = [x for x in run.lines if x.startswith("sparsecheck:")]
    assert len(line) == 1 and line[0].startswith("sparsecheck: interrupted during "), run.lines
    assert line[0].endswith(f"the MLflow run {running.info.run_id} is marked KILLED"), line
    assert f"nothing was written to {out}" in line[0] or f"{out} holds no results.json" in line[0]
    assert not (out / "results.json").exists()
    closed = mlflow.MlflowClient(uri).get_run(running.info.run_id)
    assert closed.info.status == "KILLED" and closed.data.tags["sparsecheck.status"] == "error"


_OPEN_A_RUN = """
import sys, time
from sparsecheck.config import MlflowConfig
from sparsecheck.tracking.run_logging import start_run
run = start_run(MlflowConfig(tracking_uri=sys.argv[1], experiment="interrupts"))
with run:
    print("open", run.info.run_id, file=sys.stderr, flush=True)
    time.sleep(600)
"""


def test_a_killed_processs_run_is_closed_by_the_next_run_and_live_ones_are_left_alone(tmp_path):
    from sparsecheck.config import MlflowConfig
    from sparsecheck.tracking.run_logging import start_run
    from sparsecheck.tracking.liveness import TAG_CLOSED, TAG_HEARTBEAT, _machine, _start_time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    doomed = _Process(["-c", _OPEN_A_RUN, uri], tmp_path)
    doomed.wait_for("open ")
    killed_id = next(x for x in doomed.lines if x.startswith("open ")).split()[1]
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.finish()
    client = mlflow.MlflowClient(uri)
    assert client.get_run(killed_id).info.status == "RUNNING"  # nobody could close it
    exp_id = client.get_experiment_by_name("interrupts").experiment_id
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        now = time.time()

        def beat(machine: str, pid: int, started: str, at: float) -> str:
            return json.dumps({"machine": machine, "pid": pid, "started": started, "beat": at})

        live = client.create_run(exp_id, tags={TAG_HEARTBEAT: beat(_machine(), sleeper.pid,
                                                                    _start_time(sleeper.pid), now)}).info.run_id
        away_fresh = client.create_run(exp_id, tags={TAG_HEARTBEAT: beat("elsewhere/1/2", 1, "", now)}).info.run_id
        away_stale = client.create_run(exp_id, tags={TAG_HEARTBEAT: beat("elsewhere/1/2", 1, "", now - 7200)}
                                       ).info.run_id
        untagged = client.create_run(exp_id).info.run_id  # not sparsecheck's: never touched
        with start_run(MlflowConfig(tracking_uri=uri, experiment="interrupts")):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    status = {r: client.get_run(r).info.status for r in (killed_id, live, away_fresh, away_stale, untagged)}
    assert status == {killed_id: "KILLED", live: "RUNNING", away_fresh: "RUNNING", away_stale: "KILLED",
                      untagged: "RUNNING"}
    assert "is gone" in client.get_run(killed_id).data.tags[TAG_CLOSED]
    assert "no heartbeat" in client.get_run(away_stale).data.tags[TAG_CLOSED]


def test_results_json_comes_after_the_finished_mlflow_run_and_each_log_line_prints_once(tmp_path):
    config = _project(tmp_path, mlflow_on=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = _Process(["-m", "sparsecheck", "run", str(config), "--out", str(tmp_path / "out"), "--device", "cpu"],
                   tmp_path)
    assert run.finish(timeout=300) == 0, "\n".join(run.lines)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    logged = mlflow.MlflowClient(uri).get_run(results["mlflow"]["run_id"])
    assert results["mlflow"]["status"] == logged.info.status == "FINISHED"
    assert (tmp_path / "out" / "results.json").stat().st_mtime >= logged.info.end_time / 1000 - 0.01
    artifact = Path(mlflow.MlflowClient(uri).download_artifacts(logged.info.run_id, "results.json", str(tmp_path)))
    assert json.loads(artifact.read_text())["mlflow"]["status"] == "FINISHED"
    # MLflow puts a handler on the root logger: sparsecheck's lines must not go there as well
    log_lines = [x for x in run.lines if " INFO " in x or x.startswith("INFO:")]
    assert log_lines and not [x for x in log_lines if x.startswith("INFO:")], run.lines
    assert len(log_lines) == len(set(x[9:] for x in log_lines)), "a line printed twice"
    assert sum("logged run" in x for x in run.lines) == 1
