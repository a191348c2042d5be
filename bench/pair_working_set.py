"""Benchmark: the sparse path at many classes with a per-feature vs a per-(class, feature) working set.

At 1000 classes with a few features each, the classes together use every feature, so the
per-feature working set (``working_set="features"``, what the path used before) multiplies with
the whole matrix twice per FISTA iteration. ``working_set="pairs"`` screens (class, feature)
pairs and multiplies with the numba kernels instead. Both solve the same lambdas of the same
problem (the planted features of ``bench/scaling.py``, memory-mapped), in one process one after
the other, and the script prints their time side by side with the objectives they reach.

Usage::

    python bench/pair_working_set.py                          # 1000 x 2048 x 10,000, the first 25 lambdas
    python bench/pair_working_set.py --point 300 512 20000 --lambdas 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--point", type=int, nargs=3, default=(1000, 2048, 10_000),
                   metavar=("CLASSES", "FEATURES", "EXAMPLES"))
    p.add_argument("--lambdas", type=int, default=25, help="solve the first this many of the 100-lambda path")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)

    import torch

    import scaling
    from sparsecheck.sparse.solvers import PathProblem, feature_statistics, fista_path

    if args.threads:
        torch.set_num_threads(args.threads)
    C, d, n = args.point
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="sparsecheck-pairs-") as tmp:
        root = Path(tmp)
        scaling.make_data(root, C, d, n)
        X = np.load(root / "train_x.npy", mmap_mode="r")
        y = np.load(root / "train_y.npy")
        Xv = np.load(root / "val_x.npy", mmap_mode="r")
        yv = np.load(root / "val_y.npy")
        mean, std, grad0 = feature_statistics(X, None, y, C, cpu)
        alpha = 0.99
        lambdas = np.abs(grad0).max() / alpha * (1 + 1e-6) * np.geomspace(1.0, 1e-3, 100)
        problem = PathProblem(X=X, rows=None, y=y, X_val=Xv, val_rows=None, y_val=yv, mean=mean, std=std,
                              n_classes=C, lambdas=lambdas, alpha=alpha, grad0=grad0)
        K = args.lambdas
        runs = {}
        print(f"{C} classes x {d} features x {n} examples, the first {K} of 100 lambdas, "
              f"{torch.get_num_threads()} torch threads")
        for mode in ("features", "pairs"):
            start = time.perf_counter()
            result = fista_path(problem, device=cpu, working_set=mode, should_stop=lambda r: len(r.lambdas) >= K)
            runs[mode] = (time.perf_counter() - start, result)
        print(f"{'working set':<22}{'seconds':>9}{'iterations':>12}{'nnz at the last':>17}{'val acc':>9}"
              f"{'objective':>12}")
        for mode, (seconds, r) in runs.items():
            label = "features (before)" if mode == "features" else "(class, feature) pairs"
            print(f"{label:<22}{seconds:9.1f}{sum(r.n_iter):12d}{r.weights.nnz(-1):17d}"
                  f"{r.val_accuracy[-1]:9.4f}{r.objective[-1]:12.6f}")
        a, b = runs["features"][1], runs["pairs"][1]
        gap = max(abs(x - z) / abs(x) for x, z in zip(a.objective, b.objective))
        print(f"speed-up {runs['features'][0] / runs['pairs'][0]:.1f}x; largest relative objective difference "
              f"along the path {gap:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
