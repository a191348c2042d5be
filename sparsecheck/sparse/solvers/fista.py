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

Many classes (``working_set="pairs"``, chosen on CPU from 16 classes and 65,536 weights): each class
uses a few features, but together they use nearly all of them, so a per-feature working set is
the whole matrix and every iteration costs two dense ``C x d x n`` products (at 1000 x 2048 x
100,000, about 2.5 s each on 2 cores). There the strong rule and the KKT check screen single
(class, feature) pairs instead, and FISTA runs on the pairs with the numba kernels of
:mod:`~sparsecheck.sparse.solvers._pairs`, which cost ``P x n`` for ``P`` pairs and hold no
``C x n`` logits: the loss and gradient are computed block by block (points keep only their
weights), so the memory the path adds does not grow with ``C x n``. The KKT check is still one
dense product per lambda. Past ``_PAIR_SHARE`` of all pairs the path goes on with the feature
working set. Both working sets share the FISTA loop (:func:`_fista`), through an oracle that
evaluates the loss and its gradient at a point.

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

import torch

from sparsecheck._runtime import progress
from sparsecheck.sparse.solvers import _pairs
from sparsecheck.errors import SolverError
from sparsecheck.sparse.solvers._base import (
    PathProblem,
    PathResult,
    StopRule,
    now,
)
from sparsecheck.sparse.solvers.oracles import (
    _DenseOracle,
    _PairOracle,
    _Point,
    _backward,
    _ce_grad,
    _columns,
    _forward,
    _penalty,
    _prox,
    _resident,
    _row_major,
)

logger = logging.getLogger(__name__)

__all__ = ["fista_path", "pairs_pay", "DEFAULT_MAX_EPOCHS", "DEFAULT_TOL", "PRECISIONS"]

DEFAULT_MAX_EPOCHS = 2000
DEFAULT_TOL = 1e-6
#: above this share of active features, screening stops (gathering columns costs more than it saves)
_DENSE_SHARE = 0.5
#: relative slack for float32 round-off in the backtracking and descent tests
_SLACK = 1e-8
#: how the feature matrix is held on the device
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


@torch.no_grad()
def fista_path(problem: PathProblem, *, device: torch.device, max_epochs: int | None = None,
               tol: float | None = None, lookbehind: int = 3, should_stop: StopRule | None = None,
               precision: str = "fp32", working_set: str = "auto") -> PathResult:
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
    working_set : {"auto", "pairs", "features"}
        ``"pairs"``: screen (class, feature) pairs and multiply with the numba kernels of
        :mod:`~sparsecheck.sparse.solvers._pairs` (CPU, float32) while the pairs stay below
        ``_PAIR_SHARE`` of all, then go on with ``"features"``: screen whole features and use dense
        products. ``"auto"`` picks ``"pairs"`` on CPU in float32 from ``_PAIR_MIN_CLASSES`` classes
        and ``_PAIR_MIN_SIZE`` weights, where classes use few features each but all of them together.

    Returns
    -------
    PathResult
    """
    if precision not in PRECISIONS:
        raise SolverError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if working_set not in ("auto", "pairs", "features"):
        raise SolverError(f"working_set must be 'auto', 'pairs' or 'features', got {working_set!r}")
    dtype = PRECISIONS[precision]
    run = _Run(problem, device, dtype, DEFAULT_MAX_EPOCHS if max_epochs is None else int(max_epochs),
               DEFAULT_TOL if tol is None else float(tol), lookbehind, should_stop)
    pairs = working_set == "pairs" or (working_set == "auto"
                                       and pairs_pay(problem.n_classes, problem.d, device, dtype))
    if pairs and (device.type != "cpu" or dtype != torch.float32 or not _pairs.available()):
        raise SolverError("working_set='pairs' needs the CPU, fp32 and numba")
    bar = progress(total=len(run.lambdas), desc="sparse path (fista)", unit="lambda")
    run.bar = bar
    try:
        if pairs:
            _pair_path(run)
        if run.k < len(run.lambdas) and not run.stopped:
            _feature_path(run)
    finally:
        bar.close()
    return run.result


#: "auto" screens (class, feature) pairs from this many classes ...
_PAIR_MIN_CLASSES = 16
#: ... and this many weights (C x d)
_PAIR_MIN_SIZE = 1 << 16
#: past this share of all (class, feature) pairs the path goes on with dense products: about as fast
#: there as the kernels, but they hold C x n logits
_PAIR_SHARE = 0.5


def pairs_pay(n_classes: int, d: int, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``working_set="auto"`` screens (class, feature) pairs for this many classes and features."""
    return (device.type == "cpu" and dtype == torch.float32 and _pairs.available()
            and n_classes >= _PAIR_MIN_CLASSES and n_classes * d >= _PAIR_MIN_SIZE)


class _Run:
    """What both working-set loops share: the problem on the device, the path so far, where it is."""

    def __init__(self, problem: PathProblem, device: torch.device, dtype: torch.dtype, max_iter: int, tol: float,
                 lookbehind: int, should_stop: StopRule | None) -> None:
        self.problem, self.device, self.dtype = problem, device, dtype
        self.max_iter, self.tol, self.lookbehind, self.should_stop = max_iter, tol, lookbehind, should_stop
        self.y = torch.as_tensor(problem.y, dtype=torch.long, device=device)
        self.yv = torch.as_tensor(problem.y_val, dtype=torch.long, device=device)
        self.mu = torch.as_tensor(problem.mean, dtype=torch.float32, device=device)
        self.s = torch.as_tensor(1.0 / problem.std, dtype=torch.float32, device=device)
        self.C, self.d, self.n = problem.n_classes, problem.d, problem.n
        self.alpha = float(problem.alpha)
        self.lambdas = [float(v) for v in problem.lambdas]
        self.W = torch.zeros(self.C, self.d, dtype=torch.float32, device=device)
        freq = torch.bincount(self.y, minlength=self.C).double() / max(self.n, 1)
        self.b = torch.log(freq.clamp_min(1e-8)).float()  # the optimal bias of the null model
        self.grad = torch.as_tensor(problem.grad0, dtype=torch.float32, device=device)
        self.L = 0.5  # backtracking grows it; 0.5 * (d + 1) always suffices (||[Xs, 1]||_F^2 <= n (d + 1))
        self.L_cap = 0.5 * (self.d + 1)
        self.k, self.stopped = 0, False
        self.result = PathResult(solver="fista")
        self.bar: Any = None

    def ratio(self, k: int) -> float:
        """Extrapolation ratio from lambda ``k - 1`` to ``k`` (the path is geometric in lambda)."""
        lam = self.lambdas
        return math.log(lam[k - 1] / lam[k]) / math.log(lam[k - 2] / lam[k - 1])

    def record(self, *, obj: float, spent: int, converged: bool, train_acc: float, val_acc: float,
               seconds: float) -> None:
        """Append lambda ``k``'s solution (``self.W``, ``self.b``) to the path; advance or stop."""
        lam = self.lambdas[self.k]
        if not math.isfinite(obj):
            raise SolverError(f"fista diverged at lambda {lam:.4g} (objective {obj}); "
                              "check the features for extreme values")
        self.result.append(lam=lam, weight=self.W.cpu().numpy(), bias=self.b.cpu().numpy(),
                           train_accuracy=train_acc, val_accuracy=val_acc, objective=obj,
                           n_iter=spent, converged=converged, seconds=seconds)
        nnz = int((self.W != 0).sum())
        logger.debug("fista lambda %d/%d %.5g: nnz %d, objective %.6g, train %.4f, val %.4f, "
                     "%d iterations%s", self.k + 1, len(self.lambdas), lam, nnz, obj, train_acc, val_acc,
                     spent, "" if converged else " (not converged)")
        self.bar.update(1)
        self.bar.set_postfix(nnz=nnz, val_acc=f"{val_acc:.3f}")
        self.k += 1
        self.stopped = self.should_stop is not None and bool(self.should_stop(self.result))


def _feature_path(run: _Run) -> None:
    """The path from lambda ``run.k`` on, screening whole features; dense products with their columns."""
    problem, device, alpha = run.problem, run.device, run.alpha
    X = _resident(problem.X, problem.rows, device, run.dtype)
    Xv = _resident(problem.X_val, problem.val_rows, device, run.dtype)
    y, mu, s, W, b, d = run.y, run.mu, run.s, run.W, run.b, run.d
    n = X.shape[0]
    Zt = b[:, None].expand(run.C, n).contiguous() if run.k == 0 else _forward(X, W, b, mu, s)  # logits, classes first
    grad = run.grad
    previous: _Point | None = None  # the solution before: W, b, Z
    working = _WorkingSet(X, capacity=int(_DENSE_SHARE * d))
    dense = d == 0
    lambdas = run.lambdas
    while run.k < len(lambdas) and not run.stopped:
        k = run.k
        lam = lambdas[k]
        t0 = now(device)
        lam_prev = lambdas[k - 1] if k else lam
        keep = None if dense else (W != 0).any(0) | (grad.abs() >= alpha * (2 * lam - lam_prev)).any(0)
        spent, converged, first = 0, False, True
        run.L = max(run.L * 0.5, 1e-3)  # let the step grow again; backtracking corrects it
        last = _Point(W, b, Zt)
        while True:
            if not dense and not working.add(keep):
                dense = True
                working.release()
                logger.debug("lambda %d: working set above %.0f%% of features, screening off",
                             k, 100 * _DENSE_SHARE)
            cols = None if dense else working.index
            oracle = _DenseOracle(X if dense else working.matrix, y, mu if dense else mu[cols],
                                  s if dense else s[cols])
            x = oracle.at(W if dense else W.index_select(1, cols), b, Zt)
            if first and previous is not None:
                before = _Point(previous.W if cols is None else previous.W.index_select(1, cols), previous.b,
                                previous.Z)
                x = _predict(oracle, x, before, lam, alpha, run.ratio(k))
            first = False
            x, obj, it, converged, run.L = _fista(oracle, x, lam, alpha, run.L, run.L_cap, run.max_iter - spent,
                                                  run.tol, run.lookbehind)
            spent += it
            b, Zt = x.b, x.Z
            if dense:
                W = x.W
                break
            W = torch.zeros_like(W)
            W[:, cols] = x.W
            # full gradient at the solution: KKT check now, screening for the next lambda
            grad = _backward(X, _ce_grad(Zt, y)[1], mu, s)[0]
            violators = ~working.member & (grad.abs() > lam * alpha * (1 + 1e-4)).any(0)
            if not bool(violators.any()) or spent >= run.max_iter:
                break
            logger.debug("lambda %d: %d screened-out features violate KKT, re-solving",
                         k, int(violators.sum()))
            keep = keep | violators
        previous = last if k else None
        run.W, run.b, run.grad = W, b, grad
        train_acc = float((Zt.max(0).indices == y).double().mean()) if n else float("nan")
        run.record(obj=obj, spent=spent, converged=converged, train_acc=train_acc,
                   val_acc=_accuracy(Xv, run.yv, W, b, mu, s), seconds=now(device) - t0)


def _pair_path(run: _Run) -> None:
    """The path from lambda ``run.k`` on, screening (class, feature) pairs, with the numba kernels.

    Hands over to :func:`_feature_path` (returns with ``run.k`` at the lambda to solve next) once
    the pairs would exceed ``_PAIR_SHARE`` of all.
    """
    problem, alpha, lambdas = run.problem, run.alpha, run.lambdas
    _pairs.set_threads(torch.get_num_threads())
    train = _PairOracle(*_row_major(problem.X, problem.rows), run.y, run.mu, run.s, run.C)
    val = _PairOracle(*_row_major(problem.X_val, problem.val_rows), run.yv, run.mu, run.s, run.C)
    member = torch.zeros(run.C, run.d, dtype=torch.bool)
    W, b, grad = run.W, run.b, run.grad
    loss_at_W: float | None = None  # the cross-entropy at (W, b), known from the lambda before
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    capacity = int(_PAIR_SHARE * run.C * run.d)
    while run.k < len(lambdas) and not run.stopped:
        k = run.k
        lam = lambdas[k]
        t0 = now(run.device)
        lam_prev = lambdas[k - 1] if k else lam
        keep = (W != 0) | (grad.abs() >= alpha * (2 * lam - lam_prev))
        spent, converged, first = 0, False, True
        run.L = max(run.L * 0.5, 1e-3)
        last = (W, b)
        while True:
            grown = member | keep
            if int(grown.sum()) > capacity:
                logger.debug("lambda %d: the pair working set would pass %.1f%% of all pairs; dense products "
                             "from here", k, 100 * _PAIR_SHARE)
                run.W, run.b, run.grad = W, b, grad
                return
            member = grown
            train.set_pairs(member)
            x = _Point(train.gather(W), b, f=loss_at_W)
            if first and previous is not None:
                x = _predict(train, x, _Point(train.gather(previous[0]), previous[1]), lam, alpha, run.ratio(k))
            first = False
            x, obj, it, converged, run.L = _fista(train, x, lam, alpha, run.L, run.L_cap, run.max_iter - spent,
                                                  run.tol, run.lookbehind)
            spent += it
            W, b, loss_at_W = train.scatter(x.W), x.b, x.f
            grad, train_acc = train.full_gradient(x)  # KKT check now, screening for the next lambda
            violators = ~member & (grad.abs() > lam * alpha * (1 + 1e-4))
            if not bool(violators.any()) or spent >= run.max_iter:
                break
            logger.debug("lambda %d: %d screened-out pairs violate KKT, re-solving", k, int(violators.sum()))
            keep = keep | violators
        previous = last if k else None
        run.W, run.b, run.grad = W, b, grad
        val.set_pairs(member)  # x's weights are in the order of these pairs
        run.record(obj=obj, spent=spent, converged=converged, train_acc=train_acc,
                   val_acc=val.accuracy(x), seconds=now(run.device) - t0)


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


def _predict(oracle: Any, x: _Point, before: _Point, lam: float, alpha: float, ratio: float) -> _Point:
    """Start point for the next lambda: ``x + ratio (x - before)`` if it has lower objective, else ``x``.

    The solution path is smooth in log lambda between support changes, so the linear
    extrapolation of the last two solutions starts much closer than the last solution alone. The
    logits extrapolate the same way (the working set only grows, so it holds both supports).
    """
    p = oracle.lerp(before, x, 1.0 + ratio)
    if oracle.loss(p) + _penalty(p.W, lam, alpha) < oracle.loss(x) + _penalty(x.W, lam, alpha):
        return p
    return x


def _fista(oracle: Any, x: _Point, lam: float, alpha: float, L: float, L_cap: float, max_iter: int, tol: float,
           lookbehind: int) -> tuple[_Point, float, int, bool, float]:
    """FISTA with backtracking and restarts on one lambda from ``x``.

    ``oracle`` (:class:`_DenseOracle` or :class:`_PairOracle`) evaluates the loss and its gradient.
    Returns ``(x, F, iterations, converged, L)``.
    """
    F_x = oracle.loss(x) + _penalty(x.W, lam, alpha)
    prev = x
    t = 1.0
    history = [F_x]
    for it in range(1, max_iter + 1):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        # y = x + beta (x - x_prev), as lerp: no temporaries of size n x C
        yp = oracle.lerp(prev, x, 1.0 + beta) if beta > 0 else _Point(x.W, x.b, x.Z)
        f_y, gW, gb = oracle.loss_grad(yp)
        Wy, by = yp.W, yp.b
        del yp
        while True:
            n_pt = oracle.at(_prox(Wy - gW / L, lam * alpha / L, lam * (1 - alpha) / L), by - gb / L)
            f_n = oracle.loss(n_pt)
            dW, db = n_pt.W - Wy, n_pt.b - by
            model = (f_y + float((gW * dW).double().sum() + (gb * db).double().sum())
                     + 0.5 * L * float((dW.double() ** 2).sum() + (db.double() ** 2).sum()))
            # float32 logits: differences below ~1e-8 relative are round-off, not curvature
            if f_n <= model + _SLACK * abs(f_y) or L >= L_cap:
                break
            L = min(2.0 * L, L_cap)
        F_n = f_n + _penalty(n_pt.W, lam, alpha)
        if not math.isfinite(F_n):
            return n_pt, F_n, it, False, L
        if F_n > F_x:
            if beta > 0:  # momentum overshot: restart from x
                prev, t = x, 1.0
                continue
            if L >= L_cap or F_n - F_x <= _SLACK * abs(F_x):
                return x, F_x, it, True, L  # no descent left at round-off level
            L = min(2.0 * L, L_cap)  # a plain step went uphill: the step was too long
            continue
        prev, x, F_x, t = x, n_pt, F_n, t_next
        history.append(F_x)  # only accepted steps count towards convergence
        if len(history) > lookbehind and history[-1 - lookbehind] - F_x <= tol * max(abs(F_x), 1e-12):
            return x, F_x, it, True, L
    return x, F_x, max_iter, False, L


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
