"""Held-out detection benchmark: planted shortcuts drawn from cue *families*, on two image sources.

Per source (``digits``: real digit scans at 32×32, DemoNet; ``photos``: the real ants/bees photos
at 64×64, a small ResNet) and seed, a task from ``tests/planted/tasks.py`` plants cues drawn from
the families of ``tests/planted/families.py`` (two tuning and two held-out families on digits, one
of each on photos), a dark-lighting subgroup and a noisy-label source (the failing slices), and
two harmless attributes (a visible ``stamp`` on half of every class, a ``scanner``). The model is
trained on the spot and saved as a ``torch.export`` program, then ``sparsecheck`` runs twice:

1. **with metadata**, every cue and harmless attribute declared spurious, *no* ``data.interventions``:
   a cue is found when a spurious finding names its attribute and class; a finding on ``stamp`` or
   ``scanner`` is a false alarm; the top 5 slices must all be significant and hold the planted
   ``lighting=dark`` slice; the verdict, the report's tile and the assertion must count the same
   findings.
2. **without metadata**: a cue is found when an automatic finding names its class and its
   attribute's value marks the cue's images (phi >= 0.2 on the test split); automatic findings
   for a class no cue targets are false alarms.

The ground truth is measured on the model itself (:func:`tests.planted.tasks.cue_reliance`): a
cue is *learned* when painting it on test images of other classes moves at least 2% of them to its
class (net, sign test p < 0.001). A cue the model did not learn is a shortcut of the data only,
invisible in the model's behaviour; recall is printed over the learned cues and over all cues.

Figures are printed per source and per family split (tuning / held-out), then per family. The
held-out families were fixed before any tuning (``tests/planted/families.py``).

    python bench/heldout.py --seeds 20                  # both sources, seeds 0..19
    python bench/heldout.py --sources digits --seeds 2 --json out.json
    python bench/heldout.py --count-forward --explain   # forward passes per stage, LIME on
    python bench/heldout.py --seeds 3 --count-forward --explain --compare old.json   # before/after
    python bench/heldout.py --from-json digits.json photos.json --seeds 10          # summarise seeds 0-9

``--count-forward`` counts the images each stage sends through the model (the extraction stage
excluded). This script also runs on an older checkout (``python OLD/bench/heldout.py`` with this
file copied there), for before/after figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sparsecheck._runtime import torch_threads
from sparsecheck.outputs import write_json_atomic  # noqa: E402
from sparsecheck.config import parse_config  # noqa: E402
from sparsecheck.pipeline import run_pipeline  # noqa: E402
from tests.planted.tasks import INPUT, SOURCES, cue_reliance, make_task, photos_root, train_model  # noqa: E402

HARMLESS = ("stamp", "scanner")
PLANTED_SLICE = ("lighting", "dark")
NOISY_SLICE = ("source", "web")


# ----------------------------------------------------------------------------- forward-pass counter
class _Counter:
    """Images sent through the model per stage (FeatureExtractor.__call__), extraction excluded."""

    def __init__(self) -> None:
        self.stage = "?"
        self.counts: dict[str, int] = defaultdict(int)
        try:
            from sparsecheck.features import taps as feats
        except ImportError:  # an older checkout: extraction lived in sparsecheck/sparse/features.py
            from sparsecheck.sparse import features as feats  # type: ignore[no-redef]

        self._cls = feats.FeatureExtractor
        self._orig = self._cls.__call__
        counter = self

        def call(extractor: Any, x: Any, *a: Any, **k: Any) -> Any:
            counter.counts[counter.stage] += int(x.shape[0])
            return counter._orig(extractor, x, *a, **k)

        self._cls.__call__ = call  # type: ignore[method-assign]

    def stages(self) -> list[Any]:
        from sparsecheck.pipeline.stages import STAGES

        def wrap(stage: Any) -> Any:
            def run(ctx: Any) -> None:
                self.stage = stage.__name__.removesuffix("_stage")
                stage(ctx)
            run.__name__ = stage.__name__
            return run

        return [wrap(s) for s in STAGES]


# ----------------------------------------------------------------------------- one task
def write_task(task: Any, net: torch.nn.Module, root: Path) -> None:
    import pandas as pd

    for split in ("train", "val", "test"):
        s = getattr(task, split)
        np.savez(root / f"{split}.npz", x=s.x, y=s.y, id=s.ids)
    h, w = task.train.x.shape[1:3]
    x = torch.zeros(2, 3, h, w)
    program = torch.export.export(net.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(root / "model.pt2"))
    pd.concat([getattr(task, s).metadata for s in ("train", "val", "test")]).to_csv(root / "metadata.csv",
                                                                                    index=False)


def config_for(task: Any, *, metadata: bool, explain: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"train": "train.npz", "val": "val.npz", "test": "test.npz",
                            "class_names": task.class_names}
    if metadata:
        data.update(metadata="metadata.csv",
                    spurious_attributes=[c["name"] for c in task.truth["cues"]] + list(HARMLESS))
    return {"model": {"path": "model.pt2", "input": INPUT}, "data": data,
            "analysis": {"explain": bool(explain)}, "mlflow": {"enabled": False}, "features": {"cache_dir": None},
            "sparse": {"random_state": 0}, "seed": int(task.seed)}


def _phi(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float), b.astype(float)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _fails(split: Any, predictions: np.ndarray, slice_: tuple[str, str]) -> bool:
    """Whether the model errs more inside the slice than outside it (one-sided Fisher, p < 0.01),
    on the labels the test split has (the noisy source's wrong ones included: they are errors)."""
    from scipy.stats import fisher_exact

    inside = split.metadata[slice_[0]].to_numpy() == slice_[1]
    wrong = np.asarray(predictions) != split.y
    table = [[int(wrong[inside].sum()), int((~wrong[inside]).sum())],
             [int(wrong[~inside].sum()), int((~wrong[~inside]).sum())]]
    return bool(fisher_exact(table, alternative="greater")[1] < 0.01)


def _tile_count(html: str) -> int:
    """The number on the report's spurious-findings tile (``li#findings-tile``); a report without
    the tile is an error here, so that a changed template cannot make the check pass unread."""
    m = re.search(r'id="findings-tile".*?<span class="v">\s*(\d+)\s*</span>', html, flags=re.S)
    if m is None:
        raise RuntimeError("report.html has no findings tile (li#findings-tile): update bench/heldout.py")
    return int(m.group(1))


def score_task(source: str, seed: int, *, explain: bool = False, count: _Counter | None = None,
               split: str = "mixed") -> dict[str, Any]:
    start = time.perf_counter()
    task = make_task(source, seed, split=split)
    with torch_threads(1):
        net = train_model(task)
    train_s = time.perf_counter() - start
    out: dict[str, Any] = {"source": source, "seed": seed, "cues": task.truth["cues"],
                           "reliance": cue_reliance(task, net)}
    with tempfile.TemporaryDirectory(prefix="sparsecheck-heldout-") as tmp:
        root = Path(tmp)
        write_task(task, net, root)
        for mode in ("with", "without"):
            cfg = parse_config(config_for(task, metadata=mode == "with", explain=explain), base_dir=root)
            if count is not None:
                count.counts.clear()
            t0 = time.perf_counter()
            ctx = run_pipeline(cfg, root / mode, device="cpu", stages=count.stages() if count else None)
            res = json.loads((root / mode / "results.json").read_text())
            html = (root / mode / "report.html").read_text()
            r: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1),
                                 "dense_accuracy": res["dense"]["test_accuracy"],
                                 "timings": res.get("timings"), "tile": _tile_count(html),
                                 "forward": dict(count.counts) if count else None}
            declared = res.get("spurious_findings") or []
            automatic = res.get("automatic_findings") or []
            assertion = next((a["observed"] for a in res["assertions"] if a["name"] == "no-spurious-reliance"), None)
            r["n_declared"], r["n_automatic"], r["assertion"] = len(declared), len(automatic), assertion
            if mode == "with":
                found = {(f["attribute"], f["class"]) for f in declared}
                r["found"] = {c["name"]: (c["name"], c["class"]) in found for c in task.truth["cues"]}
                r["harmless"] = sum(f["attribute"] in HARMLESS for f in declared)
                top5 = res["slices"][:5]
                r["top5"] = [s["predicates"] for s in top5]
                r["top5_significant"] = all((s.get("q_value") or 1.0) <= 0.05 for s in top5)
                r["planted_slice"] = any(s["predicates"].get(PLANTED_SLICE[0]) == PLANTED_SLICE[1] for s in top5)
                r["noisy_slice"] = any(s["predicates"].get(NOISY_SLICE[0]) == NOISY_SLICE[1] for s in top5)
                # does the planted slice fail at all? (the model's errors, by the true labels: a
                # darkened photo is not always harder for a model that leans on its shortcuts)
                r["planted_fails"] = _fails(task.test, ctx.splits["test"].dense_predictions, PLANTED_SLICE)
                r["noisy_fails"] = _fails(task.test, ctx.splits["test"].dense_predictions, NOISY_SLICE)
                r["counts_agree"] = (assertion == len(declared)) and r["tile"] == len(declared) + len(automatic)
            else:
                meta = ctx.splits["test"].metadata.reset_index(drop=True)
                truth = task.test.metadata.reset_index(drop=True)
                cue_classes = {c["class"] for c in task.truth["cues"]}
                r["found"], r["found_class"] = {}, {}
                for c in task.truth["cues"]:
                    carriers = truth[c["name"]].to_numpy() == "yes"
                    mine = [f for f in automatic if f["class"] == c["class"]]
                    r["found_class"][c["name"]] = bool(mine)
                    r["found"][c["name"]] = any(
                        f["attribute"] in meta.columns
                        and _phi(meta[f["attribute"]].astype(str).to_numpy() == str(f["value"]), carriers) >= 0.2
                        for f in mine)
                r["unplanted"] = sum(f["class"] not in cue_classes for f in automatic)
                r["counts_agree"] = r["tile"] == len(declared) + len(automatic)
                r["findings"] = [(f["class"], f["attribute"], f["value"]) for f in automatic]
            out[mode] = r
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["train_seconds"] = round(train_s, 1)
    return out


# ----------------------------------------------------------------------------- tables
def _rate(k: int, n: int) -> str:
    return f"{k / n:.2f} ({k}/{n})" if n else "n/a"


def summarise(rows: list[dict[str, Any]]) -> str:
    lines = []
    for source in sorted({r["source"] for r in rows}):
        rs = [r for r in rows if r["source"] == source]
        lines.append(f"\n== {source}: {len(rs)} runs ==")
        lines.append(f"{'family split':<10} {'cues':<11} {'recall, metadata':>18}  {'recall, no metadata':>20}  "
                     f"{'(class only)':>14}")
        for split in ("tuning", "held-out", "fresh"):
            everything = [(r, c) for r in rs for c in r["cues"] if c["split"] == split]
            learned = [(r, c) for r, c in everything if _learned(r, c)]
            for label, cues in (("learned", learned), ("all", everything)):
                if label == "learned" and "reliance" not in rs[0]:
                    continue                      # a file from before the ground truth was measured
                n = len(cues)
                w = sum(r["with"]["found"][c["name"]] for r, c in cues)
                wo = sum(r["without"]["found"][c["name"]] for r, c in cues)
                wc = sum(r["without"]["found_class"][c["name"]] for r, c in cues)
                lines.append(f"{split:<10} {f'{label} {n}':<11} {_rate(w, n):>18}  {_rate(wo, n):>20}  {_rate(wc, n):>14}")
        n = len(rs)
        lines.append(f"findings on harmless attributes per run (metadata): {sum(r['with']['harmless'] for r in rs) / n:.2f}")
        lines.append(f"automatic findings for classes no cue targets, per run: "
                     f"{sum(r['without']['unplanted'] for r in rs) / n:.2f}")
        failing = [r for r in rs if r["with"].get("planted_fails", True)]
        noisy = [r for r in rs if r["with"].get("noisy_fails", True)]
        lines.append(f"top-5 slices all significant: {_rate(sum(r['with']['top5_significant'] for r in rs), n)}; "
                     f"lighting=dark in the top 5: {_rate(sum(r['with']['planted_slice'] for r in failing), len(failing))}"
                     f" of the runs where it fails ({len(failing)} of {n}); source=web in the top 5: "
                     f"{_rate(sum(r['with']['noisy_slice'] for r in noisy), len(noisy))} of those where it fails "
                     f"({len(noisy)} of {n})")
        agree = sum(r["with"]["counts_agree"] and r["without"]["counts_agree"] for r in rs)
        lines.append(f"verdict, tile and assertion count the same findings: {_rate(agree, n)}")
        lines.append("per family (all cues): " + "; ".join(
            f"{fam} {sum(r['with']['found'][c['name']] for r, c in pairs)}/{len(pairs)} with, "
            f"{sum(r['without']['found'][c['name']] for r, c in pairs)}/{len(pairs)} without"
            + (f", {sum(_learned(r, c) for r, c in pairs)} learned" if "reliance" in rs[0] else "")
            for fam, pairs in sorted(_by_family(rs).items())))
        if "reliance" in rs[0]:
            missed = [(r, c) for r in rs for c in r["cues"] if _learned(r, c)
                      and not (r["with"]["found"][c["name"]] and r["without"]["found"][c["name"]])]
            lines.append("learned cues missed (source seed family→class: gain, with/without): " + ", ".join(
                f"{r['seed']} {c['family']}→{c['class']}: {r['reliance'][c['name']]['gain']:.3f} "
                f"{'M' if r['with']['found'][c['name']] else '-'}{'A' if r['without']['found'][c['name']] else '-'}"
                for r, c in missed) or "none")
            unlearned = [(r, c) for r in rs for c in r["cues"] if not _learned(r, c)]
            lines.append(f"cues the model did not learn: {len(unlearned)}; found anyway (metadata / no metadata): "
                         f"{sum(r['with']['found'][c['name']] for r, c in unlearned)} / "
                         f"{sum(r['without']['found'][c['name']] for r, c in unlearned)}")
    return "\n".join(lines)


def compare_forward(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    """Forward passes of the spurious and explain stages, run by run, of two result files of the same
    tasks (``--count-forward --explain``, one from an older checkout), with the findings each got."""
    lines = [f"{'task':<12} {'mode':<8} {'spurious before':>15} {'after':>7} {'explain before':>14} {'after':>7} "
             f"{'total before':>12} {'after':>7} {'ratio':>6}  cues found before / after"]
    key = {(r["source"], r["seed"]): r for r in old}
    tot_old = tot_new = 0
    for r in new:
        o = key.get((r["source"], r["seed"]))
        if o is None:
            continue
        for mode in ("with", "without"):
            fo, fn = o[mode].get("forward") or {}, r[mode].get("forward") or {}
            so, sn = fo.get("spurious", 0), fn.get("spurious", 0)
            eo, en = fo.get("explain", 0), fn.get("explain", 0)
            tot_old += so + eo
            tot_new += sn + en
            found_o = sum(o[mode]["found"].values())
            found_n = sum(r[mode]["found"].values())
            lines.append(f"{r['source'] + ' ' + str(r['seed']):<12} {mode:<8} {so:>15,} {sn:>7,} {eo:>14,} {en:>7,} "
                         f"{so + eo:>12,} {sn + en:>7,} {(so + eo) / max(sn + en, 1):>6.1f}  "
                         f"{found_o} / {found_n} of {len(r['cues'])}")
    lines.append(f"{'all':<21} {'':>15} {'':>7} {'':>14} {'':>7} {tot_old:>12,} {tot_new:>7,} "
                 f"{tot_old / max(tot_new, 1):>6.1f}")
    return "\n".join(lines)


def _learned(row: dict[str, Any], cue: dict[str, Any]) -> bool:
    """Whether the model relies on the cue (:func:`tests.planted.tasks.cue_reliance`)."""
    return bool(row.get("reliance", {}).get(cue["name"], {}).get("learned", True))


def _by_family(rows: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for r in rows:
        for c in r["cues"]:
            out[c["family"]].append((r, c))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--explain", action="store_true", help="run LIME and the sanity check too")
    parser.add_argument("--count-forward", action="store_true", help="count the images each stage runs the model on")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", type=Path, default=None,
                        help="a --json file of the same tasks from another checkout: print both runs' forward passes")
    parser.add_argument("--split", choices=("mixed", "tuning", "fresh"), default="mixed",
                        help="draw cues from the tuning and held-out families (the benchmark), the tuning ones only "
                             "(development) or the fresh ones (held out from the repeated patterns' design)")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="summarise the runs of these --json files (e.g. one per source, run side by side)")
    args = parser.parse_args()
    if args.from_json:
        rows = [row for path in args.from_json for row in json.loads(path.read_text())["runs"]]
        rows = [r for r in rows if args.first <= r["seed"] < args.first + args.seeds]
        print(summarise(rows))
        if args.compare is not None:
            print("\nforward passes (images the model ran on), these runs against " + str(args.compare))
            print(compare_forward(json.loads(args.compare.read_text())["runs"], rows))
        return 0
    sources = [s for s in args.sources.split(",") if s]
    if "photos" in sources and photos_root() is None:
        print("photos: ../shared/data/photos/ants-bees is not here; running digits only")
        sources = [s for s in sources if s != "photos"]
    count = _Counter() if args.count_forward else None
    rows = []
    for seed in range(args.first, args.first + args.seeds):
        for source in sources:
            r = score_task(source, seed, explain=args.explain, count=count, split=args.split)
            rows.append(r)
            cues = ", ".join(f"{c['family']}→{c['class']}:{'M' if r['with']['found'][c['name']] else '-'}"
                             f"{'A' if r['without']['found'][c['name']] else '-'}"
                             f"({r['reliance'][c['name']]['gain']:+.3f}{'' if _learned(r, c) else ' not learned'})"
                             for c in r["cues"])
            fw = ""
            if count is not None:
                fw = " forward " + "/".join(f"{k}:{v}" for k, v in {**r["with"]["forward"]}.items() if v)
            print(f"{source:>6} seed {seed:>2} acc {r['with']['dense_accuracy']:.2f} {cues}  harmless "
                  f"{r['with']['harmless']} unplanted {r['without']['unplanted']} top5 "
                  f"{'sig' if r['with']['top5_significant'] else 'NOT-sig'} dark "
                  f"{'Y' if r['with']['planted_slice'] else 'N'} agree "
                  f"{'Y' if r['with']['counts_agree'] and r['without']['counts_agree'] else 'N'} "
                  f"{r['seconds']:.0f}s{fw}", flush=True)
            if args.json is not None:
                write_json_atomic(args.json, {"runs": rows})
    print(summarise(rows))
    if args.compare is not None:
        print("\nforward passes (images the model ran on), this checkout against " + str(args.compare))
        print(compare_forward(json.loads(args.compare.read_text())["runs"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
