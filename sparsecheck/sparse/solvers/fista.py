"""The fast in-memory path solver: full-batch FISTA with warm starts and strong-rule screening.

For every lambda of the path (largest first):

1. *Screening* (sequential strong rule, Tibshirani et al. 2012): a feature stays out of the
   working set when none of its class weights is nonzero and every class's gradient at the previous
   solution is below ``alpha * (2 * lam - lam_prev)``. Early in the path the working set is a few
   columns, so iterations cost a fraction of a full pass.
2. *FISTA* (Beck & Teboulle 2009) on the working set, started from the linear extrapolation of
   the last two solutions in log lambda when that beats the last solution (it more than halves
   the iterations), with backtracking on the step (the softmax curvature is usually far below the
   global bound ``0.5 * ||[Xs, 1]||^2 / n``), function-value momentum restarts (O'Donoghue &
   Candès 2015), and the elastic-net prox
   ``soft(v, t * lam * alpha) / (1 + t * lam * (1 - alpha))`` exactly as glm_saga.
   Only one product with ``X`` and one with ``X^T`` per iteration: logits at the extrapolated point
   are combined from the logits of the last two iterates. Logits are kept classes-first (C x n), where
   softmax reductions are an order of magnitude faster on CPU than over the short last axis.
3. *KKT check*: the full gradient at the solution finds screened-out features that should be
   active; they join the working set and FISTA resumes. The same gradient screens the next lambda.

The working set only grows: its columns are copied once into a buffer, new ones appended. Once it
would cover half the features screening stops paying and the solver runs on all columns.
Standardisation is folded into the weights, so an in-memory float32 feature matrix (or a float32
CPU array, memory-mapped or not) is used without a copy.

Precision: ``precision="bf16"`` keeps the feature matrix (and the working-set copy) in bfloat16 on
the device, half the memory of float32 (1.28M x 2048 ImageNet features: 5.2 GB instead of 10.5 GB);
every product with it converts a block of rows to float32 on the fly, so iterates, logits and
gradients stay float32 and only the features are rounded (to 8 significant bits).

Convergence: the objective improved by less than ``tol`` (relative) over the last ``lookbehind``
accepted iterations, or ``max_epochs`` iterations (each one pass over the data) were spent. At the
dense end of the path the problem is ill-conditioned and progress per iteration approaches float32
round-off; there the solution is typically within ~1e-5 (relative objective) of the optimum, about
what glm_saga reaches with its own settings.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from sparsecheck._runtime import progress
from sparsecheck.errors import SolverError
from sparsecheck.sparse.solvers._base import (
    PathProblem,
    PathResult,
    StopRule,
    iter_row_chunks,
    now,
    take_rows,
)

logger = logging.getLogger(__name__)

__all__ = ["fista_path", "DEFAULT_MAX_EPOCHS", "DEFAULT_TOL", "PRECISIONS"]

DEFAULT_MAX_EPOCHS = 2000
DEFAULT_TOL = 1e-6
#: above this share of active features, screening stops (gathering columns costs more than it saves)
_DENSE_SHARE = 0.5
#: elements per block when reducing cross-entropy (bounds temporaries)
_CE_BLOCK = 1 << 26
#: relative slack for float32 round-off in the backtracking and descent tests
_SLACK = 1e-8
#: how the feature matrix is held on the device
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: elements per block when a bfloat16 feature matrix is converted to float32 for a product
_UPCAST_BLOCK = 1 << 25


@torch.no_grad()
def fista_path(problem: PathProblem, *, device: torch.device, max_epochs: int | None = None,
               tol: float | None = None, lookbehind: int = 3, should_stop: StopRule | None = None,
               precision: str = "fp32") -> PathResult:
    """Solve the elastic-net multinomial path of ``problem`` in memory on ``device``.

    Parameters
    ----------
    problem : PathProblem
    device : torch.device
    max_epochs : int, optional
        Iteration cap per lambda (default 2000).
    tol : float, optional
        Relative objective improvement over ``lookbehind`` iterations below which a lambda is
        solved (default 1e-6).
    lookbehind : int
    should_stop : callable, optional
        Called with the path so far after each lambda; returning True ends the path there.
    precision : {"fp32", "bf16"}
        How the training and validation features are held on the device (see the module docstring).

    Returns
    -------
    PathResult
    """
    if precision not in PRECISIONS:
        raise SolverError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    max_iter = DEFAULT_MAX_EPOCHS if max_epochs is None else int(max_epochs)
    tol = DEFAULT_TOL if tol is None else float(tol)
    X = _resident(problem.X, problem.rows, device, dtype)
    Xv = _resident(problem.X_val, problem.val_rows, device, dtype)
    y = torch.as_tensor(problem.y, dtype=torch.long, device=device)
    yv = torch.as_tensor(problem.y_val, dtype=torch.long, device=device)
    mu = torch.as_tensor(problem.mean, dtype=torch.float32, device=device)
    s = torch.as_tensor(1.0 / problem.std, dtype=torch.float32, device=device)
    n, d = X.shape
    C, alpha = problem.n_classes, float(problem.alpha)

    W = torch.zeros(C, d, dtype=torch.float32, device=device)
    freq = torch.bincount(y, minlength=C).double() / max(n, 1)
    b = torch.log(freq.clamp_min(1e-8)).float()  # the optimal bias of the null model
    Zt = b[:, None].expand(C, n).contiguous()  # logits, classes first
    grad = torch.as_tensor(problem.grad0, dtype=torch.float32, device=device)
    previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # the solution before: W, b, Z
    L = 0.5  # backtracking grows it; 0.5 * (d + 1) always suffices (||[Xs, 1]||_F^2 <= n (d + 1))
    L_cap = 0.5 * (d + 1)
    working = _WorkingSet(X, capacity=int(_DENSE_SHARE * d))
    dense = d == 0
    result = PathResult(solver="fista")
    lambdas = [float(v) for v in problem.lambdas]
    bar = progress(total=len(lambdas), desc="sparse path (fista)", unit="lambda")
    try:
        for k, lam in enumerate(lambdas):
            t0 = now(device)
            lam_prev = lambdas[k - 1] if k else lam
            keep = None if dense else (W != 0).any(0) | (grad.abs() >= alpha * (2 * lam - lam_prev)).any(0)
            spent, converged, first = 0, False, True
            L = max(L * 0.5, 1e-3)  # let the step grow again; backtracking corrects it
            W_last, b_last, Z_last = W, b, Zt
            while True:
                if not dense and not working.add(keep):
                    dense = True
                    working.release()
                    logger.debug("lambda %d: working set above %.0f%% of features, screening off",
                                 k, 100 * _DENSE_SHARE)
                cols = None if dense else working.index
                XA = X if dense else working.matrix
                WA = W if dense else W.index_select(1, cols)
                ZA = Zt
                if first and previous is not None:
                    WA, b, ZA = _predict(y, WA, b, Zt, previous, cols, lam, alpha,
                                         math.log(lambdas[k - 1] / lam) / math.log(lambdas[k - 2] / lambdas[k - 1]))
                first = False
                WA, b, Zt, obj, it, converged, L = _fista(
                    XA, y, WA, b, ZA, mu if dense else mu[cols], s if dense else s[cols],
                    lam, alpha, L, L_cap, max_iter - spent, tol, lookbehind)
                spent += it
                if dense:
                    W = WA
                    break
                W = torch.zeros_like(W)
                W[:, cols] = WA
                # full gradient at the solution: KKT check now, screening for the next lambda
                grad = _backward(X, _ce_grad(Zt, y)[1], mu, s)[0]
                violators = ~working.member & (grad.abs() > lam * alpha * (1 + 1e-4)).any(0)
                if not bool(violators.any()) or spent >= max_iter:
                    break
                logger.debug("lambda %d: %d screened-out features violate KKT, re-solving",
                             k, int(violators.sum()))
                keep = keep | violators
            if not math.isfinite(obj):
                raise SolverError(f"fista diverged at lambda {lam:.4g} (objective {obj}); "
                                  "check the features for extreme values")
            previous = (W_last, b_last, Z_last) if k else None
            train_acc = float((Zt.max(0).indices == y).double().mean()) if n else float("nan")
            val_acc = _accuracy(Xv, yv, W, b, mu, s)
            result.append(lam=lam, weight=W.cpu().numpy(), bias=b.cpu().numpy(),
                          train_accuracy=train_acc, val_accuracy=val_acc, objective=obj,
                          n_iter=spent, converged=converged, seconds=now(device) - t0)
            nnz = int((W != 0).sum())
            logger.debug("fista lambda %d/%d %.5g: nnz %d, objective %.6g, train %.4f, val %.4f, "
                         "%d iterations%s", k + 1, len(lambdas), lam, nnz, obj, train_acc, val_acc,
                         spent, "" if converged else " (not converged)")
            bar.update(1)
            bar.set_postfix(nnz=nnz, val_acc=f"{val_acc:.3f}")
            if should_stop is not None and should_stop(result):
                break
    finally:
        bar.close()
    return result


class _WorkingSet:
    """Columns of ``X`` screened in so far, copied once into a buffer of ``capacity`` columns."""

    def __init__(self, X: torch.Tensor, capacity: int) -> None:
        self.X, self.capacity = X, capacity
        self.index = torch.zeros(0, dtype=torch.long, device=X.device)
        self.member = torch.zeros(X.shape[1], dtype=torch.bool, device=X.device)
        self._buffer: torch.Tensor | None = None

    def add(self, keep: torch.Tensor) -> bool:
        """Append the columns in ``keep`` not yet held; False when that would exceed the capacity."""
        new = (keep & ~self.member).nonzero().squeeze(1)
        m, k = self.index.numel(), new.numel()
        if m + k > self.capacity:
            return False
        if k:
            if self._buffer is None:
                self._buffer = torch.empty(self.X.shape[0], self.capacity, dtype=self.X.dtype,
                                           device=self.X.device)
            self._buffer[:, m:m + k] = _columns(self.X, new)
            self.index = torch.cat([self.index, new])
            self.member[new] = True
        return True

    @property
    def matrix(self) -> torch.Tensor:
        """The held columns (a strided view into the buffer, in the order of ``index``)."""
        if self._buffer is None:
            return self.X[:, :0]
        return self._buffer[:, :self.index.numel()]

    def release(self) -> None:
        self._buffer = None


def _columns(X: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    if X.device.type == "cpu" and X.dtype == torch.float32:  # numpy's take beats index_select on dim 1
        return torch.from_numpy(np.take(X.numpy(), cols.numpy(), axis=1))
    return X.index_select(1, cols)


def _resident(X: Any, rows: np.ndarray | None, device: torch.device,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The selected rows of ``X`` as one ``dtype`` tensor on ``device``, without a copy when possible."""
    if rows is None and dtype == torch.float32:
        if isinstance(X, torch.Tensor) and X.dtype == torch.float32 and X.device == device:
            return X
        if (isinstance(X, np.ndarray) and device.type == "cpu" and X.dtype == np.float32
                and X.flags.c_contiguous):
            return take_rows(X, slice(None))  # shares memory (memory maps included)
    n = X.shape[0] if rows is None else len(rows)
    out = torch.empty(n, X.shape[1], dtype=dtype, device=device)
    for start, stop, index in iter_row_chunks(n, rows):
        out[start:stop] = take_rows(X, index).to(device=device, dtype=dtype)
    return out


def _row_blocks(X: torch.Tensor) -> Any:
    """``(start, stop, block)`` over the rows of ``X`` as float32: one block (``X`` itself) when it
    is float32, else blocks of about ``_UPCAST_BLOCK`` elements converted on the fly."""
    n = X.shape[0]
    if X.dtype == torch.float32:
        yield 0, n, X
        return
    step = max(1, _UPCAST_BLOCK // max(X.shape[1], 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield start, stop, X[start:stop].float()


def _forward(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor, mu: torch.Tensor,
             s: torch.Tensor) -> torch.Tensor:
    """Logits ``(((X - mu) * s) @ W^T + b)^T`` (C x n) without forming the standardised matrix."""
    Wh = W * s
    bias = (b - Wh @ mu)[:, None]
    if X.dtype == torch.float32:
        return torch.addmm(bias, Wh, X.T)
    out = torch.empty(W.shape[0], X.shape[0], dtype=torch.float32, device=X.device)
    for start, stop, block in _row_blocks(X):
        out[:, start:stop] = torch.addmm(bias, Wh, block.T)
    return out


def _backward(X: torch.Tensor, G: torch.Tensor, mu: torch.Tensor, s: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G Xs, G 1)``: the gradient w.r.t. ``(W, b)`` given ``G = dLoss/dlogits`` (C x n)."""
    gb = G.sum(1)
    if X.dtype == torch.float32:
        GX = G @ X
    else:
        GX = torch.zeros(G.shape[0], X.shape[1], dtype=torch.float32, device=X.device)
        for start, stop, block in _row_blocks(X):
            GX.addmm_(G[:, start:stop], block)
    return (GX - gb[:, None] * mu[None, :]) * s, gb


def _ce(Z: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of classes-first logits (reduced in float64), in column blocks.

    Blocks bound the temporary (C x block) at ImageNet scale, where one C x n buffer is 5 GB.
    """
    n = Z.shape[1]
    block = max(1, _CE_BLOCK // max(Z.shape[0], 1))
    total = 0.0
    for start in range(0, n, block):
        part = torch.log_softmax(Z[:, start:start + block], 0)
        total -= float(part.gather(0, y[None, start:start + block]).double().sum())
    return total / max(n, 1)


def _ce_grad(Z: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy and its gradient w.r.t. the logits, ``(softmax(Z) - onehot(y)) / n``."""
    G = torch.log_softmax(Z, 0)
    loss = float(-G.gather(0, y[None]).double().mean())
    G.exp_()
    G[y, torch.arange(Z.shape[1], device=Z.device)] -= 1.0
    G /= max(Z.shape[1], 1)
    return loss, G


def _penalty(W: torch.Tensor, lam: float, alpha: float) -> float:
    Wd = W.double()
    return float(lam * alpha * Wd.abs().sum() + 0.5 * lam * (1 - alpha) * (Wd ** 2).sum())


def _prox(V: torch.Tensor, l1: float, l2: float) -> torch.Tensor:
    """glm_saga's ``soft_threshold_with_shrinkage``: argmin of ``½||W-V||² + l1|W|₁ + ½ l2 ||W||²``."""
    return torch.sign(V) * torch.clamp(V.abs() - l1, min=0.0) / (1.0 + l2)


def _predict(y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, Z: torch.Tensor,
             previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor], cols: torch.Tensor | None,
             lam: float, alpha: float, ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Start point for the next lambda: ``x + ratio (x - x_before)`` if it has lower objective, else ``x``.

    The solution path is smooth in log lambda between support changes, so the linear
    extrapolation of the last two solutions starts much closer than the last solution alone. The
    logits extrapolate the same way (the working set only grows, so it holds both supports).
    """
    W_before, b_before, Z_before = previous
    if cols is not None:
        W_before = W_before.index_select(1, cols)
    Wp = torch.lerp(W_before, W, 1.0 + ratio)
    Zp = torch.lerp(Z_before, Z, 1.0 + ratio)
    if _ce(Zp, y) + _penalty(Wp, lam, alpha) < _ce(Z, y) + _penalty(W, lam, alpha):
        return Wp, torch.lerp(b_before, b, 1.0 + ratio), Zp
    return W, b, Z


def _fista(X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, Zx: torch.Tensor,
           mu: torch.Tensor, s: torch.Tensor, lam: float, alpha: float, L: float, L_cap: float,
           max_iter: int, tol: float, lookbehind: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, int, bool, float]:
    """FISTA with backtracking and restarts on one lambda from ``(W, b)`` with logits ``Zx``.

    Returns ``(W, b, Z, F, iterations, converged, L)``.
    """
    F_x = _ce(Zx, y) + _penalty(W, lam, alpha)
    W_prev, b_prev, Z_prev = W, b, Zx
    t = 1.0
    history = [F_x]
    for it in range(1, max_iter + 1):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        if beta > 0:  # y = x + beta (x - x_prev), as lerp: no temporaries of size n x C
            Wy, by = torch.lerp(W_prev, W, 1.0 + beta), torch.lerp(b_prev, b, 1.0 + beta)
            Zy = torch.lerp(Z_prev, Zx, 1.0 + beta)  # logits are linear in (W, b): no product with X
        else:
            Wy, by, Zy = W, b, Zx
        f_y, G = _ce_grad(Zy, y)
        del Zy
        gW, gb = _backward(X, G, mu, s)
        del G
        while True:
            Wn = _prox(Wy - gW / L, lam * alpha / L, lam * (1 - alpha) / L)
            bn = by - gb / L
            Zn = _forward(X, Wn, bn, mu, s)
            f_n = _ce(Zn, y)
            dW, db = Wn - Wy, bn - by
            model = (f_y + float((gW * dW).double().sum() + (gb * db).double().sum())
                     + 0.5 * L * float((dW.double() ** 2).sum() + (db.double() ** 2).sum()))
            # float32 logits: differences below ~1e-8 relative are round-off, not curvature
            if f_n <= model + _SLACK * abs(f_y) or L >= L_cap:
                break
            L = min(2.0 * L, L_cap)
        F_n = f_n + _penalty(Wn, lam, alpha)
        if not math.isfinite(F_n):
            return Wn, bn, Zn, F_n, it, False, L
        if F_n > F_x:
            if beta > 0:  # momentum overshot: restart from x
                W_prev, b_prev, Z_prev, t = W, b, Zx, 1.0
                continue
            if L >= L_cap or F_n - F_x <= _SLACK * abs(F_x):
                return W, b, Zx, F_x, it, True, L  # no descent left at round-off level
            L = min(2.0 * L, L_cap)  # a plain step went uphill: the step was too long
            continue
        W_prev, b_prev, Z_prev = W, b, Zx
        W, b, Zx, F_x, t = Wn, bn, Zn, F_n, t_next
        history.append(F_x)  # only accepted steps count towards convergence
        if len(history) > lookbehind and history[-1 - lookbehind] - F_x <= tol * max(abs(F_x), 1e-12):
            return W, b, Zx, F_x, it, True, L
    return W, b, Zx, F_x, max_iter, False, L


@torch.no_grad()
def _accuracy(X: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, mu: torch.Tensor,
              s: torch.Tensor) -> float:
    if X.shape[0] == 0:
        return float("nan")
    hits = 0
    for start in range(0, X.shape[0], 65536):
        Z = _forward(X[start:start + 65536], W, b, mu, s)
        hits += int((Z.max(0).indices == y[start:start + 65536]).sum())
    return hits / X.shape[0]
