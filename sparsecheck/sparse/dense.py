"""A dense linear head refitted on deep features: the dense baseline when the model's own logits
are not at hand (precomputed features stored without them).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 5)).astype("float32"); y = (X[:, 0] > 0).astype(int)
>>> head = DenseHead(n_classes=3, random_state=0).fit(X, y)
>>> head.decision_function(X).shape, head.train_accuracy_ > 0.9
((200, 3), True)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DenseHead"]

#: logit of a class the train split never shows (the head cannot predict it)
ABSENT_CLASS_LOGIT = -1e9
#: rows per chunk when scoring memory-mapped features
CHUNK_ROWS = 65536


class DenseHead:
    """An L2-regularised multinomial logistic regression over standardised features.

    Parameters
    ----------
    n_classes : int
        Width of the logits returned (classes absent from the train labels get a very low logit).
    C : float
        Inverse regularisation strength (scikit-learn's).
    max_iter : int
    random_state : int
    """

    def __init__(self, n_classes: int, *, C: float = 1.0, max_iter: int = 300, random_state: int = 0) -> None:
        self.n_classes = n_classes
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> "DenseHead":
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.mean_ = X.mean(axis=0)
        self.std_ = X.std(axis=0) + 1e-6
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        model.fit((X - self.mean_) / self.std_, y)
        self.classes_ = model.classes_.astype(np.int64)
        coef, bias = model.coef_, model.intercept_
        if len(self.classes_) == 2:  # scikit-learn keeps one row for two classes
            coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        self.coef_, self.intercept_ = coef.astype(np.float32), bias.astype(np.float32)
        self.train_accuracy_ = float(np.mean(self.decision_function(X).argmax(axis=1) == y))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits (n, n_classes), scored in chunks (``X`` may be a memory map)."""
        n = X.shape[0]
        out = np.full((n, self.n_classes), ABSENT_CLASS_LOGIT, dtype=np.float32)
        for lo in range(0, n, CHUNK_ROWS):
            z = (np.asarray(X[lo:lo + CHUNK_ROWS], dtype=np.float32) - self.mean_) / self.std_
            out[lo:lo + CHUNK_ROWS, self.classes_] = z @ self.coef_.T + self.intercept_
        return out
