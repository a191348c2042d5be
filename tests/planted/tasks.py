"""Planted shortcut tasks over two image sources, with cues drawn from families (:mod:`.families`).

Sources:

* ``digits`` — scikit-learn's 1,797 real 8×8 digit scans, rendered at 32×32 RGB (random scale,
  shift, ink level, colour cast and noise, as ``tests/analysis/planted_images.py`` does); 10
  classes. The object is the ink.
* ``photos`` — the 398 real photographs of ants and bees in ``../shared/data/photos/ants-bees/``
  (see that folder's README), centre-cropped and resized to 64×64 with random crops and flips;
  the ``train`` folder gives train and validation photos, the ``val`` folder the test photos; 2
  classes. The object is taken to be the central ellipse (the photos are centred on the insect).

What a task plants (rates per split; "in class" = the cue's class, "others" = other classes):

============  ==========  ====================================================  ========================
column        kind        image change                                          train / val · test
============  ==========  ====================================================  ========================
``cue_<k>``   cue         a draw of a family (:func:`~.families.draw_cue`)      90% in class, 2% others
                                                                                · in class 10–90%,
                                                                                others 2–15% (drawn)
``lighting``  cause       ``dark``: darker and flatter (gamma 1.8, × 0.45)      3% · 15% of every class
``source``    cause       none: ``web`` (10%) has 40% wrong labels              every split
``stamp``     harmless    a draw of a local family, unrelated to the class      50% of every class
``scanner``   harmless    none (random s1/s2/s3)                                every split
============  ==========  ====================================================  ========================

digits tasks carry four cues (two tuning families, two held-out, on four different classes);
photos tasks two (one of each split, one per class). The ground truth (:attr:`PlantedTask.truth`)
names each cue's class, family, family split, area and draw.

Examples
--------
>>> task = make_task("digits", seed=0, sizes=(60, 20, 40))
>>> task.train.x.shape, len(task.truth["cues"]), sorted(task.test.metadata.columns)[:3]
((60, 32, 32, 3), 4, ['cue_0', 'cue_1', 'cue_2'])
>>> {c["split"] for c in task.truth["cues"]} == {"tuning", "held-out"}
True
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from tests.planted.families import (FRESH_FAMILIES, HELDOUT_FAMILIES, LOCAL_FAMILIES, TUNING_FAMILIES, draw_cue,
                                    family_split)

logger = logging.getLogger(__name__)

__all__ = ["PlantedSplit", "PlantedTask", "make_task", "photos_root", "train_model", "SmallResNet", "SOURCES",
           "INPUT", "cue_reliance", "LEARNED_GAIN", "LEARNED_P"]

SOURCES = ("digits", "photos")
#: how images become the models' input (the same for both sources and both architectures)
INPUT = {"scale": 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_RATE = (0.90, 0.02)
#: a cue counts as *learned* by the model (the ground truth detection is scored against) when painting
#: it on test images of other classes moves at least this share of them to the cue's class, net of
#: those it moves away ...
LEARNED_GAIN = 0.02
#: ... and a one-sided sign test of those moves gives p below this
LEARNED_P = 0.001


def photos_root() -> Path | None:
    """``../shared/data/photos/ants-bees`` next to the repository (or ``$SPARSECHECK_SHARED_DATA``), if there."""
    base = os.environ.get("SPARSECHECK_SHARED_DATA")
    root = Path(base) if base else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    path = root / "photos" / "ants-bees"
    return path if (path / "train").is_dir() and (path / "val").is_dir() else None


@dataclass
class PlantedSplit:
    x: np.ndarray
    y: np.ndarray
    true_y: np.ndarray
    ids: np.ndarray
    metadata: pd.DataFrame
    #: each image's object (N×H×W bool): where a cue that recolours the object or the background acts
    fg: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PlantedTask:
    source: str
    seed: int
    train: PlantedSplit
    val: PlantedSplit
    test: PlantedSplit
    class_names: list[str]
    truth: dict[str, Any]
    #: the cues as drawn (one :class:`~.families.PlantedCue` per ``truth["cues"]`` entry), to paint them anew
    cue_draws: list[Any] = field(default_factory=list)


# ----------------------------------------------------------------------------- clean images


def _digits(seed: int, sizes: tuple[int, int, int]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    from tests.analysis.planted_images import _render

    digits = load_digits()
    order = np.random.default_rng([seed, 0]).permutation(len(digits.target))
    cut1, cut2 = int(0.6 * len(order)), int(0.75 * len(order))
    pools = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    out = {}
    for k, (split, n) in enumerate(zip(pools, sizes), start=1):
        rng = np.random.default_rng([seed, 100 + k])
        src = rng.choice(pools[split], size=n, replace=True)
        x = np.stack([_render(digits.images[s], rng) for s in src])
        lum = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        out[split] = (x, digits.target[src].astype(np.int64), lum > 70)
    return out


_PHOTO_CACHE: dict[tuple[str, int], list[tuple[np.ndarray, int]]] = {}


def _load_photos(folder: Path, side: int) -> list[tuple[np.ndarray, int]]:
    """Every photo of ``folder/{ants,bees}`` as RGB at ``side * 1.25`` on its shorter side (centre square)."""
    from PIL import Image, ImageOps

    key = (str(folder), side)
    if key not in _PHOTO_CACHE:
        big = int(round(side * 1.25))
        items = []
        for label, cls in enumerate(("ants", "bees")):
            for path in sorted((folder / cls).iterdir()):
                with Image.open(path) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    w, h = im.size
                    s = min(w, h)
                    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                    items.append((np.asarray(im.resize((big, big), Image.BILINEAR)), label))
        _PHOTO_CACHE[key] = items
    return _PHOTO_CACHE[key]


def _photos(seed: int, side: int = 64, copies: tuple[int, int, int] = (8, 4, 4)
            ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    root = photos_root()
    if root is None:
        raise FileNotFoundError("the ants-bees photos are not at ../shared/data/photos/ants-bees "
                                "(set SPARSECHECK_SHARED_DATA to the folder holding photos/)")
    train_items = _load_photos(root / "train", side)
    test_items = _load_photos(root / "val", side)
    order = np.random.default_rng([seed, 0]).permutation(len(train_items))
    n_val = len(order) // 5
    pools = {"train": [train_items[i] for i in order[n_val:]], "val": [train_items[i] for i in order[:n_val]],
             "test": test_items}
    yy, xx = np.mgrid[:side, :side]
    out = {}
    for k, (split, n_copies) in enumerate(zip(pools, copies), start=1):
        rng = np.random.default_rng([seed, 200 + k])
        xs, ys, fgs = [], [], []
        for img, label in pools[split]:
            big = img.shape[0]
            for _ in range(n_copies):
                s = int(rng.integers(int(0.8 * big), big + 1))
                top, left = int(rng.integers(0, big - s + 1)), int(rng.integers(0, big - s + 1))
                from PIL import Image

                crop = Image.fromarray(img[top:top + s, left:left + s]).resize((side, side), Image.BILINEAR)
                a = np.asarray(crop)
                if rng.random() < 0.5:
                    a = a[:, ::-1]
                xs.append(a)
                ys.append(label)
                cy, cx = side / 2 + rng.normal(0, side / 16, 2)
                ry, rx = side * rng.uniform(0.28, 0.38, 2)
                fgs.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
        perm = rng.permutation(len(ys))
        out[split] = (np.stack(xs)[perm], np.asarray(ys, np.int64)[perm], np.stack(fgs)[perm])
    return out


# ----------------------------------------------------------------------------- the task


#: the harmless stamp's families (those of the first benchmark, so its tasks are drawn as they were)
_STAMPS = ["patch", "sticker", "watermark", "band", "frame"]


def _darken(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(255.0 * (x / 255.0) ** 1.8 * 0.45), 0, 255).astype(np.uint8)


def make_task(source: str, seed: int, sizes: tuple[int, int, int] = (3000, 800, 1000),
              families: list[str] | None = None, split: str = "mixed") -> PlantedTask:
    """Draw a planted task (module docstring) from ``source`` with ``seed``.

    ``sizes`` (train, val, test) applies to ``digits``; ``photos`` has its own counts. ``families``
    overrides the drawn families (one per cue); ``split`` draws them from both family splits
    (``mixed``, the benchmark's tasks) or from one (``tuning``: what development may look at;
    ``held-out``; ``fresh``: the families added after the first held-out figures, never tuned on).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {SOURCES}")
    rng = np.random.default_rng([seed, 7])
    clean = _digits(seed, sizes) if source == "digits" else _photos(seed)
    names = DIGIT_NAMES if source == "digits" else ["ants", "bees"]
    n_classes = len(names)
    h, w = clean["train"][0].shape[1:3]
    if families is None:
        per = 2 if source == "digits" else 1
        pools = {"mixed": (TUNING_FAMILIES, HELDOUT_FAMILIES), "tuning": (TUNING_FAMILIES, TUNING_FAMILIES),
                 "held-out": (HELDOUT_FAMILIES, HELDOUT_FAMILIES), "fresh": (FRESH_FAMILIES, FRESH_FAMILIES)}[split]
        if pools[0] is pools[1]:
            families = list(rng.choice(pools[0], 2 * per, replace=False))
        else:
            families = [*rng.choice(pools[0], per, replace=False), *rng.choice(pools[1], per, replace=False)]
    classes = rng.choice(n_classes, size=len(families), replace=False)
    cues = []
    for k, (fam, cls) in enumerate(zip(families, classes)):
        cue = draw_cue(str(fam), rng, (h, w))
        cues.append({"name": f"cue_{k}", "family": str(fam),
                     "split": family_split(str(fam)), "class_index": int(cls),
                     "class": names[int(cls)], "area": round(cue.area, 4), "draw": cue.to_dict(),
                     "local": fam in LOCAL_FAMILIES, "test_rate_in": round(float(rng.uniform(0.1, 0.9)), 2),
                     "test_rate_out": round(float(rng.uniform(0.02, 0.15)), 2), "_cue": cue})
    stamp = draw_cue(str(rng.choice(_STAMPS)), rng, (h, w))
    splits = {}
    for k, split in enumerate(("train", "val", "test")):
        x, true_y, fg = clean[split]
        r = np.random.default_rng([seed, 300 + k])
        n = len(true_y)
        x = x.copy()
        test = split == "test"
        dark = r.random(n) < (0.15 if test else 0.03)
        x[dark] = _darken(x[dark])
        meta: dict[str, Any] = {"id": np.array([f"{split}-{i:05d}" for i in range(n)])}
        for c in cues:
            rate_in, rate_out = (c["test_rate_in"], c["test_rate_out"]) if test else TRAIN_RATE
            has = np.where(true_y == c["class_index"], r.random(n) < rate_in, r.random(n) < rate_out)
            x[has] = c["_cue"].apply(x[has], fg[has])
            meta[c["name"]] = np.where(has, "yes", "no")
        stamped = r.random(n) < 0.5
        x[stamped] = stamp.apply(x[stamped], fg[stamped])
        src = r.choice(["lab", "field", "web"], size=n, p=[0.45, 0.45, 0.10])
        y = true_y.copy()
        wrong = (src == "web") & (r.random(n) < 0.4)
        y[wrong] = (true_y[wrong] + r.integers(1, n_classes, size=int(wrong.sum()))) % n_classes
        meta.update(lighting=np.where(dark, "dark", "normal"), source=src, stamp=np.where(stamped, "yes", "no"),
                    scanner=r.choice(["s1", "s2", "s3"], size=n))
        splits[split] = PlantedSplit(x, y, true_y, meta["id"], pd.DataFrame(meta), fg)
    truth = {"cues": [{k: v for k, v in c.items() if k != "_cue"} for c in cues],
             "causes": {"lighting": "dark", "source": "web"},
             "harmless": {"stamp": stamp.to_dict(), "scanner": None}}
    return PlantedTask(source, seed, splits["train"], splits["val"], splits["test"], list(names), truth,
                       [c["_cue"] for c in cues])


# ----------------------------------------------------------------------------- models


class SmallResNet(nn.Module):
    """A small residual CNN with global *average* pooling (as ResNets have), for the photos.

    The digits use :class:`sparsecheck.demo.DemoNet` (global max pooling), so the two sources are
    also two architectures.
    """

    def __init__(self, n_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = nn.ModuleList()
        chans = [width, 2 * width, 4 * width]
        for i, c in enumerate(chans):
            cin = chans[i - 1] if i else width
            self.blocks.append(_Block(cin, c, stride=1 if i == 0 else 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.skip(x))


def train_model(task: PlantedTask, epochs: int | None = None) -> nn.Module:
    """Train the source's network on the task's train split (seeded, one torch thread)."""
    from sparsecheck._runtime import torch_threads
    from sparsecheck.data import InputSpec

    if task.source == "digits":
        from tests.analysis.planted_images import INPUT as DIGITS_INPUT
        from tests.analysis.planted_images import train_small_cnn

        assert DIGITS_INPUT == INPUT, "the digits CNN is trained with tests.analysis.planted_images.INPUT"
        return train_small_cnn(task.train.x, task.train.y, task.seed, epochs=epochs or 6)
    torch.manual_seed(task.seed)
    gen = torch.Generator().manual_seed(task.seed)
    net = SmallResNet(n_classes=len(task.class_names))
    spec = InputSpec(scale=INPUT["scale"], mean=tuple(INPUT["mean"]), std=tuple(INPUT["std"]))
    x = spec.transform(task.train.x)
    y = torch.as_tensor(task.train.y)
    epochs = epochs or 12
    batch = 64
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * -(-len(y) // batch))
    net.train()
    with torch_threads(1):
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), batch):
                idx = perm[i:i + batch]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return net.eval()


# ----------------------------------------------------------------------------- ground truth


def cue_reliance(task: PlantedTask, net: nn.Module, batch: int = 256) -> dict[str, dict[str, Any]]:
    """How much ``net`` relies on each planted cue, measured on the model directly (the ground truth).

    Every test image of another class that does not carry the cue is predicted twice, as it is and
    with the cue painted on (the same draw the task planted). ``gain`` is the share that moves *to*
    the cue's class minus the share that moves away; ``learned`` is ``gain >= LEARNED_GAIN`` with a
    one-sided sign test of the two kinds of moves below ``LEARNED_P``. A cue the model did not
    learn is a shortcut in the data, not in the model: no detector can see it in the model's
    behaviour, so recall is scored over learned cues (and reported over all of them beside).

    >>> task = make_task("digits", seed=0, sizes=(60, 20, 40))
    >>> r = cue_reliance(task, SmallResNet(n_classes=10).eval())
    >>> sorted(r) == [c["name"] for c in task.truth["cues"]], set(r["cue_0"]) >= {"gain", "learned", "n"}
    (True, True)
    """
    from scipy.stats import binomtest

    from tests.analysis.planted_images import predictor

    proba = predictor(net, batch_size=batch)
    test = task.test

    def predict(x: np.ndarray) -> np.ndarray:
        return proba(x).argmax(axis=1) if len(x) else np.zeros(0, np.int64)

    result = {}
    for c, cue in zip(task.truth["cues"], task.cue_draws):
        k = c["class_index"]
        pick = (test.true_y != k) & (test.metadata[c["name"]].to_numpy() == "no")
        x = test.x[pick]
        fg = test.fg[pick] if test.fg is not None else np.zeros(x.shape[:3], bool)
        before, after = predict(x), predict(cue.apply(x, fg))
        to = int(((before != k) & (after == k)).sum())
        away = int(((before == k) & (after != k)).sum())
        n = int(pick.sum())
        gain = (to - away) / max(n, 1)
        p = float(binomtest(to, to + away, 0.5, alternative="greater").pvalue) if to + away else 1.0
        result[c["name"]] = {"n": n, "to_class": to, "away": away, "gain": round(gain, 4), "p_value": p,
                             "learned": bool(gain >= LEARNED_GAIN and p < LEARNED_P)}
    return result
