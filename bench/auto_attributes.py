"""What the automatic image attributes see, what they cost.

``--table``: recall and false alarms over generated cue shapes and sizes on clean images. For each
source (real digits at 32 px; the ants/bees photos at 64 px, when ``../shared/data`` is there) and
each cue family of ``tests/planted/families.py``, ``--draws`` cues are drawn (random place, size
1.5–25% of the area, colour) and each is put on a sample of clean test images. The attributes are
fitted on a split like a test split: the clean images and a third of them cued.

* **recall** — the share of cued images whose value on the family's attributes differs from their
  clean twin's: ``auto:mark_*``, ``auto:band_*`` and ``auto:frame`` for the local families, the
  colour attributes for the colour families, ``auto:sharpness``, ``auto:noise`` and
  ``auto:blockiness`` for blur, noise and JPEG. By area: 1.5–5%, 5–12%, 12–25%.
* **marked** — the share of draws in which one value of one of those attributes marks the cued
  images apart from the clean ones (phi ≥ 0.5 over the fitted split): a value that a finding can
  name, where *recall* also counts a cue that changes each image's value a different way.
* **false alarms** — the share of clean images on which a fixed-threshold attribute is not
  ``none`` (a mark in some zone, a band on some side, a frame).

Tuning and held-out families are listed apart (the held-out ones were not looked at while the
measures were chosen).

``--cost``: milliseconds per 1,000 images at 32×32 and 224×224 (random RGB images).

    python bench/auto_attributes.py --table              # 20 draws per family and source
    python bench/auto_attributes.py --cost
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsecheck.analysis.auto_attributes import AutoAttributes, image_properties, stream_properties  # noqa: E402
from tests.planted.families import FRESH_FAMILIES, HELDOUT_FAMILIES, TUNING_FAMILIES, draw_cue, family_split  # noqa: E402
from tests.planted.tasks import _digits, _photos, photos_root  # noqa: E402

LOCAL = ("auto:mark_", "auto:band_", "auto:frame", "auto:pattern_", "auto:blend_")
WATCH = {"patch": LOCAL, "sticker": LOCAL, "watermark": LOCAL, "band": LOCAL, "frame": LOCAL, "ruler": LOCAL,
         "logo": LOCAL, "grid": ("auto:sharpness", "auto:noise", "auto:hue", "auto:contrast"),
         "vignette": ("auto:brightness", "auto:contrast", "auto:bg_colour") + LOCAL,
         "gamma": ("auto:brightness", "auto:contrast", "auto:saturation"),
         "fg_colour": ("auto:fg_colour", "auto:hue", "auto:bg_colour"),
         "bg_colour": ("auto:bg_colour", "auto:hue", "auto:fg_colour"),
         "blur": ("auto:sharpness",), "noise": ("auto:noise",), "jpeg": ("auto:blockiness",)}
BINS = ((0.015, 0.05), (0.05, 0.12), (0.12, 0.25))


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


def clean_images(source: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    split = (_digits(seed, (60, 20, n)) if source == "digits" else _photos(seed))["test"]
    x, _, fg = split
    return x[:n], fg[:n]


def _marks(table: Any, cols: list[str], cued: int, least: float = 0.5) -> bool:
    """Does one value of one of ``cols`` mark the first ``cued`` rows apart from the rest (phi >= least)?"""
    truth = np.arange(len(table)) < cued
    for col in cols:
        values = table[col].astype(str).to_numpy()
        for v in set(values) - {"none", "None"}:
            on = values == v
            if 0 < on.sum() < len(on) and np.corrcoef(on, truth)[0, 1] >= least:
                return True
    return False


def table(draws: int, n: int, seed: int = 0, split: str = "all") -> None:
    sources = ["digits"] + (["photos"] if photos_root() is not None else [])
    rng = np.random.default_rng(seed)
    print(f"{'source':<7} {'family':<10} {'split':<8} {'recall':>7} {'marked':>7}   recall by area 1.5-5% / 5-12% / 12-25%")
    for source in sources:
        x, fg = clean_images(source, n, seed)
        clean_props = image_properties(x)
        third = len(x) // 3
        families = {"tuning": TUNING_FAMILIES, "held-out": HELDOUT_FAMILIES, "fresh": FRESH_FAMILIES}.get(
            split, [*TUNING_FAMILIES, *HELDOUT_FAMILIES, *FRESH_FAMILIES])
        for fam in families:
            hits, areas, marked = [], [], []
            for _ in range(draws):
                cue = draw_cue(fam, rng, x.shape[1:3])
                cued = cue.apply(x[:third], fg[:third])
                props = image_properties(cued)
                mixed = clean_props.copy()
                mixed.iloc[:third] = props.to_numpy()
                auto = AutoAttributes().fit(mixed)
                t_cued = auto._bin(mixed.iloc[:third].reset_index(drop=True))
                t_clean = auto._bin(clean_props.iloc[:third].reset_index(drop=True))
                cols = [c for c in t_cued.columns if c.startswith(WATCH[fam])]
                changed = (t_cued[cols].astype(str).to_numpy() != t_clean[cols].astype(str).to_numpy()).any(axis=1)
                hits.append(float(changed.mean()))
                areas.append(cue.area)
                marked.append(_marks(auto._bin(mixed.reset_index(drop=True)), cols, third))
            hits_a, areas_a = np.array(hits), np.array(areas)
            by = []
            for lo, hi in BINS:
                m = (areas_a >= lo) & (areas_a < hi + 1e-9)
                by.append(f"{hits_a[m].mean():.2f} ({m.sum()})" if m.any() and fam in WATCH and WATCH[fam] == LOCAL
                          else "  -")
            kind = family_split(fam)
            print(f"{source:<7} {fam:<10} {kind:<8} {hits_a.mean():7.2f} {np.mean(marked):7.2f}   {' / '.join(by)}",
                  flush=True)
        t_clean = AutoAttributes().fit(clean_props)._bin(clean_props)
        flags = {k: float((t_clean[[c for c in t_clean.columns if c.startswith(k)]].astype(str) != "none")
                          .any(axis=1).mean()) for k in LOCAL}
        print(f"{source:<7} false alarms on clean images: " + ", ".join(f"{k}* {v:.3f}" for k, v in flags.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="recall and false alarms over generated cues")
    parser.add_argument("--cost", action="store_true", help="milliseconds per 1,000 images")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--split", choices=("all", "tuning", "held-out", "fresh"), default="all",
                        help="the cue families to draw (tuning ones while choosing the measures)")
    parser.add_argument("--n", type=int, default=300, help="clean test images per source")
    parser.add_argument("--n-small", type=int, default=4000)
    parser.add_argument("--n-large", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    if args.table:
        table(args.draws, args.n, split=args.split)
    if args.cost or not args.table:
        for size, n in ((32, args.n_small), (224, args.n_large)):
            m, b = time_size(size, n, args.batch)
            print(f"{size:>3}x{size:<3} {n:>6} images: properties {m:8.1f} ms / 1,000 images, "
                  f"fit+transform {b:6.1f} ms / 1,000")


if __name__ == "__main__":
    main()
