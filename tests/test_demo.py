"""`sparsecheck demo` end to end, as the README runs it: a fresh directory, the real CLI.

One demo run (plus a re-run for the cache) is shared by the checks below; each names the issue
criterion it covers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo-cwd")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "sparsecheck", "demo", "--device", "cpu"]
    first = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    second = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    out = work / "sparsecheck-demo"
    return {"work": work, "out": out, "first": first, "second": second,
            "results": json.loads((out / "results.json").read_text()),
            "truth": json.loads((out / "data" / "truth.json").read_text())}


ROOT = Path(__file__).resolve().parents[1]


def readme_monitor_commands() -> list[str]:
    """The demo's ``sparsecheck monitor`` lines of the README's and the site's ```bash blocks (tests/test_readme.py
    keeps them and the registry workflow the only others)."""
    from tests.test_readme import DEMO_MONITOR, doc_text

    blocks = re.findall(r"```bash\n(.*?)```", doc_text(), flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith(DEMO_MONITOR)]


def run_verbatim(demo, lines: list[str]) -> dict[str, subprocess.CompletedProcess]:
    """Run README ``sparsecheck ...`` lines as they are written, where the demo ran."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    runs = {}
    for line in lines:
        cmd = [sys.executable, "-m", "sparsecheck", *shlex.split(line)[1:]]
        runs[line] = subprocess.run(cmd, cwd=demo["work"], env=env, capture_output=True, text=True, timeout=600)
    return runs


@pytest.fixture(scope="module")
def monitored(demo):
    """The README's monitoring recipe, run verbatim where the demo ran."""
    return run_verbatim(demo, readme_monitor_commands())


def test_demo_fails_on_the_planted_problems_and_exits_1(demo):
    run = demo["first"]
    assert run.returncode == 1, run.stderr[-3000:]
    assert "status: fail" in run.stderr
    results = {a["name"]: a for a in demo["results"]["assertions"]}
    for name in ("no-spurious-reliance", "accuracy-by-background", "accuracy-by-annotator"):
        assert results[name]["status"] == "fail" and results[name]["severity"] == "error", name
        assert name in run.stdout  # the terminal table
    assert "seven" in results["no-spurious-reliance"]["message"]
    assert "background=light" in results["accuracy-by-background"]["message"]
    assert "annotator=carol" in results["accuracy-by-annotator"]["message"]
    assert results["accuracy-by-site"]["status"] == "pass"
    assert results["site-is-harmless"]["status"] == "pass"
    assert demo["results"]["status"] == "fail"


def test_dense_accuracy_and_breakdown_show_the_planted_subgroups(demo):
    r = demo["results"]
    overall = r["dense"]["test_accuracy"]
    assert 0.6 < overall < 1.0
    acc = {(x["attribute"], x["value"]): x for x in r["accuracy_by_attribute"]}
    assert acc[("background", "light")]["ci_high"] < overall - 0.2
    assert acc[("annotator", "carol")]["ci_high"] < overall - 0.1
    for site in ("north", "south", "east"):
        assert acc[("site", site)]["ci_low"] < overall < acc[("site", site)]["ci_high"]


def test_sparse_layer_is_sparse_and_close_to_dense(demo):
    layer = demo["results"]["sparse_layer"]
    assert layer["mean_features_per_class"] <= 15
    assert layer["sparse_accuracy"] >= layer["dense_accuracy"] - 0.05
    assert {"lambda", "nnz", "val_accuracy"} <= set(layer["path"][0])
    assert (demo["out"] / "sparse_layer").is_dir() and (demo["out"] / "sparse_path.png").stat().st_size > 0


def test_cue_feature_is_found_and_explained(demo):
    r, cue = demo["results"], demo["truth"]["cue"]
    seven = [f for f in r["spurious_findings"] if f["class"] == cue["class"]]
    assert seven and (seven[0]["attribute"], seven[0]["value"]) == (cue["attribute"], cue["value"])
    feature = seven[0]["feature"]
    assoc = sorted((a for a in r["feature_attributes"] if a["feature"] == feature),
                   key=lambda a: (a["q_value"] if a["q_value"] is not None else 1.0))
    assert assoc[0]["attribute"] == cue["attribute"] and assoc[0]["q_value"] < 0.01
    card = next(c for c in r["feature_cards"] if c["feature"] == feature)  # issue 4: the card says so too
    assert (card["associations"][0]["attribute"], card["associations"][0]["value"]) == (cue["attribute"], cue["value"])
    assert card["lime"] is not None and (demo["out"] / card["image"]).stat().st_size > 10_000
    sanity = r["feature_sanity"]
    assert len(sanity) == 3 and all(s["trustworthy"] for s in sanity), sanity  # LIME depends on the trained model
    for s in sanity:  # the demo runs the cascade: head first, down to the first conv layer
        layers = [step["layer"] for step in s["cascade"]]
        assert layers[0] == "head" and layers[-1] == "conv1" and s["cascade"][-1]["spearman"] == s["spearman"]
        card_sanity = next(c for c in r["feature_cards"] if c["feature"] == s["feature"])["sanity"]
        assert card_sanity["cascade"] and card_sanity["cascade"][-1] == ["conv1", s["spearman"]]
    assert not any(f["attribute"] == "site" for f in r["spurious_findings"])
    assert not any(a["attribute"] == "site" and a["q_value"] is not None and a["q_value"] < 0.05
                   for a in r["feature_attributes"])


def test_slices_rank_the_rare_and_mislabeled_subgroups(demo):
    slices = demo["results"]["slices"]
    top3 = [s["predicates"] for s in slices[:3]]
    assert {"background": "light"} in top3 and {"annotator": "carol"} in top3
    assert not any("site" in s["predicates"] and s["q_value"] < 0.05 for s in slices)


def test_outputs_junit_report_and_mlflow(demo):
    out = demo["out"]
    suite = ET.parse(out / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("tests")) == len(demo["results"]["assertions"])
    assert int(suite.get("failures")) >= 3
    html = (out / "report.html").read_text()
    assert "no-spurious-reliance" in html and "data:image/png;base64," in html
    assert "after re-initialising, from the top" in html
    tracking = demo["results"]["mlflow"]
    assert tracking["tracking_uri"].startswith("sqlite:///") and (demo["work"] / "mlflow.db").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking["tracking_uri"])
    run = client.get_run(tracking["run_id"])
    assert run.data.tags["sparsecheck.status"] == "fail"
    names = {a.path for a in client.list_artifacts(tracking["run_id"])}
    assert {"report.html", "results.json", "junit.xml", "sparse_layer", "test_features.npz"} <= names
    # the data as dataset inputs, the sparse layer as models (the demo's model is a torch.export program)
    contexts = {t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert contexts == {"training", "validation", "testing"}
    models = demo["results"]["sparse_model"]
    assert models["classifier"]["model_uri"].startswith("models:/") and models["head"]["model_uri"]
    assert {m.model_id for m in run.outputs.model_outputs} == {models["classifier"]["model_id"],
                                                                models["head"]["model_id"]}


def test_second_run_reads_the_feature_cache(demo):
    second = demo["second"]
    assert second.returncode == 1, second.stderr[-3000:]
    assert second.stderr.count("read from cache") == 3


def test_readme_monitoring_recipe_runs_on_the_demo_batches(demo, monitored):
    """Issue 16: the demo writes ready batches, prints the monitor commands, and the README's recipe works."""
    assert len(monitored) == 2, list(monitored)
    for line in monitored:
        assert line in demo["first"].stderr  # the demo ends by printing exactly these commands
    like, drifted = (next(r for line, r in monitored.items() if name in line) for name in ("like-test", "drifted"))
    assert like.returncode == 0, like.stdout[-2000:] + like.stderr[-2000:]
    assert "0 of" in like.stdout and "ALERT" not in like.stdout
    assert drifted.returncode == 1, drifted.stdout[-2000:] + drifted.stderr[-2000:]
    cue = next(f["feature"] for f in demo["results"]["spurious_findings"] if f["class"] == demo["truth"]["cue"]["class"])
    assert f"alert: feature {cue} drifted" in drifted.stdout
    for name, alert in (("like-test", False), ("drifted", True)):  # --out: the report and monitor.json
        saved = json.loads((demo["work"] / f"monitor-{name}" / "monitor.json").read_text())
        assert saved["alert"] is alert and saved["mlflow"]["run_id"]
        assert (demo["work"] / f"monitor-{name}" / "monitor.html").stat().st_size > 1000


def readme_select_commands() -> list[str]:
    """The documentation's ``sparsecheck select`` and ``weak-labels`` lines on the demo's pool."""
    from tests.test_readme import DEMO_SELECT, doc_text

    blocks = re.findall(r"```bash\n(.*?)```", doc_text(), flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith(DEMO_SELECT)]


@pytest.fixture(scope="module")
def selected(demo):
    """The README's selection recipe, run verbatim where the demo ran."""
    return run_verbatim(demo, readme_select_commands())


def test_readme_selection_recipe_runs_on_the_demo_pool(demo, selected):
    """Issue 24: the demo writes an unlabelled pool; the README's select and weak-labels commands work on
    it, and BAL's picks are model errors at least twice as often as the pool's examples are (random's
    expected precision)."""
    import numpy as np
    import pandas as pd

    from sparsecheck.config import load_config
    from sparsecheck.data import load_dataset
    from sparsecheck.demo import make_demo_pool
    from sparsecheck.features.extraction import extract_features

    assert len(selected) == 2, list(selected)
    for line, run in selected.items():
        assert run.returncode == 0, line + run.stdout[-2000:] + run.stderr[-2000:]
        assert "logged as MLflow run" in run.stderr
    data = demo["out"] / "data"
    pool = make_demo_pool(seed=0)  # the pool the demo wrote, with its true labels
    with np.load(data / "pool.npz") as z:
        assert "y" not in z.files and z["id"].tolist() == pool.ids.tolist()
    truth = pd.Series(pool.true_y, index=pool.ids)
    rows = pd.read_csv(demo["work"] / "selected.csv", keep_default_na=False)
    budget = int(re.search(r"--budget (\d+)", next(iter(selected))).group(1))
    assert len(rows) == budget and rows["strategy"].eq("bal").all()
    assert {"same-track", "no-flicker"} <= set(rows["arm"])
    precision = np.mean(rows["prediction"].to_numpy() != truth[rows["id"]].to_numpy())
    cfg = load_config(data / "config.yaml")
    model = cfg.model.load()
    fs = extract_features(model, load_dataset(data / "pool.npz"), cfg.model.input_spec(model),
                          cache_dir=cfg.features.cache_dir)
    error_rate = np.mean(np.asarray(fs.logits).argmax(1) != pool.true_y)
    assert precision >= 2 * error_rate, (precision, error_rate)
    weak = pd.read_csv(demo["work"] / "weak.csv")
    fixes = weak[~weak["agrees"]].drop_duplicates("id")
    # where a weak label disagrees with the model, it is right more often than the model
    right = truth[fixes["id"]].to_numpy()
    assert len(fixes) and np.mean(fixes["label"].to_numpy() == right) > np.mean(fixes["prediction"].to_numpy() == right)
