"""Planted prediction tables for the assertion tests: what is wrong where is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASS_NAMES = ["ant", "bee", "cat", "dog"]


def planted_table(n: int = 3000, *, seed: int = 0, n_classes: int = 4, bad_rate: float = 0.45,
                  good_rate: float = 0.88) -> pd.DataFrame:
    """A labelled prediction table with a planted weak slice ``group=g2`` (accuracy ``bad_rate``),
    a harmless ``site``, a tiny slice ``batch=rare`` (12 rows, all wrong), and a sparse head that
    disagrees with the dense head on about 10% of the rows."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_classes, n)
    group = rng.choice(["g1", "g2"], n, p=[0.8, 0.2])
    site = rng.choice(["north", "south", "east"], n)
    batch = np.array(["common"] * n, dtype=object)
    batch[rng.choice(n, 12, replace=False)] = "rare"
    p_correct = np.where(group == "g2", bad_rate, good_rate)
    correct = rng.random(n) < p_correct
    correct[batch == "rare"] = False
    pred = np.where(correct, label, (label + rng.integers(1, n_classes, n)) % n_classes)
    logits = rng.normal(0, 1, (n, n_classes))
    logits[np.arange(n), pred] = logits.max(axis=1) + rng.uniform(0.1, 3.0, n)
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    table = pd.DataFrame({"id": [f"ex{i:05d}" for i in range(n)], "label": label, "prediction": pred,
                          "confidence": prob.max(axis=1), "correct": pred == label})
    for k in range(n_classes):
        table[f"prob_{k}"] = prob[:, k]
    flip = rng.random(n) < 0.1
    table["sparse_prediction"] = np.where(flip, (pred + 1) % n_classes, pred)
    table["sparse_correct"] = table["sparse_prediction"] == label
    table["group"] = group
    table["site"] = site
    table["batch"] = batch
    return table
