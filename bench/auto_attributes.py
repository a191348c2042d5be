"""Cost of the automatic image attributes: milliseconds per 1,000 images at 32×32 and 224×224.

    python bench/auto_attributes.py            # 4,000 small and 500 large random RGB images
    python bench/auto_attributes.py --n-large 1000

Prints ms per 1,000 images for :func:`~sparsecheck.analysis.auto_attributes.stream_properties`
(batches of ``--batch``) and for ``AutoAttributes.fit`` + ``transform`` on the table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sparsecheck.analysis.auto_attributes import AutoAttributes, stream_properties


def time_size(size: int, n: int, batch: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)  # re-used: time the measuring
    batches = (block for _ in range(-(-n // batch)))
    start = time.perf_counter()
    props = stream_properties(batches)
    measure = time.perf_counter() - start
    start = time.perf_counter()
    AutoAttributes().fit(props).transform(props)
    binning = time.perf_counter() - start
    return 1000 * measure / len(props) * 1000, 1000 * binning / len(props) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-small", type=int, default=4000)
    parser.add_argument("--n-large", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    for size, n in ((32, args.n_small), (224, args.n_large)):
        m, b = time_size(size, n, args.batch)
        print(f"{size:>3}x{size:<3} {n:>6} images: properties {m:8.1f} ms / 1,000 images, "
              f"fit+transform {b:6.1f} ms / 1,000")


if __name__ == "__main__":
    main()
