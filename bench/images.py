"""Decoding + feature-extraction throughput on JPEG files against torchvision's own loop.

Writes ``--n`` small JPEGs of mixed sizes (64–160 px per side, seeded) in ImageFolder layout (10
classes) into a temporary folder, then times, with the same DataLoader workers, batch size,
resize + centre crop and model:

* **sparsecheck**: ``load_dataset(folder, geometry=...)`` (lists the files and reads every header)
  + ``extract_features`` (decode, resize, crop in the workers; normalise and forward with the
  feature tap here);
* **torchvision**: ``ImageFolder`` + ``Resize``/``CenterCrop``/``ToTensor``/``Normalize`` +
  ``DataLoader`` and a bare forward pass.

The two are run alternately ``--repeats`` times. The best of each and the median of the
pairwise ratios (each sparsecheck run against the torchvision run just before it) are reported:
on a shared machine the pairwise ratio is the steadier figure.

    python bench/images.py                       # 10000 images, ResNet-18 (random weights) at 64 px
    python bench/images.py --n 2000 --workers 2  # smaller

Target: sparsecheck >= 90% of torchvision's images/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from sparsecheck.data import InputSpec, load_dataset
from sparsecheck.models import Model
from sparsecheck.features.extraction import extract_features

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_images(root: Path, n: int, *, seed: int = 0, classes: int = 10) -> None:
    """``n`` JPEGs, 64–160 px per side: smooth colour fields plus noise, like photos compress."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(64, 161, size=2))
        coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        arr = np.asarray(coarse).astype(np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            root / f"class{i % classes}" / f"{i:06d}.jpg", quality=90)


def run_sparsecheck(root: Path, model: torch.nn.Module, spec: InputSpec, batch: int, workers: int) -> float:
    start = time.perf_counter()
    ds = load_dataset(root, geometry=spec.geometry)
    fs = extract_features(Model(model, "module", "bench"), ds, spec.without_geometry(), batch_size=batch,
                          device="cpu", num_workers=workers, cache_dir=None)
    assert fs.features.shape[0] == len(ds)
    return len(ds) / (time.perf_counter() - start)


def run_torchvision(root: Path, model: torch.nn.Module, resize: int, crop: int, batch: int, workers: int) -> float:
    import torchvision.transforms as T

    start = time.perf_counter()
    ds = torchvision.datasets.ImageFolder(str(root), transform=T.Compose([
        T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(MEAN, STD)]))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers)
    n = 0
    with torch.inference_mode():
        for x, _ in loader:
            model(x)
            n += len(x)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="number of JPEG files")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--resize", type=int, default=73, help="shorter side before the crop (224/256 of it)")
    parser.add_argument("--model", default="resnet18", help="torchvision model name (random weights)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None, num_classes=10).eval()
    spec = InputSpec(scale=255.0, mean=MEAN, std=STD, resize=args.resize, crop=(args.crop, args.crop))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        start = time.perf_counter()
        write_images(root, args.n)
        print(f"wrote {args.n} JPEGs (64-160 px) in {time.perf_counter() - start:.1f}s")
        warm = Path(tmp) / "warm"
        write_images(warm, 2 * args.batch, seed=1)
        run_torchvision(warm, model, args.resize, args.crop, args.batch, 0)  # warm-up: lazy inits
        run_sparsecheck(warm, model, spec, args.batch, 0)
        tv, sc = [], []
        for _ in range(args.repeats):
            tv.append(run_torchvision(root, model, args.resize, args.crop, args.batch, args.workers))
            sc.append(run_sparsecheck(root, model, spec, args.batch, args.workers))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, "
          f"{args.workers} workers, batch {args.batch}, {args.model} at resize {args.resize} / crop {args.crop}, "
          f"{args.n} images, best of {args.repeats}")
    print(f"{'pipeline':<14}{'images/s':>10}   runs")
    print(f"{'torchvision':<14}{max(tv):>10.0f}   {', '.join(f'{v:.0f}' for v in tv)}")
    print(f"{'sparsecheck':<14}{max(sc):>10.0f}   {', '.join(f'{v:.0f}' for v in sc)}")
    ratio = max(sc) / max(tv)
    paired = float(np.median([s / t for s, t in zip(sc, tv)]))
    print(f"ratio sparsecheck / torchvision: best {ratio:.0%}, median of pairs {paired:.0%} "
          f"(target >= 90%: {'met' if min(ratio, paired) >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
