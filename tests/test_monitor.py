"""The monitoring job end to end: a real reference run on a real MLflow server, demo batches with and
without a shift of the planted cue, one run per batch, de-duplication, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sparsecheck.analysis.drift import class_mix_drift, feature_drift
from sparsecheck.analysis.stats import auc_effect
from sparsecheck.config import load_config
from sparsecheck.demo import CLASS_NAMES, DEMO_INPUT, DemoNet, make_demo_batch, make_demo_data
from sparsecheck.errors import ConfigError, DataError, TrackingError
from sparsecheck.monitor import (TAG_ALERT, TAG_FINGERPRINT, TAG_KIND, TAG_REFERENCE, MonitorReport,
                                 find_reference_run, monitor_batch, monitor_experiment_name)
from sparsecheck.pipeline import run_pipeline
from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage, sparse_stage
from sparsecheck.results import AssertionResult

EXPERIMENT = "monitor-tests"
BATCH = 300


def _write_config(root: Path, uri: str, *, weights: str = "weights.pt", assertions: list | None = None,
                  name: str = "config.yaml", chance_guard: bool = False) -> Path:
    assertions = list(assertions if assertions is not None else [
        {"name": "agreement", "type": "sparse_agreement", "min": 0.0},
        {"name": "accuracy", "type": "accuracy", "min": 0.0}])
    if not chance_guard:  # the model is a random-weight DemoNet, at chance by design: these tests are about drift
        assertions.append({"name": "better-than-chance", "enabled": False})
    raw = {
        "model": {"factory": "sparsecheck.demo:DemoNet", "factory_kwargs": {"width": 8, "n_features": 32},
                  "weights": weights, "input": DEMO_INPUT},
        "data": {"train": "train.npz", "val": "val.npz", "test": "test.npz", "metadata": "metadata.csv",
                 "class_names": CLASS_NAMES, "spurious_attributes": ["corner_mark"]},
        "features": {"cache_dir": "cache"},
        "sparse": {"n_lambdas": 10, "max_epochs": 50, "tol": 1e-3, "solver": "fista"},  # fast, rough
        "assertions": assertions,
        "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri, "log_sparse_model": False},
    }
    (root / name).write_text(yaml.safe_dump(raw))
    return root / name


def _write_batch(path: Path, seed: int, cue_rate: float, *, labels: bool = True) -> pd.DataFrame:
    b = make_demo_batch(seed=seed, n=BATCH, cue_rate=cue_rate)
    arrays = {"x": b.x, "id": b.ids, **({"y": b.y} if labels else {})}
    np.savez(path, **arrays)
    return b.metadata


@pytest.fixture(scope="module")
def project(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small demo project (random-weight DemoNet) whose reference run the pipeline logs to the server."""
    root = tmp_path_factory.mktemp("monitor-project")
    data = make_demo_data(seed=0, n_train=600, n_val=200, n_test=600)
    for split, d in data.items():
        np.savez(root / f"{split}.npz", x=d.x, y=d.y, id=d.ids)
    pd.concat([d.metadata for d in data.values()]).to_csv(root / "metadata.csv", index=False)
    torch.manual_seed(0)
    torch.save(DemoNet(width=8, n_features=32).state_dict(), root / "weights.pt")
    config_path = _write_config(root, mlflow_server.uri)
    ctx = run_pipeline(load_config(config_path), root / "out", device="cpu",
                       stages=[load_stage, extract_stage, dense_stage, sparse_stage])
    test = ctx.splits["test"]
    mark = test.metadata["corner_mark"].to_numpy() == "yes"
    used = ctx.sparse_layer.used_features()
    aucs = {int(f): auc_effect(np.asarray(test.features)[:, f], mark)[0] for f in used}
    cue = max(aucs, key=lambda f: abs(aucs[f] - 0.5))  # the used feature most associated with the cue
    batches = root / "batches"
    batches.mkdir()
    _write_batch(batches / "drifted.npz", 100, 0.8)
    for seed in (101, 102):
        _write_batch(batches / f"quiet{seed}.npz", seed, 0.3)
    meta = _write_batch(batches / "unlabelled.npz", 103, 0.3, labels=False)
    meta.to_csv(batches / "unlabelled.csv", index=False)
    return {"root": root, "config": config_path, "uri": mlflow_server.uri, "reference": ctx.results["mlflow"]["run_id"],
            "cue": cue, "cue_auc": aucs[cue], "batches": batches}


def _cli(argv: list[str]) -> int:
    import logging

    from sparsecheck.cli import main

    root = logging.getLogger("sparsecheck")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        with pytest.raises(SystemExit) as exc:
            main(argv)
    finally:  # the CLI binds a handler to this test's captured stderr: do not leak it
        root.handlers[:], root.level, root.propagate = saved
    return int(exc.value.code or 0)


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _monitor_runs(uri: str, fingerprint: str, *, deleted: bool = False) -> list[Any]:
    from mlflow.entities import ViewType

    client = _client(uri)
    exp = client.get_experiment_by_name(monitor_experiment_name(EXPERIMENT))
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}'",
                              run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY)


def test_drifted_batch_alerts_on_the_cue_feature(project: dict[str, Any], tmp_path: Path) -> None:
    assert abs(project["cue_auc"] - 0.5) > 0.2  # the fixture found a feature that tracks the cue
    cfg = load_config(project["config"])
    run = monitor_batch(cfg, project["batches"] / "drifted.npz", device="cpu")
    assert run.alert and not run.reused and run.exit_code == 1
    assert run.reference_run == project["reference"]  # found as the latest finished run of the experiment
    report = run.report
    assert project["cue"] in report.feature_drift.drifted_features
    row = report.feature_drift.table.set_index("feature").loc[project["cue"]]
    assert row.q_value < 0.01 and row.psi >= 0.1
    assert report.labelled and set(report.accuracy) == {"dense_accuracy", "sparse_accuracy"}
    assert [a.name for a in report.assertions] == ["agreement", "accuracy"]
    # one MLflow run, tagged and with its metrics and monitor.json
    client = _client(project["uri"])
    logged = client.get_run(run.run_id)
    tags, metrics = logged.data.tags, logged.data.metrics
    assert tags[TAG_KIND] == "monitor" and tags[TAG_REFERENCE] == project["reference"]
    assert tags[TAG_FINGERPRINT] == run.batch_fingerprint and tags[TAG_ALERT] == "true"
    assert logged.info.status == "FINISHED" and metrics["alert"] == 1.0
    assert metrics["n_drifted_features"] == len(report.feature_drift.drifted_features)
    assert f"psi/feature_{project['cue']}" in metrics and "class_mix_psi" in metrics
    local = client.download_artifacts(run.run_id, "monitor.json", str(tmp_path))
    saved = json.loads(Path(local).read_text())
    assert saved["alert"] is True and project["cue"] in saved["feature_drift"]["drifted_features"]
    exp = client.get_experiment(logged.info.experiment_id)
    assert exp.name == f"{EXPERIMENT}-monitor"
    [batch] = logged.inputs.dataset_inputs  # the batch is the run's dataset input
    assert [(t.key, t.value) for t in batch.tags] == [("mlflow.data.context", "monitoring")]
    from sparsecheck.data import load_dataset

    assert batch.dataset.name == "drifted"
    assert batch.dataset.digest == load_dataset(project["batches"] / "drifted.npz").digest()
    assert json.loads(batch.dataset.profile)["num_examples"] == BATCH


def test_undrifted_batches_stay_quiet(project: dict[str, Any], capsys: Any) -> None:
    cfg = load_config(project["config"])
    run = monitor_batch(cfg, project["batches"] / "quiet101.npz", reference=project["reference"], device="cpu")
    assert not run.alert and run.report.alerts == [] and run.report.feature_drift.drifted_features == []
    assert not run.report.class_mix.drifted
    capsys.readouterr()
    assert _cli(["monitor", str(project["config"]), "--batch", str(project["batches"] / "quiet102.npz"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("ok: no drift") and "logged as MLflow run" in out


def test_rerun_reuses_the_run_unless_forced(project: dict[str, Any], capsys: Any) -> None:
    cfg = load_config(project["config"])
    path = project["batches"] / "drifted.npz"
    first = monitor_batch(cfg, path, device="cpu")  # covered already, or scored now
    again = monitor_batch(cfg, path, device="cpu")
    assert again.reused and again.run_id == first.run_id and again.alert and again.report is None
    n_before = len(_monitor_runs(project["uri"], again.batch_fingerprint))
    capsys.readouterr()
    assert _cli(["monitor", str(project["config"]), "--batch", str(path), "--device", "cpu"]) == 1
    assert f"already covered by run {first.run_id} (alert: yes)" in capsys.readouterr().out
    assert len(_monitor_runs(project["uri"], again.batch_fingerprint)) == n_before
    assert _cli(["monitor", str(project["config"]), "--batch", str(path), "--device", "cpu", "--force"]) == 1
    assert len(_monitor_runs(project["uri"], again.batch_fingerprint)) == n_before + 1


def test_unlabelled_batch_with_metadata(project: dict[str, Any]) -> None:
    cfg = load_config(project["config"])
    batches = project["batches"]
    run = monitor_batch(cfg, batches / "unlabelled.npz", metadata=batches / "unlabelled.csv", device="cpu")
    report = run.report
    assert not report.labelled and report.accuracy == {} and not run.alert
    assert [a.name for a in report.assertions] == ["agreement"]  # the label-free one only
    assert any("['accuracy'] need labels" in n for n in report.notes)
    assert not any("no metadata" in n for n in report.notes)


def test_failing_assertion_alerts_without_drift(project: dict[str, Any]) -> None:
    strict = [{"name": "always-sure", "type": "prediction_schema", "probabilities": False,
               "checks": [{"column": "confidence", "check": "greater_than", "value": 0.999}]}]
    path = _write_config(project["root"], project["uri"], assertions=strict, name="strict.yaml")
    run = monitor_batch(load_config(path), project["batches"] / "quiet101.npz", device="cpu", force=True)
    assert run.alert and run.report.feature_drift.drifted_features == []
    assert run.report.alerts[0].startswith("assertion 'always-sure' failed")


def test_a_labelled_batch_at_chance_alerts(project: dict[str, Any]) -> None:
    """The implied better-than-chance runs on labelled batches; the random-weight model is at chance."""
    path = _write_config(project["root"], project["uri"], name="guarded.yaml", chance_guard=True)
    batches = project["batches"]
    run = monitor_batch(load_config(path), batches / "quiet101.npz", device="cpu", force=True)
    assert run.alert and run.report.feature_drift.drifted_features == []
    assert [a.name for a in run.report.assertions] == ["better-than-chance", "agreement", "accuracy"]
    guard = run.report.assertions[0]
    assert guard.status == "fail" and "is not significantly above chance" in guard.message
    assert run.report.alerts[0].startswith("assertion 'better-than-chance' failed: accuracy 0.")
    # an unlabelled batch cannot be judged against chance: no alarm, and no note asking for labels
    run = monitor_batch(load_config(path), batches / "unlabelled.npz", metadata=batches / "unlabelled.csv",
                        device="cpu", force=True)
    assert not run.alert and [a.name for a in run.report.assertions] == ["agreement"]
    assert not any("better-than-chance" in n for n in run.report.notes)


def test_sliced_assertions_wait_for_the_batch_metadata(project: dict[str, Any], tmp_path: Path) -> None:
    """A batch without metadata cannot be sliced by attribute: skipped with a note, not an alarm."""
    sliced = [{"name": "accuracy-by-background", "type": "accuracy", "by": ["background"], "max_drop": 1.0},
              {"name": "ece-by-site", "type": "ece", "by": [["site", "background"]], "max": 1.0}]
    path = _write_config(project["root"], project["uri"], assertions=sliced, name="sliced.yaml")
    batch = project["batches"] / "quiet101.npz"
    run = monitor_batch(load_config(path), batch, device="cpu", force=True)
    assert not run.alert and run.report.assertions == []
    notes = " | ".join(run.report.notes)
    assert "'accuracy-by-background' skipped: the batch lacks metadata column background" in notes
    assert "'ece-by-site' skipped: the batch lacks metadata column site, metadata column background" in notes
    meta = tmp_path / "quiet101.csv"
    with np.load(batch) as z:
        ids = z["id"]
    pd.DataFrame({"id": ids, "background": np.where(np.arange(len(ids)) % 2, "light", "dark"),
                  "site": "north"}).to_csv(meta, index=False)
    run = monitor_batch(load_config(path), batch, metadata=meta, device="cpu", force=True)
    assert [(a.name, a.status) for a in run.report.assertions] == [("accuracy-by-background", "pass"),
                                                                       ("ece-by-site", "pass")]


def test_reference_errors(project: dict[str, Any], capsys: Any) -> None:
    assert find_reference_run(EXPERIMENT, project["uri"]) == project["reference"]
    with pytest.raises(TrackingError, match="no MLflow experiment 'nope'"):
        find_reference_run("nope", project["uri"])
    capsys.readouterr()
    code = _cli(["monitor", str(project["config"]), "--batch", str(project["batches"] / "quiet101.npz"),
                 "--reference", "f" * 32, "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sparsecheck:")]
    assert code == 2 and len(err) == 1 and "f" * 32 in err[0] and "not found" in err[0]


def test_a_different_model_is_refused(project: dict[str, Any]) -> None:
    torch.manual_seed(1)
    torch.save(DemoNet(width=8, n_features=32).state_dict(), project["root"] / "other.pt")
    path = _write_config(project["root"], project["uri"], weights="other.pt", name="other.yaml")
    with pytest.raises(ConfigError, match="fingerprint .* differs from reference run"):
        # force: the batch and reference are already covered, which would answer before the model check
        monitor_batch(load_config(path), project["batches"] / "quiet101.npz", device="cpu", force=True)


def test_a_batch_of_precomputed_features_needs_no_model(project: dict[str, Any], tmp_path: Path) -> None:
    """--batch can be features extracted elsewhere (``extract_to``): a config that names no model
    (its splits are the run's own cache entries) scores them like the images; features from
    another model are refused by the fingerprint in their meta.json."""
    import shutil

    from sparsecheck.data import load_dataset
    from sparsecheck.data.precomputed import META_FILE
    from sparsecheck.features.extraction import extract_to

    cfg = load_config(project["config"])
    model = cfg.model.load()
    batch = load_dataset(project["batches"] / "drifted.npz", name="drifted")
    extract_to(tmp_path / "drifted", model, batch, cfg.model.input_spec(model), device="cpu")
    raw = yaml.safe_load(project["config"].read_text())
    raw.pop("model")
    raw["data"]["metadata"] = str(project["root"] / "metadata.csv")
    for entry in (project["root"] / "cache").iterdir():  # the reference run's features, by split
        split = Path(json.loads((entry / META_FILE).read_text())["data_source"]).stem
        raw["data"][split] = str(entry)
    no_model = load_config(_write(tmp_path / "features.yaml", raw))
    assert not no_model.model.sources_given
    run = monitor_batch(no_model, tmp_path / "drifted", device="cpu")
    assert run.alert and not run.reused and run.reference_run == project["reference"]
    assert project["cue"] in run.report.feature_drift.drifted_features
    assert run.report.batch == str(tmp_path / "drifted") and run.report.n == BATCH
    shutil.copytree(tmp_path / "drifted", tmp_path / "other")
    meta = json.loads((tmp_path / "other" / META_FILE).read_text())
    (tmp_path / "other" / META_FILE).write_text(json.dumps({**meta, "model_fingerprint": "0123456789abcdef"}))
    with pytest.raises(DataError, match="extracted with model 0123456789abcdef, but reference run"):
        # force: the same features are already covered, which would answer before the model check
        monitor_batch(no_model, tmp_path / "other", device="cpu", force=True)


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def _scored(n_features: int, n_shifted: int, *, failing: bool) -> MonitorReport:
    """A MonitorReport as score_batch + monitor_batch build it, without a model or MLflow."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(600, n_features))
    batch = rng.normal(size=(400, n_features))
    batch[:, :n_shifted] += np.linspace(3.0, 0.8, n_shifted)  # feature 0 drifts most
    fd = feature_drift(ref, batch, features=list(range(100, 100 + n_features)))
    cm = class_mix_drift([100, 100, 100], [40, 100, 160], class_names=["a", "b", "c"])
    rows = fd.table.set_index("feature")
    alerts = [f"feature {f} drifted: KS {rows.loc[f].ks_statistic:.3f} (q {rows.loc[f].q_value:.2g}), "
              f"PSI {rows.loc[f].psi:.3f}" for f in fd.drifted_features]
    alerts.append("predicted-class mix drifted: PSI 0.3 (p 1e-9); largest change c 33.3% -> 40.0%")
    assertions = [AssertionResult(name="accuracy", status="fail" if failing else "pass", severity="error",
                                  message="accuracy 0.61 < 0.8")]
    if failing:
        alerts.append("assertion 'accuracy' failed: accuracy 0.61 < 0.8")
    return MonitorReport(batch="drifted.npz", batch_fingerprint="abc", n=400, labelled=True, reference_run="r1",
                         feature_drift=fd, class_mix=cm, assertions=assertions, alerts=alerts,
                         notes=[f"note {i}" for i in range(6)])


def test_summary_of_a_drifted_batch_is_short_and_verdict_first() -> None:
    report = _scored(80, 73, failing=True)
    drifted = report.feature_drift.drifted_features
    assert len(drifted) >= 60 and len(report.alerts) >= 62  # the "73 alert lines"
    lines = report.summary().splitlines()
    assert len(lines) <= 25
    head = lines[0]
    assert head.startswith("ALERT: ") and f"{len(drifted)} of 80 features drifted" in head
    assert "predicted-class mix drifted" in head and "1 error-severity assertion failed" in head
    # the most drifted features by name, largest PSI first, then the rest counted
    shown = [line for line in lines if line.startswith("  alert: feature ")]
    assert [int(line.split()[2]) for line in shown] == drifted[:8]
    assert f"alert: feature {drifted[0]} drifted" in report.summary()
    assert any(f"and {len(drifted) - 8} more drifted features" in line for line in lines)
    assert any("assertion 'accuracy' failed" in line for line in lines)
    assert any("and 3 more notes" in line for line in lines)


def test_summary_of_a_quiet_batch_says_ok_first() -> None:
    report = _scored(20, 0, failing=False)
    report.alerts = []
    report.class_mix = class_mix_drift([100, 100, 100], [100, 101, 99], class_names=["a", "b", "c"])
    lines = report.summary().splitlines()
    assert not report.alert and lines[0].startswith("ok: no drift, the one assertion passes")
    assert not any(line.startswith("  alert:") for line in lines)


# ----------------------------------------------------------------------------- a job that holds up on a schedule
def _active_runs(uri: str, fingerprint: str) -> list[Any]:
    return [r for r in _monitor_runs(uri, fingerprint) if r.info.lifecycle_stage == "active"]


@pytest.mark.slow  # two fresh processes (imports, model, MLflow) side by side: about 30 s on 2 shared cores
def test_two_monitors_started_together_log_one_run(project: dict[str, Any], tmp_path: Path) -> None:
    """Two real processes on the same new batch at the same moment, against the real server.

    The claim logic itself is checked in every run by the next test (a competing claim made by hand).
    """
    import os
    import subprocess
    import sys

    from sparsecheck.data import load_dataset

    batch = tmp_path / "twins.npz"
    _write_batch(batch, 201, 0.3)
    fingerprint = load_dataset(batch).with_geometry(load_config(project["config"]).model.input.to_spec().geometry
                                                   ).fingerprint()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "sparsecheck.cli", "monitor", str(project["config"]), "--batch", str(batch),
            "--device", "cpu", "--tracking-uri", project["uri"]]
    procs = [subprocess.Popen(argv + ["--out", str(tmp_path / f"out{i}")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    runs = _active_runs(project["uri"], fingerprint)
    assert len(runs) == 1, (codes, outputs)
    # usually both claimed it (the loser's run is deleted, KILLED); never more than that one extra run
    everything = _monitor_runs(project["uri"], fingerprint, deleted=True)
    assert [r.info.lifecycle_stage for r in everything].count("deleted") == len(everything) - 1 <= 1
    [run] = runs
    assert run.info.status == "FINISHED" and codes[0] == codes[1] == 0, outputs
    # both jobs report the one run: one logged it, the other found it (or waited for it)
    logged = [out for out, _ in outputs if f"logged as MLflow run {run.info.run_id}" in out]
    covered = [out for out, _ in outputs if f"already covered by run {run.info.run_id}" in out]
    assert len(logged) == 1 and len(covered) == 1, outputs
    for i in range(2):
        saved = json.loads((tmp_path / f"out{i}" / "monitor.json").read_text())
        assert saved["mlflow"]["run_id"] == run.info.run_id and saved["batch_fingerprint"] == fingerprint


def test_a_job_that_lost_the_claim_waits_for_the_winner(project: dict[str, Any], tmp_path: Path) -> None:
    """Another job's claim (a RUNNING run on the same batch, started first) decides; a stale one does not."""
    import threading
    import time

    cfg = load_config(project["config"])
    batch = tmp_path / "claimed.npz"
    _write_batch(batch, 202, 0.3)
    from sparsecheck.data import load_dataset

    fingerprint = load_dataset(batch).with_geometry(cfg.model.input.to_spec().geometry).fingerprint()
    client = _client(project["uri"])
    exp_id = client.get_experiment_by_name(monitor_experiment_name(EXPERIMENT)).experiment_id
    tags = {TAG_KIND: "monitor", TAG_FINGERPRINT: fingerprint, TAG_REFERENCE: project["reference"]}
    stale = client.create_run(exp_id, tags=tags, start_time=int((time.time() - 7 * 3600) * 1000))  # a dead job
    other = client.create_run(exp_id, tags=tags)  # a live job, which finishes (with an alert) a bit later

    def finish() -> None:
        time.sleep(3)
        client.set_tag(other.info.run_id, TAG_ALERT, "true")
        client.set_terminated(other.info.run_id, "FINISHED")

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        run = monitor_batch(cfg, batch, device="cpu")
    finally:
        thread.join()
    assert run.reused and run.run_id == other.info.run_id and run.alert and run.report is None
    active = {r.info.run_id for r in _active_runs(project["uri"], fingerprint)}
    assert active == {other.info.run_id, stale.info.run_id}  # this job's own run was deleted
    # the stale claim alone does not block: a job goes on and logs (and the stale run is never a winner)
    client.delete_run(other.info.run_id)
    mine = monitor_batch(cfg, batch, device="cpu")
    assert not mine.reused and mine.run_id not in (stale.info.run_id, other.info.run_id)
    assert client.get_run(mine.run_id).info.status == "FINISHED"


def test_monitor_out_writes_the_report_and_json(project: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    path = project["batches"] / "drifted.npz"
    out = tmp_path / "report"
    capsys.readouterr()
    assert _cli(["monitor", str(project["config"]), "--batch", str(path), "--device", "cpu", "--out", str(out)]) == 1
    saved = json.loads((out / "monitor.json").read_text())
    assert saved["alert"] is True and project["cue"] in saved["feature_drift"]["drifted_features"]
    assert saved["mlflow"]["run_id"] and (out / ".sparsecheck").is_file()
    page = (out / "monitor.html").read_text()
    assert 'data-kind="alert"' in page and f"feature {project['cue']} drifted" in page and "<script" not in page
    assert sorted(p.name for p in out.iterdir()) == [".sparsecheck", "monitor.html", "monitor.json"]
    # a user's own folder is refused, as for `run --out`; --force writes into it and leaves their files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert _cli(["monitor", str(project["config"]), "--batch", str(path), "--device", "cpu", "--out", str(mine)]) == 2
    assert "not empty and was not written by sparsecheck" in capsys.readouterr().err
    assert not (mine / "monitor.json").exists()


def test_an_unreachable_server_is_retried_then_exit_3(project: dict[str, Any], tmp_path: Path, capsys: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there
    monkeypatch.setenv("SPARSECHECK_TRACKING_ATTEMPTS", "3")
    monkeypatch.setenv("SPARSECHECK_TRACKING_BACKOFF_S", "0.4")
    capsys.readouterr()
    start = time.monotonic()
    code = _cli(["monitor", str(project["config"]), "--batch", str(project["batches"] / "quiet101.npz"),
                 "--device", "cpu", "--tracking-uri", uri, "--out", str(tmp_path / "out")])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 3 and 1.2 <= elapsed < 30  # waited 0.4 + 0.8 s between the 3 attempts, and no longer
    assert err.count("did not answer (attempt") == 2 and "retrying in 0.8 s" in err
    last = [line for line in err.splitlines() if line.startswith("sparsecheck: error:")]
    assert len(last) == 1 and f"cannot reach the MLflow tracking server at {uri} after 3 attempts" in last[0]
    assert not (tmp_path / "out").exists()  # the folder it created for nothing is gone
    monkeypatch.setenv("SPARSECHECK_TRACKING_ATTEMPTS", "many")
    assert _cli(["monitor", str(project["config"]), "--batch", str(project["batches"] / "quiet101.npz"),
                 "--tracking-uri", uri]) == 2
    assert "$SPARSECHECK_TRACKING_ATTEMPTS" in capsys.readouterr().err
