"""Benchmark: linear CKA (what ``sparsecheck compare`` reports) at feature-layer scale.

For each size it builds two float16 representations of n examples (the storage of
``test_features.npz``): Y is a noisy linear map of X, and both sit far from zero (a ReLU layer's
means dominate its variance). It prints the time of :func:`linear_cka`, the float64 memory its
accumulators take, and its error against the same CKA computed on the exactly centred float64
data — the figure that says the chunked float64 accumulation is numerically stable.

Usage::

    python bench/cka.py                 # n up to 100,000, widths up to 1,024
    python bench/cka.py --full          # adds 100,000 × 4,096 vs 4,096 (1.6 GB of input, minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sparsecheck.analysis.representation import linear_cka

SIZES = [(10_000, 512, 512), (100_000, 512, 1024), (20_000, 2048, 2048)]
FULL = [(100_000, 4096, 4096)]


def pair(n: int, p: int, q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, Y) as float16 with large offsets, and their centred float64 versions."""
    rng = np.random.default_rng(seed)
    k = min(p, q, 64)  # a shared 64-dimensional signal
    z = rng.standard_normal((n, k), dtype=np.float32)
    x = z @ rng.standard_normal((k, p), dtype=np.float32) + rng.standard_normal((n, p), dtype=np.float32)
    y = z @ rng.standard_normal((k, q), dtype=np.float32) + 2 * rng.standard_normal((n, q), dtype=np.float32)
    x16, y16 = (x + 300).astype(np.float16), (y + 100).astype(np.float16)
    xc, yc = x16.astype(np.float64), y16.astype(np.float64)
    return x16, y16, xc - xc.mean(0), yc - yc.mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the 100,000 × 4,096 case")
    args = parser.parse_args()
    print(f"{'n':>8} {'p':>6} {'q':>6} {'CKA':>8} {'seconds':>8} {'accumulators':>13} {'|error|':>9}")
    for n, p, q in SIZES + (FULL if args.full else []):
        x16, y16, xc, yc = pair(n, p, q)
        start = time.perf_counter()
        value = linear_cka(x16, y16)
        seconds = time.perf_counter() - start
        exact = float(np.sum((yc.T @ xc) ** 2) / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))
        mb = 8 * (p * p + q * q + p * q) / 2 ** 20
        print(f"{n:>8} {p:>6} {q:>6} {value:>8.5f} {seconds:>8.2f} {mb:>10.0f} MB {abs(value - exact):>9.1e}")
        del x16, y16, xc, yc


if __name__ == "__main__":
    main()
