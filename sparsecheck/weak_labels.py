"""Weak labels and corrective actions from consistency assertions (Kang et al., MLSys 2020, §5).

A consistency assertion that fires also says what the output should have been:

``consistency`` (``key``)
    Examples sharing a key should share a prediction: the proposed label of every example of a
    disagreeing group is the group's majority vote (the most frequent prediction, when one class
    leads outright). ``support`` is the share of the group that votes for it.
``flicker`` (``sequence``, ``time``, ``window``)
    A prediction that flips and flips back within the window: the proposed label is the
    prediction around the flicker (the smoothed one). ``support`` is the share of the other
    predictions of the sequence within the window of the example that agree with it.

:func:`propose_labels` turns a suite's results into one row per (example, rule) with the proposed
label, the model's prediction and whether they agree: weak labels to fine-tune on
(``sparsecheck weak-labels``). :func:`correct_predictions` applies them to a batch's predictions:
the correction a serving job can take (``sparsecheck monitor --correct``).

Examples
--------
>>> import pandas as pd
>>> from sparsecheck.assertions import consistency, flicker, run_assertions
>>> table = pd.DataFrame({"id": list("abcdef"), "prediction": [3, 3, 5, 3, 3, 3], "track": ["t"] * 6,
...                       "frame": [0, 1, 2, 3, 4, 5]})
>>> rules = [flicker(sequence="track", time="frame", window=2, name="no-flicker")]
>>> weak = propose_labels(table, rules, run_assertions(rules, table, max_examples=None))
>>> weak[["id", "label", "rule", "prediction", "agrees", "support"]].values.tolist()
[['c', 3, 'no-flicker', 5, False, 1.0]]
>>> correct_predictions(table, weak)[["id", "prediction", "corrected", "rule"]].values.tolist()[1:4]
[['b', 3, 3, ''], ['c', 5, 3, 'no-flicker'], ['d', 3, 3, '']]
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from sparsecheck.assertions import AssertionContext, run_assertions
from sparsecheck.assertions.model_assertions import flicker_clock
from sparsecheck.config import pool_assertions

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.assertions import Assertion, SuiteResult
    from sparsecheck.config import Config

logger = logging.getLogger(__name__)

__all__ = ["RULES", "WEAK_COLUMNS", "CORRECTION_COLUMNS", "CORRECTIONS_FILE", "propose_labels",
           "correct_predictions", "batch_corrections"]

#: the columns of weak.csv, in order
WEAK_COLUMNS = ("id", "label", "class", "rule", "type", "prediction", "predicted_class", "agrees", "support")
#: the columns of corrected_predictions.csv, in order
CORRECTION_COLUMNS = ("id", "prediction", "corrected", "rule", "support")
#: what ``monitor --correct`` writes beside monitor.json and logs to the monitoring run
CORRECTIONS_FILE = "corrected_predictions.csv"


def _vote(table: pd.DataFrame, assertion: "Assertion", failing: pd.DataFrame) -> pd.DataFrame:
    """Consistency: the majority vote of each disagreeing group, for each of its failing members."""
    p = assertion.params
    pred_col = "prediction" if p.head == "dense" else "sparse_prediction"
    frame = pd.DataFrame({"id": table["id"].astype(str).to_numpy(), "key": table[p.key].to_numpy(),
                          "prediction": table[pred_col].to_numpy(dtype=np.int64)}).dropna(subset=["key"])
    failing_ids = set(failing["id"].astype(str))
    groups = frame[frame["key"].isin(frame.loc[frame["id"].isin(failing_ids), "key"].unique())]
    counts = (groups.groupby(["key", "prediction"]).size().rename("n").reset_index()
              .sort_values(["key", "n", "prediction"], ascending=[True, False, True], kind="stable"))
    size = counts.groupby("key")["n"].sum()
    top = counts.groupby("key").nth(0).set_index("key")
    second = counts.groupby("key").nth(1).set_index("key")["n"].reindex(top.index, fill_value=0)
    lead = top[top["n"] > second]  # a tie names no label
    out = groups[groups["id"].isin(failing_ids) & groups["key"].isin(lead.index)]
    keys = out["key"].to_numpy()
    return pd.DataFrame({"id": out["id"].to_numpy(), "label": lead.loc[keys, "prediction"].to_numpy(dtype=np.int64),
                         "prediction": out["prediction"].to_numpy(dtype=np.int64),
                         "support": (lead.loc[keys, "n"] / size.loc[keys]).to_numpy(dtype=np.float64)})


def _smooth(table: pd.DataFrame, assertion: "Assertion", failing: pd.DataFrame) -> pd.DataFrame:
    """Flicker: the prediction around the flicker, for each flickering example."""
    p = assertion.params
    pred_col = "prediction" if p.head == "dense" else "sparse_prediction"
    failing = failing[failing["around"].astype(np.int64) >= 0] if "around" in failing.columns else failing.iloc[:0]
    t, window = flicker_clock(AssertionContext(table), p)
    pos = pd.Series(np.arange(len(table)), index=table["id"].astype(str).to_numpy())
    seq = table[p.sequence].to_numpy()
    pred = table[pred_col].to_numpy(dtype=np.int64)
    by_seq = pd.Series(np.arange(len(table))).groupby(pd.Series(seq)).indices
    support = []
    for rid, label in zip(failing["id"].astype(str), failing["around"].astype(np.int64)):
        i = int(pos[rid])
        near = np.asarray(by_seq[seq[i]])
        near = near[(near != i) & (np.abs(t[near] - t[i]) <= window)]
        support.append(float(np.mean(pred[near] == label)) if near.size else 0.0)
    rows = pos[failing["id"].astype(str)].to_numpy()
    return pd.DataFrame({"id": failing["id"].astype(str).to_numpy(),
                         "label": failing["around"].to_numpy(dtype=np.int64),
                         "prediction": pred[rows] if len(rows) else np.zeros(0, np.int64),
                         "support": np.asarray(support, dtype=np.float64)})


#: assertion type → how a failing example's proposed label is found
RULES: dict[str, Callable[[pd.DataFrame, Any, pd.DataFrame], pd.DataFrame]] = {
    "consistency": _vote,
    "flicker": _smooth,
}


def propose_labels(table: pd.DataFrame, assertions: Sequence["Assertion"], suite: "SuiteResult", *,
                   class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The label each consistency or flicker assertion proposes for the examples it fires on.

    Parameters
    ----------
    table : DataFrame
        The prediction table the suite ran on (``id``, ``prediction``, the key/sequence/time columns).
    assertions : sequence of Assertion
        What ran; those of a type in :data:`RULES` propose labels, the others are ignored.
    suite : SuiteResult
        Their results, with every failing example (``run_assertions(..., max_examples=None)``).
    class_names : sequence of str, optional

    Returns
    -------
    DataFrame
        :data:`WEAK_COLUMNS`: ``id``, ``label`` (class index), ``class``, ``rule`` (the assertion's
        name), ``type``, ``prediction``, ``predicted_class``, ``agrees`` (the prediction is the
        proposed label) and ``support`` (the share of the vote or of the neighbours behind it),
        most supported first.
    """
    names = list(class_names or [])
    parts = []
    for a in assertions:
        rule = RULES.get(a.type)
        if rule is None or a.name not in {r.name for r in suite}:
            continue
        result = suite[a.name]
        if result.status == "error" or not len(result.failing_examples):
            continue
        if result.n_failing > len(result.failing_examples):
            logger.warning("assertion %r: only %d of its %d failing examples were kept; run the suite with "
                           "max_examples=None for weak labels on all of them", a.name,
                           len(result.failing_examples), result.n_failing)
        part = rule(table, a, result.failing_examples)
        parts.append(part.assign(rule=a.name, type=a.type))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            WEAK_COLUMNS, (str, np.int64, str, str, str, np.int64, str, bool, np.float64))})
    out = pd.concat(parts, ignore_index=True)
    out["agrees"] = out["label"] == out["prediction"]
    out["class"] = [names[k] if k < len(names) else str(k) for k in out["label"]]
    out["predicted_class"] = [names[k] if k < len(names) else str(k) for k in out["prediction"]]
    out = out.sort_values(["support", "id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return out[list(WEAK_COLUMNS)]


def correct_predictions(table: pd.DataFrame, proposals: pd.DataFrame) -> pd.DataFrame:
    """Apply proposed labels to a batch's predictions: each example takes the best-supported
    proposal that disagrees with its prediction (the first rule on a tie); the others keep theirs.

    Returns
    -------
    DataFrame
        :data:`CORRECTION_COLUMNS`, one row per example of ``table`` in its order: ``id``,
        ``prediction``, ``corrected``, ``rule`` (empty when unchanged), ``support``.
    """
    ids = table["id"].astype(str).to_numpy()
    pred = table["prediction"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({"id": ids, "prediction": pred, "corrected": pred.copy(), "rule": "",
                        "support": np.nan})
    changes = proposals[~proposals["agrees"].astype(bool)]
    if len(changes):
        best = changes.sort_values("support", ascending=False, kind="stable").drop_duplicates("id")
        where = pd.Series(np.arange(len(ids)), index=ids)[best["id"].astype(str)].to_numpy()
        out.loc[where, "corrected"] = best["label"].to_numpy(dtype=np.int64)
        out.loc[where, "rule"] = best["rule"].to_numpy()
        out.loc[where, "support"] = best["support"].to_numpy(dtype=np.float64)
    return out[list(CORRECTION_COLUMNS)]


def batch_corrections(config: "Config", table: pd.DataFrame, *,
                      class_names: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``monitor --correct``: the corrected predictions of a batch, from the consistency and flicker
    assertions of the config (``assertions:`` and ``select.assertions``) that the batch has columns for.

    Returns
    -------
    (DataFrame, list of str)
        :func:`correct_predictions`' table, and notes (no rule to apply, a rule skipped).
    """
    rules = [a for a in pool_assertions(config) if a.type in RULES]
    notes = []
    if not rules:
        notes.append("--correct: the config declares no consistency or flicker assertion; nothing corrected")
    suite = run_assertions(rules, table, needs_labels=False, skip_unavailable=True, max_examples=None,
                           class_names=list(class_names) if class_names else None)
    for r in suite.errored:
        notes.append(f"--correct: rule {r.name!r} could not run on the batch: {r.message}")
    corrected = correct_predictions(table, propose_labels(table, rules, suite, class_names=class_names))
    n = int((corrected["rule"] != "").sum())
    logger.info("corrected %d of %d predictions (%s)", n, len(corrected),
                ", ".join(f"{k}: {v}" for k, v in corrected.loc[corrected["rule"] != "", "rule"].value_counts().items())
                or "no rule fired")
    return corrected, notes
