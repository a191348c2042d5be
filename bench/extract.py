"""Feature-extraction throughput against the model's raw forward pass, and the cache speed-up.

For each model, the same uint8 batches are (a) pushed through the bare model (pre-transformed
tensors, inference mode: the reference) and (b) through ``extract_features`` (input transform,
forward with the feature tap, writes into the memory-mapped cache). Then (c) the same extraction
again, which reads the cache.

    python bench/extract.py               # demo CNN (32 px) and ResNet-18 (random weights, 224 px), the
                                          # latter also as scripted/traced TorchScript and .pt2 files
    python bench/extract.py --quick       # smaller

Target: extraction >= 80% of the raw forward throughput on CPU; the cached re-run >= 10x faster.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torchvision

from sparsecheck.data import ImageDataset, InputSpec
from sparsecheck.models import Model, load_model
from sparsecheck.demo import DEMO_INPUT, DemoNet
from sparsecheck.features.extraction import extract_features


def raw_forward(module: torch.nn.Module, data: ImageDataset, spec: InputSpec, batch: int) -> float:
    batches = [spec.transform(data.batch(slice(i, i + batch))) for i in range(0, len(data), batch)]
    with torch.inference_mode():
        module(batches[0])  # warm-up
        start = time.perf_counter()
        for x in batches:
            module(x)
    return len(data) / (time.perf_counter() - start)


def bench(name: str, module: torch.nn.Module, data: ImageDataset, spec: InputSpec, batch: int,
          make_model: Any = None) -> dict:
    """``make_model()`` gives the Model to extract from (default: the module itself, tapped by hooks)."""
    make_model = make_model or (lambda: Model(module, "module", name))
    if not isinstance(module, torch.fx.GraphModule):
        module.eval()
    raw = raw_forward(module, data, spec, batch)
    with tempfile.TemporaryDirectory() as cache:
        model = make_model()
        extract_features(model, data.subset(np.arange(batch)), spec, batch_size=batch, device="cpu")  # warm-up
        start = time.perf_counter()
        first = extract_features(model, data, spec, batch_size=batch, device="cpu", cache_dir=cache)
        extract_s = time.perf_counter() - start
        # a re-run starts from fresh objects: data and weights are hashed again to find the cache
        fresh_data = ImageDataset.from_arrays(data.images.copy(), data.labels, data.ids, name=data.name)
        fresh_model = make_model()  # loading the file is not part of extraction
        start = time.perf_counter()
        second = extract_features(fresh_model, fresh_data, spec, batch_size=batch, device="cpu", cache_dir=cache)
        cached_s = time.perf_counter() - start
        assert second.from_cache and not first.from_cache
    ext = len(data) / extract_s
    return {"model": name, "n": len(data), "raw": raw, "extract": ext, "ratio": ext / raw,
            "extract_s": extract_s, "cached_s": cached_s, "speedup": extract_s / cached_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    n_small = 2000 if args.quick else 8000
    demo = ImageDataset.from_arrays(rng.integers(0, 256, (n_small, 32, 32, 3), dtype=np.uint8),
                                    rng.integers(0, 10, n_small), name="demo")
    torch.manual_seed(0)
    spec = InputSpec(scale=255.0, mean=tuple(DEMO_INPUT["mean"]), std=tuple(DEMO_INPUT["std"]))
    rows.append(bench("demo CNN 32px", DemoNet(), demo, spec, 256))
    n_big = 64 if args.quick else 256
    big = ImageDataset.from_arrays(rng.integers(0, 256, (n_big, 224, 224, 3), dtype=np.uint8),
                                   rng.integers(0, 1000, n_big), name="imagenet-like")
    imagenet = InputSpec(scale=255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    resnet = torchvision.models.resnet18(weights=None).eval()
    rows.append(bench("ResNet-18 224px", resnet, big, imagenet, 32))
    # the same network as users save it: TorchScript (scripted, traced) and torch.export; the
    # reference is each file's own forward pass
    with tempfile.TemporaryDirectory() as tmp:
        x = torch.zeros(2, 3, 224, 224)
        torch.jit.script(resnet).save(os.path.join(tmp, "s.pt"))
        torch.jit.trace(resnet, x).save(os.path.join(tmp, "t.pt"))
        torch.export.save(torch.export.export(resnet, (x,), dynamic_shapes=({0: torch.export.Dim("b")},)),
                          os.path.join(tmp, "m.pt2"))
        for label, file in (("  scripted .pt", "s.pt"), ("  traced .pt", "t.pt"), ("  exported .pt2", "m.pt2")):
            loaded = load_model(path=os.path.join(tmp, file))
            rows.append(bench(label, loaded.module, big, imagenet, 32,
                              make_model=lambda f=file: load_model(path=os.path.join(tmp, f))))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'model':<18}{'images':>8}{'raw fwd img/s':>15}{'extract img/s':>15}{'ratio':>8}"
          f"{'extract s':>11}{'cached s':>10}{'cache x':>9}")
    for r in rows:
        print(f"{r['model']:<18}{r['n']:>8}{r['raw']:>15.0f}{r['extract']:>15.0f}{r['ratio']:>8.0%}"
              f"{r['extract_s']:>11.2f}{r['cached_s']:>10.3f}{r['speedup']:>9.0f}")
    ok = all(r["ratio"] >= 0.8 and r["speedup"] >= 10 for r in rows)
    print("targets (extraction >= 80% of raw forward, cache >= 10x):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
