"""Findings on the planted-bug image suite, through the whole pipeline (issue 13's done-when).

Per seed: builds the task of ``tests/analysis/planted_images.py`` (real digits at 32×32 RGB: a red
tint on class 7, a white corner square on class 3, a weak blue corner patch on class 5 (≈10% of
the class in test), inverted images (``background=light``), a source with 40% wrong labels, the
harmless ``frame`` and ``scanner``, and the riders ``batch_id`` (rides on the inversion) and
``site`` (rides on the noisy source)), trains the small CNN, saves it as a ``torch.export``
program, and runs ``sparsecheck`` twice:

1. **with metadata**: the cues and the harmless attributes are declared spurious, each with its
   intervention (``data.interventions``). Scored: the top 5 slices hold no harmless or rider
   predicate; every cue (the weak one too) is a spurious finding; no finding on a harmless attribute.
2. **without metadata**: only the images. Scored: the colour (tint) and corner cues are found
   from the automatic attributes (``automatic_findings``).

    python bench/findings.py --seeds 10          # seeds 0..9, about 2 minutes a seed on 2 cores
    python bench/findings.py --seeds 2 --json out.json

Run from the repository root (it imports the task from ``tests``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsecheck._runtime import torch_threads
from sparsecheck.outputs import write_json_atomic  # noqa: E402
from sparsecheck.config import parse_config  # noqa: E402
from sparsecheck.pipeline import run_pipeline  # noqa: E402
from tests.analysis.planted_images import CLASS_NAMES, INPUT, make_planted_images, train_small_cnn  # noqa: E402

HARMLESS = ("frame", "scanner")
RIDERS = ("batch_id", "site")
CUES = ("tint", "corner", "weak_cue")


def write_task(task: Any, net: torch.nn.Module, root: Path, *, metadata: bool) -> dict[str, Any]:
    """The task's splits as .npz, its metadata as CSV, the CNN as a .pt2; return a config."""
    import pandas as pd

    for split in ("train", "val", "test"):
        s = getattr(task, split)
        np.savez(root / f"{split}.npz", x=s.x, y=s.y, id=s.ids)
    x = torch.zeros(2, 3, 32, 32)
    program = torch.export.export(net.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(root / "model.pt2"))
    data: dict[str, Any] = {"train": "train.npz", "val": "val.npz", "test": "test.npz", "class_names": CLASS_NAMES}
    if metadata:
        pd.concat([getattr(task, s).metadata for s in ("train", "val", "test")]).to_csv(root / "metadata.csv",
                                                                                        index=False)
        cues = task.truth["cues"]
        harmless = task.truth["harmless"]
        data.update(metadata="metadata.csv", spurious_attributes=[*CUES, *HARMLESS],
                    interventions={**{c: {"value": cues[c]["value"], **cues[c]["intervention"]} for c in CUES},
                                   "frame": {"value": "yes", **harmless["frame"]["intervention"]}})
    return {"model": {"path": "model.pt2", "input": INPUT}, "data": data,
            "analysis": {"explain": False}, "mlflow": {"enabled": False}, "features": {"cache_dir": None},
            "sparse": {"tolerance": 0.01, "random_state": 0}}


def run(config: dict[str, Any], root: Path, name: str) -> dict[str, Any]:
    run_pipeline(parse_config(config, base_dir=root), root / name, device="cpu")
    return json.loads((root / name / "results.json").read_text())


def score_seed(seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    task = make_planted_images(seed)
    with torch_threads(1):
        net = train_small_cnn(task.train.x, task.train.y, seed)
    with tempfile.TemporaryDirectory(prefix="sparsecheck-findings-") as tmp:
        root = Path(tmp)
        with_meta = run(write_task(task, net, root, metadata=True), root, "with")
        without = run(write_task(task, net, root, metadata=False), root, "without")
    top5 = [s["predicates"] for s in with_meta["slices"][:5]]
    bad_slices = [p for p in top5 if any(a in HARMLESS or a in RIDERS for a in p)]
    found = {(f["attribute"], f["class"]) for f in with_meta["spurious_findings"]}
    cues = task.truth["cues"]
    cue_found = {c: (c, cues[c]["class"]) in found for c in CUES}
    harmless_findings = [f for f in with_meta["spurious_findings"] if f["attribute"] in HARMLESS]
    auto = {(f["attribute"], f["value"], f["class"]) for f in without["automatic_findings"]}
    auto_found = {c: (cues[c]["auto"][0], cues[c]["auto"][1], cues[c]["class"]) in auto for c in CUES}
    confirmed = {f["attribute"]: bool(f["evidence"].get("confirmed_by_intervention"))
                 for f in with_meta["spurious_findings"]}
    return {"seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "dense_accuracy": with_meta["dense"]["test_accuracy"], "top5": top5, "bad_slices": bad_slices,
            "cue_found": cue_found, "confirmed": confirmed, "harmless_findings": len(harmless_findings),
            "auto_found": auto_found, "automatic_findings": sorted(map(list, auto)),
            "assertion": next((a["observed"] for a in with_meta["assertions"] if a["name"] == "no-spurious-reliance"),
                              None), "n_findings": len(with_meta["spurious_findings"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    print(f"{'seed':>4} {'acc':>5} {'bad top5':>8} {'tint':>5} {'corner':>6} {'weak':>5} {'harm':>4} "
          f"{'auto tint':>9} {'auto corner':>11} {'s':>5}  top 5 slices")
    for seed in range(args.first, args.first + args.seeds):
        r = score_seed(seed)
        rows.append(r)
        tops = "; ".join(" & ".join(f"{k}={v}" for k, v in p.items()) for p in r["top5"])
        print(f"{seed:>4} {r['dense_accuracy']:5.2f} {len(r['bad_slices']):>8} {int(r['cue_found']['tint']):>5} "
              f"{int(r['cue_found']['corner']):>6} {int(r['cue_found']['weak_cue']):>5} {r['harmless_findings']:>4} "
              f"{int(r['auto_found']['tint']):>9} {int(r['auto_found']['corner']):>11} {r['seconds']:5.0f}  {tops}",
              flush=True)
    n = len(rows)
    no_bad = sum(not r["bad_slices"] for r in rows)
    every_cue = sum(all(r["cue_found"].values()) for r in rows)
    weak = sum(r["cue_found"]["weak_cue"] for r in rows)
    harmless = sum(r["harmless_findings"] for r in rows)
    auto_both = sum(r["auto_found"]["tint"] and r["auto_found"]["corner"] for r in rows)
    agree = sum(r["assertion"] == r["n_findings"] for r in rows)
    print(f"\nseeds {n}: top 5 slices free of harmless/rider predicates in {no_bad}/{n}; every planted cue found "
          f"in {every_cue}/{n} (the weak one in {weak}/{n}); findings on harmless attributes {harmless} in all; "
          f"colour and corner cues found without metadata in {auto_both}/{n}; the assertion's count equals the "
          f"findings in {agree}/{n}")
    ok = no_bad == n and every_cue == n and harmless == 0 and auto_both == n
    print("done-when:", "met" if ok else "NOT met")
    if args.json is not None:
        write_json_atomic(args.json, {"runs": rows})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
