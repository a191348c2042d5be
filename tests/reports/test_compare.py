"""Tests of run comparison: feature matching, change detection, rendering, the CLI against MLflow."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsecheck.errors import ConfigError, DataError, ParameterError
from sparsecheck.reports.compare import RunActivations, compare_results, match_features, write_comparison


# ----------------------------------------------------------------------------- builders
def activations_pair(seed: int = 0, n: int = 800) -> tuple[RunActivations, RunActivations, dict[int, int]]:
    """A's five used features, and B's: noisy/rescaled/sign-flipped copies of some, plus new ones.

    B is evaluated on a shuffled overlapping set of examples (some of A's missing, some extra).
    Returns (A, B, expected match A id -> B id).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n + 100, 8))
    ids = np.array([f"test-{i:05d}" for i in range(n + 100)])
    a_feats = [3, 10, 17, 25, 40]
    a_acts = np.maximum(z[:, :5], 0) + 0.05 * rng.normal(size=(n + 100, 5))   # ReLU-like
    cols = {
        101: 2.0 * a_acts[:, 2] + 0.1 * rng.normal(size=n + 100),             # ≙ 17, r ≈ 0.99
        102: -a_acts[:, 0] + 0.1 * rng.normal(size=n + 100),                  # ≙ 3, negative r
        103: 0.5 * a_acts[:, 3] + 0.2 * rng.normal(size=n + 100),             # ≙ 25, r ≈ 0.8
        104: z[:, 6],                                                          # new feature
        105: a_acts[:, 1] + 1.5 * rng.normal(size=n + 100),                   # 10 drowned in noise
    }
    a = RunActivations(ids[:n], a_feats, a_acts[:n])
    order = rng.permutation(np.arange(50, n + 100))                            # drop 50, add 100
    b = RunActivations(ids[order], list(cols), np.stack([cols[k] for k in cols], axis=1)[order])
    return a, b, {17: 101, 3: 102, 25: 103}


def results(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "pass",
        "model": {"fingerprint": "model-a", "feature_layer": "head:input"},
        "dense": {"test_accuracy": 0.80},
        "accuracy_by_attribute": [{"attribute": "corner_mark", "value": "yes", "accuracy": 0.70},
                                  {"attribute": "corner_mark", "value": "no", "accuracy": 0.85}],
        "sparse_layer": {"dense_accuracy": 0.80, "sparse_accuracy": 0.76, "sparsity": 95.0,
                         "features_per_class": {"seven": [{"feature": 17, "weight": 1.2},
                                                          {"feature": 10, "weight": 0.4}],
                                                "one": [{"feature": 3, "weight": 0.9}]}},
        "spurious_findings": [],
        "slices": [{"predicates": {"background": "light"}, "size": 300, "error_rate": 0.30,
                    "ci_low": 0.25, "ci_high": 0.35, "p_value": 1e-6, "q_value": 1e-5}],
        "assertions": [{"name": "accuracy", "status": "pass", "severity": "error", "observed": 0.8,
                        "threshold": 0.7, "message": ""},
                       {"name": "calibration", "status": "pass", "severity": "warning"}],
    }
    base.update(copy.deepcopy(over))
    return base


CUE = {"class": "seven", "feature": 17, "attribute": "corner_mark", "value": "yes", "score": 0.93,
       "evidence": {}, "sentence": "class seven relies on feature 17, which fires on corner_mark=yes"}


# ----------------------------------------------------------------------------- matching
def test_matching_recovers_permuted_noisy_copies() -> None:
    a, b, expected = activations_pair()
    m = match_features(a, b, min_correlation=0.5)
    assert {x.feature_a: x.feature_b for x in m.matches} == expected
    assert m.n_shared == 750
    corr = {x.feature_a: x.correlation for x in m.matches}
    assert corr[17] > 0.95 and corr[3] < -0.9 and 0.6 < corr[25] < 0.95
    assert sorted(m.unmatched_a) == [10, 40] and sorted(m.unmatched_b) == [104, 105]
    assert m.best_a[10] < 0.5 and m.best_b[105] < 0.5  # the drowned copy is below the bar
    assert m.partner_of_b(101).feature_a == 17 and m.partner_of_a(40) is None


def test_matching_threshold_decides_sameness() -> None:
    a, b, _ = activations_pair()
    loose = match_features(a, b, min_correlation=0.2)
    assert loose.partner_of_a(10) is not None and loose.partner_of_a(10).feature_b == 105
    strict = match_features(a, b, min_correlation=0.9)
    assert {x.feature_a for x in strict.matches} == {17, 3}


@pytest.mark.parametrize("seed", range(5))
def test_assignment_maximises_total_absolute_correlation(seed: int) -> None:
    # against brute force over every injective assignment
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(400, 4))
    xa = z @ rng.normal(size=(4, 4)) + 0.5 * rng.normal(size=(400, 4))
    xb = z @ rng.normal(size=(4, 5)) + 0.5 * rng.normal(size=(400, 5))
    ids = np.array([str(i) for i in range(400)])
    m = match_features(RunActivations(ids, range(4), xa), RunActivations(ids, range(5), xb), min_correlation=1e-9)
    got = sum(abs(x.correlation) for x in m.matches)
    r = np.corrcoef(xa.T, xb.T)[:4, 4:]
    best = max(sum(abs(r[i, p[i]]) for i in range(4)) for p in itertools.permutations(range(5), 4))
    assert got == pytest.approx(best, rel=1e-6)  # activations are stored as float32


def test_matching_edge_cases() -> None:
    ids = np.array(["a", "b", "c", "d"])
    const = RunActivations(ids, [1, 2], np.array([[1, 0], [1, 1], [1, 2], [1, 5]], float))
    m = match_features(const, const)
    assert [(x.feature_a, x.feature_b) for x in m.matches] == [(2, 2)]  # the constant feature matches nothing
    with pytest.raises(DataError, match="share 0 evaluation examples"):
        match_features(const, RunActivations(np.array(["x", "y", "z", "w"]), [1, 2], np.zeros((4, 2))))
    with pytest.raises(ParameterError, match="min_correlation"):
        match_features(const, const, min_correlation=0)
    with pytest.raises(DataError, match="shape"):
        RunActivations(ids, [1, 2, 3], np.zeros((4, 2)))


def test_activations_load_both_key_names(tmp_path: Path) -> None:
    a, _, _ = activations_pair(n=50)
    np.savez(tmp_path / "new.npz", ids=a.ids, feature_ids=a.features, activations=a.activations)
    np.savez(tmp_path / "old.npz", ids=a.ids, features=a.features, activations=a.activations)
    for name in ("new.npz", "old.npz"):
        loaded = RunActivations.load(tmp_path / name)
        assert loaded.features.tolist() == [3, 10, 17, 25, 40]
        np.testing.assert_array_equal(loaded.activations, a.activations)
    np.savez(tmp_path / "bad.npz", ids=a.ids)
    with pytest.raises(DataError, match="missing arrays"):
        RunActivations.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- comparison
def test_self_comparison_has_no_regression() -> None:
    a, _, _ = activations_pair()
    r = results(spurious_findings=[CUE])
    c = compare_results(r, r, a, a)
    assert not c.has_regression and c.regressions == []
    assert c.matching is not None and c.matching.method == "identity"  # same model fingerprint
    assert all(not f.changed for f in c.features)
    assert [s.change for s in c.spurious] == ["persisting"] and c.spurious[0].same_feature


def test_spurious_finding_resolved_and_new() -> None:
    a, b, _ = activations_pair()
    with_cue = results(spurious_findings=[CUE])
    without = results(spurious_findings=[], model={"fingerprint": "model-b", "feature_layer": "head:input"})
    fixed = compare_results(with_cue, without, a, b)
    assert [(s.change, s.class_name, s.attribute, s.value) for s in fixed.spurious] == \
        [("resolved", "seven", "corner_mark", "yes")]
    assert not fixed.has_regression
    broken = compare_results(without, with_cue, b, a)
    assert [s.change for s in broken.spurious] == ["new"]
    assert broken.has_regression
    assert broken.regressions == ["new spurious finding: class seven relies on feature 17 associated with "
                                  "corner_mark=yes (score 0.93)"]


def test_persisting_finding_on_a_matched_feature() -> None:
    a, b, _ = activations_pair()
    fa = results(spurious_findings=[CUE])
    fb = results(spurious_findings=[{**CUE, "feature": 101, "score": 0.9}], model={"fingerprint": "other"})
    c = compare_results(fa, fb, a, b)
    (s,) = c.spurious
    assert s.change == "persisting" and s.same_feature and (s.feature_a, s.feature_b) == (17, 101)
    assert not c.has_regression


def test_assertion_changes() -> None:
    ra = results(assertions=[
        {"name": "accuracy", "status": "pass", "severity": "error"},
        {"name": "calibration", "status": "pass", "severity": "warning"},
        {"name": "no_cue", "status": "fail", "severity": "warning"},  # A passes the gate: pass to fail below
        {"name": "old", "status": "pass", "severity": "error"}])
    rb = results(status="fail", assertions=[
        {"name": "accuracy", "status": "fail", "severity": "error", "observed": 0.6, "threshold": 0.7,
         "message": "accuracy 0.6 < 0.7"},
        {"name": "calibration", "status": "fail", "severity": "warning"},
        {"name": "no_cue", "status": "pass", "severity": "warning"},
        {"name": "brand_new", "status": "error", "severity": "error"}])
    c = compare_results(ra, rb)
    change = {x.name: x.change for x in c.assertions}
    assert change == {"accuracy": "newly_failing", "calibration": "newly_failing", "no_cue": "fixed",
                      "brand_new": "added_failing", "old": "removed"}
    assert c.regressions == [  # a check only B ran is no change of the model (B's status gates it)
        "status went from pass to fail",
        "assertion 'accuracy' (error) newly fails: observed 0.6, threshold 0.7 — accuracy 0.6 < 0.7"]
    # a newly failing warning alone is no regression
    only_warning = results(assertions=[{"name": "calibration", "status": "fail", "severity": "warning"}])
    assert not compare_results(results(), only_warning).has_regression


def test_slice_changes() -> None:
    light = {"predicates": {"background": "light"}, "size": 300, "ci_low": 0.25, "ci_high": 0.35,
             "error_rate": 0.30, "q_value": 1e-5}
    ra = results(slices=[light,
                         {"predicates": {"site": "north", "annotator": "carol"}, "size": 50, "error_rate": 0.5,
                          "ci_low": 0.37, "ci_high": 0.63, "q_value": 0.001},
                         {"predicates": {"site": "east"}, "size": 400, "error_rate": 0.2, "ci_low": 0.16,
                          "ci_high": 0.24, "q_value": 0.01}])
    rb = results(slices=[{**light, "error_rate": 0.33, "ci_low": 0.28, "ci_high": 0.38},     # overlaps: same
                         {"predicates": {"annotator": "carol", "site": "north"}, "size": 50,  # other key order
                          "error_rate": 0.9, "ci_low": 0.78, "ci_high": 0.96, "q_value": 1e-9},
                         {"predicates": {"corner_mark": "no"}, "size": 900, "error_rate": 0.3, "ci_low": 0.27,
                          "ci_high": 0.33, "q_value": 0.2},
                         {"predicates": {"annotator": "bob"}, "size": 90, "error_rate": 0.4, "ci_low": 0.3,
                          "ci_high": 0.5, "q_value": 0.004}])
    c = compare_results(ra, rb)
    change = {s.label: s.change for s in c.slices}
    assert change == {"background=light": "unchanged", "annotator=carol & site=north": "worse",
                      "corner_mark=no": "new", "annotator=bob": "new", "site=east": "gone"}
    regress = [s.label for s in c.slices if s.is_regression]
    assert regress == ["annotator=carol & site=north", "annotator=bob"]
    assert len(c.regressions) == 2 and c.regressions[0].startswith("slice annotator=carol & site=north got worse")
    better = compare_results(rb, ra)
    assert {s.label: s.change for s in better.slices}["annotator=carol & site=north"] == "better"
    # getting better is no regression; site=east, new in this direction with q = 0.01, is one
    assert [s.label for s in better.slices if s.is_regression] == ["site=east"]


def test_unlisted_one_predicate_slice_is_compared_with_the_breakdown() -> None:
    ra = results(slices=[], accuracy_by_attribute=[
        {"attribute": "corner_mark", "value": "no", "size": 1400, "accuracy": 0.70, "ci_low": 0.67, "ci_high": 0.73},
        {"attribute": "corner_mark", "value": "yes", "size": 600, "accuracy": 0.70, "ci_low": 0.66, "ci_high": 0.74}])
    rb = results(slices=[
        {"predicates": {"corner_mark": "no"}, "size": 1400, "error_rate": 0.31, "ci_low": 0.29, "ci_high": 0.34,
         "q_value": 1e-4},                                                  # as in A: not a regression
        {"predicates": {"corner_mark": "yes"}, "size": 600, "error_rate": 0.6, "ci_low": 0.56, "ci_high": 0.64,
         "q_value": 1e-9}])                                                 # A's error was 0.26-0.34: worse
    c = compare_results(ra, rb)
    assert {s.label: s.change for s in c.slices} == {"corner_mark=no": "unchanged", "corner_mark=yes": "worse"}
    worse = next(s for s in c.slices if s.change == "worse")
    assert worse.ci_a == pytest.approx((0.26, 0.34)) and worse.size_a == 600
    assert len(c.regressions) == 1 and any("accuracy by attribute value" in n for n in c.notes)


def test_metric_deltas() -> None:
    rb = results(dense={"test_accuracy": 0.84},
                 accuracy_by_attribute=[{"attribute": "corner_mark", "value": "yes", "accuracy": 0.86}],
                 sparse_layer={"dense_accuracy": 0.84, "sparse_accuracy": 0.80, "sparsity": 97.5,
                               "features_per_class": {"seven": [{"feature": 5, "weight": 1.0}], "one": []}})
    c = compare_results(results(), rb)
    m = {x.name: (x.a, x.b, x.delta) for x in c.metrics}
    assert m["dense test accuracy"] == pytest.approx((0.80, 0.84, 0.04))
    assert m["sparse layer: sparse accuracy"] == pytest.approx((0.76, 0.80, 0.04))
    assert m["sparsity (% zero weights)"] == pytest.approx((95.0, 97.5, 2.5))
    assert m["mean features per class"] == pytest.approx((1.5, 0.5, -1.0))
    assert m["used features"] == pytest.approx((3.0, 1.0, -2.0))
    assert m["features of class seven"] == pytest.approx((2.0, 1.0, -1.0))
    assert m["accuracy | corner_mark=yes"] == pytest.approx((0.70, 0.86, 0.16))
    assert m["accuracy | corner_mark=no"][1] is None and m["accuracy | corner_mark=no"][2] is None


def test_features_gained_lost_kept_per_class() -> None:
    a, b, _ = activations_pair()
    ra = results()  # seven: 17, 10; one: 3
    rb = results(model={"fingerprint": "model-b"},
                 sparse_layer={"features_per_class": {"seven": [{"feature": 101, "weight": 2.0},
                                                                {"feature": 104, "weight": 0.7}],
                                                      "one": [{"feature": 102, "weight": -0.8}],
                                                      "two": [{"feature": 103, "weight": 0.5}]}})
    c = compare_results(ra, rb, a, b)
    by = {f.class_name: f for f in c.features}
    seven = by["seven"]
    assert [(k.feature_a, k.feature_b) for k in seven.kept] == [(17, 101)]
    assert seven.kept[0].weight_a == 1.2 and seven.kept[0].weight_b == 2.0
    assert [f.feature for f in seven.lost] == [10] and [f.feature for f in seven.gained] == [104]
    assert seven.lost[0].nearest == 105 and seven.lost[0].best_correlation < 0.5  # its drowned copy
    assert [(k.feature_a, k.feature_b) for k in by["one"].kept] == [(3, 102)] and by["one"].kept[0].correlation < 0
    # 103 is the match of 25, which class two did not use in A: gained
    assert by["two"].n_a == 0 and [f.feature for f in by["two"].gained] == [103]
    assert not c.has_regression  # feature changes are reported, not gated


def test_missing_sections_and_activations_are_noted_not_fatal() -> None:
    bare = {"status": "pass"}
    c = compare_results(bare, results(model={"fingerprint": "x"}))
    assert not c.has_regression
    text = " ".join(c.notes)
    assert "assertions not compared" in text and "slices not compared" in text
    assert "spurious findings not compared" in text and "features per class not compared" in text
    d = compare_results(results(), results(model={"fingerprint": "other"}))
    assert d.matching is None and any("no activations.npz" in n for n in d.notes) and d.features == []
    with pytest.raises(DataError, match=r"results_a .*: slices: Input should be a valid list"):
        compare_results(results(slices={"oops": 1}), results())
    with pytest.raises(DataError, match=r"results_b .*: assertions.0.status"):  # read as results.json is
        compare_results(results(), results(assertions=[{"name": "acc", "status": "broken"}]))


# ----------------------------------------------------------------------------- rendering and files
def hostile() -> tuple[dict, dict]:
    evil = '<img src=x onerror="document.title=\'pwned\'">|x'
    ra = results(assertions=[{"name": evil, "status": "pass", "severity": "error"}])
    rb = results(status="fail", assertions=[{"name": evil, "status": "fail", "severity": "error",
                                             "message": "<script>document.title='pwned'</script>"}],
                 spurious_findings=[CUE])
    return ra, rb


def test_markdown_lists_regressions_and_escapes_cells() -> None:
    ra, rb = hostile()
    md = compare_results(ra, rb, run_a="run1", run_b="run2").to_markdown()
    assert md.startswith("# sparsecheck compare: `run1` → `run2`")
    assert "**REGRESSION** (3)" in md
    assert "## Regressions" in md and "- new spurious finding: class seven" in md
    row = next(line for line in md.splitlines() if line.startswith("| &lt;img"))
    assert "\\|x" in row and "⚠ newly_failing" in row  # the pipe inside the name does not split the row
    assert "<img" not in md and "<script" not in md
    ok = compare_results(results(), results()).to_markdown()
    assert "**no regression**" in ok and "No assertion changed (2 pass in both)." in ok


def test_markdown_cells_are_inert_whatever_the_names_hold() -> None:
    """Class names and metadata values with pipes, markup, backticks and newlines stay in their cell."""
    evil = "wolf|`x`\n<b>bold</b>\\"
    ra = results(assertions=[{"name": evil, "status": "pass", "severity": "error"}])
    rb = results(status="fail", assertions=[{"name": evil, "status": "fail", "severity": "error",
                                             "message": "line one\nline two"}])
    md = compare_results(ra, rb, run_a="a`b", run_b="run2").to_markdown()
    assert md.startswith("# sparsecheck compare: ``a`b`` → `run2`")
    row = next(line for line in md.splitlines() if line.startswith("| wolf"))
    assert row.startswith("| wolf\\|\\`x\\` &lt;b&gt;bold&lt;/b&gt;\\\\ |"), row
    # rendered by a real Markdown renderer (markdown-it, which rich uses): no markup, no extra column
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable("table").render(md)
    assert "<b>" not in page and "<code>x</code>" not in page
    table = page[page.index("wolf") - 200:].split("</table>")[0]
    header_cells = table.split("</thead>")[0].count("</th>")
    first_row = table.split("<tbody>")[1].split("</tr>")[0]
    assert first_row.count("</td>") == header_cells and "wolf|`x` &lt;b&gt;bold&lt;/b&gt;\\" in first_row


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    ra, rb = hostile()
    page = compare_results(ra, rb).to_html()
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_write_comparison_is_atomic_and_respects_user_files(tmp_path: Path) -> None:
    c = compare_results(*hostile())
    paths = write_comparison(c, tmp_path / "cmp")
    data = json.loads(paths["compare.json"].read_text())
    assert data["has_regression"] and len(data["regressions"]) == 3
    assert data["spurious_findings"][0]["change"] == "new"
    assert not list((tmp_path / "cmp").glob(".*.tmp"))
    write_comparison(compare_results(results(), results()), tmp_path / "cmp")  # ours: may be rewritten
    assert json.loads(paths["compare.json"].read_text())["has_regression"] is False
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty and was not written by sparsecheck"):
        write_comparison(c, user)
    write_comparison(c, user, force=True)
    assert (user / "notes.txt").read_text() == "keep" and (user / "compare.html").is_file()


def test_html_in_a_real_browser(tmp_path: Path, browser: Any) -> None:
    paths = write_comparison(compare_results(*hostile(), run_a="a1", run_b="b2"), tmp_path / "cmp")
    browser.get(paths["compare.html"].resolve().as_uri())
    assert browser.title == "sparsecheck compare a1 → b2"  # no injected markup ran
    verdict = browser.find_element("id", "verdict").text
    assert verdict.startswith("REGRESSION (3)")
    items = [li.text for li in browser.find_elements("css selector", "#regressions li")]
    assert items[0] == "status went from pass to fail" and len(items) == 3
    cells = [td.text for td in browser.find_elements("css selector", "#assertions + table td")]
    assert '<img src=x onerror="document.title=\'pwned\'">|x' in cells


# ----------------------------------------------------------------------------- CLI against a real server
def _log_run(uri: str, experiment: str, res: dict, acts: RunActivations | None, tmp: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, tags={"sparsecheck.kind": "run"})
    folder = tmp / run.info.run_id
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(res))
    if acts is not None:
        np.savez(folder / "activations.npz", ids=acts.ids, feature_ids=acts.features, activations=acts.activations)
    client.log_artifacts(run.info.run_id, str(folder))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


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


def test_cli_compare_against_mlflow_server(mlflow_server: Any, tmp_path: Path, capsys: Any) -> None:
    a, b, _ = activations_pair()
    uri = mlflow_server.uri
    with_cue = _log_run(uri, "cmp-tests", results(spurious_findings=[CUE]), a, tmp_path)
    without = _log_run(uri, "cmp-tests", results(model={"fingerprint": "model-b"}, sparse_layer={
        "features_per_class": {"seven": [{"feature": 101, "weight": 1.0}], "one": [{"feature": 102, "weight": 1}]}}),
        b, tmp_path)
    capsys.readouterr()
    assert _cli(["compare", with_cue, without, "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Verdict: **no regression**" in out and "| seven | corner_mark=yes | 17 (0.93) | — | resolved |" in out
    assert "| seven | 2 → 1 | 17→101 (r=" in out  # matched through activations.npz from the server
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["run_a"] == with_cue and saved["feature_matching"]["n_shared"] == 750
    assert _cli(["compare", without, with_cue, "--tracking-uri", uri]) == 1
    assert "new spurious finding" in capsys.readouterr().out
    capsys.readouterr()
    assert _cli(["compare", with_cue, "0" * 32, "--tracking-uri", uri]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "sparsecheck:" in line]
    assert len(err) == 1 and "not found" in err[0] and "0" * 32 in err[0]


# ----------------------------------------------------------------------------- the verdict, as a reader sees it
FAILING = {"name": "accuracy", "status": "fail", "severity": "error", "observed": 0.6, "threshold": 0.7,
           "message": "accuracy 0.6 < 0.7"}
VERDICT_CASES = {  # (A, B) -> the verdict's kind and whether it may look green
    "regression": (results(), results(status="fail", assertions=[FAILING]), "regression"),
    "fail-to-fail": (results(status="fail", assertions=[FAILING]), results(status="fail", assertions=[FAILING]),
                     "still-failing"),
    "pass-to-pass": (results(), results(), "no-regression"),
    "fixed": (results(status="fail", assertions=[FAILING]), results(), "no-regression"),
}


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def _greenish(rgb: tuple[int, ...]) -> bool:
    r, g, b = rgb
    return g > r + 40 and g > b + 20


def _reddish(rgb: tuple[int, ...]) -> bool:
    r, g, b = rgb
    return r > g + 80 and r > b + 80


@pytest.mark.parametrize("case", list(VERDICT_CASES))
def test_compare_verdict_colour_follows_the_verdict_in_a_browser(case: str, tmp_path: Path, browser: Any) -> None:
    ra, rb, kind = VERDICT_CASES[case]
    paths = write_comparison(compare_results(ra, rb, run_a="a1", run_b="b2"), tmp_path / "cmp")
    browser.get(paths["compare.html"].resolve().as_uri())
    verdict = browser.find_element("id", "verdict")
    assert verdict.get_attribute("data-kind") == kind
    title = verdict.find_element("css selector", ".title")
    colour = _rgb(title.value_of_css_property("color"))
    border = _rgb(verdict.value_of_css_property("border-top-color"))
    if kind == "regression":
        assert _reddish(colour) and _reddish(border) and title.text.startswith("REGRESSION")
    elif kind == "still-failing":  # nothing got worse, but B fails: never green
        assert not _greenish(colour) and not _greenish(border)
        assert "still fails" in title.text and "fail → fail" in verdict.text
    else:
        assert _greenish(colour) and title.text == "no regression"
    # the top of the page says what changed, before any table
    changed = browser.find_elements("css selector", "#what-changed li")
    assert changed and changed[0].location["y"] < browser.find_element("id", "assertions").location["y"]
    if case == "fail-to-fail":
        assert "1 assertion still fails" in changed[0].text and "warn" in changed[0].get_attribute("class")
        status_b = browser.find_elements("css selector", "#assertions + table td.s-fail")
        assert status_b and all(_reddish(_rgb(td.value_of_css_property("color"))) for td in status_b)
    if case == "fixed":
        assert any("1 assertion fixed" in li.text and "good" in li.get_attribute("class") for li in changed)
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


def test_markdown_verdict_names_fail_to_fail() -> None:
    ra, rb, _ = VERDICT_CASES["fail-to-fail"]
    md = compare_results(ra, rb).to_markdown()
    assert "Verdict: **No new regression, but B still fails**. Status: fail → fail." in md
    assert "- 1 assertion still fails (failing in A too): accuracy" in md
    assert "**no regression**" not in md
    worse = compare_results(results(), results(dense={"test_accuracy": 0.75})).to_markdown()
    assert "- ⚠ model accuracy (test) 80.0% → 75.0% (-5.0 points)" in worse


def test_long_tables_collapse(tmp_path: Path) -> None:
    many = [{"predicates": {"site": f"s{i}"}, "size": 100, "error_rate": 0.1, "ci_low": 0.05, "ci_high": 0.15,
             "q_value": 1e-4} for i in range(40)]
    worse = [{**s, "error_rate": 0.6, "ci_low": 0.5, "ci_high": 0.7} for s in many]
    page = compare_results(results(slices=many), results(slices=worse)).to_html()
    assert "Show 25 more rows" in page and "40 slices got worse or newly significant" in page


# ----------------------------------------------------------------------------- test data and representations
def test_different_test_data_is_a_warning_not_a_regression(caplog: Any) -> None:
    import logging

    same = compare_results(results(data={"test": {"digest": "d1", "n": 600}}),
                           results(data={"test": {"digest": "d1", "n": 600}}))
    assert same.test_data.same is True and not same.has_regression
    assert "Test data: the same in both runs (digest d1)." in same.to_markdown()
    with caplog.at_level(logging.WARNING, logger="sparsecheck.reports.compare"):
        diff = compare_results(results(data={"test": {"digest": "d1", "n": 600, "source": "/a/test.npz"}}),
                               results(data={"test": {"digest": "d2", "n": 500}}), run_a="r1", run_b="r2")
    assert diff.test_data.same is False and not diff.has_regression and diff.regressions == []
    assert "different test data" in caplog.text and "d1" in caplog.text and "d2" in caplog.text
    md = diff.to_markdown()
    assert "⚠ Test data: different (A: digest d1, 600 examples from /a/test.npz; B: digest d2, 500 examples)" in md
    assert any("different test data" in n for n in diff.notes)
    assert 'class="test-data warn"' in diff.to_html()
    assert json.loads(json.dumps(diff.to_dict()))["test_data"]["same"] is False
    unknown = compare_results(results(), results(data={"test": {"digest": "d2"}}))
    assert unknown.test_data.same is None and "A records no test-data digest" in unknown.to_markdown()


@pytest.fixture(scope="module")
def two_real_runs(small_run: Any, mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Two pipeline runs over the small project's data, logged to the server: its exported TinyNet
    and the same architecture with other random weights (a factory model)."""
    from sparsecheck.config import parse_config
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage, sparse_stage

    cfg = small_run.config
    data = {k: str(getattr(cfg.data, k)) for k in ("train", "val", "test")}
    base = {"data": {**data, "class_names": cfg.data.class_names},
            "features": {"batch_size": 32, "cache_dir": str(cfg.features.cache_dir)},
            "sparse": {"n_lambdas": 10, "solver": "fista", "max_epochs": 300, "tol": 1e-4},
            "mlflow": {"experiment": "cmp-real-runs", "tracking_uri": mlflow_server.uri, "log_sparse_model": False}}
    models = [{"path": str(cfg.model.path), "input": {"scale": 255.0}},
              {"factory": "tests.helpers:make_tiny_net", "factory_kwargs": {"seed": 7}, "input": {"scale": 255.0}}]
    ids = []
    for i, model in enumerate(models):
        config = parse_config({**base, "model": model})
        ctx = run_pipeline(config, tmp_path_factory.mktemp(f"cmp-run-{i}"), device="cpu",
                           stages=[load_stage, extract_stage, dense_stage, sparse_stage])
        ids.append(ctx)
    return ids


def test_compare_of_two_real_runs_shows_cka_and_same_test_data(two_real_runs: list[Any], mlflow_server: Any,
                                                                tmp_path: Path, capsys: Any) -> None:
    from sparsecheck.analysis.representation import FeatureSample, linear_cka

    a, b = (ctx.results["mlflow"]["run_id"] for ctx in two_real_runs)
    capsys.readouterr()
    code = _cli(["compare", a, b, "--tracking-uri", mlflow_server.uri, "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "Test data: the same in both runs (digest " in out
    line = next(ln for ln in out.splitlines() if ln.startswith("Representation similarity (linear CKA"))
    assert "whole feature layer" in line and "(6 → 6 features, 90 shared test examples)" in line
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rep = saved["representation"]
    assert 0.0 < rep["cka_full"] < 0.999 and rep["n_full"] == 90 and rep["cka_used"] is not None
    assert saved["test_data"]["same"] is True
    assert 'id="representation"' in (tmp_path / "cmp" / "compare.html").read_text()
    # what compare reports is the CKA of the two runs' logged test features, paired by id
    fa, fb = (FeatureSample.load(Path(ctx.out_dir) / "test_features.npz") for ctx in two_real_runs)
    assert fa.features.dtype == np.float16 and list(fa.ids) == list(fb.ids)
    assert rep["cka_full"] == pytest.approx(linear_cka(fa.features, fb.features), abs=1e-9)
