"""Choosing what to label (issue 24): BAL's arm choice, labelled ids left out, the fallback to
uncertainty, the CSV a labelling tool takes, bad input (exit 2 with its reason), weak labels, the
MLflow runs, and the monitoring correction of a flickering sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from sparsecheck.select import SELECTION_COLUMNS, load_labelled, select_examples
from sparsecheck.weak_labels import CORRECTIONS_FILE, WEAK_COLUMNS, correct_predictions, propose_labels
from tests.helpers import LEVEL_STEP, write_project
from tests.test_cli import _error_line, run_cli

POOL_ASSERTIONS = [{"name": "same-track", "type": "consistency", "key": "track"},
                   {"name": "no-flicker", "type": "flicker", "sequence": "track", "time": "frame", "window": 2}]


# --------------------------------------------------------------------------- the strategies, on tables
def _table(n: int, seed: int = 0) -> pd.DataFrame:
    """A prediction table of ``n`` examples over 3 classes with seeded probabilities."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    return pd.DataFrame({"id": [f"e{i:03d}" for i in range(n)], "prediction": probs.argmax(axis=1),
                         "confidence": probs.max(axis=1), **{f"prob_{k}": probs[:, k] for k in range(3)}})


def _failures(arms: dict[str, range], seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.concat([pd.DataFrame({"id": pd.Series([], dtype=str), "assertion": pd.Series([], dtype=str),
                                    "severity": pd.Series([], dtype=float)})]
                     + [pd.DataFrame({"id": [f"e{i:03d}" for i in rows], "assertion": name,
                                      "severity": rng.uniform(0.1, 1.0, len(rows))}) for name, rows in arms.items()],
                     ignore_index=True)


def _labels(table: pd.DataFrame, ids: list[str], wrong: set[str]) -> pd.DataFrame:
    """Acquired labels: the prediction for ids not in ``wrong``, another class for those in it."""
    pred = table.set_index("id")["prediction"]
    return pd.DataFrame({"id": ids, "label": [(int(pred[i]) + (1 if i in wrong else 0)) % 3 for i in ids]})


def test_bal_draws_from_the_arm_whose_labels_removed_more_failures() -> None:
    """Two arms, 40 failing examples each. Earlier labels: 9 of 10 from arm A were model errors,
    1 of 10 from arm B. BAL spends the budget on A; when the arms are close, it explores both."""
    table = _table(200)
    failures = _failures({"A": range(0, 40), "B": range(40, 80)})
    a_ids, b_ids = [f"e{i:03d}" for i in range(0, 10)], [f"e{i:03d}" for i in range(40, 50)]
    labelled = _labels(table, a_ids + b_ids, set(a_ids[:9]) | {b_ids[0]})
    sel = select_examples(table, failures, 20, labelled=labelled)
    assert sel.rows["arm"].value_counts()["A"] == 20
    close = _labels(table, a_ids + b_ids, set(a_ids[:6]) | set(b_ids[:4]))  # 6 of 10 against 4 of 10
    by_arm = select_examples(table, failures, 20, labelled=close).rows["arm"].value_counts()
    assert by_arm["A"] > by_arm["B"] >= 2, by_arm
    arms = sel.arms.set_index("assertion")
    assert (arms.loc["A", "n_errors"], arms.loc["B", "n_errors"]) == (9, 1)
    assert arms.loc["A", "gain"] > arms.loc["B", "gain"]
    # no exploration: every draw goes to the better arm; the same labels the other way round flip it
    assert set(select_examples(table, failures, 20, labelled=labelled, exploration=0).rows["arm"]) == {"A"}
    flipped = _labels(table, a_ids + b_ids, {b_ids[0], *b_ids[1:9], a_ids[0]})
    assert select_examples(table, failures, 20, labelled=flipped).rows["arm"].value_counts().idxmax() == "B"


def test_bal_without_labels_goes_round_the_arms_most_severe_first() -> None:
    table = _table(100)
    failures = _failures({"A": range(0, 30), "B": range(30, 60), "C": range(60, 65)})
    sel = select_examples(table, failures, 12)
    assert sel.rows["arm"].value_counts().to_dict() == {"A": 4, "B": 4, "C": 4}
    for arm, group in sel.rows.groupby("arm"):  # within an arm: by severity
        mine = failures[failures["assertion"] == arm].set_index("id")["severity"]
        assert group["id"].tolist() == mine.sort_values(ascending=False).index[:4].tolist()
    assert sel.rows["rank"].tolist() == list(range(1, 13))


def test_labelled_ids_are_never_selected_again() -> None:
    table = _table(60)
    failures = _failures({"A": range(0, 30)})
    labelled = _labels(table, [f"e{i:03d}" for i in range(0, 60, 2)], set())
    for strategy in ("bal", "uncertainty", "random", "assertion:A"):
        chosen = select_examples(table, failures, 15, strategy=strategy, labelled=labelled).rows["id"]
        assert not set(chosen) & set(labelled["id"]), strategy
        assert chosen.is_unique
    with pytest.raises(ValueError, match="--budget 31 is larger than the pool: 30 examples not labelled"):
        select_examples(table, failures, 31, labelled=labelled)


def test_without_assertion_signal_bal_falls_back_to_uncertainty() -> None:
    table = _table(50)
    none = _failures({})
    bal = select_examples(table, none, 10)
    uncertainty = select_examples(table, none, 10, strategy="uncertainty")
    assert bal.rows["id"].tolist() == uncertainty.rows["id"].tolist()
    assert set(bal.rows["arm"]) == {"uncertainty"} and "no assertion flags" in bal.notes[0]
    margins = uncertainty.rows["margin"].to_numpy()
    assert np.all(np.diff(margins) >= 0) and margins[-1] <= np.sort(
        np.sort(table[["prob_0", "prob_1", "prob_2"]].to_numpy(), axis=1)[:, -1]
        - np.sort(table[["prob_0", "prob_1", "prob_2"]].to_numpy(), axis=1)[:, -2])[10]
    # an arm drawn empty: the rest of the budget by uncertainty too
    few = select_examples(table, _failures({"A": range(0, 3)}), 10)
    assert few.rows["arm"].tolist()[:3] == ["A"] * 3 and set(few.rows["arm"][3:]) == {"uncertainty"}


def test_random_is_seeded_and_assertion_strategy_keeps_to_its_arm() -> None:
    table = _table(80)
    failures = _failures({"A": range(0, 5), "B": range(5, 40)})
    one, two = (select_examples(table, failures, 10, strategy="random", seed=s).rows["id"].tolist() for s in (3, 3))
    assert one == two != select_examples(table, failures, 10, strategy="random", seed=4).rows["id"].tolist()
    only_a = select_examples(table, failures, 10, strategy="assertion:A")
    assert set(only_a.rows["arm"]) == {"A"} and len(only_a.rows) == 5 and "fewer than the budget" in only_a.notes[0]
    for bad in ("greedy", "assertion:C", "bal:x"):
        with pytest.raises(ValueError, match=bad.partition(":")[2] or bad):
            select_examples(table, failures, 5, strategy=bad)


def test_labelled_csv_accepts_class_names_and_a_filled_in_selection(tmp_path: Path) -> None:
    table = _table(30)
    failures = _failures({"A": range(0, 10)})
    sel = select_examples(table, failures, 4, class_names=["cat", "dog", "wolf"])
    filled = sel.rows.assign(label=["dog", "", "2", "cat"])
    filled.to_csv(tmp_path / "round1.csv", index=False)
    got = load_labelled([tmp_path / "round1.csv"], ["cat", "dog", "wolf"])
    assert got["id"].tolist() == sel.rows["id"][[0, 2, 3]].tolist() and got["label"].tolist() == [1, 2, 0]
    assert {"prediction", "assertions"} <= set(got.columns)  # what the model said when they were selected
    pd.DataFrame({"id": ["e001"], "label": ["fox"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(Exception, match="label 'fox' is not a class; classes: cat, dog, wolf"):
        load_labelled([tmp_path / "bad.csv"], ["cat", "dog", "wolf"])


# --------------------------------------------------------------------------- weak labels and corrections
def test_weak_labels_vote_within_a_key_and_smooth_a_flicker() -> None:
    from sparsecheck.assertions import consistency, flicker, run_assertions

    table = pd.DataFrame({"id": list("abcdefghij"), "prediction": [1, 1, 1, 2, 1, 4, 5, 6, 3, 3],
                          "key": ["p", "p", "p", "p", "q", "q", "r", "r", "s", "s"],
                          "track": ["t"] * 6 + ["u"] * 4, "frame": [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]})
    rules = [consistency(key="key", name="same-key"), flicker(sequence="track", time="frame", window=2, name="flick")]
    weak = propose_labels(table, rules, run_assertions(rules, table, max_examples=None), class_names=list("0123456"))
    assert list(weak.columns) == list(WEAK_COLUMNS)
    vote = weak[weak["rule"] == "same-key"].set_index("id")
    assert sorted(vote.index) == ["a", "b", "c", "d"]  # the ties q (1 vs 4) and r (5 vs 6) name no label
    assert set(vote["label"]) == {1} and vote.loc["d", "agrees"] == False and vote.loc["a", "agrees"] == True  # noqa: E712
    assert vote["support"].tolist() == [0.75] * 4
    smooth = weak[weak["rule"] == "flick"]
    assert smooth["id"].tolist() == ["d"] and smooth["label"].tolist() == [1]
    assert smooth["support"].tolist() == [pytest.approx(3 / 4)]  # frames 1, 2, 4, 5 within 2 of frame 3: 3 say 1
    fixed = correct_predictions(table, weak).set_index("id")
    assert fixed.loc["d", "corrected"] == 1 and fixed.loc["d", "rule"] in {"same-key", "flick"}
    assert (fixed.drop(index="d")["corrected"] == fixed.drop(index="d")["prediction"]).all()


# --------------------------------------------------------------------------- the commands
def _level_images(levels: np.ndarray) -> np.ndarray:
    """Flat 8×8 images at the middle of each brightness level: the tiny learned net reads them exactly."""
    return np.repeat((LEVEL_STEP * np.asarray(levels) + 45).astype(np.uint8)[:, None, None], 64, axis=1).reshape(-1, 8, 8)


def _write_pool(root: Path, *, with_ids: bool = True, name: str = "pool") -> pd.DataFrame:
    """12 tracks of 5 frames; tracks 0-3 flicker once (frame 2 shows another level)."""
    tracks, frames = 12, 5
    levels = np.repeat(np.arange(tracks) % 3, frames)
    flick = np.array([t * frames + 2 for t in range(4)])
    levels[flick] = (levels[flick] + 1) % 3
    ids = np.array([f"{name}-{i:03d}" for i in range(levels.size)])
    arrays = {"x": _level_images(levels), **({"id": ids} if with_ids else {})}
    np.savez(root / f"{name}.npz", **arrays)
    meta = pd.DataFrame({"id": ids, "track": np.repeat([f"t{t}" for t in range(tracks)], frames),
                         "frame": np.tile(np.arange(frames), tracks)})
    meta.to_csv(root / f"{name}.csv", index=False)
    return meta.assign(level=levels, flickers=np.isin(np.arange(levels.size), flick))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("select-project")
    raw = write_project(root, n=30)
    raw["data"]["class_names"] = ["low", "mid", "high"]
    raw["select"] = {"assertions": POOL_ASSERTIONS}
    raw["mlflow"] = {"experiment": "select-tests", "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    pool = _write_pool(root)
    _write_pool(root, with_ids=False, name="noids")
    return {"root": root, "config": root / "config.yaml", "pool": pool, "uri": raw["mlflow"]["tracking_uri"]}


def _select(capsys: Any, project: dict[str, Any], out: Path, *extra: str) -> tuple[int, str, str]:
    root = project["root"]
    return run_cli(capsys, "select", str(project["config"]), "--pool", str(root / "pool.npz"), "--metadata",
                   str(root / "pool.csv"), "--out", str(out), "--device", "cpu", *extra)


def test_select_writes_a_csv_for_a_labelling_tool_and_logs_it(project: dict[str, Any], tmp_path: Path,
                                                             capsys: Any) -> None:
    from mlflow import MlflowClient

    from sparsecheck.config import load_config

    code, out, err = _select(capsys, project, tmp_path / "selected.csv", "--budget", "8")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "selected.csv", keep_default_na=False)
    assert list(rows.columns) == list(SELECTION_COLUMNS) and len(rows) == 8
    pool = project["pool"].set_index("id")
    flickering = set(pool.index[pool["flickers"]])
    # the 4 flickering frames are the most severe failures of both arms: BAL takes them first
    assert set(rows["id"][:4]) == flickering
    assert rows["arm"].isin(["same-track", "no-flicker"]).all() and rows["strategy"].eq("bal").all()
    first = rows[rows["id"].isin(flickering)].iloc[0]
    assert "no-flicker:" in first["assertions"] and "same-track:0.8" in first["assertions"]
    assert first["predicted_class"] == ["low", "mid", "high"][pool.loc[first["id"], "level"]]
    assert "selected 8 of a budget of 8 (bal)" in out
    # one MLflow run in <experiment>-select, tagged with the model it was computed for
    client = MlflowClient(project["uri"])
    exp = client.get_experiment_by_name("select-tests-select")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`sparsecheck.kind` = 'select'")
    assert len(runs) == 1
    model = load_config(project["config"]).model.load()
    assert runs[0].data.tags["sparsecheck.model_fingerprint"] == model.fingerprint()
    assert runs[0].data.params["strategy"] == "bal" and runs[0].data.metrics["failing/no-flicker"] == 4
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert logged == {"selected.csv", "select.json"}
    local = client.download_artifacts(runs[0].info.run_id, "selected.csv", str(tmp_path / "dl"))
    assert pd.read_csv(local, keep_default_na=False)["id"].tolist() == rows["id"].tolist()


def test_a_second_round_leaves_out_what_was_labelled(project: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    code, _, err = _select(capsys, project, tmp_path / "r1.csv", "--budget", "6", "--strategy", "uncertainty")
    assert code == 0, err
    first = pd.read_csv(tmp_path / "r1.csv", keep_default_na=False)
    levels = project["pool"].set_index("id")["level"]
    first.assign(label=levels[first["id"]].to_numpy()).to_csv(tmp_path / "r1-labelled.csv", index=False)
    code, out, err = _select(capsys, project, tmp_path / "r2.csv", "--budget", "54", "--labelled",
                             str(tmp_path / "r1-labelled.csv"))
    assert code == 0, err
    second = pd.read_csv(tmp_path / "r2.csv", keep_default_na=False)
    assert not set(second["id"]) & set(first["id"]) and len(second) == 54
    assert set(second["id"]) | set(first["id"]) == set(levels.index)  # the whole pool, once


@pytest.mark.parametrize("args, reason", [
    (["--budget", "5", "--strategy", "greedy"], "unknown strategy 'greedy'"),
    (["--budget", "5", "--strategy", "assertion:nope"], "unknown assertion 'nope'"),
    (["--budget", "61"], "--budget 61 is larger than the pool: 60 examples"),
    (["--budget", "5", "--pool", "noids.npz"], "has no example ids"),
    (["--budget", "5", "--pool", "val"], None),  # a split of the config is a pool (its labels are ignored)
    (["--budget", "5", "--pool", "missing.npz"], "missing.npz: --pool: file not found"),
    (["--budget", "5", "--labelled", "nothere.csv"], "nothere.csv: --labelled: file not found"),
])
def test_bad_input_exits_2_with_its_reason(project: dict[str, Any], tmp_path: Path, capsys: Any,
                                           monkeypatch: Any, args: list[str], reason: str | None) -> None:
    monkeypatch.chdir(project["root"])
    base = ["select", str(project["config"]), "--pool", "pool.npz", "--metadata", "pool.csv",
            "--out", str(tmp_path / "s.csv"), "--device", "cpu"]
    if "--pool" in args:  # another pool, without the pool's metadata
        i = args.index("--pool")
        base[3] = args[i + 1]
        del base[4:6]
        args = args[:i] + args[i + 2:]
    code, _, err = run_cli(capsys, *base, *args)
    if reason is None:
        assert code == 0, err
        return
    assert code == 2, err
    assert reason in _error_line(err)
    assert not (tmp_path / "s.csv").exists()


def test_an_existing_out_file_is_kept_unless_forced(project: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "s.csv").write_text("mine\n")
    code, _, err = _select(capsys, project, tmp_path / "s.csv", "--budget", "3")
    assert code == 2 and "exists; pass --force" in _error_line(err)
    assert (tmp_path / "s.csv").read_text() == "mine\n"
    code, _, err = _select(capsys, project, tmp_path / "s.csv", "--budget", "3", "--force")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "s.csv")) == 3


def test_weak_labels_command_writes_and_logs_the_proposals(project: dict[str, Any], tmp_path: Path,
                                                         capsys: Any) -> None:
    from mlflow import MlflowClient

    root = project["root"]
    code, out, err = run_cli(capsys, "weak-labels", str(project["config"]), "--pool", str(root / "pool.npz"),
                             "--metadata", str(root / "pool.csv"), "--out", str(tmp_path / "weak.csv"),
                             "--device", "cpu")
    assert code == 0, err
    weak = pd.read_csv(tmp_path / "weak.csv")
    assert list(weak.columns) == list(WEAK_COLUMNS)
    pool = project["pool"].set_index("id")
    disagree = weak[~weak["agrees"]]
    assert set(disagree["id"]) == set(pool.index[pool["flickers"]])  # exactly the flickering frames
    assert (disagree["label"].to_numpy() == (pool.loc[disagree["id"], "level"].to_numpy() + 2) % 3).all()
    assert set(weak["rule"]) == {"same-track", "no-flicker"} and "disagree with the model" in out
    client = MlflowClient(project["uri"])
    exp = client.get_experiment_by_name("select-tests-select")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`sparsecheck.kind` = 'weak-labels'")
    assert len(runs) == 1 and runs[0].data.tags["sparsecheck.pool_fingerprint"]
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {"weak.csv", "weak-labels.json"}


def test_monitor_correct_smooths_a_flickering_sequence(tmp_path: Path, capsys: Any) -> None:
    """A reference run, then a batch whose tracks flicker once each: --correct writes the
    corrected predictions beside the alerts and logs them to the monitoring run."""
    from mlflow import MlflowClient

    from sparsecheck.config import load_config
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage, sparse_stage
    from tests.helpers import write_registry_project

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = write_registry_project(tmp_path, experiment="correct-tests", tracking_uri=uri,
                                    assertions=[{"name": "no-flicker", "type": "flicker", "sequence": "track",
                                                 "time": "frame", "window": 2, "severity": "warning"}])
    run_pipeline(load_config(config), tmp_path / "ref", device="cpu",
                 stages=[load_stage, extract_stage, dense_stage, sparse_stage])
    batch = _write_pool(tmp_path, name="batch")
    code, out, err = run_cli(capsys, "monitor", str(config), "--batch", str(tmp_path / "batch.npz"), "--metadata",
                             str(tmp_path / "batch.csv"), "--correct", "--out", str(tmp_path / "mon"),
                             "--device", "cpu")
    assert code in (0, 1), err
    fixed = pd.read_csv(tmp_path / "mon" / CORRECTIONS_FILE, keep_default_na=False).set_index("id")
    assert list(fixed.columns) == ["prediction", "corrected", "rule", "support"]
    batch = batch.set_index("id")
    flicks = batch.index[batch["flickers"]]
    assert (fixed.loc[flicks, "prediction"] == (batch.loc[flicks, "level"] )).all()
    assert (fixed.loc[flicks, "corrected"] == (batch.loc[flicks, "level"] + 2) % 3).all()  # the track's own level
    assert set(fixed.loc[flicks, "rule"]) == {"no-flicker"}
    rest = fixed.drop(index=flicks)
    assert (rest["corrected"] == rest["prediction"]).all() and set(rest["rule"]) == {""}
    assert "corrected: 4 of 60 predictions, 4 by no-flicker" in out
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("correct-tests-monitor")
    run = client.search_runs([exp.experiment_id])[0]
    assert CORRECTIONS_FILE in {a.path for a in client.list_artifacts(run.info.run_id)}
    # the same batch again: the run that covers it hands over its corrections
    again, _, err = run_cli(capsys, "monitor", str(config), "--batch", str(tmp_path / "batch.npz"), "--metadata",
                            str(tmp_path / "batch.csv"), "--correct", "--out", str(tmp_path / "mon2"), "--device", "cpu")
    assert again == code and "corrected predictions written to" in err
    assert (tmp_path / "mon2" / CORRECTIONS_FILE).read_text() == (tmp_path / "mon" / CORRECTIONS_FILE).read_text()


@pytest.mark.parametrize("entry, reason", [
    ({"name": "acc", "type": "accuracy", "min": 0.5}, "needs labels, which a pool does not have"),
    ({"name": "same", "type": "consistency"}, "key"),  # malformed: a consistency names its key
    ({"name": "agree", "type": "sparse_agreement", "min": 0.5}, "needs the sparse layer"),
])
def test_select_assertions_are_checked_with_the_config(tmp_path: Path, entry: dict, reason: str) -> None:
    from sparsecheck.config import parse_config
    from sparsecheck.errors import ConfigError

    raw = write_project(tmp_path)
    raw["select"] = {"assertions": [entry]}
    with pytest.raises(ConfigError, match=reason):
        parse_config(raw, base_dir=tmp_path)
    raw["select"] = {"assertions": [{"name": "same", "type": "consistency", "key": "track"}]}
    raw["assertions"] = [{"name": "same", "type": "consistency", "key": "patient"}]
    with pytest.raises(ConfigError, match="select.assertions: assertion name 'same' is already used"):
        parse_config(raw, base_dir=tmp_path)
