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
from sparsecheck.errors import ConfigError, TrackingError
from sparsecheck.monitor import (TAG_ALERT, TAG_FINGERPRINT, TAG_KIND, TAG_REFERENCE, MonitorReport,
                                 find_reference_run, monitor_batch, monitor_experiment_name)
from sparsecheck.pipeline import run_pipeline
from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage, sparse_stage

EXPERIMENT = "monitor-tests"
BATCH = 300


def _write_config(root: Path, uri: str, *, weights: str = "weights.pt", assertions: list | None = None,
                  name: str = "config.yaml") -> Path:
    raw = {
        "model": {"factory": "sparsecheck.demo:DemoNet", "factory_kwargs": {"width": 8, "n_features": 32},
                  "weights": weights, "input": DEMO_INPUT},
        "data": {"train": "train.npz", "val": "val.npz", "test": "test.npz", "metadata": "metadata.csv",
                 "class_names": CLASS_NAMES, "spurious_attributes": ["corner_mark"]},
        "features": {"cache_dir": "cache"},
        "sparse": {"n_lambdas": 10, "max_epochs": 50, "tol": 1e-3, "solver": "fista"},  # fast, rough
        "assertions": assertions if assertions is not None else [
            {"name": "agreement", "type": "sparse_agreement", "min": 0.0},
            {"name": "accuracy", "type": "accuracy", "min": 0.0}],
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


def _monitor_runs(uri: str, fingerprint: str) -> list[Any]:
    client = _client(uri)
    exp = client.get_experiment_by_name(monitor_experiment_name(EXPERIMENT))
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}'")


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
    assert [a["name"] for a in report.assertions] == ["agreement", "accuracy"]
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
    assert [a["name"] for a in report.assertions] == ["agreement"]  # the label-free one only
    assert any("['accuracy'] need labels" in n for n in report.notes)
    assert not any("no metadata" in n for n in report.notes)


def test_failing_assertion_alerts_without_drift(project: dict[str, Any]) -> None:
    strict = [{"name": "always-sure", "type": "prediction_schema", "probabilities": False,
               "checks": [{"column": "confidence", "check": "greater_than", "value": 0.999}]}]
    path = _write_config(project["root"], project["uri"], assertions=strict, name="strict.yaml")
    run = monitor_batch(load_config(path), project["batches"] / "quiet101.npz", device="cpu", force=True)
    assert run.alert and run.report.feature_drift.drifted_features == []
    assert run.report.alerts[0].startswith("assertion 'always-sure' failed")


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
    assert [(a["name"], a["status"]) for a in run.report.assertions] == [("accuracy-by-background", "pass"),
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
    assertions = [{"name": "accuracy", "status": "fail" if failing else "pass", "severity": "error",
                   "message": "accuracy 0.61 < 0.8"}]
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
