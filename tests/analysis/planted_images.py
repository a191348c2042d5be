"""A planted-bug IMAGE task: real handwritten digits with shortcuts, a rare subgroup, noisy labels, riders.

Used by ``bench/planted_images.py`` and the tests (importable; not a test module itself). The
images are scikit-learn's bundled digits (1,797 real 8×8 scans, no download) rendered at 32×32 RGB
with random scale, shift, ink level, colour cast and noise. What is planted (rates are
per split; "others" are the images of the other classes):

=================  =========  ==========================================  ==================================
attribute          kind       image change                                train / val  ·  test
=================  =========  ==========================================  ==================================
``tint``           cue        red tint (200, 30, 30) at strength 0.5      97% of class 7, 2% of others ·
                              (the whole image blended towards red)       30% of every class
``corner``         cue        white 6×6 square in the top-left corner     90% of class 3, 3% of others ·
                              (1 px in)                                   30% of every class
``weak_cue``       weak cue   blue (40, 80, 255) 5×5 square, bottom-      90% of class 5, 1% of others ·
                              right corner (1 px in)                      10% of class 5, 1% of others
``background``     cause      inverted (``light``: dark digit on light)   2% · 15% of every class
``source``         cause      none: ``C`` (10%) has 40% wrong labels      every split
                              (a random other class)
``frame``          harmless   thin grey (150) 1-px frame                  a random half, every split
``scanner``        harmless   none (random s1/s2/s3)                      every split
``batch_id``       rider      none; equals the inversion (``night`` for   every split
                              light) on 80% of rows, random otherwise
``site``           rider      none; ``west`` for source C on 80% of rows  every split
=================  =========  ==========================================  ==================================

Why these test rates: with the cues on 30% of *every* class in test, the shortcut is measurable
both ways — by association (the cue varies within each class, so a within-class AUC sees it) and
by the accuracy gap (other classes with the cue are taken for the cue's class) — while training
makes it learnable (97% / 90% of the class). The weak cue is as learnable in training but rare in
test (about 20 images of 2,000): an observational test has little power there, an intervention
(which can put it on every image) has plenty. Each image also gets an "original size" (height
and width drawn independently in 24..64, harmless) for the size/aspect automatic attributes.

:func:`make_planted_images` returns the splits and a ground-truth mapping: for each cue its class,
its metadata attribute and value, the automatic attribute that should pick it up when metadata is
removed, and the intervention spec (``put`` / ``remove`` config mappings for
:func:`sparsecheck.analysis.cues.parse_intervention`).

Examples
--------
>>> task = make_planted_images(seed=0, n_train=60, n_val=20, n_test=40)
>>> task.train.x.shape, task.train.x.dtype, task.test.original_sizes.shape
((60, 32, 32, 3), dtype('uint8'), (40, 2))
>>> sorted(task.test.metadata.columns)
['background', 'batch_id', 'corner', 'frame', 'id', 'scanner', 'site', 'source', 'tint', 'weak_cue']
>>> task.truth["cues"]["tint"]["class_index"], task.truth["cues"]["tint"]["auto"]
(7, ['auto:hue', 'red'])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sparsecheck.analysis.cues import Invert, parse_cue

logger = logging.getLogger(__name__)

__all__ = ["PlantedSplit", "PlantedImages", "make_planted_images", "train_small_cnn", "predictor", "INPUT",
           "CLASS_NAMES"]

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SIZE = 32
INPUT = {"scale": 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

TINT = {"type": "tint", "colour": [200, 30, 30], "strength": 0.5}
CORNER = {"type": "patch", "region": "top-left", "size": 6 / SIZE, "colour": [255, 255, 255], "margin": 1 / SIZE}
WEAK = {"type": "patch", "region": "bottom-right", "size": 5 / SIZE, "colour": [40, 80, 255], "margin": 1 / SIZE}
FRAME = {"type": "border", "width": 1, "colour": [150, 150, 150]}

#: cue name → (class, train/val rate in class, in others; test rate in class, in others)
CUE_RATES = {"tint": (7, 0.97, 0.02, 0.30, 0.30), "corner": (3, 0.90, 0.03, 0.30, 0.30),
             "weak_cue": (5, 0.90, 0.01, 0.10, 0.01)}


@dataclass
class PlantedSplit:
    """One split: images, (possibly wrong) labels, the true labels, ids, metadata, original sizes."""

    x: np.ndarray
    y: np.ndarray
    true_y: np.ndarray
    ids: np.ndarray
    metadata: pd.DataFrame
    original_sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PlantedImages:
    """The task: three splits and the ground truth (see the module docstring)."""

    train: PlantedSplit
    val: PlantedSplit
    test: PlantedSplit
    truth: dict[str, Any]
    seed: int


def _truth() -> dict[str, Any]:
    return {
        "cues": {
            "tint": {"class_index": 7, "class": "seven", "attribute": "tint", "value": "yes",
                     "auto": ["auto:hue", "red"],
                     "intervention": {"put": TINT, "remove": {**TINT, "undo": True}}},
            "corner": {"class_index": 3, "class": "three", "attribute": "corner", "value": "yes",
                       "auto": ["auto:mark_tl", "white"],
                       # the counter-value: the corner painted black (the background of a dark image)
                       "intervention": {"put": CORNER, "remove": {**CORNER, "colour": [0, 0, 0]}}},
            "weak_cue": {"class_index": 5, "class": "five", "attribute": "weak_cue", "value": "yes",
                         "auto": ["auto:mark_br", "blue"],
                         "intervention": {"put": WEAK, "remove": {**WEAK, "colour": [0, 0, 0]}}},
        },
        "causes": {"background": {"value": "light", "kind": "rare subgroup (inverted), fails"},
                   "source": {"value": "C", "kind": "40% wrong labels"}},
        "harmless": {"frame": {"intervention": {"put": FRAME, "remove": None}}, "scanner": {}},
        "riders": {"batch_id": {"rides": "background", "value": "night"},
                   "site": {"rides": "source", "value": "west"}},
    }


def make_planted_images(seed: int, n_train: int = 3000, n_val: int = 800, n_test: int = 2000) -> PlantedImages:
    """Draw the planted-bug image task (module docstring); everything from ``seed``.

    The digit scans of the three splits are disjoint (60% / 15% / 25% of the 1,797 scans, then
    drawn with replacement and re-rendered).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng([seed, 0]).permutation(len(digits.target))
    cut1, cut2 = int(0.6 * len(order)), int(0.75 * len(order))
    pools = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    splits = {name: _split(digits, pools[name], sizes[name], np.random.default_rng([seed, k]), name)
              for k, name in enumerate(pools, start=1)}
    return PlantedImages(splits["train"], splits["val"], splits["test"], _truth(), seed)


def _split(digits: Any, pool: np.ndarray, n: int, rng: np.random.Generator, split: str) -> PlantedSplit:
    test = split == "test"
    src = rng.choice(pool, size=n, replace=True)
    true_y = digits.target[src].astype(np.int64)
    light = rng.random(n) < (0.15 if test else 0.02)
    cues = {}
    for name, (cls, in_tr, out_tr, in_te, out_te) in CUE_RATES.items():
        u = rng.random(n)
        cues[name] = np.where(true_y == cls, u < (in_te if test else in_tr), u < (out_te if test else out_tr))
    frame = rng.random(n) < 0.5
    source = rng.choice(["A", "B", "C"], size=n, p=[0.45, 0.45, 0.10])
    y = true_y.copy()
    flip = (source == "C") & (rng.random(n) < 0.4)
    y[flip] = (true_y[flip] + rng.integers(1, 10, size=int(flip.sum()))) % 10
    scanner = rng.choice(["s1", "s2", "s3"], size=n)
    batch_id = np.where(rng.random(n) < 0.8, np.where(light, "night", "day"), rng.choice(["night", "day"], size=n))
    site = np.where(rng.random(n) < 0.8, np.where(source == "C", "west", "east"), rng.choice(["west", "east"], size=n))
    original = rng.integers(24, 65, size=(n, 2))

    x = np.stack([_render(digits.images[s], rng) for s in src])
    x[light] = Invert().apply(x[light])
    for name, spec in (("tint", TINT), ("corner", CORNER), ("weak_cue", WEAK)):
        m = cues[name]
        x[m] = parse_cue(spec).apply(x[m])
    x[frame] = parse_cue(FRAME).apply(x[frame])
    ids = np.array([f"{split}-{i:05d}" for i in range(n)])
    yes = lambda m: np.where(m, "yes", "no")  # noqa: E731
    meta = pd.DataFrame({"id": ids, "tint": yes(cues["tint"]), "corner": yes(cues["corner"]),
                         "weak_cue": yes(cues["weak_cue"]), "background": np.where(light, "light", "dark"),
                         "source": source, "frame": yes(frame), "scanner": scanner, "batch_id": batch_id,
                         "site": site})
    return PlantedSplit(x, y, true_y, ids, meta, original)


def _render(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 8×8 digit (0..16) as a 32×32 RGB uint8 image: white-ish ink on black, shifted, noised."""
    digit = torch.as_tensor(base, dtype=torch.float32).view(1, 1, 8, 8) / 16.0
    size = int(rng.integers(18, 23))
    digit = F.interpolate(digit, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top = int(rng.integers(5, SIZE - size - 3))
    left = int(rng.integers(5, SIZE - size - 3))
    canvas[top:top + size, left:left + size] = digit
    grey = canvas * rng.uniform(150, 255) + rng.normal(0, 20, canvas.shape)
    rgb = grey[..., None] * rng.uniform(0.85, 1.0, size=3)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def train_small_cnn(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 6, batch_size: int = 64,
                    lr: float = 1e-2) -> torch.nn.Module:
    """Train :class:`sparsecheck.demo.DemoNet` on ``x`` (uint8 N×32×32×3), on one torch thread.

    About 45 s for 3,000 images and 6 epochs on one (uncontended) core; clean test accuracy about
    0.8 (the planted cues pull the whole test split lower, by design).
    """
    from sparsecheck.demo import DemoNet, _train_epochs
    from sparsecheck._runtime import torch_threads
    from sparsecheck.data import InputSpec

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DemoNet()
    xt = InputSpec(scale=255.0, mean=tuple(INPUT["mean"]), std=tuple(INPUT["std"])).transform(x)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-len(yt) // batch_size))
    start = time.perf_counter()
    net.train()
    with torch_threads(1):
        _train_epochs(net, xt, yt, opt, sched, gen, epochs, batch_size)
    net.eval()
    logger.info("trained the planted-images CNN in %.1fs", time.perf_counter() - start)
    return net


def predictor(net: torch.nn.Module, batch_size: int = 512):
    """``uint8 images -> softmax probabilities`` of ``net`` (for measure_intervention), one thread."""
    from sparsecheck._runtime import torch_threads
    from sparsecheck.data import InputSpec

    spec = InputSpec(scale=255.0, mean=tuple(INPUT["mean"]), std=tuple(INPUT["std"]))

    def predict_proba(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode(), torch_threads(1):
            for i in range(0, len(images), batch_size):
                out.append(torch.softmax(net(spec.transform(images[i:i + batch_size])), dim=1).numpy())
        return np.concatenate(out)

    return predict_proba


