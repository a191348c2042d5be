"""Models from the MLflow registry against a real ``mlflow server``: a failing gate, bad model URIs,
an unreachable server, a verdict that cannot be written, a version without a check.

Tiny nets are registered with ``mlflow.pytorch.log_model(..., registered_model_name=...)``; the
verdict and the alias are read back with MlflowClient. The passing gate, its promotion and the
run's links to its model are checked end to end by tests/test_registry_workflow.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparsecheck.tracking.registry import parse_model_uri
from tests.helpers import make_learned_net, register_model, write_registry_project

NAME = "sc-registry-tiny"
EXPERIMENT = "registry-tests"


def _cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    import logging

    from sparsecheck.cli import main

    root = logging.getLogger("sparsecheck")
    saved = (root.handlers[:], root.level)
    try:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
    finally:  # the CLI binds a handler to this test's captured stderr: do not leak it
        root.handlers[:], root.level = saved
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("sparsecheck: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def registry(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two versions of one registered model: champion (pickled) and challenger (torch.export), and a
    project whose config passes and one whose config fails."""
    root = tmp_path_factory.mktemp("registry")
    uri = mlflow_server.uri
    champion = register_model(uri, NAME, make_learned_net(seed=0), alias="champion", serialization_format="pickle")
    challenger = register_model(uri, NAME, make_learned_net(seed=1), alias="challenger")
    passing = write_registry_project(root, experiment=EXPERIMENT)
    failing = write_registry_project(root, experiment=EXPERIMENT, name="failing.yaml",
                                     assertions=[{"name": "perfect", "type": "accuracy", "min": 1.0}])
    return {"uri": uri, "root": root, "champion": champion, "challenger": challenger, "passing": passing,
            "failing": failing}


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


@pytest.mark.parametrize("uri, needle", [
    ("models:/digits", "is not an MLflow model URI"),
    ("models:/digits/three", "takes a version number"),
    ("models:/digits@", "an alias is written models:/NAME@ALIAS"),
    ("runs:/abc", "runs:/RUN_ID/PATH"),
    ("model.pt2", "is not an MLflow model URI"),
])
def test_malformed_uris_name_the_accepted_forms(uri: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_model_uri(uri)


def test_uri_forms() -> None:
    assert parse_model_uri("models:/digits/007").version == "7"
    assert parse_model_uri("models:/m-0123456789abcdef").model_id == "m-0123456789abcdef"
    run = parse_model_uri("runs:/0a1b/sub/model")
    assert (run.run_id, run.path, run.registered) == ("0a1b", "sub/model", False)


def test_failing_gate_never_moves_the_alias(registry: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    uri = registry["uri"]
    client = _client(uri)
    client.set_registered_model_alias(NAME, "release", registry["challenger"])
    code, _, err = _cli(capsys, "run", str(registry["failing"]), "--model", f"models:/{NAME}/{registry['champion']}",
                        "--tracking-uri", uri, "--promote-alias", "release", "--out", str(tmp_path / "o"),
                        "--device", "cpu")
    assert code == 1, err
    assert client.get_model_version_by_alias(NAME, "release").version == registry["challenger"]
    tags = client.get_model_version(NAME, registry["champion"]).tags
    assert (tags["sparsecheck.status"], tags["sparsecheck.failed_assertions"]) == ("fail", "1")
    assert "alias @release NOT moved: the gate failed (it still points at version " in err


@pytest.mark.parametrize("model, needle", [
    ("models:/sc-registry-tinyy@champion", "no registered model 'sc-registry-tinyy' at "),
    ("models:/sc-registry-tiny/99", "has no version 99 (versions: "),
    ("models:/sc-registry-tiny@ghost", "has no alias @ghost"),
    ("runs:/0123456789abcdef0123456789abcdef/model", "no MLflow run 0123456789abcdef0123456789abcdef"),
    ("models:/m-0123456789abcdef0123456789abcdef", "no logged model m-0123456789abcdef"),
    ("sc-registry-tiny", "--model: 'sc-registry-tiny' is not an MLflow model URI"),
])
def test_unknown_models_exit_2_naming_them(registry: dict[str, Any], tmp_path: Path, capsys: Any,
                                           model: str, needle: str) -> None:
    code, _, err = _cli(capsys, "run", str(registry["passing"]), "--model", model, "--tracking-uri", registry["uri"],
                        "--out", str(tmp_path / "o"))
    assert code == 2
    line = _error(err)
    assert needle in line
    if "@ghost" in model:  # the aliases that do exist are listed
        assert "@champion → " in line and "@challenger → " in line
    if "tinyy" in model:
        assert line.endswith("; did you mean 'sc-registry-tiny'?")
    assert not (tmp_path / "o").exists()


def test_promote_alias_needs_a_registered_version(registry: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    code, _, err = _cli(capsys, "run", str(registry["passing"]), "--promote-alias", "validated",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "mlflow.promote_alias: alias 'validated' can only be set on a registered model" in _error(err)
    code, _, err = _cli(capsys, "run", str(registry["passing"]), "--promote-alias", "latest",
                        "--out", str(tmp_path / "o"))
    assert code == 2 and "--promote-alias: 'latest' is not a usable alias" in _error(err)


def test_unreachable_server_exits_3(registry: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _cli(capsys, "run", str(registry["passing"]), "--model", f"models:/{NAME}@champion",
                        "--tracking-uri", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "o"))
    assert code == 3
    assert f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}" in _error(err)


def test_a_verdict_that_cannot_be_written_exits_3_after_the_outputs(registry: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    """The version disappears while the check runs (deleted by someone else): its tags cannot be
    written, which is exit 3 — and results.json and the report are there."""
    from sparsecheck.config import load_config
    from sparsecheck.errors import TrackingError
    from sparsecheck.pipeline import STAGES, run_pipeline

    uri = registry["uri"]
    doomed = register_model(uri, NAME, make_learned_net(seed=2))
    cfg = load_config(registry["passing"])
    cfg.use_model_uri(f"models:/{NAME}/{doomed}")

    def version_deleted(ctx: Any) -> None:
        _client(uri).delete_model_version(NAME, doomed)

    with pytest.raises(TrackingError) as exc:
        run_pipeline(cfg, tmp_path / "out", device="cpu", tracking_uri=uri, stages=[*STAGES, version_deleted])
    assert exc.value.exit_code == 3
    assert f"writing the verdict on {NAME} version {doomed} at {uri} failed" in str(exc.value)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["mlflow_model"]["version"] == doomed and (tmp_path / "out" / "report.html").is_file()
    assert _client(uri).get_run(results["mlflow"]["run_id"]).info.status == "FINISHED"


def test_compare_names_the_version_without_a_check(registry: dict[str, Any], capsys: Any) -> None:
    """No test here checks the challenger (the README workflow gates and compares versions end to end)."""
    version = registry["challenger"]
    code, _, err = _cli(capsys, "compare", f"models:/{NAME}@challenger", f"models:/{NAME}@champion",
                        "--tracking-uri", registry["uri"])
    assert code == 2
    line = _error(err)
    assert (f"models:/{NAME}@challenger is {NAME} version {version} (@challenger), which has no finished "
            f"sparsecheck check") in line
    assert f"sparsecheck run CONFIG.yaml --model models:/{NAME}/{version} --tracking-uri {registry['uri']}" in line


def test_comparison_names_the_model_versions_at_the_top() -> None:
    from sparsecheck.reports.compare import compare_results

    ok = {"status": "pass", "assertions": [{"name": "acc", "status": "pass", "severity": "error"}]}
    comparison = compare_results(ok, ok, run_a="r1", run_b="r2")
    comparison.model_a = {"given": "models:/digits@champion", "label": "digits version 1 (@champion)",
                          "run_id": "r1", "checked_now": True}
    comparison.model_b = {"given": "models:/digits@challenger", "label": "digits version 2 (@challenger)",
                          "run_id": "r2", "checked_now": False}
    markdown = comparison.to_markdown().splitlines()
    assert markdown[2:4] == [
        "- A: models:/digits@champion = digits version 1 (@champion), checked now (--run-missing) by run r1",
        "- B: models:/digits@challenger = digits version 2 (@challenger), checked by run r2"]
    page = comparison.to_html()
    assert page.index('id="models"') < page.index('id="verdict"')
    assert "B: models:/digits@challenger = digits version 2 (@challenger), checked by run r2" in page
    assert comparison.to_dict()["model_a"]["checked_now"] is True
