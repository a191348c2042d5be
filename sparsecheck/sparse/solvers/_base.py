"""What every path solver shares: the problem, the result, the objective, chunked data access.

The problem solved along the path is the one glm_saga defines (``glm_saga.elasticnet``, with
``group=False``): for standardised features ``Xs`` (n × d) and integer labels ``y``,

    F(W, b) = mean_i CE(Xs_i W^T + b, y_i) + lam * alpha * ||W||_1 + 0.5 * lam * (1 - alpha) * ||W||_F^2

with ``W`` (C × d) penalised and ``b`` (C) free. ``lambda_max`` is the smallest ``lam`` whose solution
has ``W = 0``: ``max |Xs^T (Y - ybar)| / n / max(alpha, 1e-3)`` (glm_saga's ``maximum_reg``).

Features are never standardised in a full copy: solvers read raw rows (a numpy array, a read-only
memory map or a torch tensor) and fold the standardisation into the weights
(``Xs W^T = X (W / std)^T - mean · (W / std)^T``) or apply it per batch.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "PathProblem",
    "PathResult",
    "SparseWeights",
    "Standardize",
    "elastic_net_objective",
    "feature_statistics",
    "take_rows",
    "iter_row_chunks",
]

#: rows per chunk when streaming features (bounded memory, big enough for BLAS)
CHUNK_ROWS = 16384


class Standardize(nn.Module):
    """``(x - mean) / std`` with float32 buffers; the first half of :meth:`SparseDecisionLayer.to_module`.

    Examples
    --------
    >>> import torch
    >>> Standardize(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))(torch.tensor([[3.0, 6.0]]))
    tensor([[1., 1.]])
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())

    @property
    def device(self) -> torch.device:  # glm_saga's get_device() looks for this attribute
        return self.mean.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class PathProblem:
    """One regularisation path to solve.

    Attributes
    ----------
    X : ndarray, memmap or Tensor, shape (N, d)
        Raw (unstandardised) features; only the rows in ``rows`` are training rows.
    rows : ndarray of int64 or None
        Sorted training row indices into ``X``; None means every row.
    y : ndarray of int64, shape (n,)
        Class codes 0..C-1 of the training rows, in the order of ``rows``.
    X_val, val_rows, y_val
        The same for the validation rows.
    mean, std : ndarray of float64, shape (d,)
        Standardisation statistics of the training rows (``std`` already floored).
    n_classes : int
    lambdas : ndarray of float64
        Decreasing regularisation strengths.
    alpha : float
        L1 share of the penalty.
    grad0 : ndarray of float64, shape (C, d)
        Gradient of the mean cross-entropy w.r.t. ``W`` at ``W = 0`` with the optimal bias.
    random_state : int or None
    """

    X: Any
    rows: np.ndarray | None
    y: np.ndarray
    X_val: Any
    val_rows: np.ndarray | None
    y_val: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_classes: int
    lambdas: np.ndarray
    alpha: float
    grad0: np.ndarray
    random_state: int | None = 0

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def d(self) -> int:
        return int(self.mean.shape[0])


class SparseWeights(Sequence[np.ndarray]):
    """The weight matrices along a path, held sparse; indexing gives a dense float32 copy.

    A path of 100 lambdas at 1000 classes x 2048 features would hold 0.8 GB of dense matrices that
    are mostly zeros.

    >>> w = SparseWeights()
    >>> w.append(np.array([[0.0, 2.0], [0.0, 0.0]], dtype=np.float32))
    >>> len(w), w[-1].tolist(), w.nnz(0)
    (1, [[0.0, 2.0], [0.0, 0.0]], 1)
    """

    def __init__(self) -> None:
        self._items: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]] = []

    def append(self, weight: np.ndarray) -> None:
        flat = np.ascontiguousarray(weight, dtype=np.float32).reshape(-1)
        index = np.flatnonzero(flat)
        self._items.append((tuple(weight.shape), index, flat[index]))

    def nnz(self, i: int) -> int:
        return int(self._items[i][1].size)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        shape, index, values = self._items[i]
        out = np.zeros(int(np.prod(shape)), dtype=np.float32)
        out[index] = values
        return out.reshape(shape)


@dataclass
class PathResult:
    """Solutions along the path (weights and bias act on standardised features)."""

    solver: str
    lambdas: list[float] = field(default_factory=list)
    weights: SparseWeights = field(default_factory=SparseWeights)
    biases: list[np.ndarray] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    n_iter: list[int] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, *, lam: float, weight: np.ndarray, bias: np.ndarray, train_accuracy: float,
               val_accuracy: float, objective: float, n_iter: int, converged: bool, seconds: float) -> None:
        self.lambdas.append(float(lam))
        self.weights.append(weight)
        self.biases.append(np.ascontiguousarray(bias, dtype=np.float32))
        self.train_accuracy.append(float(train_accuracy))
        self.val_accuracy.append(float(val_accuracy))
        self.objective.append(float(objective))
        self.n_iter.append(int(n_iter))
        self.converged.append(bool(converged))
        self.seconds.append(float(seconds))


#: called after each lambda with the path so far (its last entry just found); True stops the path there
StopRule = Callable[["PathResult"], bool]


def elastic_net_objective(Xs: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          lam: float, alpha: float) -> float:
    """glm_saga's ``elastic_loss`` in float64: mean cross-entropy plus the elastic-net penalty.

    Examples
    --------
    >>> import torch
    >>> Xs, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    >>> round(elastic_net_objective(Xs, y, torch.zeros(2, 2), torch.zeros(2), 0.1, 0.5), 4)
    0.6931
    """
    Xs, weight, bias = Xs.double(), torch.as_tensor(weight).double(), torch.as_tensor(bias).double()
    ce = F.cross_entropy(Xs @ weight.T + bias, torch.as_tensor(y).long(), reduction="mean")
    pen = lam * alpha * weight.abs().sum() + 0.5 * lam * (1 - alpha) * (weight ** 2).sum()
    return float(ce + pen)


def take_rows(X: Any, index: np.ndarray | slice) -> torch.Tensor:
    """Rows of ``X`` as a float32 tensor (on ``X``'s device for tensors, CPU for arrays).

    Reading from a memory map touches only the requested rows. The result may share memory with
    ``X``: treat it as read-only.
    """
    if isinstance(X, torch.Tensor):
        if isinstance(index, slice):
            part = X[index]
        else:
            part = X.index_select(0, torch.as_tensor(index, device=X.device))
        return part.float()
    part = X[index]
    arr = np.asarray(part, dtype=np.float32)
    with warnings.catch_warnings():  # read-only memory maps: we never write through these views
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr)


def iter_row_chunks(n_rows: int, rows: np.ndarray | None, chunk: int = CHUNK_ROWS
                    ) -> Iterator[tuple[int, int, np.ndarray | slice]]:
    """``(start, stop, index)`` covering ``n_rows`` training rows; index selects them from ``X``."""
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        yield start, stop, (slice(start, stop) if rows is None else rows[start:stop])


def feature_statistics(X: Any, rows: np.ndarray | None, y: np.ndarray, n_classes: int,
                       device: torch.device, *, std_floor: float = 1e-6
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, floored std and the null-model gradient of the training rows, in one chunked pass.

    The gradient of the mean cross-entropy at ``W = 0`` with the optimal bias (softmax = class
    frequencies) is ``-Xs^T (Y - ybar) / n``; since ``Xs`` is centred this only needs per-class
    sums of the raw features. Accumulates in float64 on ``device``.

    Returns
    -------
    mean, std : ndarray of float64, shape (d,)
        ``std`` (population) is floored at ``std_floor`` times the largest std (1 if all are 0).
    grad0 : ndarray of float64, shape (C, d)
    """
    n = int(y.shape[0])
    d = int(X.shape[1])
    total = torch.zeros(d, dtype=torch.float64, device=device)
    class_sums = torch.zeros(n_classes, d, dtype=torch.float64, device=device)
    mean = torch.zeros(d, dtype=torch.float64, device=device)
    m2 = torch.zeros(d, dtype=torch.float64, device=device)
    seen = 0
    y_t = torch.as_tensor(y, dtype=torch.long)
    rows_per_chunk = max(256, min(CHUNK_ROWS, (1 << 22) // max(d, 1)))  # float64 chunks of at most 32 MB
    for start, stop, index in iter_row_chunks(n, rows, rows_per_chunk):
        chunk = take_rows(X, index).to(device=device, dtype=torch.float64)
        k = stop - start
        c_mean = chunk.mean(0)
        c_m2 = ((chunk - c_mean) ** 2).sum(0)
        delta = c_mean - mean
        tot = seen + k
        mean = mean + delta * (k / tot)
        m2 = m2 + c_m2 + delta ** 2 * (seen * k / tot)
        seen = tot
        total += chunk.sum(0)
        class_sums.index_add_(0, y_t[start:stop].to(device), chunk)
    std = torch.sqrt(m2 / max(n, 1))
    top = float(std.max()) if d else 0.0
    floor = std_floor * top if top > 0 else 1.0
    std = torch.clamp(std, min=floor)
    counts = torch.bincount(y_t, minlength=n_classes).to(device=device, dtype=torch.float64)
    # Xs^T Y [j, c] = (class_sums[c, j] - counts[c] * mean[j]) / std[j]
    grad0 = -(class_sums - counts[:, None] * mean[None, :]) / std[None, :] / max(n, 1)
    return mean.cpu().numpy(), std.cpu().numpy(), grad0.cpu().numpy()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()
