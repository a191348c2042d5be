"""Is a classifier better than chance, and when it is not, is the class order to blame?

:func:`chance_test` compares accuracy with the majority-class rate, what a model that ignores its
input reaches by always predicting the most frequent class, with a one-sided exact binomial test.
:func:`diagnose_class_order` looks for the commonest cause of a model at chance that is not
broken: its outputs are read in a different class order than the one it was trained with (an
ImageFolder numbered alphabetically, ``data.class_names`` in another order). It finds the best
one-to-one renaming of the outputs (the assignment problem on the confusion matrix,
:func:`scipy.optimize.linear_sum_assignment`) and reports it when that order explains the
predictions much better than the given one.

Examples
--------
>>> import numpy as np
>>> labels = np.repeat([0, 1, 2], 20)
>>> t = chance_test(labels, np.zeros(60, dtype=int))          # always the first class: chance
>>> round(t.accuracy, 3), round(t.chance_rate, 3), t.passed
(0.333, 0.333, False)
>>> chance_test(labels, labels).passed
True
>>> d = diagnose_class_order(labels, (labels + 1) % 3, ["cat", "dog", "wolf"])
>>> d.order, d.accuracy, d.matched_accuracy
(['wolf', 'cat', 'dog'], 0.0, 1.0)
>>> diagnose_class_order(labels, labels, ["cat", "dog", "wolf"]) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["ChanceTest", "chance_test", "ClassOrder", "diagnose_class_order", "MAX_P_VALUE",
           "MIN_MATCHED_ACCURACY", "MIN_MATCHED_RATIO"]

#: a model is better than chance when P(accuracy this high | chance) is below this
MAX_P_VALUE = 0.01
#: a renaming of the outputs is reported when it reaches this accuracy ...
MIN_MATCHED_ACCURACY = 0.5
#: ... and at least this many times the accuracy under the given names
MIN_MATCHED_RATIO = 2.0
#: class names listed in a sentence; the full order is in :meth:`ClassOrder.to_dict`
NAMES_IN_SENTENCE = 20


@dataclass(frozen=True)
class ChanceTest:
    """Accuracy against the majority-class rate (one-sided exact binomial test).

    Attributes
    ----------
    n, n_correct : int
    accuracy : float
    chance_rate : float
        Share of the most frequent label: the accuracy of always predicting it.
    majority_class : int
    p_value : float
        P(at least ``n_correct`` right out of ``n`` | each right with probability ``chance_rate``).
    max_p_value : float
    min_accuracy : float or None
        The lowest accuracy that would pass on these labels; None when none can (one class, or too
        few examples).
    """

    n: int
    n_correct: int
    accuracy: float
    chance_rate: float
    majority_class: int
    p_value: float
    max_p_value: float
    min_accuracy: float | None

    @property
    def passed(self) -> bool:
        return self.n > 0 and self.p_value < self.max_p_value

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "n_correct": self.n_correct, "accuracy": self.accuracy, "chance_rate": self.chance_rate,
                "majority_class": self.majority_class, "p_value": self.p_value, "max_p_value": self.max_p_value,
                "min_accuracy": self.min_accuracy}


def chance_test(labels: np.ndarray, predictions: np.ndarray, *, max_p_value: float = MAX_P_VALUE) -> ChanceTest:
    """Test whether ``predictions`` beat the majority-class rate of ``labels``.

    Parameters
    ----------
    labels, predictions : array of int, shape (n,)
    max_p_value : float
        The test passes when the one-sided binomial p-value is below it.

    Returns
    -------
    ChanceTest
    """
    from scipy.stats import binom

    y = np.asarray(labels, dtype=np.int64).ravel()
    pred = np.asarray(predictions, dtype=np.int64).ravel()
    n = int(y.size)
    if n == 0:
        return ChanceTest(0, 0, float("nan"), float("nan"), -1, 1.0, max_p_value, None)
    values, counts = np.unique(y, return_counts=True)
    top = int(np.argmax(counts))
    rate = float(counts[top] / n)
    k = int((y == pred).sum())
    p = float(binom.sf(k - 1, n, rate))
    # the smallest count of right answers whose p-value is below max_p_value
    lo = int(binom.isf(max_p_value, n, rate))
    need = next((j for j in range(max(lo - 1, 0), min(lo + 3, n + 1))
                 if binom.sf(j - 1, n, rate) < max_p_value), None)
    return ChanceTest(n, k, k / n, rate, int(values[top]), min(max(p, 0.0), 1.0), max_p_value,
                      None if need is None else need / n)


@dataclass(frozen=True)
class ClassOrder:
    """A renaming of the model's outputs that explains its predictions far better than the given names.

    Attributes
    ----------
    accuracy : float
        Accuracy with the outputs named as given.
    matched_accuracy : float
        Accuracy with output ``j`` named ``order[j]``.
    order : list of str
        The class names in the order the predictions suggest for the model's outputs: what
        ``data.class_names`` would say.
    given : list of str
        The class names as given.
    names_set : bool
        False when ``data.class_names`` was not set (classes numbered in the sorted order of
        their folder or label names): the sentence says so.
    """

    accuracy: float
    matched_accuracy: float
    order: list[str]
    given: list[str]
    names_set: bool = True

    @property
    def moved(self) -> int:
        """How many outputs get another name."""
        return sum(a != b for a, b in zip(self.order, self.given))

    def sentence(self, limit: int = NAMES_IN_SENTENCE) -> str:
        """The diagnosis in words, listing at most ``limit`` class names."""
        names = ", ".join(self.order[:limit]) + (f", ... ({len(self.order) - limit} more)"
                                                 if len(self.order) > limit else "")
        unset = ("" if self.names_set else " (it is not set, so the classes are numbered in the sorted order of "
                 "their folder or label names)")
        return (f"the model's outputs look like a different class order: data.class_names{unset} is probably not "
                f"the model's output order; a matching order would be [{names}] (accuracy "
                f"{self.matched_accuracy:.3f} in that order, {self.accuracy:.3f} as named; {self.moved} of "
                f"{len(self.order)} classes move)")

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "matched_accuracy": self.matched_accuracy, "order": list(self.order),
                "moved": self.moved, "message": self.sentence()}


def diagnose_class_order(labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str], *,
                         min_accuracy: float = MIN_MATCHED_ACCURACY,
                         min_ratio: float = MIN_MATCHED_RATIO, names_set: bool = True) -> ClassOrder | None:
    """The class order that matches the predictions, when it is far better than the given one.

    Builds the confusion matrix (labels × predictions over the ``len(class_names)`` classes;
    rows outside that range count as wrong) and its best one-to-one assignment. Returns a
    :class:`ClassOrder` when the assignment's accuracy is at least ``min_accuracy`` and at least
    ``min_ratio`` times the accuracy under the given names; otherwise None. Among equally good
    assignments the one that moves the fewest classes wins. ``names_set=False`` says that
    ``class_names`` were not given but derived (the sentence then says so).
    """
    from scipy.optimize import linear_sum_assignment

    names = [str(c) for c in class_names]
    K = len(names)
    y = np.asarray(labels, dtype=np.int64).ravel()
    pred = np.asarray(predictions, dtype=np.int64).ravel()
    n = int(y.size)
    if n == 0 or K < 2:
        return None
    ok = (y >= 0) & (y < K) & (pred >= 0) & (pred < K)
    confusion = np.bincount(y[ok] * K + pred[ok], minlength=K * K).reshape(K, K).astype(np.float64)
    # a bonus below one count on the diagonal: among equally good matchings, keep names in place
    rows, cols = linear_sum_assignment(confusion + np.eye(K) / (K + 1), maximize=True)
    matched = float(confusion[rows, cols].sum() / n)
    given = float(np.trace(confusion) / n)
    if matched < min_accuracy or matched < min_ratio * given or np.array_equal(rows, cols):
        return None
    order = list(names)
    for label, output in zip(rows, cols):  # output j answers for the label named names[label]
        order[int(output)] = names[int(label)]
    return ClassOrder(given, matched, order, names, names_set)
