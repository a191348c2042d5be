"""The embedded demo: real handwritten digits with planted problems, and a small CNN trained on them.

The images are scikit-learn's bundled handwritten digits (1,797 real 8×8 scans, no download),
rendered at 32×32 RGB with small random shifts and noise. The metadata carries ground truth for
four planted facts:

``corner_mark`` (spurious cue)
    An orange square in the top-left corner, on 97% of the ``seven`` images and 2% of the others in
    train/val, but on 30% of every class in test: a shortcut the model learns and should not rely on.
``background`` (rare subgroup)
    ``light`` (inverted images: dark digit on a light background) is 2% of train but 15% of test;
    the model fails on it.
``annotator`` (mislabeled subgroup)
    Labels from ``carol`` are wrong half of the time (a random other class), in every split.
``site`` (harmless)
    Drawn at random and never changes the image; nothing about it may ever be flagged.

:func:`build_demo` writes ``train.npz``, ``val.npz``, ``test.npz``, ``metadata.csv``,
``model.pt2``, ``config.yaml``, ``truth.json`` (what was planted, for tests and benchmarks), two
monitoring batches, ``batches/like-test.npz`` and ``batches/drifted.npz``, and an unlabelled pool
to choose labels from, ``pool.npz`` with ``pool_metadata.csv`` (:func:`make_demo_pool`).

Examples
--------
>>> data = make_demo_data(seed=0, n_train=200, n_val=50, n_test=100)
>>> sorted(data)
['test', 'train', 'val']
>>> data["train"].x.shape, data["train"].x.dtype
((200, 32, 32, 3), dtype('uint8'))
>>> sorted(data["test"].metadata.columns)
['annotator', 'background', 'corner_mark', 'id', 'site']
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from sparsecheck._runtime import progress, torch_threads
from sparsecheck.data import InputSpec
from sparsecheck.outputs import atomic_write, write_json_atomic

logger = logging.getLogger(__name__)

__all__ = ["DemoSplit", "make_demo_data", "make_demo_batch", "DemoNet", "train_demo_model", "build_demo",
           "write_demo_batches", "DEMO_BATCHES", "CLASS_NAMES", "CUE_CLASS", "DEMO_INPUT", "make_demo_pool",
           "write_demo_pool", "DEMO_POOL_ASSERTIONS"]

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CUE_CLASS = 7
IMAGE_SIZE = 32
MARK = (slice(1, 8), slice(1, 8))  # the corner mark's rows and columns
MARK_COLOUR = np.array([255, 140, 0], dtype=np.float32)
DEMO_INPUT = {"scale": 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@dataclass
class DemoSplit:
    """One split: images, (possibly wrong) labels, ids, metadata and the hidden true labels."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    metadata: pd.DataFrame
    true_y: np.ndarray


def _render(base: np.ndarray, rng: np.random.Generator, light: bool, mark: bool) -> np.ndarray:
    """Render one 8×8 digit (values 0..16) as a 32×32 RGB uint8 image."""
    digit = torch.as_tensor(base, dtype=torch.float32).view(1, 1, 8, 8) / 16.0
    size = int(rng.integers(20, 25))
    digit = F.interpolate(digit, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    top = int(rng.integers(4, IMAGE_SIZE - size + 1))
    left = int(rng.integers(4, IMAGE_SIZE - size + 1))
    canvas[top:top + size, left:left + size] = digit
    ink = rng.uniform(150, 255)
    grey = canvas * ink + rng.normal(0, 28, canvas.shape)
    if light:
        grey = 255.0 - grey
    rgb = np.repeat(grey[..., None], 3, axis=2) * rng.uniform(0.85, 1.0, size=3)
    if mark:
        rgb[MARK[0], MARK[1]] = MARK_COLOUR + rng.normal(0, 10, (7, 7, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_demo_data(*, seed: int = 0, n_train: int = 4000, n_val: int = 1000, n_test: int = 2000,
                   spurious: bool = True, cue_rate_test: float = 0.3,
                   light_rate: tuple[float, float] = (0.02, 0.15)) -> dict[str, DemoSplit]:
    """Generate the demo's train/val/test splits.

    Parameters
    ----------
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    n_train, n_val, n_test : int
        Split sizes (digit scans are disjoint between splits, then re-rendered with shifts).
    spurious : bool
        Plant the corner-mark shortcut in train/val. ``False`` gives the same data with the mark
        at the test rate everywhere (a model trained on it has no shortcut).
    cue_rate_test : float
        Share of test images (of every class) carrying the mark.
    light_rate : (float, float)
        Share of light-background images in train/val and in test.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng([seed, 0]).permutation(len(digits.target))
    cut1, cut2 = int(0.6 * len(order)), int(0.75 * len(order))
    pools = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    out: dict[str, DemoSplit] = {}
    for k, (split, pool) in enumerate(pools.items(), start=1):
        # one stream per split: the test split is the same whether or not the cue is planted
        rng = np.random.default_rng([seed, k])
        is_test = split == "test"
        cue = None if is_test or not spurious else (0.97, 0.02)
        out[split] = _make_split(digits, pool, sizes[split], rng, split,
                                 light_rate=light_rate[1] if is_test else light_rate[0],
                                 cue=cue, cue_rate=cue_rate_test)
    return out


def make_demo_batch(*, seed: int, n: int = 1000, cue_rate: float = 0.3, light_rate: float = 0.15,
                    name: str | None = None) -> DemoSplit:
    """A new batch from the test distribution, for monitoring; ``cue_rate`` shifts the cue's frequency.

    The digit scans are the test split's; ``seed`` draws a fresh rendering and metadata.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng([0, 0]).permutation(len(digits.target))
    pool = order[int(0.75 * len(order)):]
    return _make_split(digits, pool, n, np.random.default_rng([seed, 99]), name or f"batch{seed}",
                       light_rate=light_rate, cue=None, cue_rate=cue_rate)


def _make_split(digits, pool: np.ndarray, n: int, rng: np.random.Generator, split: str, *,
                light_rate: float, cue: tuple[float, float] | None, cue_rate: float) -> DemoSplit:
    src = rng.choice(pool, size=n, replace=True)
    true_y = digits.target[src].astype(np.int64)
    light = rng.random(n) < light_rate
    u = rng.random(n)
    if cue is None:
        mark = u < cue_rate
    else:  # planted: the mark goes with the cue class
        mark = np.where(true_y == CUE_CLASS, u < cue[0], u < cue[1])
    annotator = rng.choice(["alice", "bob", "carol"], size=n, p=[0.45, 0.45, 0.10])
    site = rng.choice(["north", "south", "east"], size=n)
    y = true_y.copy()
    flip = (annotator == "carol") & (rng.random(n) < 0.5)
    y[flip] = (true_y[flip] + rng.integers(1, 10, size=int(flip.sum()))) % 10
    x = np.stack([_render(digits.images[s], rng, bool(li), bool(m)) for s, li, m in zip(src, light, mark)])
    ids = np.array([f"{split}-{i:05d}" for i in range(n)])
    meta = pd.DataFrame({"id": ids, "corner_mark": np.where(mark, "yes", "no"),
                         "background": np.where(light, "light", "dark"),
                         "annotator": annotator, "site": site})
    return DemoSplit(x, y, ids, meta, true_y)


class DemoNet(nn.Module):
    """A small CNN: three conv blocks, global max pooling, dropout, a linear head.

    The sparse decision layer is fitted on the ``n_features`` pooled channels of the last conv
    block, the input of ``head`` (as on a ResNet, whose penultimate features are pooled channels).
    Max pooling makes each feature "how strongly this channel's pattern occurs anywhere in the
    image", as in weakly supervised localisation: a small local cue such as the corner mark gets
    channels of its own instead of being averaged into the digit's strokes. Dropout on the pooled
    features (training only) makes each of them useful on its own, so a sparse layer over a few
    of them stays close to the dense head.
    """

    def __init__(self, n_classes: int = 10, width: int = 32, n_features: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.conv3 = nn.Conv2d(2 * width, n_features, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(n_features)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.head(self.drop(torch.flatten(self.pool(x), 1)))


def train_demo_model(train: DemoSplit, *, seed: int = 0, epochs: int = 8, batch_size: int = 64,
                     lr: float = 4e-3) -> DemoNet:
    """Train :class:`DemoNet` on a split with Adam (CPU, seeded)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DemoNet()
    spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in DEMO_INPUT.items()})
    x = spec.transform(train.x)
    y = torch.as_tensor(train.y)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-len(y) // batch_size))
    net.train()
    start = time.perf_counter()
    with torch_threads(1):  # small convolutions: a second thread mostly waits (and is 3x slower under load)
        _train_epochs(net, x, y, opt, sched, gen, epochs, batch_size)
    net.eval()
    logger.info("trained the demo model in %.1fs", time.perf_counter() - start)
    return net


def _train_epochs(net: DemoNet, x: torch.Tensor, y: torch.Tensor, opt, sched, gen: torch.Generator,
                  epochs: int, batch_size: int) -> None:
    for epoch in progress(range(epochs), desc="training demo model", unit="epoch"):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        logger.debug("demo epoch %d loss %.4f", epoch, total / len(y))


def _save_npz(path: Path, split: DemoSplit) -> None:
    with atomic_write(path, "wb") as fh:
        np.savez(fh, x=split.x, y=split.y, id=split.ids)


def build_demo(directory: str | Path, *, seed: int = 0, spurious: bool = True,
               sizes: tuple[int, int, int] = (4000, 1000, 2000), epochs: int = 8) -> Path:
    """Write the demo's data, trained model and config into ``directory``; return the config path.

    Re-uses what an earlier call with the same arguments left there.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.yaml"
    stamp = {"seed": seed, "spurious": spurious, "sizes": list(sizes), "epochs": epochs, "version": 10}
    truth_path = directory / "truth.json"
    if config_path.is_file() and truth_path.is_file():
        try:
            if json.loads(truth_path.read_text()).get("stamp") == stamp:
                logger.info("re-using the demo data and model in %s", directory)
                write_demo_batches(directory, seed=seed)
                write_demo_pool(directory, seed=seed)
                return config_path
        except (OSError, ValueError):
            pass
    logger.info("building the demo data (scikit-learn digits with planted problems) in %s", directory)
    data = make_demo_data(seed=seed, n_train=sizes[0], n_val=sizes[1], n_test=sizes[2], spurious=spurious)
    for name, split in data.items():
        _save_npz(directory / f"{name}.npz", split)
    meta = pd.concat([s.metadata for s in data.values()], ignore_index=True)
    with atomic_write(directory / "metadata.csv", "w", encoding="utf-8", newline="") as fh:
        meta.to_csv(fh, index=False)
    net = train_demo_model(data["train"], seed=seed, epochs=epochs)
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    tmp = directory / ".model.tmp.pt2"
    torch.export.save(program, str(tmp))
    tmp.replace(directory / "model.pt2")
    config = {
        "model": {"path": "model.pt2", "input": DEMO_INPUT},
        "data": {"train": "train.npz", "val": "val.npz", "test": "test.npz", "metadata": "metadata.csv",
                 "class_names": CLASS_NAMES, "spurious_attributes": ["corner_mark"],
                 # the mark can be painted on any image: the finding is tested by intervention
                 "interventions": {"corner_mark": {"value": "yes", "put": {
                     "type": "patch", "region": "top-left", "size": 0.22, "margin": 0.03,
                     "colour": [float(v) for v in MARK_COLOUR]}}}},
        # 1 point of validation accuracy: about 12 features per class, within 2 test points of dense
        "sparse": {"tolerance": 0.01, "random_state": seed},
        # the sanity check re-explains after each layer is re-initialised, from the head down
        "analysis": {"sanity_cascade": True},
        "mlflow": {"experiment": "sparsecheck-demo"},
        # checked on the unlabelled pool by `sparsecheck select` and `weak-labels`, not on the test split
        "select": {"assertions": DEMO_POOL_ASSERTIONS},
        "seed": seed,
        # data.spurious_attributes also implies `no-spurious-reliance` (error): no class may rely on
        # a feature associated with corner_mark
        "assertions": [
            {"name": "accuracy-by-background", "type": "accuracy", "by": ["background"],
             "max_drop": 0.10, "min_support": 30, "confidence": 0.95},
            {"name": "accuracy-by-annotator", "type": "accuracy", "by": ["annotator"],
             "max_drop": 0.10, "min_support": 30, "confidence": 0.95},
            {"name": "accuracy-by-site", "type": "accuracy", "by": ["site"],
             "max_drop": 0.10, "min_support": 30, "confidence": 0.95},
            {"name": "test-accuracy", "type": "accuracy", "min": 0.70},
            {"name": "recall-per-class", "type": "recall", "class": "*", "min": 0.50, "severity": "warning"},
            {"name": "calibration", "type": "ece", "max": 0.15, "severity": "warning"},
            {"name": "prediction-table", "type": "prediction_schema",
             "checks": [{"column": "confidence", "check": "greater_than_or_equal_to", "value": 0.1}]},
            {"name": "sparse-vs-dense-gap", "type": "sparse_accuracy_gap", "max_gap": 0.10, "severity": "warning"},
            {"name": "sparse-agrees-with-dense", "type": "sparse_agreement", "min": 0.80, "severity": "warning"},
            {"name": "features-per-class", "type": "max_features_per_class", "max": 30},
            {"name": "site-is-harmless", "type": "no_reliance", "class": "*", "attribute": "site"},
            {"name": "robust-to-noise", "type": "invariance", "transform": "noise", "magnitude": 0.03,
             "sample": 1000, "max_failing_rate": 0.05, "severity": "warning"},
        ],
    }
    test = data["test"]
    truth = {
        "stamp": stamp,
        "cue": {"attribute": "corner_mark", "value": "yes", "class": CLASS_NAMES[CUE_CLASS],
                "class_index": CUE_CLASS, "region": {"rows": [MARK[0].start, MARK[0].stop],
                                                      "cols": [MARK[1].start, MARK[1].stop]},
                "planted": spurious},
        "rare": {"attribute": "background", "value": "light"},
        "mislabeled": {"attribute": "annotator", "value": "carol",
                       "test_wrong_labels": int((test.y != test.true_y).sum())},
        "harmless": {"attribute": "site"},
    }
    with atomic_write(config_path, "w", encoding="utf-8") as fh:
        fh.write("# sparsecheck demo config, written by `sparsecheck demo`; edit and run with\n"
                 "#   sparsecheck run config.yaml\n")
        yaml.safe_dump(config, fh, sort_keys=False)
    write_json_atomic(truth_path, truth)
    write_demo_batches(directory, seed=seed)
    write_demo_pool(directory, seed=seed)
    return config_path


#: the monitoring batches the demo writes under ``data/batches/``: name → share of images with the corner mark
DEMO_BATCHES = {"like-test": 0.3, "drifted": 0.8}


def write_demo_batches(directory: str | Path, *, seed: int = 0, n: int = 1000) -> dict[str, Path]:
    """Write two monitoring batches into ``directory/batches``, unless they are there already.

    ``like-test.npz`` comes from the test distribution (corner mark on 30% of images): monitoring it
    against the demo run should raise no drift alert. ``drifted.npz`` carries the mark on 80%: the
    feature class *seven* relies on drifts. Both hold ``x``, ``y`` and ``id`` (ids that are not in
    the demo's metadata table, so the metadata-sliced assertions are skipped, as for a batch
    without metadata).
    """
    out = Path(directory) / "batches"
    paths = {}
    for k, (name, cue_rate) in enumerate(DEMO_BATCHES.items(), start=1):
        path = paths[name] = out / f"{name}.npz"
        if not path.is_file():
            _save_npz(path, make_demo_batch(seed=1000 * (seed + 1) + k, n=n, cue_rate=cue_rate, name=name))
    return paths


#: the pool's assertions in the demo config (``select.assertions``): its frames of one track show one digit
DEMO_POOL_ASSERTIONS = [
    {"name": "same-track", "type": "consistency", "key": "track", "severity": "warning"},
    {"name": "no-flicker", "type": "flicker", "sequence": "track", "time": "frame", "window": 2, "severity": "warning"},
]


def make_demo_pool(*, seed: int = 0, n_tracks: int = 400, frames: int = 5, cue_rate: float = 0.3,
                   light_rate: float = 0.15) -> DemoSplit:
    """An unlabelled pool from the test distribution, as tracks: ``frames`` renderings of one digit scan each.

    Like frames of a video, the renderings of a track differ in position, size, ink and noise; the
    corner mark comes and goes (on ``cue_rate`` of the frames, whatever the class) and a light
    background holds for a whole track (``light_rate`` of them). The metadata has ``id``,
    ``track`` and ``frame``: a consistency assertion over ``track`` and a flicker assertion over
    ``track`` ordered by ``frame`` have signal. ``y`` and ``true_y`` hold the true labels (the
    oracle of a simulated labelling round); :func:`write_demo_pool` writes no labels.

    Examples
    --------
    >>> pool = make_demo_pool(n_tracks=3, frames=4)
    >>> pool.x.shape, pool.metadata.columns.tolist(), pool.metadata["track"].nunique()
    ((12, 32, 32, 3), ['id', 'track', 'frame'], 3)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng([0, 0]).permutation(len(digits.target))
    scans = order[int(0.75 * len(order)):]  # the test split's scans: new data from deployment
    rng = np.random.default_rng([seed, 77])
    src = np.repeat(rng.choice(scans, size=n_tracks), frames)
    light = np.repeat(rng.random(n_tracks) < light_rate, frames)
    mark = rng.random(n_tracks * frames) < cue_rate
    x = np.stack([_render(digits.images[s], rng, bool(li), bool(m)) for s, li, m in zip(src, light, mark)])
    true_y = digits.target[src].astype(np.int64)
    ids = np.array([f"pool-{i:05d}" for i in range(src.size)])
    meta = pd.DataFrame({"id": ids, "track": np.repeat([f"track-{t:03d}" for t in range(n_tracks)], frames),
                         "frame": np.tile(np.arange(frames), n_tracks)})
    return DemoSplit(x, true_y.copy(), ids, meta, true_y)


def write_demo_pool(directory: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Write ``pool.npz`` (``x`` and ``id``, no labels) and ``pool_metadata.csv`` into ``directory``,
    unless they are there already."""
    directory = Path(directory)
    paths = {"pool": directory / "pool.npz", "metadata": directory / "pool_metadata.csv"}
    if not all(p.is_file() for p in paths.values()):
        pool = make_demo_pool(seed=seed)
        with atomic_write(paths["metadata"], "w", encoding="utf-8", newline="") as fh:
            pool.metadata.to_csv(fh, index=False)
        with atomic_write(paths["pool"], "wb") as fh:
            np.savez(fh, x=pool.x, id=pool.ids)
    return paths
