"""Error breakdowns: a metric by metadata attribute value, with Wilson intervals.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"correct": [True, True, False, True], "site": ["a", "a", "b", "b"]})
>>> accuracy_by_attribute(table, ["site"])[["attribute", "value", "size", "accuracy"]].to_dict("records")
[{'attribute': 'site', 'value': 'a', 'size': 2, 'accuracy': 1.0}, {'attribute': 'site', 'value': 'b', 'size': 2, 'accuracy': 0.5}]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparsecheck.analysis.stats import wilson_interval

__all__ = ["accuracy_by_attribute"]


def accuracy_by_attribute(
    table: pd.DataFrame,
    attributes: list[str],
    *,
    correct_column: str = "correct",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Accuracy of every value of every attribute, with a Wilson interval.

    Parameters
    ----------
    table : DataFrame
        A prediction table (see :mod:`sparsecheck.context`) with a boolean ``correct_column``.
    attributes : list of str
        Columns to break down by; each distinct value (as a string) is one row.

    Returns
    -------
    DataFrame with columns attribute, value, size, accuracy, error_rate, ci_low, ci_high
    (the interval is on accuracy).
    """
    rows = []
    correct = table[correct_column].to_numpy(dtype=bool)
    for attr in attributes:
        values = table[attr].astype(str).to_numpy()
        uniq, inverse = np.unique(values, return_inverse=True)
        sizes = np.bincount(inverse, minlength=len(uniq))
        hits = np.bincount(inverse, weights=correct, minlength=len(uniq))
        low, high = wilson_interval(hits, sizes, confidence)
        for i, value in enumerate(uniq):
            acc = float(hits[i] / sizes[i])
            rows.append({"attribute": attr, "value": str(value), "size": int(sizes[i]),
                         "accuracy": acc, "error_rate": 1.0 - acc,
                         "ci_low": float(low[i]), "ci_high": float(high[i])})
    return pd.DataFrame(rows, columns=["attribute", "value", "size", "accuracy", "error_rate",
                                       "ci_low", "ci_high"])
