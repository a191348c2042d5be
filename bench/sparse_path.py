"""Benchmark: the regularisation path with glm_saga and with the fast in-memory solver.

Both solvers run through :class:`sparsecheck.sparse.SparseDecisionLayer` on the same features,
the same lambda grid and the same validation set, and the script prints one row per solver:
seconds for the path, selected lambda, nonzero weights, mean features per class, validation
accuracy and the speed ratio, followed by the acceptance checks (fast solver's selected layer
within 1 point of glm_saga's validation accuracy and within 20% of its nonzero count; path at least
10x faster).

Data: a planted problem (each class depends on ``--k`` of the ``--d`` features through a sparse
multinomial model, features correlated through a low-rank factor, labels sampled from the model
so there is noise; seeded), or features from ``--features-npz`` (keys ``train_x``, ``train_y``,
``val_x``, ``val_y``).

Examples::

    python bench/sparse_path.py                              # 50,000 x 512, 10 classes, CPU
    python bench/sparse_path.py --quick                      # 10,000 x 128, 30 lambdas: a smoke run
    python bench/sparse_path.py --features-npz feats.npz
    python bench/sparse_path.py --n 1280000 --d 2048 --classes 1000 --device cuda --fast-only
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from sparsecheck.sparse import SparseDecisionLayer
from sparsecheck.sparse.solvers import saga as saga_solver


@dataclass
class Run:
    solver: str
    fit_seconds: float
    cpu_seconds: float
    path_seconds: float
    layer: SparseDecisionLayer


def planted(n: int, d: int, n_classes: int, *, k: int, rank: int, seed: int, device: torch.device,
            scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of correlated features and labels drawn from a sparse multinomial model.

    Generated chunk by chunk on ``device``: nothing larger than the returned tensors is held.
    The true weights put ``k`` features (chosen per class) at +-U(1, 2) x ``scale``; rows are
    ``z + f @ M`` with ``z`` ~ N(0, I_d), ``f`` ~ N(0, I_rank), ``M`` ~ 0.5 N(0, 1).
    """
    g = torch.Generator(device=device).manual_seed(seed)
    weight = torch.zeros(n_classes, d, device=device)
    for c in range(n_classes):
        cols = torch.randperm(d, generator=g, device=device)[:k]
        mags = 1 + torch.rand(k, generator=g, device=device)
        signs = torch.where(torch.rand(k, generator=g, device=device) < 0.7, 1.0, -1.0)
        weight[c, cols] = mags * signs * scale
    mixing = 0.5 * torch.randn(rank, d, generator=g, device=device)
    feature_std = float(np.sqrt(1 + 0.25 * rank))
    X = torch.empty(n, d, device=device)
    y = torch.empty(n, dtype=torch.long, device=device)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        z = torch.randn(m, d, generator=g, device=device)
        z.addmm_(torch.randn(m, rank, generator=g, device=device), mixing)
        logits = (z / feature_std) @ weight.T
        y[start:start + m] = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
        X[start:start + m] = z
    return X, y


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="training rows (validation: n/10)")
    p.add_argument("--d", type=int, default=512, help="features")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--k", type=int, default=5, help="planted features per class")
    p.add_argument("--rank", type=int, default=8, help="rank of the shared feature factor")
    p.add_argument("--n-lambdas", type=int, default=100)
    p.add_argument("--lambda-min-ratio", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=0.99)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features-npz", help="train_x/train_y/val_x/val_y features instead of the planted problem")
    p.add_argument("--quick", action="store_true", help="10,000 x 128, 10 classes, 30 lambdas")
    p.add_argument("--fast-only", action="store_true", help="skip glm_saga")
    p.add_argument("--saga-max-epochs", type=int, default=None,
                   help=f"glm_saga epochs per lambda (default {saga_solver.DEFAULT_MAX_EPOCHS}, the paper's)")
    p.add_argument("--saga-tol", type=float, default=None,
                   help=f"glm_saga tolerance (default {saga_solver.DEFAULT_TOL}, the paper's)")
    p.add_argument("--lookbehind", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--step-size", type=float, default=saga_solver.DEFAULT_STEP_SIZE)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.d, args.classes, args.n_lambdas = 10_000, 128, 10, 30
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))

    t0 = time.perf_counter()
    if args.features_npz:
        with np.load(args.features_npz) as npz:
            X, y = npz["train_x"].astype(np.float32, copy=False), npz["train_y"]
            X_val, y_val = npz["val_x"].astype(np.float32, copy=False), npz["val_y"]
        source = f"features {args.features_npz}"
    else:
        n_val = max(args.n // 10, 1)
        X, y = planted(args.n + n_val, args.d, args.classes, k=args.k, rank=args.rank, seed=args.seed,
                       device=device)
        X, y, X_val, y_val = X[:args.n], y[:args.n], X[args.n:], y[args.n:]  # views, no copies
        if device.type == "cpu":  # as the extraction stage hands them over
            X, y, X_val, y_val = X.numpy(), y.numpy(), X_val.numpy(), y_val.numpy()
        source = (f"planted: {args.k} features/class, rank-{args.rank} correlation, labels sampled "
                  f"from the model (seed {args.seed})")
    print(f"data: {source}; train {tuple(X.shape)}, val {tuple(X_val.shape)}, "
          f"{len(np.unique(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)))} classes "
          f"({time.perf_counter() - t0:.1f}s to prepare)")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"path: {args.n_lambdas} lambdas, lambda_min_ratio {args.lambda_min_ratio}, alpha {args.alpha}, "
          f"selection tolerance {args.tolerance}")
    saga_epochs = args.saga_max_epochs or saga_solver.DEFAULT_MAX_EPOCHS
    saga_tol = args.saga_tol or saga_solver.DEFAULT_TOL
    if not args.fast_only:
        print(f"glm_saga: max_epochs {saga_epochs}/lambda, tol {saga_tol}, lookbehind {args.lookbehind}, "
              f"batch {args.batch_size}, step {args.step_size}")
    print(f"fista: max_epochs 2000/lambda, tol 1e-6 (relative, over {args.lookbehind} iterations)")
    print("epochs: passes over the training data summed over the path (glm_saga epochs, fista iterations);"
          " 'CPU s' is process CPU time, steadier than wall clock on a shared machine")

    common = dict(alpha=args.alpha, n_lambdas=args.n_lambdas, lambda_min_ratio=args.lambda_min_ratio,
                  tolerance=args.tolerance, lookbehind=args.lookbehind, device=str(device),
                  random_state=args.seed)
    runs: list[Run] = []
    solvers = ["fista"] if args.fast_only else ["glm_saga", "fista"]
    for solver in solvers:
        extra = dict(max_epochs=saga_epochs, tol=saga_tol, batch_size=args.batch_size,
                     step_size=args.step_size) if solver == "glm_saga" else {}
        layer = SparseDecisionLayer(solver=solver, **common, **extra)
        start, cpu_start = time.perf_counter(), time.process_time()
        layer.fit(X, y, X_val, y_val)
        fit_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        runs.append(Run(solver, fit_seconds, cpu_seconds, float(layer.path_["seconds"].sum()), layer))
        print(f"  {solver}: done in {fit_seconds:.1f}s ({cpu_seconds:.1f}s CPU)", flush=True)

    base = runs[0].fit_seconds
    header = (f"{'solver':<10} {'fit s':>9} {'CPU s':>9} {'sel. lambda':>12} {'nnz':>7} {'feat/class':>10} "
              f"{'val acc':>8} {'epochs':>8} {'speedup':>8} {'CPU speedup':>12}")
    print()
    print(header)
    print("-" * len(header))
    for run in runs:
        row = run.layer.path_.iloc[run.layer.selected_index_]
        print(f"{run.solver:<10} {run.fit_seconds:>9.1f} {run.cpu_seconds:>9.1f} {run.layer.selected_lambda_:>12.4g} "
              f"{int(row['nnz']):>7d} {row['mean_features_per_class']:>10.2f} {row['val_accuracy']:>8.4f} "
              f"{int(run.layer.path_['n_iter'].sum()):>8d} {base / run.fit_seconds:>7.1f}x "
              f"{runs[0].cpu_seconds / run.cpu_seconds:>11.1f}x")
    if len(runs) == 2:
        saga, fast = runs[0].layer, runs[1].layer
        rs, rf = saga.path_.iloc[saga.selected_index_], fast.path_.iloc[fast.selected_index_]
        d_acc = abs(rf["val_accuracy"] - rs["val_accuracy"]) * 100
        d_nnz = abs(int(rf["nnz"]) - int(rs["nnz"])) / max(int(rs["nnz"]), 1) * 100
        speed = runs[0].fit_seconds / runs[1].fit_seconds
        cpu_speed = runs[0].cpu_seconds / runs[1].cpu_seconds
        m = min(len(saga.path_), len(fast.path_))
        rel = (fast.path_["objective"].to_numpy()[:m] - saga.path_["objective"].to_numpy()[:m]) \
            / saga.path_["objective"].to_numpy()[:m]
        print()
        print(f"objective along the path, (fista - glm_saga) / glm_saga: median {np.median(rel):+.2e}, "
              f"min {rel.min():+.2e}, max {rel.max():+.2e}")
        checks = [(f"val accuracy within 1 point ({d_acc:.2f})", d_acc <= 1.0),
                  (f"nnz within 20% ({d_nnz:.1f}%)", d_nnz <= 20.0),
                  (f"path >= 10x faster, wall clock ({speed:.1f}x; CPU time {cpu_speed:.1f}x)", speed >= 10.0)]
        for text, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
        return 0 if all(ok for _, ok in checks) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
