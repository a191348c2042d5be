"""Planted-bug image suite, quick check: are the cues found without metadata, and confirmed by intervention?

Per seed: builds the task of ``tests/analysis/planted_images.py`` (real digits, 32×32 RGB; red tint
→ class 7, white corner square → class 3, a weak blue corner patch → class 5, inverted images, a
noisy-label source, a harmless grey frame and scanner, two rider attributes), trains the small CNN,
extracts its features, fits the sparse decision layer, and then, with NO metadata:

* computes the automatic image attributes (fit on train, applied to test) and the within-class
  association of every used feature with them; for each cue: does the cue's automatic attribute
  value (e.g. ``auto:hue=red``) associate with a feature the cue's class uses with a positive
  weight (best AUC, q-value; found when ``q < 0.05`` and the attribute passes its screen)?
* measures each cue by intervention on the test split with the dense model (put on the other
  classes' images without the cue; take off the class's own images carrying it): flip rate with
  its interval, baseline, recall before/after, confirmed or not; and the harmless frame, for every
  class (should never be confirmed);
* finds unnamed error clusters in the sparse feature space and says which planted cause each
  one's members share.

    python bench/planted_images.py              # seeds 0, 1, 2
    python bench/planted_images.py --seeds 10 --json out.json

Run from the repository root (it imports the task from ``tests``). About 1.5 minutes per seed on
one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsecheck._runtime import torch_threads
from sparsecheck.outputs import write_json_atomic  # noqa: E402
from sparsecheck.analysis.association import feature_associations  # noqa: E402
from sparsecheck.analysis.auto_attributes import AutoAttributes  # noqa: E402
from sparsecheck.analysis.error_clusters import find_error_clusters  # noqa: E402
from sparsecheck.analysis.cues import parse_intervention  # noqa: E402
from sparsecheck.analysis.interventions import measure_intervention  # noqa: E402
from sparsecheck.data import ImageDataset, InputSpec  # noqa: E402
from sparsecheck.sparse import SparseDecisionLayer  # noqa: E402
from sparsecheck.features.extraction import extract_features  # noqa: E402
from tests.analysis.planted_images import (CLASS_NAMES, INPUT, make_planted_images, predictor,  # noqa: E402
                                           train_small_cnn)


def _batches(split: Any, size: int = 256):
    for i in range(0, len(split), size):
        yield split.x[i:i + size], split.original_sizes[i:i + size]


def run_seed(seed: int, epochs: int, fdr: float = 0.05) -> dict[str, Any]:
    start = time.perf_counter()
    task = make_planted_images(seed)
    net = train_small_cnn(task.train.x, task.train.y, seed=seed, epochs=epochs)
    spec = InputSpec(scale=255.0, mean=tuple(INPUT["mean"]), std=tuple(INPUT["std"]))
    feats = {}
    with torch_threads(1):
        for name in ("train", "val", "test"):
            s = getattr(task, name)
            feats[name] = extract_features(net, ImageDataset.from_arrays(s.x, s.y, s.ids, name=name), spec,
                                           device="cpu", batch_size=512).features
        layer = SparseDecisionLayer(tolerance=0.01, random_state=seed, device="cpu").fit(
            feats["train"], task.train.y, feats["val"], task.val.y)
    test = task.test
    predict_proba = predictor(net)
    dense_pred = predict_proba(test.x).argmax(1)
    meta = test.metadata
    clean = (meta.tint == "no") & (meta.corner == "no") & (meta.background == "dark")
    used = layer.used_features()
    Z = (feats["test"][:, used] - layer.mean_[used]) / layer.std_[used]

    # --- no metadata: automatic attributes only
    auto = AutoAttributes(random_state=seed).fit(_batches(task.train))
    auto_test = auto.transform(_batches(test))
    table = feature_associations(Z, auto_test, features=used, strata=test.y)
    out: dict[str, Any] = {"seed": seed, "dense_accuracy": float((dense_pred == test.true_y).mean()),
                           "clean_accuracy": float((dense_pred[clean] == test.true_y[clean]).mean()),
                           "sparse_accuracy": float((layer.predict(feats["test"]) == test.true_y).mean()),
                           "used_features": int(used.size), "auto_columns": list(auto.columns_), "cues": {}}
    for name, cue in task.truth["cues"].items():
        c = cue["class_index"]
        positive = set(np.flatnonzero(layer.weight_[c] > 0).tolist())
        attr, value = cue["auto"]
        rows = table[(table.attribute == attr) & (table.value == value) & table.feature.isin(positive)]
        rows = rows.sort_values("effect", ascending=False)
        best = rows.iloc[0] if len(rows) else None
        found = bool(best is not None and best.effect > 0.5 and best.q_value < fdr and best.attribute_q < fdr)
        put, remove = parse_intervention(cue["intervention"])
        has = (meta[cue["attribute"]] == "yes").to_numpy()
        r = measure_intervention(predict_proba, test.x, test.y, c, put, remove, has_cue=has, seed=seed,
                                 class_name=CLASS_NAMES[c])
        # what the class's features associate with most strongly, among automatic attributes
        top = table[table.feature.isin(positive) & (table.effect > 0.5) & (table.q_value < fdr)
                    & (table.attribute_q < fdr)].head(3)
        out["cues"][name] = {
            "class": CLASS_NAMES[c], "auto": f"{attr}={value}", "found": found,
            "auc": None if best is None else float(best.effect), "q": None if best is None else float(best.q_value),
            "feature": None if best is None else int(best.feature),
            "top_auto": [f"{t.attribute}={t.value} (f{t.feature}, AUC {t.effect:.2f})" for t in top.itertuples()],
            "intervention": r.to_dict(), "sentence": r.describe()}
    # harmless automatic attributes: the pre-resize size is drawn at random and never seen by the model
    strong = table[(table.q_value < fdr) & (table.attribute_q < fdr) & (table.strength >= 0.2)]
    out["harmless_auto"] = {a: int((strong.attribute == a).sum())
                            for a in ("auto:height", "auto:width", "auto:aspect")}
    out["frame_auto"] = int(strong.attribute.isin(["auto:border"]).sum())
    frame_put, _ = parse_intervention(task.truth["harmless"]["frame"]["intervention"])
    has_frame = (meta.frame == "yes").to_numpy()
    frames = [measure_intervention(predict_proba, test.x, test.y, c, frame_put, None, has_cue=has_frame, seed=seed)
              for c in range(10)]
    out["frame"] = {"confirmed_classes": [f.class_index for f in frames if f.confirmed],
                    "max_flip_minus_baseline": float(max(f.flip_rate - f.baseline_rate for f in frames)),
                    "min_put_p": float(min(f.put_p_value for f in frames))}
    clusters = find_error_clusters(Z, dense_pred == test.y, ids=test.ids, feature_ids=used, seed=seed)
    out["clusters"] = []
    for cl in clusters[:5]:
        m = meta.iloc[cl.member_rows]
        share = {"light": float((m.background == "light").mean()), "source C": float((m.source == "C").mean()),
                 "tint": float((m.tint == "yes").mean()), "corner": float((m.corner == "yes").mean())}
        out["clusters"].append({**cl.to_dict(), "shares": share})
    out["base_shares"] = {"light": float((meta.background == "light").mean()),
                          "source C": float((meta.source == "C").mean()),
                          "tint": float((meta.tint == "yes").mean()), "corner": float((meta.corner == "yes").mean())}
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds, starting at --first")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = []
    for seed in range(args.first, args.first + args.seeds):
        r = run_seed(seed, args.epochs)
        runs.append(r)
        print(f"seed {seed}: dense accuracy {r['dense_accuracy']:.3f} (clean {r['clean_accuracy']:.3f}), sparse "
              f"{r['sparse_accuracy']:.3f}, {r['used_features']} used features, "
              f"{len(r['auto_columns'])} auto columns, {r['seconds']:.0f} s")
        for name, c in r["cues"].items():
            iv = c["intervention"]
            auc = "n/a" if c["auc"] is None else f"AUC {c['auc']:.2f} q {c['q']:.1e} (f{c['feature']})"
            print(f"  {name:<8} → {c['class']:<5} no-metadata {c['auto']:<28} found={str(c['found']):<5} {auc}")
            print(f"  {'':<8}   intervention: flip {100 * iv['flip_rate']:.1f}% "
                  f"[{100 * iv['flip_ci_low']:.1f}, {100 * iv['flip_ci_high']:.1f}] vs baseline "
                  f"{100 * iv['baseline_rate']:.1f}% (n={iv['n_put']}); recall {100 * (iv['recall_before'] or 0):.0f}%"
                  f" → {100 * (iv['recall_after'] or 0):.0f}% (n={iv['n_remove']}); confirmed={iv['confirmed']} "
                  f"{iv['confirmed_by']}")
            print(f"  {'':<8}   top auto associations of the class's features: {'; '.join(c['top_auto']) or '-'}")
        f = r["frame"]
        print(f"  frame (harmless), 10 classes: confirmed for {f['confirmed_classes'] or 'none'}; largest flip - "
              f"baseline {100 * f['max_flip_minus_baseline']:.1f} points; smallest p {f['min_put_p']:.2g}")
        print(f"  harmless size attributes with a strong association (q < 0.05, AUC off 0.5 by >= 0.1): "
              f"{r['harmless_auto']}; auto:border (the frame's pixels) associations: {r['frame_auto']}")
        base = r["base_shares"]
        print(f"  error clusters: {len(r['clusters'])} shown; base shares "
              + ", ".join(f"{k} {v:.0%}" for k, v in base.items()))
        for cl in r["clusters"]:
            feats = ", ".join(f"f{x['feature']} {x['z']:+.1f}" for x in cl["features"])
            print(f"    {cl['error_rate']:.0%} errors [{cl['ci_low']:.0%}, {cl['ci_high']:.0%}] "
                  f"of {cl['size']} held out "
                  f"(q {cl['q_value']:.1e}; {feats}); members: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in cl["shares"].items()))
        sys.stdout.flush()
    n = len(runs)
    for name in runs[0]["cues"]:
        found = sum(r["cues"][name]["found"] for r in runs)
        conf = sum(r["cues"][name]["intervention"]["confirmed"] for r in runs)
        print(f"{name}: found without metadata in {found}/{n} seeds; confirmed by intervention in {conf}/{n}")
    print(f"size/aspect (harmless) strong associations per run: "
          f"{sum(sum(r['harmless_auto'].values()) for r in runs) / n:.2f}")
    print(f"frame (harmless): confirmed in {sum(bool(r['frame']['confirmed_classes']) for r in runs)}/{n} seeds "
          f"(any of 10 classes)")
    if args.json is not None:
        write_json_atomic(args.json, {"runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
