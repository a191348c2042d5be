"""The selection's arithmetic: class probabilities from a prediction table, least-margin order, each
assertion's (arm's) statistics from the labels acquired so far, and BAL's draws (UCB over the arms'
gains); :mod:`sparsecheck.select` puts them together."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sparsecheck.errors import DataError

#: the columns of a selection CSV, in order
SELECTION_COLUMNS = ("id", "rank", "strategy", "arm", "assertions", "severity", "confidence", "margin",
                     "prediction", "predicted_class", "gain", "label")


def _probabilities(table: pd.DataFrame) -> np.ndarray:
    cols = sorted((c for c in table.columns if isinstance(c, str) and re.fullmatch(r"prob_\d+", c)),
                  key=lambda c: int(c[5:]))
    if not cols:
        raise DataError("the prediction table has no 'prob_<k>' columns: uncertainty needs class probabilities")
    return table[cols].to_numpy(dtype=np.float64)


def _least_margin(margin: np.ndarray, free: np.ndarray, ids: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(free)
    return rows[np.lexsort((ids[rows], margin[rows]))]


def _arm_stats(failures: pd.DataFrame, table: pd.DataFrame, labelled: pd.DataFrame,
               names: Sequence[str]) -> pd.DataFrame:
    """Per arm: failing examples in the pool, labels acquired on examples it flagged and how many
    of them were model errors, and the gain (Beta(1, 1) posterior mean of errors per label).

    An acquired row says which assertions fired and what the model predicted when it was
    selected (its ``assertions`` and ``prediction`` columns, when given); otherwise the current
    flags and predictions stand in.
    """
    flagged_now = failures.groupby("id")["assertion"].agg(set)
    pred_now = pd.Series(table["prediction"].to_numpy(), index=table["id"].astype(str))
    n_lab: dict[str, int] = {}
    n_err: dict[str, int] = {}
    for row in labelled.itertuples(index=False):
        rid = str(row.id)
        fired = _fired(getattr(row, "assertions", None))
        if fired is None:
            fired = flagged_now.get(rid, set())
        pred = getattr(row, "prediction", None)
        pred = int(pred) if pred is not None and str(pred).strip().lstrip("-").isdigit() else pred_now.get(rid)
        if pred is None:
            continue
        for a in fired:
            n_lab[a] = n_lab.get(a, 0) + 1
            n_err[a] = n_err.get(a, 0) + int(int(row.label) != int(pred))
    counts = failures["assertion"].value_counts()
    arms = [a for a in names if counts.get(a, 0)] + [a for a in counts.index if a not in names]
    lab = [n_lab.get(a, 0) for a in arms]
    err = [n_err.get(a, 0) for a in arms]
    return pd.DataFrame({"assertion": pd.Series(arms, dtype=str),
                         "n_failing": pd.Series([int(counts[a]) for a in arms], dtype=np.int64),
                         "n_labelled": pd.Series(lab, dtype=np.int64), "n_errors": pd.Series(err, dtype=np.int64),
                         "gain": pd.Series([(e + 1) / (n + 2) for e, n in zip(err, lab)], dtype=np.float64)})


def _fired(cell: Any) -> set[str] | None:
    """The assertion names of a selection CSV's ``assertions`` cell (``a:0.5;b:0.2``); None when absent."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    return {part.rpartition(":")[0] or part for part in str(cell).split(";") if part.strip()}


def _bal(queues: dict[str, list[int]], arms: pd.DataFrame, budget: int, c: float) -> list[tuple[int, str, float]]:
    """BAL's draws: UCB over the arms' gains, each arm's most severe example not taken yet."""
    stats = arms.set_index("assertion")
    order = [a for a in stats.index if queues.get(a)]
    pulls = {a: int(stats.at[a, "n_labelled"]) for a in order}
    t = sum(pulls.values())
    taken: set[int] = set()
    picks: list[tuple[int, str, float]] = []
    heads = {a: 0 for a in order}
    while len(picks) < budget:
        best, best_score = None, -math.inf
        for a in order:  # ties go to the arm declared first
            queue = queues[a]
            while heads[a] < len(queue) and queue[heads[a]] in taken:
                heads[a] += 1
            if heads[a] >= len(queue):
                continue
            score = float(stats.at[a, "gain"]) + c * math.sqrt(2 * math.log(t + 1) / (1 + pulls[a]))
            if score > best_score:
                best, best_score = a, score
        if best is None:
            break
        row = queues[best][heads[best]]
        taken.add(row)
        picks.append((row, best, float(stats.at[best, "gain"])))
        pulls[best] += 1
        t += 1
    return picks


def _selection_rows(table: pd.DataFrame, failures: pd.DataFrame, picks: list[tuple[int, str, float]],
                    strategy: str, probs: np.ndarray, margin: np.ndarray,
                    class_names: Sequence[str] | None) -> pd.DataFrame:
    rows = np.asarray([p[0] for p in picks], dtype=np.int64)
    ids = table["id"].astype(str).to_numpy()[rows]
    fired: dict[str, str] = {}
    worst: dict[str, float] = {}
    for row in failures.sort_values("severity", ascending=False, kind="stable").itertuples(index=False):
        fired[row.id] = f"{fired[row.id]};" if row.id in fired else ""
        fired[row.id] += f"{row.assertion}:{row.severity:.3g}"
        worst.setdefault(row.id, float(row.severity))
    pred = table["prediction"].to_numpy(dtype=np.int64)[rows]
    names = list(class_names or [])
    return pd.DataFrame({
        "id": ids, "rank": np.arange(1, len(rows) + 1), "strategy": strategy,
        "arm": [p[1] for p in picks],
        "assertions": [fired.get(i, "") for i in ids],
        "severity": [float(worst.get(i, 0.0)) for i in ids],
        "confidence": probs[rows].max(axis=1) if len(rows) else np.zeros(0),
        "margin": margin[rows],
        "prediction": pred,
        "predicted_class": [names[k] if k < len(names) else str(k) for k in pred],
        "gain": [p[2] for p in picks],
        "label": "",
    }, columns=list(SELECTION_COLUMNS))
