"""Benchmark: sparsecheck's SliceFinder against the `sliceline` package.

Generates a table of categorical attributes with Zipf-distributed values and two planted
high-error slices (one of 2 predicates, one of 3), then

1. runs SliceFinder on the full size (default 1,000,000 rows x 20 attributes, up to 3 predicates);
2. runs `sliceline.slicefinder.Slicefinder` on growing sizes, each in a fresh process with a
   time budget (default 30 s), until one does not finish;
3. runs SliceFinder on the largest size sliceline finished and checks both report the same top
   slice;

and prints wall time (of ``fit`` only, data generation excluded) and peak RSS (``ru_maxrss`` of
each fresh process, data included) side by side. Every measurement runs in its own subprocess so
memories do not mix.

Usage::

    python bench/slices.py                       # the figures quoted in the issue
    python bench/slices.py --rows 200000 --sizes 10000 50000 --budget 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

TARGET_SECONDS = 30.0
TARGET_RSS_MB = 4096.0

# planted slices: {attribute index: value}, and the error rate inside them
PLANTED_2 = {0: 1, 1: 0}
PLANTED_3 = {2: 0, 3: 0, 4: 0}
BASE_ERROR, ERROR_2, ERROR_3 = 0.05, 0.45, 0.35


def make_data(rows: int, columns: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes (rows x columns, int8; column j has between 4 and 10 values, Zipf-distributed)
    and a boolean error vector with the planted slices."""
    rng = np.random.default_rng(seed)
    codes = np.empty((rows, columns), dtype=np.int8)
    for j in range(columns):
        k = 10 if j < 5 else int(rng.integers(4, 11))
        p = 1.0 / np.arange(1, k + 1)
        codes[:, j] = rng.choice(k, size=rows, p=p / p.sum())
    rate = np.full(rows, BASE_ERROR)
    in2 = np.logical_and.reduce([codes[:, a] == v for a, v in PLANTED_2.items()])
    in3 = np.logical_and.reduce([codes[:, a] == v for a, v in PLANTED_3.items()])
    rate[in3] = ERROR_3
    rate[in2] = ERROR_2
    errors = rng.random(rows) < rate
    return codes, errors


def min_support_for(rows: int) -> int:
    """SliceFinder's default (1% of the rows, at least 30), passed to both contenders."""
    return max(30, int(np.ceil(0.01 * rows)))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- workers


def run_ours(args: argparse.Namespace, codes: np.ndarray, errors: np.ndarray) -> dict[str, Any]:
    import pandas as pd

    from sparsecheck.analysis.slices import SliceFinder

    table = pd.DataFrame({f"a{j}": codes[:, j] for j in range(codes.shape[1])})
    base = rss_mb()
    started = time.perf_counter()
    finder = SliceFinder(max_predicates=args.max_predicates, min_support=min_support_for(len(table)),
                         alpha=args.alpha, top_k=args.top_k, progress=False)
    finder.fit(table, errors=errors)
    elapsed = time.perf_counter() - started
    top = finder.slices_[0] if finder.slices_ else None
    planted = [{f"a{a}": str(v) for a, v in p.items()} for p in (PLANTED_2, PLANTED_3)]
    ranks = []
    for p in planted:
        hit = [i + 1 for i, s in enumerate(finder.slices_) if s.predicates == p]
        ranks.append(hit[0] if hit else None)
    return {"fit_s": elapsed, "base_rss_mb": base,
            "top": top.predicates if top else None, "top_score": top.score if top else None,
            "evaluated": len(finder.candidates_), "planted_ranks": ranks,
            "top_significant": top.significant if top else None}


def run_sliceline(args: argparse.Namespace, codes: np.ndarray, errors: np.ndarray) -> dict[str, Any]:
    import warnings

    from sliceline.slicefinder import Slicefinder

    base = rss_mb()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        finder = Slicefinder(alpha=args.alpha, k=args.top_k, max_l=args.max_predicates,
                             min_sup=min_support_for(codes.shape[0]), verbose=False)
        finder.fit(codes.astype(np.int64), errors.astype(np.float64))
    elapsed = time.perf_counter() - started
    top = None
    if finder.top_slices_ is not None and len(finder.top_slices_):
        top = {f"a{j}": str(v) for j, v in enumerate(finder.top_slices_[0]) if v is not None}
    score = finder.top_slices_statistics_[0]["slice_score"] if top else None
    return {"fit_s": elapsed, "base_rss_mb": base, "top": top, "top_score": score}


def worker(args: argparse.Namespace) -> None:
    codes, errors = make_data(args.rows, args.columns, args.seed)
    result = (run_ours if args.worker == "ours" else run_sliceline)(args, codes, errors)
    result.update(contender=args.worker, rows=args.rows, peak_rss_mb=rss_mb())
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- driver


def measure(contender: str, rows: int, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run one worker in a fresh process; wall time budget ``timeout``; peak RSS from wait4 so
    it is known even when the worker is killed."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", contender, "--rows", str(rows),
           "--columns", str(args.columns), "--max-predicates", str(args.max_predicates),
           "--alpha", str(args.alpha), "--top-k", str(args.top_k), "--seed", str(args.seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            timed_out = True
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    row: dict[str, Any] = {"contender": contender, "rows": rows,
                           "peak_rss_mb": usage.ru_maxrss / 1024.0, "timed_out": timed_out}
    if timed_out:
        return row
    if proc.returncode != 0:
        row["failed"] = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
        return row
    row.update(json.loads(out.strip().splitlines()[-1]))
    return row


def describe(top: dict[str, str] | None) -> str:
    return " AND ".join(f"{k}={v}" for k, v in top.items()) if top else "-"


def print_table(rows: list[dict[str, Any]], budget: float) -> None:
    head = f"{'contender':<12} {'rows':>9} {'fit [s]':>9} {'peak RSS [MB]':>14}  {'top slice':<24} {'score':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("timed_out"):
            fit = f">{budget:.0f}"
        elif "failed" in r:
            fit = "failed"
        else:
            fit = f"{r['fit_s']:.2f}"
        score = f"{r['top_score']:.3f}" if r.get("top_score") is not None else "-"
        print(f"{r['contender']:<12} {r['rows']:>9,} {fit:>9} {r['peak_rss_mb']:>14.0f}  "
              f"{describe(r.get('top')):<24} {score:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the full-size run")
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--max-predicates", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.95)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=30.0,
                        help="seconds each sliceline size may take (whole process)")
    parser.add_argument("--ours-timeout", type=float, default=600.0)
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
                                 1_000_000],
                        help="sizes tried for sliceline, smallest first")
    parser.add_argument("--worker", choices=["ours", "sliceline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0

    print(f"python {' '.join(sys.argv)}")
    print(f"{args.columns} attributes (<= 10 values, Zipf), planted: "
          f"{describe({f'a{a}': str(v) for a, v in PLANTED_2.items()})} (error {ERROR_2}), "
          f"{describe({f'a{a}': str(v) for a, v in PLANTED_3.items()})} (error {ERROR_3}), "
          f"base error {BASE_ERROR}; alpha={args.alpha}, max predicates {args.max_predicates}, "
          f"top-k {args.top_k}, min support 1% of rows; {os.cpu_count()} CPUs\n")

    results = []
    full = measure("ours", args.rows, args, args.ours_timeout)
    results.append(full)

    largest = None
    for size in sorted(args.sizes):
        r = measure("sliceline", size, args, args.budget)
        results.append(r)
        if r.get("timed_out") or "failed" in r:
            break
        largest = r
    same = None
    if largest is not None:
        if largest["rows"] == args.rows:
            ours_same = full
        else:
            ours_same = measure("ours", largest["rows"], args, args.ours_timeout)
            results.append(ours_same)
        same = ours_same.get("top") == largest.get("top")

    print_table(results, args.budget)
    print()
    if "fit_s" in full:
        ok_t = full["fit_s"] <= TARGET_SECONDS
        ok_m = full["peak_rss_mb"] <= TARGET_RSS_MB
        print(f"ours at {args.rows:,} rows: {full['fit_s']:.2f} s (target {TARGET_SECONDS:.0f} s: "
              f"{'met' if ok_t else 'MISSED'}), peak RSS {full['peak_rss_mb']:.0f} MB (target "
              f"{TARGET_RSS_MB:.0f} MB: {'met' if ok_m else 'MISSED'}), "
              f"{full['evaluated']:,} slices evaluated")
        print(f"planted slices' ranks in our top-{args.top_k}: 2 predicates -> "
              f"{full['planted_ranks'][0]}, 3 predicates -> {full['planted_ranks'][1]}")
    else:
        print(f"ours at {args.rows:,} rows did not finish: {full}")
    if largest is None:
        print("sliceline finished no size within the budget")
    else:
        print(f"largest size sliceline finished within {args.budget:.0f} s: {largest['rows']:,} rows "
              f"({largest['fit_s']:.2f} s); same top slice as ours there: {same}")
    return 0 if same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
