"""Tests of spurious-feature findings: the classic shortcut is found with the right numbers, a
shift that hurts every class, a harmless attribute and a model without the shortcut give none,
and the stage writes what the contract says."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from sparsecheck.outputs import write_json_atomic
from sparsecheck.analysis.association import feature_associations
from sparsecheck.analysis.spurious import (
    SpuriousAnalysis,
    SpuriousFinding,
    find_spurious_features,
)
from sparsecheck.config import Config
from sparsecheck.errors import ConfigError, DataError, ParameterError
from sparsecheck.pipeline.context import RunContext, SplitView
from sparsecheck.pipeline.stages import spurious_stage
from sparsecheck.sparse import SparseDecisionLayer



NAMES = ["husky", "wolf"]
SNOW, WOLF = 0, 1  # feature 0 detects snow; class 1 is the wolf




pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- the classic case


def make_split(rng: np.random.Generator, n: int, snow_rate: tuple[float, float], *, fog_rate: float = 0.0,
               hospital_cue: bool = False) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Huskies (0) and wolves (1). Features: 0 snow detector, 1 wolf shape, 2 husky shape,
    3 'hospital' detector, 4-5 noise. ``snow_rate`` = P(snow | husky), P(snow | wolf). Fog
    (``fog_rate``) blurs both shapes alike. With ``hospital_cue`` wolves come from hospital B."""
    y = rng.integers(0, 2, n)
    snow = rng.random(n) < np.where(y == WOLF, snow_rate[1], snow_rate[0])
    fog = rng.random(n) < fog_rate
    hospital_b = rng.random(n) < (np.where(y == WOLF, 0.9, 0.1) if hospital_cue else 0.5)
    blur = np.where(fog, 0.0, 1.0)
    X = np.c_[2.0 * snow + rng.normal(0, 0.5, n),
              blur * y + rng.normal(0, 0.8, n),
              blur * (1 - y) + rng.normal(0, 0.8, n),
              2.0 * hospital_b + rng.normal(0, 0.5, n),
              rng.normal(size=(n, 2))].astype(np.float32)
    meta = pd.DataFrame({"background": np.where(snow, "snow", "grass"), "fog": np.where(fog, "yes", "no"),
                         "hospital": np.where(hospital_b, "B", "A"),
                         "site": rng.choice(["north", "south", "east"], n)})
    return X, y, meta


class Case:
    """A fitted sparse layer, a dense model and the test split of one synthetic task."""

    def __init__(self, seed: int = 0, *, train_snow: tuple[float, float] = (0.1, 0.9), fog_rate: float = 0.0,
                 hospital_cue: bool = False) -> None:
        rng = np.random.default_rng(seed)
        kw = dict(fog_rate=fog_rate, hospital_cue=hospital_cue)
        x_tr, y_tr, _ = make_split(rng, 3000, train_snow, **kw)
        x_va, y_va, _ = make_split(rng, 800, train_snow, **kw)
        self.X, self.y, self.meta = make_split(rng, 2000, (0.5, 0.5), **{**kw, "hospital_cue": False})
        self.layer = SparseDecisionLayer(n_lambdas=15, solver="fista", device="cpu").fit(x_tr, y_tr, x_va, y_va)
        dense = LogisticRegression(C=1.0).fit(x_tr, y_tr)
        self.logits = dense.predict_log_proba(self.X).astype(np.float32)
        self.pred = self.logits.argmax(axis=1)
        self.assoc = feature_associations(self.X, self.meta, strata=self.y)

    def find(self, attributes: list[str], **kw) -> SpuriousAnalysis:
        return find_spurious_features(self.layer, self.X, self.y, self.pred, self.meta, self.assoc, attributes,
                                      class_names=NAMES, **kw)


@pytest.fixture(scope="module")
def shortcut() -> Case:
    return Case(0)


def test_the_shortcut_is_the_top_finding_with_its_numbers(shortcut: Case) -> None:
    assert shortcut.layer.weight_[WOLF, SNOW] > 0  # the layer took the shortcut
    result = shortcut.find(["background", "site"])
    top = result.findings[0]
    assert (top.class_name, top.feature, top.attribute, top.value) == ("wolf", SNOW, "background", "snow")
    assert top.significant and top.score > 0
    ev = top.evidence
    # the accuracy evidence, recomputed by hand
    y, pred, snow = shortcut.y, shortcut.pred, (shortcut.meta["background"] == "snow").to_numpy()
    wolf = y == WOLF
    assert ev["n_with"] == int((wolf & snow).sum()) and ev["n_without"] == int((wolf & ~snow).sum())
    assert ev["recall_with"] == pytest.approx(np.mean(pred[wolf & snow] == WOLF))
    assert ev["recall_without"] == pytest.approx(np.mean(pred[wolf & ~snow] == WOLF))
    others_gap = np.mean(pred[~wolf & snow] == y[~wolf & snow]) - np.mean(pred[~wolf & ~snow] == y[~wolf & ~snow])
    assert ev["others_gap"] == pytest.approx(others_gap)
    assert ev["class_specific_gap"] == pytest.approx(ev["gap"] - others_gap)
    assert ev["recall_with"] - ev["recall_without"] > 0.3  # wolves without snow are missed
    assert ev["others_gap"] < -0.2  # and huskies in snow are taken for wolves
    # the ablation, recomputed with a copy of the layer whose weight is zeroed
    ablated = copy.deepcopy(shortcut.layer)
    ablated.weight_ = ablated.weight_.copy()
    ablated.weight_[WOLF, SNOW] = 0.0
    drop = shortcut.layer.predict_proba(shortcut.X)[:, WOLF] - ablated.predict_proba(shortcut.X)[:, WOLF]
    assert ev["ablation_drop_with"] == pytest.approx(drop[wolf & snow].mean(), abs=1e-5)
    assert ev["ablation_drop_without"] == pytest.approx(drop[wolf & ~snow].mean(), abs=1e-5)
    assert ev["ablated_recall_with"] == pytest.approx(np.mean(ablated.predict(shortcut.X)[wolf & snow] == WOLF))
    assert ev["auc"] > 0.9 and ev["q_value"] < 1e-10 and ev["gap_q_value"] < 0.05
    assert top.score == pytest.approx((2 * ev["auc"] - 1) * min(ev["class_specific_gap"], ev["ablation_gap"]))
    # the sentence says it with those numbers
    s = top.sentence
    assert s.startswith(f"class 'wolf' relies on feature 0 (weight {ev['weight']:.2f}), which fires on "
                        f"background=snow (AUC {ev['auc']:.2f})")
    assert f"{100 * ev['recall_with']:.0f}% of the time with background=snow" in s
    assert f"{100 * ev['recall_without']:.0f}% without" in s


def test_findings_are_sorted_and_the_candidates_hold_every_test(shortcut: Case) -> None:
    result = shortcut.find(["background", "site"])
    keys = [(f.evidence["weight"] > 0, f.score) for f in result.findings]  # firing features first, then score
    assert keys == sorted(keys, reverse=True)
    cand = result.candidates
    assert len(cand) >= len(result.findings)
    assert cand["significant"].sum() >= len(result.findings)  # one finding per (class, attribute, value)
    # only values that help the class are candidates: the feature fires on them (positive weight) or
    # goes quiet on them (negative weight); "auc" is that direction's
    assert (cand["auc"] > 0.5).all()
    assert set(cand["feature"]) <= set(np.flatnonzero((shortcut.layer.weight_ != 0).any(axis=0)))
    # BH is over the (class, attribute, value) groups: each group has one gap q-value
    per_group = cand.groupby(["class", "attribute", "value"])["gap_q_value"].nunique()
    assert (per_group == 1).all()


def test_a_harmless_attribute_gives_no_finding(shortcut: Case) -> None:
    assert shortcut.find(["site"]).findings == []


def test_without_the_shortcut_there_is_no_finding() -> None:
    case = Case(1, train_snow=(0.5, 0.5))
    result = case.find(["background", "site"])
    assert result.findings == []


def test_a_shift_that_hurts_every_class_is_not_a_reliance() -> None:
    # fog blurs both shapes: the shape features are associated with fog=no and each class is
    # recognised far less in fog, but no class more than the other: a slice, not a shortcut
    case = Case(2, train_snow=(0.5, 0.5), fog_rate=0.3)
    cand = case.find(["fog"]).candidates
    fog_no = cand[cand["value"] == "no"]
    assert len(fog_no) and (fog_no["assoc_q_value"] < 1e-6).all() and (fog_no["gap"] > 0.2).all()
    assert not fog_no["significant"].any()
    assert (fog_no["class_specific_gap"].abs() < 0.1).all()


def test_thresholds_decide(shortcut: Case) -> None:
    base = shortcut.find(["background"])
    assert base.findings
    ev = base.findings[0].evidence
    stricter = shortcut.find(["background"], min_auc=min(1.0, ev["auc"] + 0.005)).findings
    assert all(f.evidence["auc"] >= ev["auc"] + 0.005 for f in stricter)
    assert (base.findings[0].class_name, base.findings[0].feature) not in {(f.class_name, f.feature) for f in stricter}
    assert shortcut.find(["background"], min_gap=0.99).findings == []
    assert shortcut.find(["background"], min_ablation=0.99).findings == []
    assert shortcut.find(["background"], min_group=10 ** 6).findings == []


def test_to_dict_is_the_contract_and_json_ready(shortcut: Case, tmp_path) -> None:
    top = shortcut.find(["background"]).findings[0]
    d = top.to_dict()
    assert list(d)[:7] == ["class", "feature", "attribute", "value", "score", "evidence", "sentence"]
    assert d["class"] == "wolf" and d["class_label"] == WOLF and isinstance(d["feature"], int)
    for key in ("auc", "q_value", "weight", "recall_with", "recall_without", "n_with", "n_without",
                "ablation_drop_with", "ablation_drop_without", "ablation_gap", "gap_p_value"):
        assert key in d["evidence"], key
    write_json_atomic(tmp_path / "f.json", d)
    assert json.loads((tmp_path / "f.json").read_text())["sentence"] == top.sentence


# ----------------------------------------------------------------------------- bad input


def test_bad_parameters_name_the_parameter(shortcut: Case) -> None:
    for kw, name in [({"fdr": 1.5}, "fdr"), ({"min_auc": 0.3}, "min_auc"), ({"min_gap": -1}, "min_gap"),
                     ({"min_ablation": 2}, "min_ablation"), ({"min_group": 0}, "min_group")]:
        with pytest.raises(ParameterError, match=name) as err:
            shortcut.find(["background"], **kw)
        assert err.value.parameter == name
    with pytest.raises(ParameterError, match="layer"):
        find_spurious_features(object(), shortcut.X, shortcut.y, shortcut.pred, shortcut.meta, shortcut.assoc, [])


def test_bad_data_is_named(shortcut: Case) -> None:
    with pytest.raises(DataError, match="no column 'scanner'"):
        shortcut.find(["scanner"])
    with pytest.raises(DataError, match="q_value"):
        find_spurious_features(shortcut.layer, shortcut.X, shortcut.y, shortcut.pred, shortcut.meta,
                               shortcut.assoc.drop(columns="q_value"), ["background"])
    with pytest.raises(DataError, match="shape"):
        find_spurious_features(shortcut.layer, shortcut.X[:, :3], shortcut.y, shortcut.pred, shortcut.meta,
                               shortcut.assoc, ["background"])
    with pytest.raises(DataError, match="rows"):
        find_spurious_features(shortcut.layer, shortcut.X, shortcut.y[:-1], shortcut.pred, shortcut.meta,
                               shortcut.assoc, ["background"])
    with pytest.raises(ParameterError, match="class_names"):
        find_spurious_features(shortcut.layer, shortcut.X, shortcut.y, shortcut.pred, shortcut.meta,
                               shortcut.assoc, ["background"], class_names=["only-one"])


# ----------------------------------------------------------------------------- the stage


def make_context(case: Case, spurious: list[str]) -> RunContext:
    cfg = Config.model_validate({"model": {"path": "m.pt2"},
                                 "data": {"train": "a.npz", "test": "b.npz", "class_names": NAMES,
                                          "spurious_attributes": spurious},
                                 "mlflow": {"enabled": False}})
    ids = np.array([f"t{i}" for i in range(len(case.y))])
    meta = case.meta.assign(id=ids)[["id", *case.meta.columns]]
    view = SplitView("test", ids, case.y, case.X, case.logits, meta)
    ctx = RunContext(config=cfg, class_names=list(NAMES), splits={"test": view}, sparse_layer=case.layer)
    ctx.feature_attributes = case.assoc
    return ctx


@pytest.fixture(scope="module")
def hospital() -> Case:
    return Case(3, hospital_cue=True)


def test_stage_reports_declared_attributes_as_findings_and_the_rest_for_review(hospital: Case, caplog) -> None:
    assert hospital.layer.weight_[WOLF, 3] > 0  # wolves came from hospital B in training
    ctx = make_context(hospital, ["background", "site"])
    with caplog.at_level(logging.INFO, logger="sparsecheck"):
        spurious_stage(ctx)
    found = ctx.results["spurious_findings"]
    assert found and found[0]["attribute"] == "background" and found[0]["class"] == "wolf"
    assert [f.to_dict() for f in ctx.spurious_findings] == found
    assert all(f["attribute"] in ("background", "site") for f in found)
    assert not any(f["attribute"] == "site" for f in found)
    review = ctx.results["associations_to_review"]
    assert review and review[0]["attribute"] == "hospital" and review[0]["value"] == "B"
    assert all(f["attribute"] in ("fog", "hospital") for f in review)
    meta = ctx.results["spurious_analysis"]
    assert meta["split"] == "test" and meta["attributes"] == ["background", "site"]
    assert meta["review_attributes"] == ["fog", "hospital"] and meta["params"]["fdr"] == 0.05
    assert "relies on feature" in caplog.text
    json.dumps(ctx.results["spurious_findings"] + review, allow_nan=False)


def test_stage_needs_the_layer_and_known_attributes(hospital: Case) -> None:
    ctx = make_context(hospital, ["background"])
    ctx.sparse_layer = None
    with pytest.raises(ConfigError, match="sparse_stage"):
        spurious_stage(ctx)
    ctx = make_context(hospital, ["background"])
    ctx.config.data.spurious_attributes = ["scanner"]
    with pytest.raises(ConfigError, match="data.spurious_attributes"):
        spurious_stage(ctx)


def test_stage_without_declared_attributes_only_reviews(hospital: Case) -> None:
    ctx = make_context(hospital, [])
    spurious_stage(ctx)
    assert ctx.results["spurious_findings"] == [] and ctx.spurious_findings == []
    assert {f["attribute"] for f in ctx.results["associations_to_review"]} >= {"background", "hospital"}


def test_finding_dataclass_round_trip() -> None:
    f = SpuriousFinding("wolf", 3, "background", "snow", float("nan"), True, {"auc": float("inf"), "n_with": 4},
                        "s", np.int64(1))
    d = f.to_dict()
    assert d["score"] is None and d["evidence"]["auc"] is None and d["class_label"] == 1
    json.dumps(d, allow_nan=False)


def test_stage_computes_the_associations_when_interpretation_did_not_run(hospital: Case) -> None:
    ctx = make_context(hospital, ["background"])
    ctx.feature_attributes = None
    spurious_stage(ctx)
    table = ctx.feature_attributes
    assert table is not None and set(table["feature"]) == set(hospital.layer.used_features().tolist())
    rows = ctx.results["feature_attributes"]  # the significant ones, the strongest of each feature
    assert 0 < len(rows) < len(table) and list(rows[0])[:6] == ["feature", "attribute", "value", "effect",
                                                                 "p_value", "q_value"]
    assert all(r["q_value"] <= ctx.config.analysis.fdr for r in rows)
    assert (SNOW, "background", "snow") in {(r["feature"], r["attribute"], r["value"]) for r in rows}
    json.dumps(rows, allow_nan=False)
    assert ctx.results["spurious_findings"][0]["attribute"] == "background"


def test_numeric_attributes_are_not_scanned(shortcut: Case) -> None:
    meta = shortcut.meta.assign(age=np.arange(len(shortcut.y), dtype=float))
    assoc = feature_associations(shortcut.X, meta, strata=shortcut.y)
    assert (assoc["attribute"] == "age").any()  # a correlation row with no value
    result = find_spurious_features(shortcut.layer, shortcut.X, shortcut.y, shortcut.pred, meta, assoc,
                                    ["age", "background"], class_names=NAMES)
    assert "age" not in set(result.candidates["attribute"]) and result.findings


def test_a_declared_attribute_training_ties_to_no_class_is_reviewed_not_tested(hospital: Case, caplog) -> None:
    # with a training split: `site` comes with every class alike, so no class can have learned to rely
    # on it; it is listed for review with its largest difference in share, and only `background` is tested
    ctx = make_context(hospital, ["background", "site"])
    test = ctx.splits["test"]
    ctx.splits["train"] = SplitView("train", test.ids, test.labels, test.features, test.logits, test.metadata)
    with caplog.at_level(logging.INFO, logger="sparsecheck"):
        spurious_stage(ctx)
    meta = ctx.results["spurious_analysis"]
    assert meta["attributes"] == ["background"] and "site" in meta["review_attributes"]
    assert set(meta["untied_attributes"]) == {"site"} and meta["untied_attributes"]["site"] < 0.15
    found = ctx.results["spurious_findings"]
    assert found and found[0]["attribute"] == "background" and found[0]["class"] == "wolf"
    assert "a model cannot have learned a shortcut from it" in caplog.text
