"""The planted-bug suite: synthetic tasks with known bugs, a model trained on the spot, and the
slices and spurious findings sparsecheck reports, scored against what was planted.

In the manner of the Domino / dcbench evaluation of slice discovery (Eyuboglu et al., ICLR 2022),
each seed draws a new task and plants three slices in it:

* a **rare** slice: one value of ``background``, drawn per seed, marks images shown inverted; it
  is 2% of the training data and 15% of the test data, and the model fails on it;
* a **correlated** slice: a bright patch (``mark=yes``) in a corner drawn per seed, on 90% of the
  training images of a class drawn per seed and 5% of the others, but on 30% of every class in
  test. The model takes the shortcut; the slice is where the training correlation is broken:
  the cue's class without the cue, ``{mark: no, label: <cue class>}``, and the other classes
  with it, ``{mark: yes, label: <other class>}`` (any of these descriptions counts);
* a **noisy-label** slice: the labels of one ``annotator``, drawn per seed, are wrong half the time.

Two harmless attributes, ``site`` and ``camera``, are drawn at random and change nothing. The
declared spurious attributes are ``mark``, ``background``, ``site`` and ``camera``, so a
spurious finding on a harmless attribute is possible, and counted.

The images are 12 x 12, each class a random pattern of blobs, shifted by up to a pixel, scaled and
noised; the model is a one-hidden-layer MLP trained for a few epochs (its 48 hidden units are the
deep features), then the real pipeline pieces run: the sparse decision layer, the feature ×
attribute associations (within-class, on the test split), :func:`~sparsecheck.pipeline.stages.slices_stage` and
:func:`~sparsecheck.pipeline.stages.spurious_stage`.

Figures, per run, averaged over seeds:

``precision@5``
    Of the top ``min(5, m)`` reported slices (``m = 3`` planted slices, so the top 3), the
    fraction that *match* a planted slice. A reported slice matches a planted one when its
    predicates include all of the planted slice's predicates (it is the planted slice or a part
    of it: ``{background: b, prediction: 4}`` matches ``{background: b}``). Denominator
    ``min(k, m)`` makes a perfect score reachable with fewer planted slices than ``k``.
    ``strict_precision@5`` (denominator 5, reported only) and ``recall@5`` (planted slices matched
    by any of the top 5) come with it.
``spurious hit``
    1 when the top spurious finding for the cue's class is ``mark=yes``, else 0.
``harmless findings``
    Number of spurious findings on ``site`` or ``camera``.

Done when: precision@5 and the spurious hit rate are both at least 0.8 averaged over the seeds,
and harmless findings at most 0.1 per run. Three seeds run by default, ten under ``-m slow``;
``python bench/planted_bugs.py`` prints the figures over more seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsecheck.analysis.association import feature_associations
from sparsecheck.config import Config
from sparsecheck.pipeline.context import RunContext, SplitView

N_CLASSES = 5
SIDE = 12
HIDDEN = 48
NOISE = 0.2
SPURIOUS = ["mark", "background", "site", "camera"]
HARMLESS = ["site", "camera"]
BACKGROUNDS = ["plain", "textured"]
ANNOTATORS = ["ann_a", "ann_b", "ann_c"]
CLASS_NAMES = ["ant", "bee", "cat", "dog", "eel"]
DEFAULT_SEEDS = (0, 1, 2)
SLOW_SEEDS = tuple(range(10))


# ----------------------------------------------------------------------------- the task


@dataclass
class PlantedTask:
    """One seed's data and what was planted in it."""

    seed: int
    splits: dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]]  # x (n, side, side), y, metadata
    cue_class: int
    rare_value: str
    noisy_annotator: str

    @property
    def planted_slices(self) -> dict[str, list[dict[str, str]]]:
        """Planted slice -> the predicates that describe it (any one of them counts)."""
        cue = CLASS_NAMES[self.cue_class]
        broken = [{"mark": "no", "label": cue}] + [{"mark": "yes", "label": c} for c in CLASS_NAMES if c != cue]
        return {"rare": [{"background": self.rare_value}], "correlated": broken,
                "noisy": [{"annotator": self.noisy_annotator}]}


def make_task(seed: int, *, n_train: int = 3000, n_val: int = 800, n_test: int = 2000) -> PlantedTask:
    """Draw a task: class patterns, which class gets the cue (and in which corner), which
    background is rare, which annotator is noisy; then the three splits."""
    rng = np.random.default_rng([seed, 0])
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    patterns = np.zeros((N_CLASSES, SIDE, SIDE))
    for k in range(N_CLASSES):
        for _ in range(3):
            cy, cx = rng.uniform(3, SIDE - 3, size=2)
            s = rng.uniform(1.2, 2.5)
            patterns[k] += rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        patterns[k] /= patterns[k].max()
    cue_class = int(rng.integers(N_CLASSES))
    corner = int(rng.integers(4))
    rare_value = str(rng.choice(BACKGROUNDS))
    common_value = next(b for b in BACKGROUNDS if b != rare_value)
    noisy = str(rng.choice(ANNOTATORS))
    others = [a for a in ANNOTATORS if a != noisy]
    top = 0 if corner < 2 else SIDE - 3
    left = 0 if corner % 2 == 0 else SIDE - 3
    splits = {}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test)), start=1):
        r = np.random.default_rng([seed, k])
        test = split == "test"
        true_y = r.integers(0, N_CLASSES, n)
        rare = r.random(n) < (0.15 if test else 0.02)
        mark = r.random(n) < 0.3 if test else np.where(true_y == cue_class, r.random(n) < 0.95, r.random(n) < 0.03)
        annotator = np.where(r.random(n) < 0.12, noisy, r.choice(others, n))
        x = patterns[true_y].copy()
        shift = r.integers(-1, 2, size=(n, 2))
        for i in range(n):
            x[i] = np.roll(x[i], tuple(shift[i]), axis=(0, 1))
        x = x * r.uniform(0.6, 1.0, size=(n, 1, 1)) + r.normal(0, NOISE, x.shape)
        x[mark, top:top + 3, left:left + 3] = 1.5 + r.normal(0, 0.1, (int(mark.sum()), 3, 3))
        x[rare] = 1.0 - x[rare]
        y = true_y.copy()
        flip = (annotator == noisy) & (r.random(n) < 0.5)
        y[flip] = (true_y[flip] + r.integers(1, N_CLASSES, int(flip.sum()))) % N_CLASSES
        meta = pd.DataFrame({"id": [f"{split}-{i:05d}" for i in range(n)],
                             "mark": np.where(mark, "yes", "no"),
                             "background": np.where(rare, rare_value, common_value),
                             "annotator": annotator,
                             "site": r.choice(["north", "south", "east"], n),
                             "camera": r.choice(["c1", "c2"], n)})
        splits[split] = (x.astype(np.float32), y.astype(np.int64), meta)
    return PlantedTask(seed, splits, cue_class, rare_value, noisy)


class _MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, HIDDEN)
        self.head = nn.Linear(HIDDEN, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_model(x: np.ndarray, y: np.ndarray, seed: int, *, epochs: int = 10, batch_size: int = 128) -> _MLP:
    """Adam on the training split, seeded."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = _MLP(int(np.prod(x.shape[1:])))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


# ----------------------------------------------------------------------------- one run




def build_context(task: PlantedTask) -> RunContext:
    """Train the model, extract its hidden features, fit the sparse layer: a RunContext as the
    pipeline's load, extract and sparse stages would leave it."""
    from sparsecheck.sparse import SparseDecisionLayer

    x, y, _ = task.splits["train"]
    net = train_model(x, y, task.seed)
    splits = {}
    with torch.no_grad():
        for name, (xs, ys, meta) in task.splits.items():
            xt = torch.from_numpy(xs)
            splits[name] = SplitView(name, meta["id"].to_numpy(), ys, net.features(xt).numpy(), net(xt).numpy(), meta)
    cfg = Config.model_validate({"model": {"path": "m.pt2"},
                                 "data": {"train": "train.npz", "val": "val.npz", "test": "test.npz",
                                          "class_names": CLASS_NAMES, "spurious_attributes": SPURIOUS},
                                 "mlflow": {"enabled": False}, "seed": task.seed})
    ctx = RunContext(config=cfg, class_names=list(CLASS_NAMES), splits=splits)
    train, val = splits["train"], splits["val"]
    ctx.sparse_layer = SparseDecisionLayer(n_lambdas=20, solver="fista", device="cpu", random_state=task.seed).fit(
        train.features, train.labels, val.features, val.labels)
    test = splits["test"]
    used = ctx.sparse_layer.used_features()
    ctx.feature_attributes = feature_associations(test.features[:, used], test.metadata, features=used,
                                                  strata=test.labels)
    return ctx


def matches(predicates: dict[str, str], planted: dict[str, str]) -> bool:
    """A reported slice matches a planted one when it has every one of its predicates."""
    return all(predicates.get(k) == v for k, v in planted.items())


def precision_at_k(reported: list[dict[str, str]], planted: dict[str, list[dict[str, str]]], k: int = 5,
                   *, strict: bool = False) -> float:
    """Fraction of the top ``min(k, len(planted))`` reported slices (top ``k`` when ``strict``)
    that match a planted slice; 0 for missing ranks.

    >>> planted = {"rare": [{"bg": "b"}], "noisy": [{"ann": "c"}]}
    >>> precision_at_k([{"bg": "b", "site": "n"}, {"site": "n"}, {"ann": "c"}], planted)
    0.5
    >>> precision_at_k([{"bg": "b", "site": "n"}, {"site": "n"}, {"ann": "c"}], planted, k=3, strict=True)
    0.6666666666666666
    """
    depth = k if strict else min(k, len(planted))
    hits = sum(any(matches(p, alt) for alts in planted.values() for alt in alts) for p in reported[:depth])
    return hits / depth


def recall_at_k(reported: list[dict[str, str]], planted: dict[str, list[dict[str, str]]], k: int = 5) -> float:
    """Fraction of the planted slices matched by at least one of the top ``k`` reported slices."""
    return float(np.mean([any(matches(p, alt) for p in reported[:k] for alt in alts) for alts in planted.values()]))


@dataclass
class PlantedResult:
    """The figures of one seed."""

    seed: int
    precision_at_5: float
    strict_precision_at_5: float
    recall_at_5: float
    spurious_hit: bool
    harmless_findings: int
    n_findings: int
    dense_accuracy: float
    cue_recall_gap: float  # recall of the cue's class with the cue minus without: was the shortcut learned?
    seconds: float
    top_slices: list[dict[str, str]] = field(default_factory=list)
    top_finding: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_planted(seed: int) -> tuple[PlantedResult, RunContext, PlantedTask]:
    """Draw the task of ``seed``, train, run the slices and spurious stages, score them."""
    from sparsecheck.pipeline.stages import slices_stage, spurious_stage

    start = time.perf_counter()
    task = make_task(seed)
    ctx = build_context(task)
    slices_stage(ctx)
    spurious_stage(ctx)
    cue = CLASS_NAMES[task.cue_class]
    planted = task.planted_slices
    reported = [s["predicates"] for s in ctx.results["slices"]]
    top = next((f for f in ctx.spurious_findings if f.class_name == cue), None)
    test = ctx.splits["test"]
    correct = test.dense_predictions == test.labels
    in_cue, marked = test.labels == task.cue_class, (test.metadata["mark"] == "yes").to_numpy()
    result = PlantedResult(
        seed=seed,
        precision_at_5=precision_at_k(reported, planted, 5),
        strict_precision_at_5=precision_at_k(reported, planted, 5, strict=True),
        recall_at_5=recall_at_k(reported, planted, 5),
        spurious_hit=top is not None and (top.attribute, top.value) == ("mark", "yes"),
        harmless_findings=sum(f.attribute in HARMLESS for f in ctx.spurious_findings),
        n_findings=len(ctx.spurious_findings),
        dense_accuracy=float(np.mean(correct)),
        cue_recall_gap=float(correct[in_cue & marked].mean() - correct[in_cue & ~marked].mean()),
        seconds=time.perf_counter() - start,
        top_slices=reported[:5],
        top_finding="" if top is None else top.sentence,
    )
    return result, ctx, task


def summarise(results: list[PlantedResult]) -> dict[str, float]:
    """Averages over seeds."""
    return {"seeds": len(results),
            "precision_at_5": float(np.mean([r.precision_at_5 for r in results])),
            "strict_precision_at_5": float(np.mean([r.strict_precision_at_5 for r in results])),
            "recall_at_5": float(np.mean([r.recall_at_5 for r in results])),
            "spurious_hit_rate": float(np.mean([r.spurious_hit for r in results])),
            "harmless_findings_per_run": float(np.mean([r.harmless_findings for r in results])),
            "shortcut_learned_rate": float(np.mean([r.cue_recall_gap >= 0.1 for r in results])),
            "seconds_per_run": float(np.mean([r.seconds for r in results]))}


# ----------------------------------------------------------------------------- the suite


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted_runs() -> list[tuple[PlantedResult, RunContext, PlantedTask]]:
    return [run_planted(s) for s in DEFAULT_SEEDS]


def check_suite(results: list[PlantedResult]) -> dict[str, float]:
    summary = summarise(results)
    detail = "\n".join(f"  seed {r.seed}: P@5 {r.precision_at_5:.2f} hit {r.spurious_hit} harmless "
                       f"{r.harmless_findings} slices {r.top_slices} | {r.top_finding}" for r in results)
    assert summary["precision_at_5"] >= 0.8, detail
    assert summary["spurious_hit_rate"] >= 0.8, detail
    assert summary["harmless_findings_per_run"] <= 0.1, detail
    return summary


def test_planted_bugs_are_found(planted_runs) -> None:
    check_suite([r for r, _, _ in planted_runs])


@pytest.mark.slow
def test_planted_bugs_are_found_over_ten_seeds() -> None:
    check_suite([run_planted(s)[0] for s in SLOW_SEEDS])


# ----------------------------------------------------------------------------- the stages' outputs


def test_slices_stage_writes_the_contract(planted_runs) -> None:
    from sparsecheck.analysis.slices import Slice

    _, ctx, task = planted_runs[0]
    slices = ctx.results["slices"]
    assert slices and len(slices) <= ctx.config.analysis.slices_top_k
    assert slices == [s.to_dict() for s in ctx.slices] and all(isinstance(s, Slice) for s in ctx.slices)
    assert [s["score"] for s in slices] == sorted((s["score"] for s in slices), reverse=True)
    for s in slices:
        assert list(s)[:7] == ["predicates", "size", "error_rate", "ci_low", "ci_high", "p_value", "q_value"]
        assert set(s["predicates"]) <= set(ctx.attributes) | {"label"}  # never the prediction
        assert s["predicates"].get("label", CLASS_NAMES[0]) in CLASS_NAMES  # labels by name
        assert s["size"] >= ctx.config.analysis.min_support and s["ci_low"] <= s["error_rate"] <= s["ci_high"]
    # the rare slice, the strongest planted bug, is on top, and significant
    assert slices[0]["predicates"] == {"background": task.rare_value} and slices[0]["significant"]
    search = ctx.results["slice_search"]
    assert search["columns"] == [*ctx.attributes, "label"] and search["min_support"] == 20
    table = ctx.prediction_table("test")
    assert search["error_rate"] == pytest.approx(1 - table["correct"].mean())
    used = {f"feat_{f}" for f in ctx.sparse_layer.used_features()}
    feature_slices = ctx.results["feature_slices"]
    assert feature_slices and all(set(s["predicates"]) <= used | {"label"} for s in feature_slices)


def test_error_breakdowns_are_ranked_capped_and_tested(planted_runs) -> None:
    from sparsecheck.analysis.slices import MAX_BREAKDOWN_ROWS
    from sparsecheck.analysis.stats import fisher_exact_pvalue

    _, ctx, task = planted_runs[0]
    table = ctx.prediction_table("test")
    n, n_err = len(table), int((~table["correct"]).sum())
    by_pair = ctx.results["error_breakdowns"]["by_pair"]
    assert 0 < len(by_pair) <= MAX_BREAKDOWN_ROWS
    assert not any({r["attribute_1"], r["attribute_2"]} == {"label", "prediction"} for r in by_pair)
    flags = [r["significant"] for r in by_pair]
    assert flags == sorted(flags, reverse=True) and flags[0]
    sig = [r["error_rate"] for r in by_pair if r["significant"]]
    assert sig == sorted(sig, reverse=True)
    row = by_pair[0]
    errors = round(row["error_rate"] * row["size"])
    p = fisher_exact_pvalue(np.array([errors]), np.array([row["size"]]), np.array([n_err - errors]),
                            np.array([n - row["size"]]))[0]
    assert row["p_value"] == pytest.approx(p) and row["q_value"] >= row["p_value"]
    assert task.rare_value in (row["value_1"], row["value_2"])  # the worst cells are in the rare slice
    by_feature = ctx.results["error_breakdowns"]["by_feature_activation"]
    assert 0 < len(by_feature) <= MAX_BREAKDOWN_ROWS
    weight = ctx.sparse_layer.weight_
    for r in by_feature:
        assert weight[list(ctx.sparse_layer.classes_).index(r["class"]), r["feature"]] != 0
        assert r["class_name"] == CLASS_NAMES[r["class"]] and r["size"] >= ctx.config.analysis.min_support
        assert r["gap"] == pytest.approx(r["accuracy_rest"] - r["accuracy"])
    flags = [r["significant"] for r in by_feature]
    assert flags == sorted(flags, reverse=True)


def test_slices_stage_follows_the_config_and_refuses_unlabelled_data(planted_runs) -> None:
    import copy
    import dataclasses

    from sparsecheck.pipeline.stages import slices_stage
    from sparsecheck.errors import DataError
    from sparsecheck.results import RunResults

    _, ctx, _ = planted_runs[1]
    ctx = dataclasses.replace(ctx, config=ctx.config.model_copy(deep=True), run_results=RunResults(status="pass"))
    ctx.config.analysis.slices_top_k = 2
    ctx.config.analysis.min_support = 300
    ctx.config.analysis.max_predicates = 1
    slices_stage(ctx)
    assert 0 < len(ctx.results["slices"]) <= 2
    assert all(s["size"] >= 300 and len(s["predicates"]) == 1 for s in ctx.results["slices"])
    test = copy.copy(ctx.splits["test"])
    test.labels = None
    ctx.splits = {**ctx.splits, "test": test}
    with pytest.raises(DataError, match="labels"):
        slices_stage(ctx)


def test_spurious_stage_output_on_a_planted_run(planted_runs) -> None:
    result, ctx, task = planted_runs[0]
    found = ctx.results["spurious_findings"]
    assert found and [f["score"] for f in found] == sorted((f["score"] for f in found), reverse=True)
    cue = CLASS_NAMES[task.cue_class]
    top = next(f for f in found if f["class"] == cue)
    assert (top["attribute"], top["value"]) == ("mark", "yes") and result.spurious_hit
    assert top["evidence"]["recall_with"] > top["evidence"]["recall_without"]
    assert top["sentence"].startswith(f"class '{cue}' relies on feature {top['feature']}")
    # annotator is not declared spurious: never a finding, at most an association to review; a
    # declared attribute that training ties to no class is reviewed too, never a finding
    untied = set(ctx.results["spurious_analysis"]["untied_attributes"])
    assert "mark" not in untied and not any(f["attribute"] in {"annotator", *untied} for f in found)
    assert all(f["attribute"] in {"annotator", *untied} for f in ctx.results["associations_to_review"])
