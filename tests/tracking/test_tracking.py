"""MLflow as the system of record: the embedded SQLite default and a real ``mlflow server``.

Runs are logged through the real pipeline's ``write_outputs`` and read back with MlflowClient.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsecheck.errors import DataError, TrackingError
from sparsecheck.pipeline import write_outputs
from sparsecheck.tracking.reading import download_run_artifact, load_run_feature_attributes, load_run_results
from sparsecheck.tracking.run_logging import metrics_from_results, params_from_config
from sparsecheck.tracking.store import resolve_tracking_uri

EXPECTED_ARTIFACTS = {"report.html", "results.json", "activations.npz", "sparse_layer", "features"}


@pytest.fixture
def sqlite_dir(mlflow_cwd: Path) -> Path:
    """The session's working directory for the SQLite default: creating a store costs seconds."""
    return mlflow_cwd


def client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def artifact_names(client: Any, run_id: str, path: str | None = None) -> set[str]:
    return {Path(f.path).name for f in client.list_artifacts(run_id, path)}


def check_logged_run(ctx: Any, uri: str) -> tuple[Any, Any]:
    """What every logged run must hold, read back through MlflowClient."""
    local = json.loads((Path(ctx.out_dir) / "results.json").read_text())
    info = local["mlflow"]
    assert info["tracking_uri"] == uri and info["experiment_name"] == "sparsecheck-tests"
    client = client_for(uri)
    run = client.get_run(info["run_id"])
    assert run.info.experiment_id == info["experiment_id"]
    assert run.info.status == "FINISHED"
    assert run.data.params == params_from_config(ctx.config)
    metrics = run.data.metrics
    assert metrics == pytest.approx(metrics_from_results(local))
    assert metrics["dense_accuracy"] == pytest.approx(local["sparse_layer"]["dense_accuracy"])
    assert metrics["sparse_accuracy"] == pytest.approx(local["sparse_layer"]["sparse_accuracy"])
    assert metrics["n_used_features"] == len(ctx.sparse_layer.used_features())
    assert metrics["slice_1_error_rate"] == pytest.approx(0.81) and "slice_3_error_rate" not in metrics
    assert (metrics["assertions_passed"], metrics["assertions_failed"], metrics["assertions_failing"]) == (1, 2, 1)
    tags = run.data.tags
    assert tags["sparsecheck.status"] == local["status"] == "fail"
    assert tags["sparsecheck.kind"] == "run"
    assert tags["sparsecheck.version"] == local["sparsecheck_version"]
    assert tags["sparsecheck.model_fingerprint"] == local["model"]["fingerprint"]
    assert EXPECTED_ARTIFACTS <= artifact_names(client, run.info.run_id)
    assert {"sparse_layer.json", "sparse_layer.npz"} <= artifact_names(client, run.info.run_id, "sparse_layer")
    used = ctx.sparse_layer.used_features()
    assert len(artifact_names(client, run.info.run_id, "features")) == len(used)
    # results.json inside MLflow names its own run
    assert load_run_results(run.info.run_id, uri).to_dict() == local
    return client, run


def test_default_store_is_sqlite_in_the_working_directory(run_ctx: Any, sqlite_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(sqlite_dir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_outputs(run_ctx)
    out, err = capfd.readouterr()
    uri = f"sqlite:///{sqlite_dir / 'mlflow.db'}"
    assert (sqlite_dir / "mlflow.db").is_file() and run_ctx.results["mlflow"]["tracking_uri"] == uri
    client, run = check_logged_run(run_ctx, uri)
    # artifacts sit beside the database, where `mlflow ui --backend-store-uri sqlite:///mlflow.db` finds them
    assert run.info.artifact_uri.startswith((sqlite_dir / "mlruns").as_uri())
    assert (sqlite_dir / "mlruns").is_dir()
    # MLflow stayed quiet: no INFO lines from its store or alembic, no "View run" prints
    for noise in ("mlflow", "alembic", "View run", "INFO"):
        assert noise not in out + err, (noise, out, err)


def test_mlflow_and_alembic_info_lines_are_held_back(capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    import mlflow  # noqa: F401  (its import sets its own logger level: take the snapshot after it)

    from sparsecheck.tracking.store import _quiet

    db_log = logging.getLogger("mlflow.store.db.utils")  # where MLflow announces schema creation
    before = (logging.getLogger("mlflow").level, logging.getLogger("alembic").level)
    with _quiet():
        db_log.info("Creating initial MLflow database tables...")
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        print("🏃 View run at http://x")
    assert (logging.getLogger("mlflow").level, logging.getLogger("alembic").level) == before
    out, err = capfd.readouterr()
    assert out == "" and "Creating initial" not in err and "SQLiteImpl" not in err
    db_log.warning("a real problem")  # warnings still get through, outside and inside
    assert "a real problem" in capfd.readouterr().err


def test_tracking_server(run_ctx: Any, mlflow_server: Any, capfd: pytest.CaptureFixture[str]) -> None:
    run_ctx.config.mlflow.tracking_uri = mlflow_server.uri + "/"
    write_outputs(run_ctx)
    out, _ = capfd.readouterr()
    assert "View run" not in out
    client, run = check_logged_run(run_ctx, mlflow_server.uri)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    stored = [p for p in mlflow_server.artifacts.rglob("report.html") if run.info.run_id in p.parts]  # other tests log too
    assert len(stored) == 1 and stored[0].read_bytes() == (Path(run_ctx.out_dir) / "report.html").read_bytes()
    ui = run_ctx.results["mlflow"]["ui_url"]
    assert ui == f"{mlflow_server.uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f'href="{ui}"' in (Path(run_ctx.out_dir) / "report.html").read_text()
    # the sparse layer comes back from the server and loads
    from sparsecheck.sparse import SparseDecisionLayer

    layer_dir = download_run_artifact(run.info.run_id, "sparse_layer", mlflow_server.uri)
    again = SparseDecisionLayer.load(layer_dir)
    assert np.array_equal(again.weight_, run_ctx.sparse_layer.weight_)
    with pytest.raises(TrackingError, match="not found"):
        load_run_results("0" * 32, mlflow_server.uri)


def test_activations_file_matches_the_test_split(run_ctx: Any) -> None:
    run_ctx.config.mlflow.enabled = False
    write_outputs(run_ctx)
    with np.load(Path(run_ctx.out_dir) / "activations.npz", allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    test, used = run_ctx.splits["test"], run_ctx.sparse_layer.used_features()
    assert sorted(data) == ["activations", "feature_ids", "ids", "labels"]
    assert data["ids"].tolist() == [str(i) for i in test.ids]
    assert data["feature_ids"].tolist() == used.tolist()
    assert data["activations"].dtype == np.float32
    assert np.array_equal(data["activations"], np.asarray(test.features)[:, used])
    assert np.array_equal(data["labels"], test.labels)
    assert run_ctx.results["mlflow"] is None


def test_the_whole_association_table_is_a_linked_artifact(run_ctx: Any, sqlite_dir: Path) -> None:
    """results.json lists the significant associations and points to the whole table, a Parquet
    file beside it and among the MLflow run's artifacts; the report links to it."""
    import dataclasses

    import pandas as pd

    from sparsecheck.analysis.association import association_records, strongest_significant
    from sparsecheck.pipeline.stages import interpret_stage
    from sparsecheck.results import RunResults, load_feature_attributes

    # beside the random colour and site: an attribute that the first used feature fires on within each class
    test, layer = run_ctx.splits["test"], run_ctx.sparse_layer
    feature = int(layer.used_features()[0])
    acts = np.asarray(test.features)[:, feature]
    high = np.zeros(len(acts), dtype=bool)
    for c in np.unique(test.labels):
        rows = test.labels == c
        high[rows] = acts[rows] > np.median(acts[rows])
    meta = test.metadata.assign(glow=np.where(high, "on", "off"))
    run_ctx.splits = {**run_ctx.splits, "test": dataclasses.replace(test, metadata=meta)}
    run_ctx.config.analysis.associations_per_feature = 1
    run_ctx.config.mlflow.tracking_uri = uri = f"sqlite:///{sqlite_dir / 'mlflow.db'}"
    interpret_stage(run_ctx)
    write_outputs(run_ctx)

    out = Path(run_ctx.out_dir)
    table = run_ctx.feature_attributes  # the whole table stays in memory for the assertions
    results = json.loads((out / "results.json").read_text())
    listed = results["feature_attributes"]
    kept = strongest_significant(table, fdr=0.05, per_feature=1)
    assert listed == json.loads(json.dumps(association_records(kept)))
    assert 0 < len(listed) < len(table) and all(r["q_value"] <= 0.05 for r in listed)
    assert len({r["feature"] for r in listed}) == len(listed)  # one per feature
    assert any((r["feature"], r["attribute"], r["value"]) == (feature, "glow", "on") for r in listed)
    pointer = results["feature_attributes_table"]
    assert pointer == {"path": "feature_attributes.parquet", "format": "parquet", "rows": len(table),
                       "columns": list(table.columns), "listed": {"fdr": 0.05, "per_feature": 1, "rows": len(listed)}}
    assert RunResults.from_json(out / "results.json").feature_attributes_table.rows == len(table)
    pd.testing.assert_frame_equal(pd.read_parquet(out / pointer["path"]), table.reset_index(drop=True))
    pd.testing.assert_frame_equal(load_feature_attributes(out / "results.json"), table.reset_index(drop=True))
    assert 'href="feature_attributes.parquet"' in (out / "report.html").read_text()

    run_id = results["mlflow"]["run_id"]
    assert "feature_attributes.parquet" in artifact_names(client_for(uri), run_id)
    pd.testing.assert_frame_equal(load_run_feature_attributes(run_id, uri), table.reset_index(drop=True))

    # a results.json of 1.0 held the whole table inline and no pointer: it still reads as the table
    old = out.parent / "old"
    old.mkdir()
    before = dict(results, schema_version="1.0", feature_attributes=association_records(table))
    del before["feature_attributes_table"]
    (old / "results.json").write_text(json.dumps(before))
    pd.testing.assert_frame_equal(load_feature_attributes(old), table.reset_index(drop=True), check_dtype=False)
    # a table that is not there, or not the one described, is refused with the file named
    (out / "feature_attributes.parquet").unlink()
    with pytest.raises(DataError, match="feature_attributes.parquet.*is missing"):
        load_feature_attributes(out)
    table.iloc[:1].to_parquet(out / "feature_attributes.parquet")
    with pytest.raises(DataError, match=f"has 1 rows but results.json says {len(table)}"):
        load_feature_attributes(out)


def test_disabled_logging_touches_no_store(run_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_ctx.config.mlflow.enabled = False
    run_ctx.sparse_layer = None  # a run without a layer: no activations, and no stale file either
    (Path(run_ctx.out_dir) / "activations.npz").write_bytes(b"left by an earlier run")
    (Path(run_ctx.out_dir) / "feature_attributes.parquet").write_bytes(b"left by an earlier run")
    write_outputs(run_ctx)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert not (Path(run_ctx.out_dir) / "activations.npz").exists()
    assert not (Path(run_ctx.out_dir) / "feature_attributes.parquet").exists()
    assert "feature_attributes_table" not in run_ctx.results
    assert json.loads((Path(run_ctx.out_dir) / "results.json").read_text())["mlflow"] is None
    assert (Path(run_ctx.out_dir) / "report.html").is_file()


def test_unreachable_server_keeps_local_outputs_and_fails_with_exit_3(run_ctx: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"  # nothing listens there
    run_ctx.config.mlflow.tracking_uri = uri
    with pytest.raises(TrackingError, match=f"cannot reach the MLflow tracking server at {uri}") as err:
        write_outputs(run_ctx)
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    results = json.loads((Path(run_ctx.out_dir) / "results.json").read_text())
    assert results["mlflow"] is None and results["status"] == "fail"
    assert (Path(run_ctx.out_dir) / "report.html").is_file()


def test_unusable_sqlite_store_is_a_tracking_error(run_ctx: Any, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    uri = f"sqlite:///{tmp_path}/a-file/mlflow.db"
    run_ctx.config.mlflow.tracking_uri = uri
    with pytest.raises(TrackingError, match=f"cannot log to the MLflow store {uri}"):
        write_outputs(run_ctx)
    assert (Path(run_ctx.out_dir) / "results.json").is_file()


def test_failure_midway_marks_the_run_failed(run_ctx: Any, sqlite_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sparsecheck.pipeline.run as pipeline_run

    uri = f"sqlite:///{sqlite_dir / 'mlflow.db'}"
    run_ctx.config.mlflow.tracking_uri = uri

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline_run, "write_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_outputs(run_ctx)
    assert not (Path(run_ctx.out_dir) / "results.json").exists(), "no complete-looking result"
    run = client_for(uri).get_run(run_ctx.results["mlflow"]["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["sparsecheck.status"] == "error"


def test_many_and_long_params_are_logged(run_ctx: Any, sqlite_dir: Path) -> None:
    uri = f"sqlite:///{sqlite_dir / 'mlflow.db'}"
    cfg = run_ctx.config
    cfg.mlflow.tracking_uri = uri
    cfg.model.factory_kwargs = {f"option {i}": i for i in range(150)}  # > 100 params: several batches
    cfg.data.class_names = [f"a rather long class name {i}" for i in range(1000)]
    cfg.mlflow.tags = {"team": "vision"}
    write_outputs(run_ctx)
    run = client_for(uri).get_run(run_ctx.results["mlflow"]["run_id"])
    params = run.data.params
    assert len(params) == len(cfg.to_flat_dict()) > 190
    assert params["model.factory_kwargs.option 149"] == "149"
    assert len(params["data.class_names"]) == 6000 and params["data.class_names"].endswith("chars]")
    assert run.data.tags["team"] == "vision"


def test_reading_runs_back_fails_clearly(run_ctx: Any, sqlite_dir: Path) -> None:
    uri = f"sqlite:///{sqlite_dir / 'mlflow.db'}"
    run_ctx.config.mlflow.tracking_uri = uri
    write_outputs(run_ctx)
    run_id = run_ctx.results["mlflow"]["run_id"]
    with pytest.raises(TrackingError, match="not found"):
        load_run_results("f" * 32, uri)
    with pytest.raises(TrackingError, match="no artifact 'nothing.json'"):
        download_run_artifact(run_id, "nothing.json", uri)
    path = download_run_artifact(run_id, "activations.npz", uri)
    try:
        with np.load(path) as npz:
            assert npz["activations"].shape[1] == len(run_ctx.sparse_layer.used_features())
    finally:
        import shutil

        shutil.rmtree(path.parent, ignore_errors=True)


def test_prefetch_opens_the_store_in_the_background(run_ctx: Any, sqlite_dir: Path, tmp_path: Path) -> None:
    from sparsecheck.tracking import store as tracking

    (tmp_path / "link").symlink_to(sqlite_dir)  # same store, new URI: MLflow opens it afresh, in the thread
    uri = f"sqlite:///{tmp_path / 'link' / 'mlflow.db'}"
    tracking.prefetch(uri)
    thread = tracking._prefetch_threads[uri]
    tracking.prefetch(uri)  # idempotent
    assert tracking._prefetch_threads[uri] is thread
    run_ctx.config.mlflow.tracking_uri = uri
    write_outputs(run_ctx)  # waits for the thread, then uses the store it opened
    assert not thread.is_alive()
    run = client_for(uri).get_run(run_ctx.results["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and "report.html" in artifact_names(client_for(uri), run.info.run_id)


def test_tracking_uri_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000/")
    assert resolve_tracking_uri() == "http://mlflow.internal:5000"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"  # explicit beats the env


def test_metrics_from_results_handles_partial_results() -> None:
    from sparsecheck.results import RunResults

    assert metrics_from_results(RunResults(status="pass")) == {
        "n_slices": 0.0, "n_significant_slices": 0.0, "assertions_total": 0.0, "assertions_passed": 0.0,
        "assertions_failed": 0.0, "assertions_errored": 0.0, "assertions_failing": 0.0, "n_spurious_findings": 0.0,
        "n_automatic_findings": 0.0, "n_feature_cards": 0.0}
    metrics = metrics_from_results({  # a results.json as read: sections missing, a value not finite
        "status": "fail",
        "sparse_layer": {"dense_accuracy": 0.9, "sparse_accuracy": float("nan"), "sparsity": 97.5},
        "slices": [{"predicates": {"site": "a"}, "size": 9, "error_rate": 0.5, "significant": True}] * 7,
        "assertions": [{"name": "w", "status": "error", "severity": "warning"},
                       {"name": "e", "status": "fail", "severity": "error"}],
        "timings": {"load": 1.5, "sparse fit": 2.0},
    })
    assert "sparse_accuracy" not in metrics and metrics["sparsity"] == 97.5
    assert [k for k in metrics if k.startswith("slice_")] == [f"slice_{i}_error_rate" for i in range(1, 6)]
    assert metrics["n_significant_slices"] == 7
    assert (metrics["assertions_errored"], metrics["assertions_failed"], metrics["assertions_failing"]) == (1, 1, 1)
    assert metrics["time_sparse_fit_s"] == 2.0
    typed = RunResults.from_dict({"status": "fail", "sparse_layer": {"dense_accuracy": 0.9, "sparsity": 97.5},
                                  "assertions": [{"name": "a", "status": "fail"}], "timings": {"load": 1.5}})
    assert metrics_from_results(typed) == metrics_from_results(typed.to_dict())  # a run's typed results, or a dict


def test_credentials_never_reach_the_outputs(run_ctx: Any) -> None:
    from sparsecheck.tracking.store import _redact

    assert _redact("https://me:secret@mlflow.example.com:8443/x") == "https://mlflow.example.com:8443/x"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_ctx.config.mlflow.tracking_uri = f"http://me:secret@127.0.0.1:{port}"
    with pytest.raises(TrackingError) as err:
        write_outputs(run_ctx)
    assert f"http://127.0.0.1:{port}" in str(err.value) and "secret" not in str(err.value)
