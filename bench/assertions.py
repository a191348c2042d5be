"""Benchmark: 20 assertions over a 1,000,000-row prediction table (10 classes, 5 metadata attributes).

Target: under 10 s in all on 2 CPU cores. Prints the time of every assertion and per family
(metric, sparse, table, model/custom), for a first (cold: pandera's backends load on first use)
and a second (warm) run of the same suite.

The sparse layer and the feature/metadata association table are small stand-ins with the real
attributes (``weight_``, ``classes_``; the tidy association columns): their cost does not grow with
the number of rows. Invariance assertions are left out: they run the model on images, which is
the cost of a forward pass, not of the engine.

Usage::

    python bench/assertions.py [--rows 1000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from sparsecheck.assertions import Assertion, AssertionContext, register_assertion, run_assertions

N_CLASSES = 10
ATTRIBUTES = {"site": 12, "scanner": 5, "sex": 2, "age_band": 8, "hospital": 40}


def make_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, N_CLASSES, n)
    meta = {a: rng.integers(0, k, n) for a, k in ATTRIBUTES.items()}
    p_ok = np.where(meta["scanner"] == 3, 0.6, 0.9)
    correct = rng.random(n) < p_ok
    pred = np.where(correct, label, (label + rng.integers(1, N_CLASSES, n)) % N_CLASSES)
    logits = rng.normal(0, 1, (n, N_CLASSES)).astype(np.float64)
    logits[np.arange(n), pred] = logits.max(axis=1) + rng.uniform(0.1, 3, n)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    cols: dict[str, object] = {
        "id": np.char.add("ex", np.arange(n).astype(str)).astype(object),
        "label": label, "prediction": pred, "confidence": prob.max(axis=1), "correct": pred == label}
    for k in range(N_CLASSES):
        cols[f"prob_{k}"] = prob[:, k]
    sparse = np.where(rng.random(n) < 0.93, pred, rng.integers(0, N_CLASSES, n))
    cols["sparse_prediction"] = sparse
    cols["sparse_correct"] = sparse == label
    for a, codes in meta.items():
        cols[a] = np.array([f"{a}_{i}" for i in range(ATTRIBUTES[a])], dtype=object)[codes]
    cols["patient"] = rng.integers(0, n // 4, n)          # ~4 images per patient
    cols["track"] = np.arange(n) // 100                    # 10,000 sequences of 100 frames
    cols["frame"] = np.arange(n) % 100
    return pd.DataFrame(cols)


def stand_ins(seed: int) -> tuple[SimpleNamespace, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    d = 512
    weight = np.zeros((N_CLASSES, d))
    for c in range(N_CLASSES):
        weight[c, rng.choice(d, 8, replace=False)] = rng.normal(0, 1, 8)
    layer = SimpleNamespace(weight_=weight, classes_=np.arange(N_CLASSES))
    rows = []
    for f in np.flatnonzero((weight != 0).any(axis=0)):
        for a, k in ATTRIBUTES.items():
            for v in range(k):
                rows.append((int(f), a, f"{a}_{v}", float(rng.uniform(0.35, 0.65)), float(rng.uniform(0, 1))))
    fa = pd.DataFrame(rows, columns=["feature", "attribute", "value", "effect", "p_value"])
    fa["q_value"] = fa["p_value"]
    return layer, fa


@register_assertion("bench-low-confidence", needs_labels=False, replace=True)
def low_confidence(data, floor: float = 0.2):
    """Per-example severity: how far below ``floor`` the confidence is."""
    return np.clip(floor - data.confidence(), 0.0, None)


def suite() -> list[Assertion]:
    return [
        # metric (8)
        Assertion.accuracy(min=0.8, name="accuracy"),
        Assertion.accuracy(by=list(ATTRIBUTES), max_drop=0.05, confidence=0.95, name="accuracy-by-5-attributes"),
        Assertion.accuracy(by=[["site", "scanner"]], min=0.5, min_support=50, name="accuracy-site-x-scanner"),
        Assertion.recall(class_="*", by=["scanner"], max_drop=0.1, name="recall-each-class-by-scanner"),
        Assertion.precision(class_="*", min=0.7, name="precision-each-class"),
        Assertion.macro_f1(by=["age_band", "hospital"], max_drop=0.05, name="macro-f1-by-slices"),
        Assertion.ece(by=["sex"], max=0.2, name="ece-by-sex"),
        Assertion.accuracy(by=["hospital"], max_drop=0.1, head="sparse", name="sparse-accuracy-by-hospital"),
        # sparse (5)
        Assertion.sparse_agreement(min=0.9, name="sparse-agreement"),
        Assertion.sparse_accuracy_gap(max_gap=0.05, name="sparse-gap"),
        Assertion.max_features_per_class(max=10, name="features-per-class"),
        Assertion.no_reliance(attribute=["site", "hospital"], name="no-reliance"),
        Assertion.spurious_weight_share(max=0.2, attribute=["scanner"], name="weight-share"),
        # table (3)
        Assertion.prediction_schema(name="schema"),
        Assertion.prediction_schema(checks=[{"column": "confidence", "check": "greater_than_or_equal_to", "value": 0.1},
                                            {"column": "sex", "check": "isin", "value": ["sex_0", "sex_1"]}],
                                    probabilities=False, name="schema-user-checks"),
        Assertion.prediction_schema(checks=[{"column": "hospital", "check": "str_startswith", "value": "hospital_"}],
                                    unique_ids=False, probabilities=False, name="schema-hospital-names"),
        # model / custom (4)
        Assertion.consistency(key="patient", max_failing_rate=1.0, name="consistency-per-patient"),
        Assertion.flicker(sequence="track", time="frame", window=3, max_failing_rate=1.0, name="flicker"),
        Assertion.of("bench-low-confidence", name="low-confidence", max_failing_rate=0.5),
        Assertion.custom(lambda data: bool(data.table["prediction"].nunique() == N_CLASSES), name="all-classes-used"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    table = make_table(args.rows, args.seed)
    layer, fa = stand_ins(args.seed)
    print(f"table: {len(table):,} rows x {table.shape[1]} columns ({N_CLASSES} classes, {len(ATTRIBUTES)} attributes), "
          f"built in {time.perf_counter() - t0:.1f}s")
    assertions = suite()
    if len(assertions) != 20:
        raise SystemExit(f"the suite has {len(assertions)} assertions, not 20")
    for label in ("cold", "warm"):
        data = AssertionContext(table, class_names=[f"c{k}" for k in range(N_CLASSES)], sparse_layer=layer,
                                feature_attributes=fa)  # fresh caches: column encodings are part of the cost
        start = time.perf_counter()
        result = run_assertions(assertions, data)
        total = time.perf_counter() - start
        print(f"\n{label} run: {len(result)} assertions in {total:.2f}s "
              f"({result.counts()['pass']} pass, {result.counts()['fail']} fail, {result.counts()['error']} error)")
        per_family: dict[str, float] = {}
        for r in result:
            per_family[r.family] = per_family.get(r.family, 0.0) + r.seconds
            if label == "cold":
                print(f"  {r.family:7s} {r.name:30s} {r.seconds:7.3f}s  {r.status}")
        for family, seconds in per_family.items():
            n = sum(r.family == family for r in result)
            print(f"  family {family:7s}: {seconds:6.2f}s for {n} assertions")
        errors = [r for r in result if r.status == "error"]
        if errors:
            raise SystemExit(f"assertions raised: {[(r.name, r.message) for r in errors]}")


if __name__ == "__main__":
    main()
