"""Benchmark: how every stage after feature extraction scales with classes, features and examples.

No images and no model: synthetic deep features with planted sparse structure, written to disk
and memory-mapped as the extraction stage hands them over, plus synthetic metadata, drive the real
stages through a :class:`~sparsecheck.pipeline.context.RunContext`:

========================  ==================================================================
``dense``                 the model's own accuracy, overall and by metadata value
``sparse``                the sparse decision layer: the elastic-net path (fista)
``associations``          the interpretation stage: feature × metadata associations, cards
``slices``                slice search, feature slices, breakdowns, unnamed error clusters
``spurious``              spurious findings and associations to review
``assertions``            the config's assertions (and the implied no-spurious-reliance)
``explain``               LIME's choice of features (recorded as not possible: no images here)
``outputs``               ``report.html``, ``results.json`` (and ``activations.npz``)
========================  ==================================================================

For each point it prints every stage's wall time, the process's peak resident memory during the
stage (and what the stage added over the memory held before the stages ran), and the sizes of
what it wrote; then the reference the sparse path must beat: glmnet's multinomial path
(``python-glmnet``, Fortran coordinate descent, ``pip install python-glmnet``) on the same
training rows, lambda count and alpha, under a time budget, or glm_saga with ``--reference
glm_saga``.

The data (seeded): labels uniform over the classes; each class's features are
``N(0, I) + mu_class`` with ``mu_class`` nonzero on ``--k`` features, so the Bayes classifier is a
sparse multinomial GLM. Metadata, per example:

* ``background`` (declared spurious): ``snow`` adds a shift to one feature; in training 95% of
  class 0 (whose own features are weaker) is on snow and 3% of the others, in test 30% of every class. The model's dense head
  learned the training means, so it takes the shortcut;
* ``source``: ``crowd`` labels (10%) are wrong half the time (a high-error slice);
* ``lighting``: ``dark`` examples (5%) have twice the noise (another slice);
* ``site`` (3 values) and ``scanner`` (8 values): harmless.

Validation and test splits have ``n / 10`` rows each. Each point runs in a fresh process, so
peaks do not mix.

Usage::

    python bench/scaling.py --quick                     # a couple of minutes: small sweeps (glmnet at the first)
    python bench/scaling.py                             # the sweep of the issue (hours)
    python bench/scaling.py --point 1000 2048 100000    # one point, e.g. the 30-minute target
    python bench/scaling.py --point 100 512 50000 --reference glm_saga
    python bench/scaling.py --point 1000 2048 100000 --planted-layer   # every stage but the path
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

#: the issue's targets at 1000 classes x 2048 features x 100k examples
TARGET_SECONDS = 30 * 60
TARGET_MEMORY_FACTOR = 2.0
TARGET_REPORT_MB = 10.0
TARGET_RESULTS_MB = 20.0

STAGE_NAMES = ("dense", "sparse", "associations", "slices", "spurious", "assertions", "explain", "outputs")
SPURIOUS_CLASS = 0
SNOW_SHIFT = 2.0


# --------------------------------------------------------------------------- memory sampling
def _rss() -> tuple[int, int]:
    """(resident, anonymous resident) bytes of this process, from /proc."""
    rss = anon = 0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
    return rss, anon


class PeakMemory:
    """Samples the resident memory every ``interval`` seconds in a thread; ``peak()`` since ``reset()``."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self._peak = _rss()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = _rss()
        with self._lock:
            self._peak = (max(self._peak[0], now[0]), max(self._peak[1], now[1]))

    def reset(self) -> None:
        with self._lock:
            self._peak = _rss()

    def peak(self) -> tuple[int, int]:
        self._sample()
        with self._lock:
            return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- synthetic data
def make_data(root: Path, n_classes: int, d: int, n: int, *, k: int = 5, scale: float = 1.0,
              seed: int = 0, chunk: int = 65536) -> dict[str, Any]:
    """Write train/val/test features (``<split>_x.npy``, float32, written chunk by chunk) and
    labels, logits and metadata; return what :func:`build_context` needs (features memory-mapped).

    The dense head's logits are the Bayes scores under the *training* class means (the snow shift
    included), plus a little noise: it relies on the shortcut like a trained model would.
    """
    import pandas as pd

    rng = np.random.default_rng([seed, n_classes, d])
    mu = np.zeros((n_classes, d), dtype=np.float32)
    for c in range(n_classes):
        cols = rng.choice(d, size=min(k, d), replace=False)
        mu[c, cols] = rng.uniform(1.0, 2.0, cols.size) * np.where(rng.random(cols.size) < 0.8, 1.0, -1.0) * scale
    mu[SPURIOUS_CLASS] *= 0.5  # the shortcut's class is hard to tell by its own features: snow tells it
    snow_feature = int(rng.integers(d))
    train_mu = mu.copy()
    train_mu[:, snow_feature] += 0.03 * SNOW_SHIFT
    train_mu[SPURIOUS_CLASS, snow_feature] += (0.95 - 0.03) * SNOW_SHIFT
    head_bias = -0.5 * (train_mu.astype(np.float64) ** 2).sum(1)
    planted = mu.copy()  # a sparse layer to time the rest with: the class means, the shortcut included
    planted[SPURIOUS_CLASS, snow_feature] += 0.95 * SNOW_SHIFT
    np.save(root / "planted_weight.npy", planted)
    sizes = {"train": n, "val": max(n // 10, 2 * n_classes), "test": max(n // 10, 2 * n_classes)}
    out: dict[str, Any] = {"class_names": [f"class{c:04d}" for c in range(n_classes)], "splits": {},
                           "snow_feature": snow_feature, "feature_bytes": 0}
    for s, (split, m) in enumerate(sizes.items()):
        r = np.random.default_rng([seed, n_classes, d, s + 1])
        y_true = r.integers(0, n_classes, m)
        snow_p = np.where(y_true == SPURIOUS_CLASS, 0.95, 0.03) if split != "test" else np.full(m, 0.3)
        background = np.where(r.random(m) < snow_p, "snow", r.choice(["plain", "grass"], m))
        source = np.where(r.random(m) < 0.10, "crowd", "lab")
        lighting = np.where(r.random(m) < 0.05, "dark", "day")
        y = y_true.copy()
        flip = (source == "crowd") & (r.random(m) < 0.5)
        y[flip] = (y_true[flip] + r.integers(1, n_classes, int(flip.sum()))) % n_classes
        meta = pd.DataFrame({"id": np.char.add(f"{split}-", np.arange(m).astype(str)), "background": background,
                             "source": source, "lighting": lighting,
                             "site": r.choice(["north", "south", "east"], m),
                             "scanner": r.choice([f"s{i}" for i in range(8)], m)})
        path = root / f"{split}_x.npy"
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(m, d))
        logits = np.empty((m, n_classes), dtype=np.float32)
        for lo in range(0, m, chunk):
            hi = min(lo + chunk, m)
            noise = r.standard_normal((hi - lo, d), dtype=np.float32)
            noise[lighting[lo:hi] == "dark"] *= 2.0
            x = noise + mu[y_true[lo:hi]]
            x[:, snow_feature] += np.where(background[lo:hi] == "snow", SNOW_SHIFT, 0.0).astype(np.float32)
            X[lo:hi] = x
            z = x @ train_mu.T + head_bias.astype(np.float32)
            logits[lo:hi] = z + r.normal(0, 0.5, z.shape).astype(np.float32)
        X.flush()
        del X
        np.save(root / f"{split}_y.npy", y)
        np.save(root / f"{split}_logits.npy", logits)
        meta.to_parquet(root / f"{split}_meta.parquet")
        out["feature_bytes"] += m * d * 4 if split == "train" else 0
    return out


def load_splits(root: Path) -> dict[str, Any]:
    """The splits :func:`make_data` wrote, features and logits memory-mapped."""
    import pandas as pd

    from sparsecheck.pipeline.context import SplitView

    splits = {}
    for split in ("train", "val", "test"):
        meta = pd.read_parquet(root / f"{split}_meta.parquet")
        splits[split] = SplitView(split, meta["id"].to_numpy(), np.load(root / f"{split}_y.npy"),
                                  np.load(root / f"{split}_x.npy", mmap_mode="r"),
                                  np.load(root / f"{split}_logits.npy", mmap_mode="r"), meta)
    return splits


def build_context(root: Path, class_names: list[str], out_dir: Path, *, n_lambdas: int, seed: int = 0,
                  early_stop: bool = True) -> Any:
    """A RunContext as the load and extract stages leave it, over the memory-mapped splits."""
    from sparsecheck.config import parse_config
    from sparsecheck.pipeline.context import RunContext
    from sparsecheck.pipeline.run import prepare_out_dir

    spurious_name = class_names[SPURIOUS_CLASS]
    config = parse_config({
        "model": {"path": "synthetic.pt2"},
        "data": {"train": "train_x.npy", "val": "val_x.npy", "test": "test_x.npy", "class_names": class_names,
                 "spurious_attributes": ["background"]},
        "sparse": {"n_lambdas": n_lambdas, "solver": "fista", "early_stop": early_stop},
        "mlflow": {"enabled": False},
        "seed": seed,
        "assertions": [
            {"name": "test-accuracy", "type": "accuracy", "min": 0.3},
            {"name": "accuracy-by-lighting", "type": "accuracy", "by": ["lighting"], "max_drop": 0.1,
             "confidence": 0.95},
            {"name": "accuracy-by-site", "type": "accuracy", "by": ["site"], "max_drop": 0.1, "confidence": 0.95},
            {"name": "recall-per-class", "type": "recall", "class": "*", "min": 0.05, "severity": "warning"},
            {"name": f"{spurious_name}-recall", "type": "recall", "class": spurious_name, "min": 0.5},
            {"name": "features-per-class", "type": "max_features_per_class", "max": 30},
            {"name": "sparse-gap", "type": "sparse_accuracy_gap", "max_gap": 0.1},
            {"name": "site-is-harmless", "type": "no_reliance", "class": "*", "attribute": "site"},
        ],
    }, base_dir=root, check_files=False)
    ctx = RunContext(config=config, class_names=list(class_names), splits=load_splits(root), device="cpu")
    ctx.out_dir = prepare_out_dir(out_dir, force=True)
    ctx.feature_layer = "synthetic"
    return ctx


def planted_layer_stage(ctx: Any) -> None:
    """Instead of the sparse stage: the planted sparse layer (the Bayes classifier, ``--k``
    features per class), so the stages after it can be timed at sizes where the path takes hours here."""
    import pandas as pd

    from sparsecheck.results import SparseLayerSummary
    from sparsecheck.sparse import SparseDecisionLayer

    root = Path(ctx.config.data.train).parent
    mu = np.load(root / "planted_weight.npy")
    C, d = mu.shape
    layer = SparseDecisionLayer(solver="fista", device="cpu")
    layer.weight_, layer.bias_ = mu.astype(np.float32), (-0.5 * (mu.astype(np.float64) ** 2).sum(1)).astype(np.float32)
    layer.mean_, layer.std_ = np.zeros(d, np.float32), np.ones(d, np.float32)
    layer.classes_, layer.n_features_in_, layer.solver_ = np.arange(C), d, "planted"
    counts = (mu != 0).sum(1)
    layer.path_ = pd.DataFrame({"lambda": [1.0], "nnz": [int(counts.sum())], "mean_features_per_class": [counts.mean()],
                                "max_features_per_class": [int(counts.max())], "train_accuracy": [0.0],
                                "val_accuracy": [float(np.mean(layer.predict(ctx.splits["val"].features)
                                                               == ctx.splits["val"].labels))],
                                "seconds": [0.0], "objective": [0.0], "n_iter": [0], "converged": [True]})
    layer.selected_index_, layer.selected_lambda_, layer.lambda_max_ = 0, 1.0, 1.0
    ctx.sparse_layer = layer
    test = ctx.splits["test"]
    pred = layer.predict(np.asarray(test.features))
    ctx.run_results.sparse_layer = SparseLayerSummary.model_validate({
        "dense_accuracy": float(np.mean(test.dense_predictions == test.labels)),
        "sparse_accuracy": float(np.mean(pred == test.labels)),
        "agreement": float(np.mean(pred == test.dense_predictions)),
        **layer.to_dict(list(ctx.class_names))})
    out = Path(ctx.out_dir)
    layer.save(out / "sparse_layer", overwrite=True)
    layer.plot_path(out / "sparse_path.png")
    ctx.artifacts["sparse_path.png"] = str(out / "sparse_path.png")


# --------------------------------------------------------------------------- one point
def _dir_bytes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file()}


def _json_bytes(value: Any) -> int:
    from sparsecheck.outputs import jsonable

    return len(json.dumps(jsonable(value), allow_nan=True))


def run_point(n_classes: int, d: int, n: int, *, work: Path, n_lambdas: int, seed: int = 0,
              reference: str = "glmnet", reference_budget: float = 600.0, early_stop: bool = True,
              planted: bool = False) -> dict[str, Any]:
    """Generate one point's data, run every stage after extraction, measure; returns a record."""
    import torch

    from sparsecheck.pipeline import stages
    from sparsecheck.pipeline.run import write_outputs

    meter = PeakMemory()
    t0 = time.perf_counter()
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    info = make_data(data_dir, n_classes, d, n, seed=seed)
    gen_seconds = time.perf_counter() - t0
    import gc

    gc.collect()
    ctx = build_context(data_dir, info["class_names"], work / "out", n_lambdas=n_lambdas, seed=seed,
                        early_stop=early_stop)
    base_rss, base_anon = _rss()
    record: dict[str, Any] = {"classes": n_classes, "features": d, "examples": n, "n_lambdas": n_lambdas,
                              "early_stop": early_stop, "planted_layer": planted,
                              "feature_matrix_mb": info["feature_bytes"] / 2 ** 20, "generate_s": gen_seconds,
                              "baseline_rss_mb": base_rss / 2 ** 20, "threads": torch.get_num_threads(),
                              "stages": {}}
    steps = [("dense", stages.dense_stage), ("sparse", planted_layer_stage if planted else stages.sparse_stage),
             ("associations", stages.interpret_stage), ("slices", stages.slices_stage),
             ("spurious", stages.spurious_stage), ("assertions", stages.assertions_stage),
             ("explain", stages.explain_stage), ("outputs", write_outputs)]
    total = 0.0
    for name, stage in steps:
        before_keys = {k: _json_bytes(v) for k, v in ctx.results.items()}
        before_files = _dir_bytes(ctx.out_dir)
        meter.reset()
        start = time.perf_counter()
        stage(ctx)
        seconds = time.perf_counter() - start
        total += seconds
        rss, anon = meter.peak()
        after_files = _dir_bytes(ctx.out_dir)
        written = {f: b for f, b in after_files.items() if before_files.get(f) != b}
        grown = {k: _json_bytes(v) for k, v in ctx.results.items() if k not in before_keys
                 or _json_bytes(v) != before_keys[k]} if name != "outputs" else {}
        record["stages"][name] = {
            "seconds": seconds, "peak_rss_mb": rss / 2 ** 20, "peak_anon_mb": anon / 2 ** 20,
            "added_mb": max(anon - base_anon, 0) / 2 ** 20,
            "results_kb": sum(grown.values()) / 1024, "files_kb": sum(written.values()) / 1024,
            "largest_results": sorted(grown.items(), key=lambda kv: -kv[1])[:3],
            "largest_files": sorted(written.items(), key=lambda kv: -kv[1])[:3]}
        print(f"    {name:<12} {seconds:8.1f} s  peak {rss / 2 ** 20:7.0f} MB", file=sys.stderr, flush=True)
    meter.stop()
    out = ctx.out_dir
    record["total_s"] = total
    record["report_mb"] = (out / "report.html").stat().st_size / 2 ** 20
    record["results_mb"] = (out / "results.json").stat().st_size / 2 ** 20
    table = out / "feature_attributes.parquet"  # the whole association table results.json points to
    record["feature_attributes_mb"] = table.stat().st_size / 2 ** 20 if table.is_file() else 0.0
    record["out_dir_mb"] = sum(_dir_bytes(out).values()) / 2 ** 20
    record["peak_added_mb"] = max(s["added_mb"] for s in record["stages"].values())
    layer = ctx.sparse_layer
    row = layer.path_.iloc[layer.selected_index_]
    record["sparse"] = {"val_accuracy": float(row["val_accuracy"]), "nnz": int(row["nnz"]),
                        "features_per_class": float(row["mean_features_per_class"]),
                        "path_lambdas": int(len(layer.path_)),
                        "test_accuracy": ctx.results["sparse_layer"]["sparse_accuracy"],
                        "dense_accuracy": ctx.results["sparse_layer"]["dense_accuracy"]}
    record["findings"] = [(f["class"], f["feature"], f["attribute"], f["value"])
                          for f in ctx.results.get("spurious_findings", [])][:3]
    record["top_slices"] = [s["predicates"] for s in ctx.results.get("slices", [])][:3]
    if reference != "none" and not planted:
        record["reference"] = run_reference(reference, data_dir, layer, budget=reference_budget)
    return record


# --------------------------------------------------------------------------- the reference
def _select(val_acc: np.ndarray, nnz: np.ndarray, tolerance: float = 0.05) -> int:
    eligible = np.flatnonzero(val_acc >= val_acc.max() - tolerance - 1e-12)
    return int(min(eligible, key=lambda i: (nnz[i], -val_acc[i], i)))


def reference_glmnet(data_dir: Path, n_lambdas: int, lambda_min_ratio: float, alpha: float) -> dict[str, Any]:
    """glmnet's multinomial path (python-glmnet's LogitNet, no cross-validation) on the training
    rows; the same selection rule on the validation rows."""
    import warnings

    from glmnet import LogitNet

    X = np.load(data_dir / "train_x.npy", mmap_mode="r")
    y = np.load(data_dir / "train_y.npy")
    Xv = np.asarray(np.load(data_dir / "val_x.npy", mmap_mode="r"), dtype=np.float64)
    yv = np.load(data_dir / "val_y.npy")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogitNet(alpha=alpha, n_lambda=n_lambdas, min_lambda_ratio=lambda_min_ratio, n_splits=0,
                         standardize=True).fit(np.asarray(X, dtype=np.float64), y)
    seconds = time.perf_counter() - start
    coef, icpt = model.coef_path_, model.intercept_path_  # (C, d, L), (C, L)
    if coef.ndim == 2:  # binary: one row
        coef, icpt = coef[None], icpt[None]
    val_acc, nnz = [], []
    for j in range(coef.shape[-1]):
        z = Xv @ coef[:, :, j].T + icpt[:, j]
        pred = model.classes_[z.argmax(1)] if z.shape[1] > 1 else model.classes_[(z[:, 0] > 0).astype(int)]
        val_acc.append(float(np.mean(pred == yv)))
        nnz.append(int((coef[:, :, j] != 0).sum()))
    i = _select(np.asarray(val_acc), np.asarray(nnz))
    return {"solver": "glmnet", "seconds": seconds, "lambdas": int(coef.shape[-1]), "val_accuracy": val_acc[i],
            "nnz": nnz[i]}


def reference_glm_saga(data_dir: Path, n_lambdas: int, lambda_min_ratio: float, alpha: float) -> dict[str, Any]:
    from sparsecheck.sparse import SparseDecisionLayer

    X = np.load(data_dir / "train_x.npy", mmap_mode="r")
    Xv = np.load(data_dir / "val_x.npy", mmap_mode="r")
    start = time.perf_counter()
    layer = SparseDecisionLayer(solver="glm_saga", n_lambdas=n_lambdas, lambda_min_ratio=lambda_min_ratio,
                                alpha=alpha, device="cpu").fit(X, np.load(data_dir / "train_y.npy"), Xv,
                                                                np.load(data_dir / "val_y.npy"))
    row = layer.path_.iloc[layer.selected_index_]
    return {"solver": "glm_saga", "seconds": time.perf_counter() - start, "lambdas": int(len(layer.path_)),
            "val_accuracy": float(row["val_accuracy"]), "nnz": int(row["nnz"])}


def run_reference(kind: str, data_dir: Path, layer: Any, *, budget: float) -> dict[str, Any]:
    """The reference solver in a child process with a time budget (it may not finish)."""
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r}); "
            f"import scaling; from pathlib import Path; "
            f"print(json.dumps(scaling.reference_{kind}(Path({str(data_dir)!r}), {int(layer.n_lambdas)}, "
            f"{float(layer.lambda_min_ratio)}, {float(layer.alpha)})))")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"solver": kind, "finished": False, "budget_s": budget}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"solver": kind, "finished": False, "error": tail, "seconds": time.perf_counter() - start}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "finished": True}


# --------------------------------------------------------------------------- sweep and table
def sweep(quick: bool) -> list[tuple[int, int, int]]:
    """One-at-a-time sweeps around a base point (classes, features, examples)."""
    if quick:
        base = (20, 256, 10_000)
        classes, features, examples = (10, 20, 50), (256, 512), (10_000, 20_000)
    else:
        base = (100, 512, 100_000)
        classes, features, examples = (10, 100, 1000), (256, 512, 1024, 2048), (10_000, 100_000, 1_000_000)
    points = [(c, base[1], base[2]) for c in classes]
    points += [(base[0], f, base[2]) for f in features]
    points += [(base[0], base[1], e) for e in examples]
    seen: list[tuple[int, int, int]] = []
    for p in points:
        if p not in seen:
            seen.append(p)
    return seen


def print_table(records: list[dict[str, Any]]) -> None:
    head = (f"{'classes':>7} {'feat':>5} {'examples':>9} | " + " ".join(f"{s[:8]:>8}" for s in STAGE_NAMES)
            + f" | {'total s':>8} {'peak MB':>8} {'+MB':>7} {'X MB':>7} {'report':>7} {'results':>7} | "
            f"{'sel acc':>7} {'nnz':>6} | {'reference':>22}")
    print(head)
    print("-" * len(head))
    for r in records:
        if "error" in r:
            print(f"{r['classes']:>7} {r['features']:>5} {r['examples']:>9} | failed: {r['error']}")
            continue
        st = r["stages"]
        ref = r.get("reference")
        if ref is None:
            ref_text = "-"
        elif ref.get("finished"):
            ref_text = f"{ref['solver']} {ref['seconds']:.1f}s {ref['val_accuracy']:.3f}/{ref['nnz']}"
        else:
            ref_text = f"{ref['solver']} " + (f">{ref['budget_s']:.0f}s" if "budget_s" in ref else "failed")
        peak = max(s["peak_rss_mb"] for s in st.values())
        print(f"{r['classes']:>7} {r['features']:>5} {r['examples']:>9} | "
              + " ".join(f"{st[s]['seconds']:>8.1f}" for s in STAGE_NAMES)
              + f" | {r['total_s']:>8.1f} {peak:>8.0f} {r['peak_added_mb']:>7.0f} {r['feature_matrix_mb']:>7.0f} "
              f"{r['report_mb']:>6.2f}M {r['results_mb']:>6.2f}M | {r['sparse']['val_accuracy']:>7.3f} "
              f"{r['sparse']['nnz']:>6} | {ref_text:>22}")


def print_details(records: list[dict[str, Any]]) -> None:
    for r in records:
        if "error" in r:
            continue
        print(f"\n{r['classes']} classes x {r['features']} features x {r['examples']} examples "
              f"(data generated in {r['generate_s']:.1f}s; baseline RSS {r['baseline_rss_mb']:.0f} MB; "
              f"{r['threads']} torch threads; path {r['sparse']['path_lambdas']} lambdas, test accuracy sparse "
              f"{r['sparse']['test_accuracy']:.3f} vs dense {r['sparse']['dense_accuracy']:.3f}; "
              f"{r['sparse']['features_per_class']:.1f} features/class; report.html {r['report_mb']:.2f} MB, "
              f"results.json {r['results_mb']:.2f} MB, feature_attributes.parquet "
              f"{r.get('feature_attributes_mb', 0.0):.2f} MB)")
        for name in STAGE_NAMES:
            s = r["stages"][name]
            largest = ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in s["largest_results"]) or "-"
            files = ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in s["largest_files"]) or "-"
            print(f"  {name:<12} {s['seconds']:8.1f} s  peak {s['peak_rss_mb']:6.0f} MB (+{s['added_mb']:.0f})  "
                  f"results +{s['results_kb']:.0f} KB [{largest}]  files +{s['files_kb']:.0f} KB [{files}]")
        print(f"  findings: {r['findings']}; top slices: {r['top_slices']}")


def check_targets(records: list[dict[str, Any]]) -> None:
    for r in records:
        if (r.get("classes"), r.get("features"), r.get("examples")) != (1000, 2048, 100_000) or "error" in r:
            continue
        checks = [(f"every stage after extraction < {TARGET_SECONDS / 60:.0f} min ({r['total_s'] / 60:.1f} min)",
                   r["total_s"] < TARGET_SECONDS),
                  (f"memory the stages add < {TARGET_MEMORY_FACTOR:g}x the feature matrix "
                   f"({r['peak_added_mb']:.0f} MB vs {r['feature_matrix_mb']:.0f} MB)",
                   r["peak_added_mb"] < TARGET_MEMORY_FACTOR * r["feature_matrix_mb"]),
                  (f"report.html < {TARGET_REPORT_MB:g} MB ({r['report_mb']:.2f} MB)", r["report_mb"] < TARGET_REPORT_MB),
                  (f"results.json < {TARGET_RESULTS_MB:g} MB ({r['results_mb']:.2f} MB)",
                   r["results_mb"] < TARGET_RESULTS_MB)]
        print()
        for text, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sweeps (a couple of minutes)")
    p.add_argument("--point", type=int, nargs=3, action="append", metavar=("CLASSES", "FEATURES", "EXAMPLES"),
                   help="run this point instead of a sweep (repeatable)")
    p.add_argument("--n-lambdas", type=int, default=None, help="path length (default 100; 20 with --quick)")
    p.add_argument("--reference", choices=("glmnet", "glm_saga", "none"), default="glmnet")
    p.add_argument("--reference-budget", type=float, default=None,
                   help="seconds the reference may take per point (default 600; 60 with --quick, "
                        "where it runs at the first point only)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-early-stop", action="store_true",
                   help="solve the whole path (sparse.early_stop: false), as before the path stopped early")
    p.add_argument("--planted-layer", action="store_true",
                   help="skip the path: time the other stages with the planted sparse layer (where the path takes hours)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="also write the records here")
    p.add_argument("--log", action="store_true", help="log the stages (and one line per lambda of the path) to stderr")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n_lambdas = args.n_lambdas or (20 if args.quick else 100)
    budget = args.reference_budget or (60.0 if args.quick else 600.0)
    if args.child:  # one point, in this process
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.log:
            import logging

            logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                                format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
            logging.getLogger("sparsecheck").setLevel(logging.INFO)
            logging.getLogger("sparsecheck.sparse.solvers.fista").setLevel(logging.DEBUG)
        (c, f, e), = args.point
        record = run_point(c, f, e, work=args.work, n_lambdas=n_lambdas, seed=args.seed, reference=args.reference,
                           reference_budget=budget, early_stop=not args.no_early_stop, planted=args.planted_layer)
        print(json.dumps(record))
        return 0

    points = [tuple(pt) for pt in args.point] if args.point else sweep(args.quick)
    reference = args.reference
    if reference == "glmnet":
        try:
            import glmnet  # noqa: F401
        except ImportError:
            print("python-glmnet is not installed (pip install python-glmnet); no reference", file=sys.stderr)
            reference = "none"
    print(f"scaling benchmark: {len(points)} points, {n_lambdas} lambdas, reference {reference} "
          f"(budget {budget:.0f}s), seed {args.seed}; each point in a fresh process", flush=True)
    records = []
    work = args.work or Path(tempfile.mkdtemp(prefix="sparsecheck-scaling-"))
    try:
        for c, f, e in points:
            print(f"  point {c} classes x {f} features x {e} examples ...", file=sys.stderr, flush=True)
            point_dir = work / f"c{c}-d{f}-n{e}"
            point_reference = "none" if args.quick and records else reference  # --quick: the first point only
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--point", str(c), str(f), str(e),
                   "--n-lambdas", str(n_lambdas), "--reference", point_reference, "--reference-budget", str(budget),
                   "--seed", str(args.seed), "--work", str(point_dir)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.no_early_stop:
                cmd += ["--no-early-stop"]
            if args.planted_layer:
                cmd += ["--planted-layer"]
            if args.log:
                cmd += ["--log"]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                records.append({"classes": c, "features": f, "examples": e, "error": f"exit {proc.returncode}"})
            else:
                records.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            shutil.rmtree(point_dir, ignore_errors=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(records)
    print_details(records)
    check_targets(records)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
