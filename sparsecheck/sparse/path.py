"""What :class:`~sparsecheck.sparse.SparseDecisionLayer` does around its solver: the features and
labels checked and encoded, the validation hold-out, the memory a device has free, when the path
stops early, the path as a table and the lambda selected from it, and the saved layer's digest."""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import numpy as np
import pandas as pd
import torch

from sparsecheck.errors import DataError
from sparsecheck.sparse.solvers import PathResult

#: the saved layer's files and the arrays it holds
_JSON_NAME = "sparse_layer.json"
_ARRAYS_NAME = "sparse_layer.npz"
_ARRAY_KEYS = ("weight", "bias", "mean", "std", "classes")
_PATH_COLUMNS = {
    "lambda": "float64", "nnz": "int64", "mean_features_per_class": "float64",
    "max_features_per_class": "int64", "min_own_features": "int64", "train_accuracy": "float64",
    "val_accuracy": "float64", "seconds": "float64", "objective": "float64", "n_iter": "int64", "converged": "bool",
}


def _unpack(X: Any, y: Any, xname: str, yname: str) -> tuple[Any, np.ndarray]:
    """Features and labels from arrays, tensors or a feature set (``.features``/``.labels``)."""
    if hasattr(X, "features"):
        if y is None:
            y = getattr(X, "labels", None)
        X = X.features
    if isinstance(X, torch.Tensor):
        X = X.detach()
        if X.is_complex() or X.dtype == torch.bool:
            raise DataError(f"{xname} must be a real-valued tensor, got dtype {X.dtype}")
    else:
        X = X if isinstance(X, np.ndarray) else np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise DataError(f"{xname} must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise DataError(f"{xname} must be 2-D (n_samples, n_features), got shape {tuple(X.shape)}")
    if X.shape[1] == 0:
        raise DataError(f"{xname} has no features (shape {tuple(X.shape)})")
    if y is None:
        raise DataError(f"{yname} is required (labels for {xname})")
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(f"{yname} must have shape ({X.shape[0]},) to match {xname} of shape "
                        f"{tuple(X.shape)}, got {tuple(y.shape)}")
    if y.dtype.kind == "O":
        y = y.astype(str)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{yname} contains NaN or infinite labels")
    return X, y


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"y must hold at least 2 classes, got {len(classes)} ({classes.tolist()})")
    return classes, codes.astype(np.int64)


def _encode_with(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise DataError(f"y_val has labels not in y: {unknown[:10].tolist()}")
    return np.searchsorted(classes, y).astype(np.int64)


def _holdout(codes: np.ndarray, random_state: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) row indices: 10% held out, stratified when every class allows."""
    from sklearn.model_selection import train_test_split

    n = codes.shape[0]
    n_val = max(1, int(round(0.1 * n)))
    if n - n_val < 1:
        raise DataError(f"X has {n} rows: too few to hold out a validation set; pass X_val")
    index = np.arange(n)
    try:
        train, val = train_test_split(index, test_size=n_val, random_state=random_state, stratify=codes)
    except ValueError:  # a class with one example, or fewer held-out rows than classes
        train, val = train_test_split(index, test_size=n_val, random_state=random_state)
    return np.sort(train), np.sort(val)


def _available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


# ---------------------------------------------------------------------- path and selection

def _mean_features_per_class(weight: np.ndarray) -> float:
    return float((weight != 0).sum(axis=1).mean())


def _own_features(weight: np.ndarray) -> np.ndarray:
    """How many features each class weighs positively: a class with none is decided only by the
    others' features staying low (with two classes, each feature's weights are mirrored)."""
    return (np.asarray(weight) > 0).sum(axis=1)


#: early stop: the validation accuracy stayed below the best while lambda fell by this factor ...
_EARLY_STOP_FACTOR = 2.0
#: ... by more than this share of ``tolerance`` (0.005 at the default 0.05)
_EARLY_STOP_MARGIN = 0.1


def _past_selection(val_accuracy: list[float], lambdas: list[float], tolerance: float, n_val: int) -> bool:
    """True when the last lambdas' validation accuracies have all been below the best so far by more
    than a margin, over at least two lambdas and a fall of lambda by ``_EARLY_STOP_FACTOR``.

    The margin is ``tolerance / 10`` or, when larger, the standard error of the best accuracy on
    ``n_val`` examples (a dip within the noise is no evidence), but never more than ``tolerance``.

    >>> _past_selection([0.5, 0.9, 0.8, 0.7], [8.0, 4.0, 2.0, 1.0], 0.05, 10_000)
    True
    >>> _past_selection([0.5, 0.9, 0.8, 0.7], [8.0, 4.0, 3.0, 2.5], 0.05, 10_000)
    False
    >>> _past_selection([0.5, 0.9, 0.8, 0.897], [8.0, 4.0, 2.0, 1.0], 0.05, 10_000)  # back within 0.005
    False
    >>> _past_selection([0.5, 0.9, 0.89, 0.89], [8.0, 4.0, 2.0, 1.0], 0.05, 300)  # within the noise of 300
    False
    """
    acc = np.asarray(val_accuracy, dtype=np.float64)
    if acc.size < 3 or not np.isfinite(acc).any():
        return False
    best = float(np.nanmax(acc))
    noise = math.sqrt(max(best * (1.0 - best), 0.0) / max(int(n_val), 1))
    margin = min(float(tolerance), max(_EARLY_STOP_MARGIN * float(tolerance), noise))
    below = acc < best - margin - 1e-12
    if not below[-1]:
        return False
    first = acc.size - int(np.argmin(below[::-1])) if not below.all() else 0  # start of the trailing run
    run = acc.size - first
    return run >= 2 and lambdas[-1] * _EARLY_STOP_FACTOR <= lambdas[first]


def _path_frame(result: PathResult) -> pd.DataFrame:
    counts = [(w != 0).sum(axis=1) for w in result.weights]
    frame = pd.DataFrame({
        "lambda": result.lambdas,
        "nnz": [int(c.sum()) for c in counts],
        "mean_features_per_class": [float(c.mean()) for c in counts],
        "max_features_per_class": [int(c.max()) for c in counts],
        "min_own_features": [int(_own_features(w).min()) if w.size else 0 for w in result.weights],
        "train_accuracy": result.train_accuracy,
        "val_accuracy": result.val_accuracy,
        "seconds": result.seconds,
        "objective": result.objective,
        "n_iter": result.n_iter,
        "converged": result.converged,
    })
    return frame.astype(_PATH_COLUMNS)


def _select(path: pd.DataFrame, tolerance: float, features_per_class: int | None) -> int:
    """Index of the selected layer in ``path`` (see the class docstring for the two rules).

    Of the layers within ``tolerance``, the sparsest in which every class weighs at least one
    feature positively (when there is one): the second layer here, not the first, in which class 1
    is only "class 0's feature staying low".

    >>> path = pd.DataFrame({"nnz": [0, 2, 4, 6], "val_accuracy": [0.5, 0.9, 0.91, 0.92],
    ...                      "min_own_features": [0, 0, 1, 2]})
    >>> _select(path, 0.05, None)
    2
    """
    if features_per_class is not None:
        over = np.flatnonzero(path["mean_features_per_class"].to_numpy() > features_per_class)
        return max(int(over[0]) - 1, 0) if over.size else len(path) - 1
    val = path["val_accuracy"].to_numpy()
    eligible = np.flatnonzero(val >= val.max() - tolerance - 1e-12)
    if "min_own_features" in path.columns:  # absent from layers saved before the rule
        owned = eligible[path["min_own_features"].to_numpy()[eligible] >= 1]
        eligible = owned if owned.size else eligible
    nnz = path["nnz"].to_numpy()
    # sparsest; among equally sparse the most accurate; then the largest lambda
    return int(min(eligible, key=lambda i: (nnz[i], -val[i], i)))


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in _ARRAY_KEYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


