"""The published solver, ``glm_saga.elasticnet.glm_saga`` (Wong et al. 2021), made well-behaved.

glm_saga is research code: it prints, configures the root logger when given a checkpoint
directory, silently picks the all-zero model as "best" without a validation loader, and indexes a
CPU identity matrix with the labels. This wrapper:

- calls it once per lambda (``k=1``, the lambda passed through ``metadata['max_reg']``) carrying
  the SAGA state and the warm ``nn.Linear`` over, which is exactly its own path loop, so the grid is
  ours, a progress bar advances per lambda and a ``features_per_class`` rule can stop early;
- sends its ``print`` output line by line to ``logger.debug`` (``contextlib.redirect_stdout``);
- passes ``checkpoint=None`` (so it leaves logging alone) and still restores the root logger's
  handlers and level afterwards;
- always passes a validation loader;
- streams batches of rows from the (possibly memory-mapped) features and standardises them on
  the device through glm_saga's ``preprocess`` hook, so no standardised copy is ever made;
- keeps labels on the CPU (glm_saga builds one-hot targets with ``torch.eye(C)[y]`` on the CPU).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from sparsecheck._runtime import progress
from sparsecheck.errors import SolverError
from sparsecheck.sparse.solvers._base import PathProblem, PathResult, Standardize, StopRule, now, take_rows

logger = logging.getLogger(__name__)

__all__ = ["glm_saga_path", "DEFAULT_MAX_EPOCHS", "DEFAULT_TOL", "DEFAULT_STEP_SIZE"]

#: the settings of Wong et al.'s main.py (--max-epochs 2000, --tol 1e-4, --lr 0.1)
DEFAULT_MAX_EPOCHS = 2000
DEFAULT_TOL = 1e-4
DEFAULT_STEP_SIZE = 0.1

_EARLY_STOP = re.compile(r"early stop at (\d+)")
_NO_CONVERGENCE = re.compile(r"did not converge at (\d+)")


@torch.no_grad()
def glm_saga_path(problem: PathProblem, *, device: torch.device, max_epochs: int | None = None,
                  tol: float | None = None, lookbehind: int = 3, batch_size: int = 256,
                  step_size: float = DEFAULT_STEP_SIZE, should_stop: StopRule | None = None,
                  ) -> PathResult:
    """Solve the path of ``problem`` with glm_saga's proximal SAGA, streaming mini-batches.

    Parameters
    ----------
    problem : PathProblem
    device : torch.device
        Where the linear layer, the SAGA table and each batch live.
    max_epochs : int, optional
        Epoch cap per lambda (default 2000, the paper's).
    tol : float, optional
        Absolute objective improvement an epoch must make to count as progress (default 1e-4).
    lookbehind : int
        Epochs without progress before a lambda is declared solved.
    batch_size : int
    step_size : float
        SAGA step size (glm_saga's ``max_lr``; the paper used 0.1).
    should_stop : callable, optional
        Called with the path so far after each lambda; returning True ends the path there.

    Returns
    -------
    PathResult
    """
    from glm_saga.elasticnet import glm_saga  # imported late: the package prints nothing on import,
    # but keeps torch's DataLoader machinery off the import path of sparsecheck.sparse

    max_epochs = DEFAULT_MAX_EPOCHS if max_epochs is None else int(max_epochs)
    tol = DEFAULT_TOL if tol is None else float(tol)
    n, d, C = problem.n, problem.d, problem.n_classes
    alpha = float(problem.alpha)
    seed = 0 if problem.random_state is None else int(problem.random_state)
    train = DataLoader(_RowBatches(problem.X, problem.rows, problem.y), batch_size=None,
                       sampler=_BatchSampler(n, batch_size, shuffle=True, seed=seed),
                       collate_fn=_as_is)
    val = DataLoader(_RowBatches(problem.X_val, problem.val_rows, problem.y_val), batch_size=None,
                     sampler=_BatchSampler(len(problem.y_val), max(batch_size, 4096), shuffle=False),
                     collate_fn=_as_is)
    preprocess = Standardize(torch.as_tensor(problem.mean), torch.as_tensor(problem.std)).to(device)
    linear = nn.Linear(d, C).to(device)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()

    result = PathResult(solver="glm_saga")
    lines: list[str] = []
    state = None
    lambdas = [float(v) for v in problem.lambdas]
    bar = progress(total=len(lambdas), desc="sparse path (glm_saga)", unit="lambda")
    try:
        with _quiet(lines):
            for k, lam in enumerate(lambdas):
                t0 = now(device)
                lines.clear()
                metadata = {"max_reg": {"nongrouped": lam * max(alpha, 1e-3)},  # glm_saga divides by this
                            "X": {"num_examples": n}, "y": {"num_classes": C}}
                out = glm_saga(linear, train, step_size, max_epochs, alpha, preprocess=preprocess,
                               group=False, verbose=None, state=state, n_ex=n, n_classes=C, tol=tol,
                               epsilon=1.0, k=1, checkpoint=None, do_zero=False, metadata=metadata,
                               val_loader=val, lookbehind=lookbehind)
                state = out["state"]
                params = out["path"][0]
                weight, bias = params["weight"], params["bias"]
                if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
                    raise SolverError(f"glm_saga diverged at lambda {lam:.4g} (non-finite weights); "
                                      f"lower step_size (now {step_size})")
                epochs, converged = _epochs(lines, max_epochs)
                m = params["metrics"]
                result.append(lam=float(params["lam"]), weight=weight.numpy(), bias=bias.numpy(),
                              train_accuracy=m["acc_tr"], val_accuracy=m["acc_val"],
                              objective=params["loss"], n_iter=epochs, converged=converged,
                              seconds=now(device) - t0)
                nnz = int((weight != 0).sum())
                bar.update(1)
                bar.set_postfix(nnz=nnz, val_acc=f"{m['acc_val']:.3f}")
                if should_stop is not None and should_stop(result):
                    break
    finally:
        bar.close()
    return result


@contextlib.contextmanager
def _quiet(lines: list[str]) -> Iterator[None]:
    """Route glm_saga's prints to the logger and leave the root logger exactly as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = _LogStream(lines)
    try:
        with contextlib.redirect_stdout(stream), warnings.catch_warnings():
            # glm_saga calls F.softmax without dim=; the implicit choice (dim=1) is the right one
            warnings.filterwarnings("ignore", message="Implicit dimension choice", category=UserWarning)
            yield
    finally:
        stream.flush()
        root.handlers[:] = handlers
        root.setLevel(level)


class _LogStream(io.TextIOBase):
    """A write-only text stream that forwards complete lines to ``logger.debug``."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._buffer = ""
        self._lines = lines

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        *complete, self._buffer = self._buffer.split("\n")
        for line in complete:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = ""

    def _emit(self, line: str) -> None:
        line = line.rstrip()
        if line:
            self._lines.append(line)
            logger.debug("glm_saga: %s", line)


def _epochs(lines: list[str], max_epochs: int) -> tuple[int, bool]:
    """Epochs spent on one lambda, and whether it converged, from glm_saga's own messages."""
    for line in lines:
        if m := _EARLY_STOP.search(line):
            return int(m.group(1)) + 1, True
        if _NO_CONVERGENCE.search(line):
            return max_epochs, False
    return max_epochs, False


def _as_is(batch: Any) -> Any:
    return batch


class _RowBatches(Dataset):
    """Batches of rows of ``X`` (indexed by an array of positions), with labels and positions.

    Yields ``(features, labels, positions)``: the triple glm_saga's ``train_saga`` expects, positions
    indexing its per-example SAGA table. Labels stay on the CPU.
    """

    def __init__(self, X: Any, rows: np.ndarray | None, y: np.ndarray) -> None:
        self.X, self.rows, self.y = X, rows, np.asarray(y, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positions = np.sort(positions)  # ascending rows read a memory map sequentially
        index = positions if self.rows is None else self.rows[positions]
        return take_rows(self.X, index), torch.from_numpy(self.y[positions]), torch.from_numpy(positions)


class _BatchSampler(Sampler):
    """Arrays of positions, one per batch; reshuffled every epoch from a seeded generator."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0) -> None:
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        for start in range(0, self.n, self.batch_size):
            yield order[start:start + self.batch_size]
