"""The documented registry workflow (docs/gate.md), verbatim, against a real ``mlflow server``:
register champion and challenger, gate and promote the challenger, compare the two (checking the
champion on the way), monitor with the validated version, read the verdict back, and run the gate
from ``mlflow.models.evaluate`` on the validated version.

The README names its tracking server ``http://mlflow:5000`` and its config ``config.yaml``; here
the server is the session's real one and ``config.yaml`` a tiny project with the analysis turned
down. Every other word of the blocks runs as written.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsecheck.tracking.registry import RUN_TAGS
from tests.helpers import write_registry_project
from tests.test_readme import README_SERVER, server_blocks


def _cli(argv: list[str]) -> int:
    import logging

    from sparsecheck.cli import main

    root = logging.getLogger("sparsecheck")
    saved = (root.handlers[:], root.level)
    try:
        with pytest.raises(SystemExit) as exc:
            main(argv)
    finally:  # the CLI binds a handler to this test's captured stderr: do not leak it
        root.handlers[:], root.level = saved
    return int(exc.value.code or 0)


def test_readme_registry_workflow_runs_verbatim(mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: Any) -> None:
    import mlflow.tracking._tracking_service.utils as tracking_utils
    from mlflow import MlflowClient

    blocks = server_blocks()
    assert [lang for lang, _ in blocks] == ["python", "bash", "python", "python"]
    monkeypatch.chdir(tmp_path)
    # the README's first block sets MLflow's global tracking URI: put it back after this test
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    write_registry_project(tmp_path, experiment="registry-workflow")
    rng = np.random.default_rng(7)  # a new batch, drawn like the project's splits
    level = rng.integers(0, 3, 40)
    np.savez(tmp_path / "new.npz", x=(rng.integers(0, 90, (40, 8, 8)) + 80 * level[:, None, None]).astype(np.uint8),
             y=level, id=np.array([f"new-{i}" for i in range(40)]))

    namespace: dict[str, Any] = {}
    codes: dict[str, int] = {}
    for lang, code in blocks:
        code = code.replace(README_SERVER, mlflow_server.uri)
        if lang == "python":
            exec(compile(code, "README.md", "exec"), namespace)
            continue
        for line in code.splitlines():
            words = shlex.split(line)
            assert words[0] == "sparsecheck"
            codes[words[1]] = _cli(words[1:])
    printed = capsys.readouterr().out

    client = MlflowClient(mlflow_server.uri)
    # the last block ran the gate again from mlflow.models.evaluate on the validated version's logged
    # model (models:/m-...): that model's verdict is the latest check's, the version's the gate's
    (line,) = [ln for ln in printed.splitlines() if ln.startswith("evaluate: ")]
    _, evaluate_run, passed, verdict = line.split()
    champion = client.get_model_version_by_alias("digits", "champion")
    challenger = client.get_model_version_by_alias("digits", "challenger")
    assert champion.version != challenger.version
    # run: the gate passed, its verdict is on the challenger, which is now the validated version
    assert codes["run"] == 0
    results = json.loads((tmp_path / "sparsecheck-out" / "results.json").read_text())
    gate_run = results["mlflow"]["run_id"]
    tags = challenger.tags
    assert tags["sparsecheck.status"] == results["status"] == "pass"
    assert tags["sparsecheck.run_id"] == gate_run
    assert (tags["sparsecheck.failed_assertions"], tags["sparsecheck.spurious_findings"]) == ("0", "0")
    checked = dt.datetime.fromisoformat(tags["sparsecheck.checked_at"])
    assert checked.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - checked).total_seconds()) < 600
    assert client.get_model_version_by_alias("digits", "validated").version == challenger.version
    # the MLflow 3 logged model carries the verdict too, and the run names its model and links to it
    model_id = results["mlflow_model"]["model_id"]
    assert model_id and model_id.startswith("m-")
    assert client.get_logged_model(model_id).tags["sparsecheck.run_id"] == evaluate_run
    run = client.get_run(gate_run)
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
    assert {k: v for k, v in run.data.tags.items() if k in RUN_TAGS} == {
        "sparsecheck.model_uri": "models:/digits@challenger", "sparsecheck.model_name": "digits",
        "sparsecheck.model_version": challenger.version, "sparsecheck.model_run_id": challenger.run_id,
        "sparsecheck.model_id": model_id}
    assert results["mlflow_model"] == {"uri": "models:/digits@challenger", "tracking_uri": mlflow_server.uri,
                                       "name": "digits", "version": challenger.version, "alias": "challenger",
                                       "run_id": challenger.run_id, "model_id": model_id}
    assert results["model"]["kind"] == "mlflow"
    report = (tmp_path / "sparsecheck-out" / "report.html").read_text()
    assert f"digits version {challenger.version} (@challenger)" in report and model_id in report
    # compare: the champion had no check, so --run-missing ran one; the challenger's was found
    assert codes["compare"] in (0, 1)
    comparison = json.loads((tmp_path / "compare" / "compare.json").read_text())
    a, b = comparison["model_a"], comparison["model_b"]
    assert (a["given"], a["version"], a["checked_now"]) == ("models:/digits@champion", champion.version, True)
    assert (b["given"], b["version"], b["checked_now"], b["run_id"]) == (
        "models:/digits@challenger", challenger.version, False, gate_run)
    assert champion.tags["sparsecheck.run_id"] == a["run_id"] == comparison["run_a"]
    assert (tmp_path / "compare" / f"check-digits-v{champion.version}" / "results.json").is_file()
    assert f"A: models:/digits@champion = digits version {champion.version} (@champion), checked now" in printed
    # monitor: the validated version's check is the reference, and the monitoring run names the model
    assert codes["monitor"] in (0, 1)
    monitor_exp = client.get_experiment_by_name("registry-workflow-monitor")
    (monitoring,) = client.search_runs([monitor_exp.experiment_id])
    assert monitoring.data.tags["sparsecheck.reference_run"] == gate_run
    assert monitoring.data.tags["sparsecheck.model_version"] == challenger.version
    # the README's read-back printed the verdict
    readback = [ln for ln in printed.splitlines() if ln.startswith(f"{challenger.version} {{")]
    assert len(readback) == 1 and "'sparsecheck.status': 'pass'" in readback[0]
    assert f"'sparsecheck.run_id': '{gate_run}'" in readback[0]
    # mlflow.models.evaluate(..., evaluators=["sparsecheck"]) on the validated version: the gate passed there
    # mlflow.models.evaluate(..., evaluators=["sparsecheck"]): the gate passed, logged into the evaluation's run
    assert (passed, verdict) == ("1.0", "pass")
    evaluated = client.get_run(evaluate_run)
    assert evaluated.info.status == "FINISHED" and evaluated.data.tags["sparsecheck.status"] == "pass"
    assert {"report.html", "results.json"} <= {a.path for a in client.list_artifacts(evaluate_run)}
