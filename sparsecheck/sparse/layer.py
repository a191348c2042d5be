"""The sparse decision layer: an elastic-net multinomial GLM refitted over a model's deep features.

Following Wong, Santurkar & Madry (ICML 2021), :class:`SparseDecisionLayer` standardises the
features, computes the regularisation path from ``lambda_max`` (all weights zero) down to
``lambda_max * lambda_min_ratio``, and keeps the sparsest layer whose validation accuracy is
within ``tolerance`` of the best on the path (and in which every class weighs a feature
positively, when such a layer is within it). Each class then depends on a handful of features,
which can be looked at, associated with metadata and asserted on.

Why one module of ~700 lines: it is one estimator. :class:`SparseDecisionLayer` (fit, predict,
path, selection, save/load, plot) is ~450 of them, and the helpers below it exist only for it;
the solvers it drives already live in :mod:`sparsecheck.sparse.solvers`.

Examples
--------
>>> import numpy as np
>>> from sparsecheck.sparse import SparseDecisionLayer
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 20)).astype(np.float32)
>>> y = X[:, [3, 7, 11]].argmax(axis=1)                  # 3 classes, 3 informative features
>>> layer = SparseDecisionLayer(n_lambdas=20, solver="fista", device="cpu").fit(X, y)
>>> layer.weight_.shape, int(layer.path_["nnz"].iloc[0])
((3, 20), 0)
>>> sorted(set(layer.used_features()) & {3, 7, 11})
[3, 7, 11]
>>> bool(layer.score(X, y) > 0.8)
True
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from sparsecheck.outputs import atomic_write, jsonable, native, write_json_atomic
from sparsecheck._runtime import resolve_device
from sparsecheck._version import __version__
from sparsecheck.defaults import SPARSE
from sparsecheck.errors import DataError, ParameterError
from sparsecheck.sparse.solvers import PathProblem, Standardize, feature_statistics
from sparsecheck.sparse.solvers._base import take_rows
from sparsecheck.sparse.solvers import fista as _fista
from sparsecheck.sparse.solvers import saga as _saga
from sparsecheck.sparse.path import (
    _ARRAY_KEYS,
    _ARRAYS_NAME,
    _JSON_NAME,
    _PATH_COLUMNS,
    _available_bytes,
    _digest,
    _encode_labels,
    _encode_with,
    _holdout,
    _mean_features_per_class,
    _own_features,
    _past_selection,
    _path_frame,
    _select,
    _unpack,
)
from sparsecheck.constraints import validate
from sparsecheck.sparse.constraints import PARAMETER_CONSTRAINTS

logger = logging.getLogger(__name__)

__all__ = ["SparseDecisionLayer", "FORMAT_VERSION"]

#: version of the on-disk format written by :meth:`SparseDecisionLayer.save`
FORMAT_VERSION = 1
#: the first grid point sits this far (relative) above lambda_max, so float32 round-off in the
#: solvers' gradients cannot leave a weight nonzero there
_LAMBDA_MAX_MARGIN = 1e-4
#: solver="auto" picks the in-memory solver when its estimated footprint is below this share of
#: the memory available on the device
_MEMORY_SHARE = 0.5
_PREDICT_CHUNK = 65536


class SparseDecisionLayer(ClassifierMixin, BaseEstimator):
    """Sparse elastic-net multinomial decision layer over deep features (scikit-learn estimator).

    Parameters
    ----------
    alpha : float, default 0.99
        Share of the L1 penalty in the elastic net (the rest is L2), in [0, 1].
    n_lambdas : int, default 100
        Number of regularisation strengths on the geometric grid.
    lambda_min_ratio : float, default 1e-3
        Last lambda over the first (the paper's epsilon), in (0, 1).
    tolerance : float, default 0.05
        Selection: the sparsest layer whose validation accuracy is at least the best on the path
        minus ``tolerance`` (a fraction: 0.05 is 5 points) and in which every class weighs at
        least one feature positively, when one of those layers has that (a class with none is
        told only by the others' features staying low: it has nothing of its own to explain, and
        what it relies on, a shortcut included, is in no feature of the layer).
    features_per_class : int or None, default None
        If set, selection instead takes the last layer along the path (largest lambda first)
        before the mean number of features per class first exceeds this value; the path stops
        there, so ``path_`` ends with the first layer that exceeds it.
    early_stop : bool, default True
        Stop the path once it is past the best layer: the validation accuracy has stayed below the
        best so far while lambda fell by half (over at least two lambdas), by more than
        ``tolerance / 10`` or the best's standard error on the validation rows, whichever is
        larger (at most ``tolerance``). Only a later recovery to above the best could change the selection; past the
        best, denser layers overfit, and on many classes they are most of the path's cost (glmnet
        ends its paths early too). Not used with ``features_per_class``.
    solver : {"auto", "fista", "glm_saga"}, default "auto"
        ``"fista"``: the fast in-memory solver (full-batch FISTA with screening, CPU or GPU).
        ``"glm_saga"``: the published glm_saga solver, streaming mini-batches (any data size).
        ``"auto"``: ``"fista"`` when the features fit comfortably in the device's memory.
    precision : {"fp32", "bf16"}, default "fp32"
        How the fista solver holds the features on the device: ``"bf16"`` halves their memory
        (products still run in float32 on blocks converted on the fly; only the features are
        rounded). glm_saga streams float32 batches either way.
    max_epochs : int or None, default None
        Per-lambda cap on passes over the data (None: 2000 for both solvers, the paper's value).
    tol : float or None, default None
        Convergence tolerance. glm_saga: absolute objective improvement an epoch must make to
        count as progress (None: 1e-4, the paper's). fista: relative objective improvement over
        ``lookbehind`` iterations (None: 1e-6).
    lookbehind : int, default 3
        Epochs (glm_saga) or iterations (fista) without enough progress before stopping.
    batch_size : int, default 256
        glm_saga mini-batch size.
    step_size : float, default 0.1
        glm_saga's SAGA step size (its ``max_lr``; the paper used 0.1). fista needs none.
    device : str, default "auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.
    random_state : int or None, default 0
        Seeds the validation hold-out and glm_saga's batch order.

    Attributes
    ----------
    weight_ : ndarray of float32, shape (n_classes, n_features)
        Selected weights, acting on *standardised* features ``(X - mean_) / std_``.
    bias_ : ndarray of float32, shape (n_classes,)
    mean_, std_ : ndarray of float32, shape (n_features,)
        Training statistics used for standardisation (``std_`` floored at 1e-6 of the largest).
    classes_ : ndarray, shape (n_classes,)
        Sorted class labels seen in ``y``.
    path_ : DataFrame
        One row per lambda solved: lambda, nnz, mean_features_per_class, max_features_per_class,
        train_accuracy, val_accuracy, seconds, objective, n_iter, converged.
    selected_index_ : int
        Row of ``path_`` that was selected.
    selected_lambda_ : float
    lambda_max_ : float
        Smallest lambda whose solution is all-zero (the grid starts 1e-4 above it).
    solver_ : str
        The solver that ran ("fista" or "glm_saga").
    n_features_in_ : int

    Notes
    -----
    ``decision_function(X) = ((X - mean_) / std_) @ weight_.T + bias_``, computed by the very
    module :meth:`to_module` returns, so both give identical outputs.

    While fitting, one weight matrix per lambda is kept on the CPU for the selection
    (``n_lambdas * n_classes * n_features * 4`` bytes: 0.8 GB at ImageNet scale); only the selected
    one is kept afterwards. The fista solver needs the training features plus about seven
    ``n_samples * n_classes`` float32 buffers on the device; ``solver="auto"`` checks that.
    """

    def __init__(self, alpha: float = SPARSE["alpha"], n_lambdas: int = SPARSE["n_lambdas"],
                 lambda_min_ratio: float = SPARSE["lambda_min_ratio"], tolerance: float = SPARSE["tolerance"],
                 features_per_class: int | None = SPARSE["features_per_class"],
                 early_stop: bool = SPARSE["early_stop"], solver: str = SPARSE["solver"],
                 precision: str = SPARSE["precision"], max_epochs: int | None = SPARSE["max_epochs"], tol: float | None = SPARSE["tol"],
                 lookbehind: int = 3, batch_size: int = 256, step_size: float = 0.1, device: str = "auto",
                 random_state: int | None = SPARSE["random_state"]) -> None:
        self.alpha = alpha
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.tolerance = tolerance
        self.features_per_class = features_per_class
        self.early_stop = early_stop
        self.solver = solver
        self.precision = precision
        self.max_epochs = max_epochs
        self.tol = tol
        self.lookbehind = lookbehind
        self.batch_size = batch_size
        self.step_size = step_size
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None, X_val: Any = None, y_val: Any = None) -> "SparseDecisionLayer":
        """Compute the regularisation path and select a sparse layer.

        Parameters
        ----------
        X : array-like, Tensor or feature set, shape (n_samples, n_features)
            Training features: a numpy array (a read-only memory map is read in chunks, never
            copied whole), a torch tensor (used in place when float32 on the solver's device), or
            an object with ``.features`` and ``.labels`` (then ``y`` may be omitted).
        y : array-like or Tensor, shape (n_samples,)
            Class labels (any sortable values; ``classes_`` are the distinct ones).
        X_val, y_val : optional
            Validation set, same forms. Without it 10% of ``X`` is held out (stratified when
            possible, seeded by ``random_state``). Its labels must be among ``y``'s.

        Returns
        -------
        self
        """
        self._validate_params()
        device = resolve_device(self.device)
        X, y = _unpack(X, y, "X", "y")
        n, d = X.shape
        classes, codes = _encode_labels(y)
        if X_val is None:
            if y_val is not None:
                raise DataError("y_val was given without X_val")
            rows, val_rows = _holdout(codes, self.random_state)
            X_val_src, y_val_codes = X, codes[val_rows]
            y_train = codes[rows]
        else:
            X_val_src, y_val_raw = _unpack(X_val, y_val, "X_val", "y_val")
            if X_val_src.shape[1] != d:
                raise DataError(f"X_val has shape {tuple(X_val_src.shape)} but X has {d} features")
            y_val_codes = _encode_with(classes, y_val_raw)
            rows, val_rows, y_train = None, None, codes
        n_train = n if rows is None else len(rows)
        C = len(classes)
        alpha = float(self.alpha)

        t0 = time.perf_counter()
        mean, std, grad0 = feature_statistics(X, rows, y_train, C, device)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise DataError(f"X contains NaN or infinite values (shape {tuple(X.shape)})")
        lambda_max = float(np.abs(grad0).max()) / max(alpha, 1e-3) if d else 0.0
        start = max(lambda_max, 1e-12) * (1 + _LAMBDA_MAX_MARGIN)
        lambdas = start * np.geomspace(1.0, self.lambda_min_ratio, int(self.n_lambdas))
        problem = PathProblem(X=X, rows=rows, y=y_train, X_val=X_val_src, val_rows=val_rows,
                              y_val=y_val_codes, mean=mean, std=std, n_classes=C, lambdas=lambdas,
                              alpha=alpha, grad0=grad0, random_state=self.random_state)
        solver = self._choose_solver(X, rows, n_train, d, C, len(y_val_codes), device)
        stop = None
        if self.features_per_class is not None:
            K = float(self.features_per_class)
            stop = lambda path: _mean_features_per_class(path.weights[-1]) > K  # noqa: E731
        elif self.early_stop:
            tolerance = float(self.tolerance)
            n_val = len(y_val_codes)
            stop = lambda path: _past_selection(path.val_accuracy, path.lambdas, tolerance, n_val)  # noqa: E731
        logger.info("sparse layer: %d x %d features, %d classes, %d lambdas from %.4g, solver %s on %s",
                    n_train, d, C, len(lambdas), lambda_max, solver, device)
        if solver == "fista":
            result = _fista.fista_path(problem, device=device, max_epochs=self.max_epochs, tol=self.tol,
                                       lookbehind=self.lookbehind, should_stop=stop, precision=self.precision)
        else:
            result = _saga.glm_saga_path(problem, device=device, max_epochs=self.max_epochs, tol=self.tol,
                                         lookbehind=self.lookbehind, batch_size=self.batch_size,
                                         step_size=self.step_size, should_stop=stop)
        not_converged = len(result.converged) - sum(result.converged)
        if not_converged:
            logger.warning("%s did not converge at %d of %d lambdas within %s epochs",
                           solver, not_converged, len(result.converged), self.max_epochs or 2000)

        self.path_ = _path_frame(result)
        index = _select(self.path_, float(self.tolerance), self.features_per_class)
        self.weight_ = result.weights[index]
        self.bias_ = result.biases[index]
        self.mean_ = mean.astype(np.float32)
        self.std_ = std.astype(np.float32)
        self.classes_ = classes
        self.selected_index_ = int(index)
        self.selected_lambda_ = float(self.path_["lambda"].iloc[index])
        self.lambda_max_ = lambda_max
        self.solver_ = solver
        self.n_features_in_ = int(d)
        row = self.path_.iloc[index]
        ownless = int((_own_features(self.weight_) == 0).sum())
        if ownless and row["nnz"] > 0:
            logger.info("sparse layer: %d of %d classes weigh no feature positively (no layer within the tolerance "
                        "gives every class one): they are told only by the others' features staying low",
                        ownless, len(classes))
        logger.info("selected lambda %.4g (%d/%d): %d nonzero weights, %.1f features/class, val accuracy "
                    "%.4f (best %.4f); path %.1fs", self.selected_lambda_, index + 1, len(self.path_),
                    row["nnz"], row["mean_features_per_class"], row["val_accuracy"],
                    self.path_["val_accuracy"].max(), time.perf_counter() - t0)
        return self

    def _validate_params(self) -> None:
        validate(PARAMETER_CONSTRAINTS, {name: getattr(self, name) for name in PARAMETER_CONSTRAINTS},
                 type(self).__name__)

    def _choose_solver(self, X: Any, rows: np.ndarray | None, n: int, d: int, C: int, n_val: int,
                       device: torch.device) -> str:
        if self.solver != "auto":
            return self.solver
        resident = (rows is None and isinstance(X, torch.Tensor) and X.dtype == torch.float32
                    and X.device == device and self.precision == "fp32")
        size = 2 if self.precision == "bf16" else 4
        if _fista.pairs_pay(C, d, device, _fista.PRECISIONS[self.precision]):
            # the (class, feature) pair kernels read a float32 array in place (a memory map included)
            # and hold no C x n logits, only blocks of them (a dense working set takes over only near
            # the dense end of the path, which the early stop usually does not reach)
            need = (0 if isinstance(X, np.ndarray) and X.dtype == np.float32 else n * d * 4) + n_val * d * 4
        else:
            # features (unless already resident), validation features, ~7 C x n logit buffers (iterates,
            # momentum, gradient, path extrapolation), and the working-set copy of at most half the columns
            need = (size * ((0 if resident else n * d) + n_val * d + _fista._DENSE_SHARE * n * d) + 4 * 7 * n * C)
        available = _available_bytes(device)
        choice = "fista" if need <= _MEMORY_SHARE * available else "glm_saga"
        logger.info("solver='auto' chose %r: the in-memory solver needs ~%.2f GiB, %.2f GiB available on %s",
                    choice, need / 2 ** 30, available / 2 ** 30, device)
        return choice

    # ------------------------------------------------------------------ prediction

    def to_module(self) -> nn.Sequential:
        """The selected layer as ``nn.Sequential(standardize, linear)``, a drop-in model head.

        Examples
        --------
        >>> import numpy as np, torch
        >>> X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
        >>> layer = SparseDecisionLayer(n_lambdas=5, device="cpu").fit(X, (X[:, 0] > 0).astype(int))
        >>> head = layer.to_module()
        >>> bool((head(torch.from_numpy(X)).argmax(1).numpy() == layer.predict(X)).all())
        True
        """
        check_is_fitted(self, "weight_")
        linear = nn.Linear(self.n_features_in_, len(self.classes_))
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(self.weight_))
            linear.bias.copy_(torch.from_numpy(self.bias_))
        standardize = Standardize(torch.from_numpy(self.mean_), torch.from_numpy(self.std_))
        return nn.Sequential(OrderedDict(standardize=standardize, linear=linear))

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores (logits), shape (n_samples, n_classes), float32."""
        check_is_fitted(self, "weight_")
        X = self._check_features(X)
        device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
        module = self.to_module().to(device)
        out = np.empty((X.shape[0], len(self.classes_)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                index = slice(start, start + _PREDICT_CHUNK)
                out[index] = module(take_rows(X, index)).cpu().numpy()
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of :meth:`decision_function`, shape (n_samples, n_classes)."""
        return torch.softmax(torch.from_numpy(self.decision_function(X)), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (values of ``classes_``)."""
        return self.classes_[self.decision_function(X).argmax(axis=1)]

    def _check_features(self, X: Any) -> Any:
        if hasattr(X, "features"):
            X = X.features
        if not isinstance(X, torch.Tensor):
            X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(f"X has shape {tuple(X.shape)}, but {type(self).__name__} expects "
                            f"(n_samples, {self.n_features_in_})")
        return X

    # ------------------------------------------------------------------ inspection

    def feature_table(self) -> pd.DataFrame:
        """The nonzero weights: one row per (class, feature), columns class, feature, weight, rank.

        ``rank`` 1 is the feature with the largest absolute weight within its class. (The
        hyper-parameter ``features_per_class`` owns that name, hence ``feature_table``.)
        """
        check_is_fitted(self, "weight_")
        rows = []
        for c, label in enumerate(self.classes_):
            w = self.weight_[c]
            used = np.flatnonzero(w)
            order = used[np.argsort(-np.abs(w[used]), kind="stable")]
            for rank, j in enumerate(order, start=1):
                rows.append((label, int(j), float(w[j]), rank))
        table = pd.DataFrame(rows, columns=["class", "feature", "weight", "rank"])
        return table.astype({"feature": "int64", "weight": "float64", "rank": "int64"})

    def used_features(self) -> np.ndarray:
        """Sorted ids of the features with a nonzero weight for any class."""
        check_is_fitted(self, "weight_")
        return np.flatnonzero((self.weight_ != 0).any(axis=0))

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """A JSON-ready summary: per-class features, the path, sparsity.

        Parameters
        ----------
        class_names : list of str, optional
            Names for the classes, in the order of ``classes_``; default the labels themselves.

        Returns
        -------
        dict with ``features_per_class`` ({class: [{feature, weight}]}, largest |weight| first),
        ``path`` ([{lambda, nnz, val_accuracy}]), ``sparsity`` (% of zero weights),
        ``mean_features_per_class``, ``max_features_per_class``, ``n_used_features``,
        ``selected_lambda``, ``selected_index``, ``val_accuracy``, ``solver``.
        """
        check_is_fitted(self, "weight_")
        if class_names is not None and len(class_names) != len(self.classes_):
            raise ParameterError(f"class_names has {len(class_names)} names for {len(self.classes_)} classes",
                                 parameter="class_names")
        names = list(class_names) if class_names is not None else [native(c) for c in self.classes_]
        table = self.feature_table()
        per_class: dict[Any, list[dict[str, Any]]] = {name: [] for name in names}
        for c, label in enumerate(self.classes_):
            part = table[table["class"] == label]
            per_class[names[c]] = [{"feature": int(f), "weight": float(w)}
                                   for f, w in zip(part["feature"], part["weight"])]
        counts = (self.weight_ != 0).sum(axis=1)
        row = self.path_.iloc[self.selected_index_]
        return {
            "features_per_class": per_class,
            "path": [{"lambda": float(r.lam), "nnz": int(r.nnz), "val_accuracy": float(r.val)}
                     for r in self.path_.rename(columns={"lambda": "lam", "val_accuracy": "val"})
                     .itertuples()],
            "sparsity": float(100.0 * (self.weight_ == 0).mean()),
            "mean_features_per_class": float(counts.mean()),
            "max_features_per_class": int(counts.max()),
            "n_used_features": int(self.used_features().size),
            "selected_lambda": self.selected_lambda_,
            "selected_index": self.selected_index_,
            "val_accuracy": float(row["val_accuracy"]),
            "solver": self.solver_,
        }

    def summary(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """Same as :meth:`to_dict`."""
        return self.to_dict(class_names)

    def plot_path(self, path_png: str | Path) -> Path:
        """Plot validation accuracy and nonzero weights against lambda (log-x) into a PNG.

        The selected layer is marked. Uses matplotlib's Agg canvas directly, so the global backend
        (e.g. a notebook's) is left alone. Written atomically.
        """
        check_is_fitted(self, "weight_")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = self.path_
        fig = Figure(figsize=(7, 4), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.plot(path["lambda"], path["val_accuracy"], color="tab:blue", marker=".", label="validation accuracy")
        ax.set_xlabel("lambda")
        ax.set_ylabel("validation accuracy", color="tab:blue")
        twin = ax.twinx()
        twin.plot(path["lambda"], path["nnz"], color="tab:orange", marker=".", label="nonzero weights")
        twin.set_ylabel("nonzero weights", color="tab:orange")
        sel = self.selected_index_
        ax.axvline(self.selected_lambda_, color="gray", linestyle="--", linewidth=1)
        ax.plot([self.selected_lambda_], [path["val_accuracy"].iloc[sel]], marker="*", markersize=14,
                color="tab:red", linestyle="none", label="selected")
        ax.set_title(f"selected lambda {self.selected_lambda_:.3g}: {int(path['nnz'].iloc[sel])} weights, "
                     f"val acc {path['val_accuracy'].iloc[sel]:.3f}")
        ax.legend(loc="lower left")
        out = Path(path_png)
        with atomic_write(out, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted layer to ``directory`` (``sparse_layer.npz`` + ``sparse_layer.json``).

        Each file is written to a temporary name and renamed into place; the JSON, written last,
        records the arrays' SHA-256, so a directory interrupted mid-save is never taken for a
        complete layer. Saving the same layer again is a no-op.

        Raises
        ------
        DataError
            ``directory`` already holds a different layer and ``overwrite`` is False.
        """
        check_is_fitted(self, "weight_")
        directory = Path(directory)
        arrays = {"weight": self.weight_, "bias": self.bias_, "mean": self.mean_, "std": self.std_,
                  "classes": np.asarray(self.classes_)}
        digest = _digest(arrays)
        meta = {
            "format_version": FORMAT_VERSION,
            "sparsecheck_version": __version__,
            "arrays_sha256": digest,
            # the device as its name: a torch.device is a valid parameter value, not a JSON one
            "params": {**self.get_params(deep=False), "device": str(self.device)},
            "selected_index": self.selected_index_,
            "selected_lambda": self.selected_lambda_,
            "lambda_max": self.lambda_max_,
            "solver": self.solver_,
            "n_features_in": self.n_features_in_,
            "path": self.path_.to_dict(orient="list"),
        }
        meta = jsonable(meta)  # as the file will hold it, to compare with the one already there
        existing = directory / _JSON_NAME
        if existing.exists():
            try:
                same = json.loads(existing.read_text(encoding="utf-8")) == meta
            except (OSError, ValueError):
                same = False
            if same and (directory / _ARRAYS_NAME).exists():
                return directory
            if not same and not overwrite:
                raise DataError("already holds a different sparse layer; pass overwrite=True to replace it",
                                path=directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / _ARRAYS_NAME, "wb") as fh:
            np.savez(fh, **arrays)
        write_json_atomic(existing, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SparseDecisionLayer":
        """Read a layer written by :meth:`save`.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
        >>> layer = SparseDecisionLayer(n_lambdas=5, device="cpu").fit(X, (X[:, 0] > 0).astype(int))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     again = SparseDecisionLayer.load(layer.save(tmp + "/layer"))
        >>> bool((again.weight_ == layer.weight_).all()), again.selected_lambda_ == layer.selected_lambda_
        (True, True)
        """
        directory = Path(directory)
        try:
            meta = json.loads((directory / _JSON_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError(f"no sparse layer here ({_JSON_NAME} is missing)", path=directory) from exc
        except ValueError as exc:
            raise DataError(f"{_JSON_NAME} is not valid JSON: {exc}", path=directory) from exc
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DataError(f"format_version {version!r} is not readable by sparsecheck {__version__} "
                            f"(reads up to {FORMAT_VERSION})", path=directory)
        try:
            with np.load(directory / _ARRAYS_NAME, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in _ARRAY_KEYS}
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read {_ARRAYS_NAME}: {exc}", path=directory) from exc
        if _digest(arrays) != meta.get("arrays_sha256"):
            raise DataError(f"{_ARRAYS_NAME} does not match {_JSON_NAME} (interrupted or mixed save?)",
                            path=directory)
        layer = cls(**meta["params"])
        layer.weight_, layer.bias_ = arrays["weight"], arrays["bias"]
        layer.mean_, layer.std_, layer.classes_ = arrays["mean"], arrays["std"], arrays["classes"]
        frame = pd.DataFrame(meta["path"])  # a layer saved before a column was added lacks it
        layer.path_ = frame.astype({k: v for k, v in _PATH_COLUMNS.items() if k in frame.columns})
        layer.selected_index_ = int(meta["selected_index"])
        layer.selected_lambda_ = float(meta["selected_lambda"])
        layer.lambda_max_ = float(meta["lambda_max"])
        layer.solver_ = str(meta["solver"])
        layer.n_features_in_ = int(meta["n_features_in"])
        return layer



