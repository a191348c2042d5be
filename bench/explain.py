"""Benchmark: explaining the sparse layer's features — LIME throughput, overhead, and the demo's figures.

1. On the demo (real digits, a small CNN with a planted corner-mark shortcut):

   * the *cue feature* (the feature of the top spurious finding for class ``seven`` and
     ``corner_mark=yes``, as the pipeline reports it): its strongest metadata associations, within classes (what the pipeline
     reports) and ignoring classes; and the smallest q-value the harmless ``site`` gets anywhere;
   * LIME on the cue feature's top test examples: the share of positive superpixel weight inside
     the cue's region (``truth.json``), examples explained per second, and the share of wall time
     spent outside the model's forward calls;
   * the model-randomisation sanity check: Spearman correlation of LIME maps (and of a Sobel edge
     "explainer") before and after re-initialising the model.

2. On a torchvision ResNet-18 with random weights (never downloads) at 224 px: LIME throughput and
   the share of time outside the forward calls.

Usage::

    python bench/explain.py                                   # builds the demo in a temp dir first
    python bench/explain.py --demo sparsecheck-demo/data --layer sparsecheck-demo/sparse_layer
    python bench/explain.py --demo /tmp/demo-ref --threads 1 --resnet-examples 1

``--demo`` is a directory with a demo ``config.yaml`` and ``truth.json`` (``sparsecheck demo``
writes one to ``OUT/data``); ``--layer`` a saved sparse layer (default: fitted here with the
config's settings).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsecheck.analysis.association import feature_associations
from sparsecheck.analysis.interpret import explain_features, features_by_weight
from sparsecheck.analysis.lime_features import FeatureActivation, LimeFeatureExplainer, positive_share_inside
from sparsecheck.analysis.sanity import EdgeAttributor, model_randomisation_test
from sparsecheck.analysis.spurious import find_spurious_features
from sparsecheck.config import load_config
from sparsecheck.pipeline.context import RunContext
from sparsecheck.data import InputSpec
from sparsecheck.models import Model
from sparsecheck.pipeline.stages import extract_stage, load_stage
from sparsecheck.sparse import SparseDecisionLayer

OUTSIDE_TARGET = 0.30  # share of LIME wall time outside the model's forward calls
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def demo_context(directory: Path | None, device: str) -> tuple[RunContext, dict[str, Any], Path | None]:
    """Load the demo's splits and model (building the demo first when no directory is given)."""
    scratch = None
    if directory is None:
        from sparsecheck.demo import build_demo

        scratch = Path(tempfile.mkdtemp(prefix="sparsecheck-bench-"))
        print("building the demo (data + model) in", scratch, file=sys.stderr)
        directory = build_demo(scratch).parent
    elif not os.access(directory, os.W_OK):  # the feature cache is written next to the config
        scratch = Path(tempfile.mkdtemp(prefix="sparsecheck-bench-"))
        shutil.copytree(directory, scratch / "demo")
        for p in (scratch / "demo").rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        directory = scratch / "demo"
    cfg = load_config(directory / "config.yaml")
    ctx = RunContext(config=cfg, class_names=[], splits={}, device=device)
    load_stage(ctx)
    extract_stage(ctx)
    return ctx, json.loads((directory / "truth.json").read_text()), scratch


def sparse_layer(ctx: RunContext, saved: Path | None, device: str) -> tuple[SparseDecisionLayer, float]:
    if saved is not None:
        return SparseDecisionLayer.load(saved), 0.0
    sc = ctx.config.sparse
    start = time.perf_counter()
    layer = SparseDecisionLayer(alpha=sc.alpha, n_lambdas=sc.n_lambdas, lambda_min_ratio=sc.lambda_min_ratio,
                                tolerance=sc.tolerance, features_per_class=sc.features_per_class,
                                solver=sc.solver, device=device, random_state=sc.random_state)
    train, val = ctx.splits["train"], ctx.splits["val"]
    layer.fit(train.features, train.labels, val.features, val.labels)
    return layer, time.perf_counter() - start


def cue_feature(layer: SparseDecisionLayer, view, table, truth: dict[str, Any]) -> int:
    """The feature of the top spurious finding for the cue's class and value (as the pipeline reports it)."""
    cue = truth["cue"]
    found = find_spurious_features(layer, view.features, view.labels, view.dense_predictions, view.metadata, table,
                                   [cue["attribute"]])
    for f in found.findings:
        if f.class_label == cue["class_index"] and f.value == cue["value"]:
            return int(f.feature)
    raise SystemExit(f"no spurious finding for class {cue['class']} and {cue['attribute']}={cue['value']}")


def timing(explanations: list) -> dict[str, float]:
    wall = sum(e.seconds for e in explanations)
    forward = sum(e.forward_seconds for e in explanations)
    return {"examples": len(explanations), "seconds": wall, "examples_per_second": len(explanations) / wall,
            "forward_seconds": forward, "outside_share": 1.0 - forward / wall}


def bench_demo(args: argparse.Namespace) -> dict[str, Any]:
    ctx, truth, scratch = demo_context(args.demo, args.device)
    try:
        layer, fit_seconds = sparse_layer(ctx, args.layer, args.device)
        test = ctx.splits["test"]
        used = layer.used_features()
        acts = np.asarray(test.features[:, used], dtype=np.float64)
        within = feature_associations(acts, test.metadata, features=used, strata=test.labels)
        plain = feature_associations(acts, test.metadata, features=used)
        j = cue_feature(layer, test, within, truth)
        harmless = truth["harmless"]["attribute"]
        out: dict[str, Any] = {"used_features": int(used.size), "sparse_fit_seconds": round(fit_seconds, 1),
                               "cue_feature": j}
        for name, table in (("within_classes", within), ("ignoring_classes", plain)):
            mine = table[table.feature == j].head(3)
            site = table[table.attribute == harmless]
            out[f"associations_{name}"] = {
                "cue_top3": [(r.attribute, r.value, round(r.effect, 3), float(f"{r.q_value:.3g}"))
                             for r in mine.itertuples()],
                "cue_is_top": bool((mine.iloc[0].attribute, mine.iloc[0].value)
                                   == (truth["cue"]["attribute"], truth["cue"]["value"])),
                f"{harmless}_min_q": float(f"{site.q_value.min():.3g}"),
                f"{harmless}_attribute_q": float(f"{site.attribute_q.min():.3g}")}

        # LIME on the cue feature's top examples
        col = np.asarray(test.features)[:, j]
        top = np.argsort(-col, kind="stable")[:args.examples]
        explainer = LimeFeatureExplainer(num_samples=args.samples, random_state=0)
        exps = explain_features(ctx.model, {j: ctx.datasets["test"].batch(top)}, explainer=explainer,
                                layer=ctx.config.model.feature_layer, input_spec=ctx.input_spec,
                                mean=layer.mean_, std=layer.std_, device=args.device)[j]
        (r0, r1), (c0, c1) = truth["cue"]["region"]["rows"], truth["cue"]["region"]["cols"]
        region = np.zeros(exps[0].segments.shape, dtype=bool)
        region[r0:r1, c0:c1] = True
        shares = [positive_share_inside(e, region) for e in exps]
        out["lime_cue_region_share"] = {"per_example": [round(s, 3) for s in shares],
                                        "mean": round(float(np.mean(shares)), 3),
                                        "region_area_share": round(float(region.mean()), 4)}
        out["lime_demo"] = {k: round(v, 3) for k, v in timing(exps).items()}

        # adaptive sample size (analysis.lime_convergence) against every sample: the same maps?
        adaptive = LimeFeatureExplainer(num_samples=args.samples, convergence=args.convergence, random_state=0)
        short = explain_features(ctx.model, {j: ctx.datasets["test"].batch(top)}, explainer=adaptive,
                                 layer=ctx.config.model.feature_layer, input_spec=ctx.input_spec,
                                 mean=layer.mean_, std=layer.std_, device=args.device)[j]
        agree = [float(np.corrcoef(a.weights, b.weights)[0, 1]) for a, b in zip(short, exps)]
        short_shares = [positive_share_inside(e, region) for e in short]
        out["lime_adaptive"] = {"convergence": args.convergence, "samples_full": args.samples,
                                "samples_drawn": [int(e.num_samples) for e in short],
                                "forward_images_full": len(exps) * args.samples,
                                "forward_images_adaptive": int(sum(e.num_samples for e in short)),
                                "weights_pearson_vs_full": [round(a, 3) for a in agree],
                                "cue_region_share_mean": round(float(np.mean(short_shares)), 3),
                                "cue_region_share_mean_full": round(float(np.mean(shares)), 3)}

        # sanity: the cue feature and the two heaviest other features
        checked = [j] + [f for f in features_by_weight(layer) if f != j][:2]
        sanity = {}
        for f in checked:
            top_f = np.argsort(-np.asarray(test.features)[:, f], kind="stable")[:args.sanity_examples]
            images = ctx.datasets["test"].batch(top_f)
            common = dict(layer=ctx.config.model.feature_layer, input_spec=ctx.input_spec, mean=layer.mean_,
                          std=layer.std_, device=args.device, cascade=args.cascade)
            probes = ctx.modality.sanity_probes(images)
            lime = model_randomisation_test(ctx.model, f, images, probes=probes, explainer=explainer, **common)
            quick = model_randomisation_test(ctx.model, f, images, probes=probes, explainer=adaptive, **common)
            edge = model_randomisation_test(ctx.model, f, images, probes=probes, explainer=EdgeAttributor(), **common)
            sanity[f] = {"lime_spearman": round(lime.spearman, 3), "lime_trustworthy": lime.trustworthy,
                         "adaptive_lime_spearman": round(quick.spearman, 3),
                         "adaptive_lime_trustworthy": quick.trustworthy,
                         "edge_spearman": round(edge.spearman, 3), "edge_trustworthy": edge.trustworthy}
            if args.cascade:
                sanity[f]["lime_cascade"] = [(s.layer, round(s.spearman, 3)) for s in lime.cascade]
        out["sanity"] = sanity
        return out
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def bench_resnet(args: argparse.Namespace) -> dict[str, Any]:
    import skimage.data
    import torchvision
    from skimage.transform import resize

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.resnet18(weights=None).eval()
    model = Model(net, "module", "torchvision:resnet18 (random weights)")
    names = ["astronaut", "coffee", "chelsea", "rocket"]
    images = [(resize(getattr(skimage.data, n)(), (224, 224), anti_aliasing=True) * 255).astype(np.uint8)
              for n in names[:max(1, args.resnet_examples)]]
    while len(images) < args.resnet_examples:
        images.append(images[len(images) % len(names)][:, ::-1].copy())
    spec = InputSpec(mean=IMAGENET["mean"], std=IMAGENET["std"])
    with FeatureActivation(model, list(range(512)), input_spec=spec, device=args.device) as probe:
        feature = int(np.argmax(probe(np.stack(images[:1]))[0]))
    explainer = LimeFeatureExplainer(num_samples=args.resnet_samples, random_state=0)
    exps = explain_features(model, {feature: np.stack(images)}, explainer=explainer, input_spec=spec,
                            device=args.device)[feature]
    result = {k: round(v, 3) for k, v in timing(exps).items()}
    result.update({"feature": feature, "samples": args.resnet_samples, "image_px": 224,
                   "superpixels": [e.n_segments for e in exps]})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", type=Path, help="directory with the demo's config.yaml and truth.json")
    p.add_argument("--layer", type=Path, help="a saved sparse layer (default: fit one here)")
    p.add_argument("--examples", type=int, default=8, help="top examples of the cue feature to explain")
    p.add_argument("--samples", type=int, default=1000, help="LIME samples per example (demo)")
    p.add_argument("--convergence", type=float, default=0.95,
                   help="the adaptive run's analysis.lime_convergence, compared with every sample")
    p.add_argument("--sanity-examples", type=int, default=2)
    p.add_argument("--cascade", action="store_true", help="report the sanity check layer by layer")
    p.add_argument("--resnet-examples", type=int, default=2)
    p.add_argument("--resnet-samples", type=int, default=1000)
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-resnet", action="store_true")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "device": args.device}
    if not args.skip_demo:
        report["demo"] = bench_demo(args)
    if not args.skip_resnet:
        report["resnet18_224"] = bench_resnet(args)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"torch threads: {report['torch_threads']}, device: {args.device}")
    if "demo" in report:
        d = report["demo"]
        print(f"\n== demo: {d['used_features']} used features (sparse fit {d['sparse_fit_seconds']} s), "
              f"cue feature {d['cue_feature']}")
        for name in ("within_classes", "ignoring_classes"):
            a = d[f"associations_{name}"]
            print(f"associations ({name.replace('_', ' ')}): cue on top: {a['cue_is_top']}; "
                  f"top 3 {a['cue_top3']}; " + ", ".join(f"{k} {v}" for k, v in a.items() if k.startswith("site")))
        s = d["lime_cue_region_share"]
        print(f"LIME positive weight inside the cue region: mean {s['mean']:.3f} "
              f"(target >= 0.60; region = {s['region_area_share']:.1%} of the image) per example {s['per_example']}")
        t = d["lime_demo"]
        print(f"LIME throughput (demo CNN, 32 px, {args.samples} samples): {t['examples_per_second']:.2f} examples/s; "
              f"outside forward calls {t['outside_share']:.1%} (target < {OUTSIDE_TARGET:.0%})")
        a = d["lime_adaptive"]
        print(f"adaptive LIME (convergence {a['convergence']}) vs every sample: {a['forward_images_adaptive']:,} vs "
              f"{a['forward_images_full']:,} perturbed images ({a['forward_images_full'] / a['forward_images_adaptive']:.1f}x "
              f"fewer; drawn per example {a['samples_drawn']}); weights' Pearson with the full run "
              f"{a['weights_pearson_vs_full']}; positive weight inside the cue region {a['cue_region_share_mean']:.3f} vs "
              f"{a['cue_region_share_mean_full']:.3f}")
        for f, r in d["sanity"].items():
            print(f"sanity feature {f}: LIME spearman {r['lime_spearman']:+.3f} "
                  f"({'trustworthy' if r['lime_trustworthy'] else 'NOT trustworthy'}; adaptive "
                  f"{r['adaptive_lime_spearman']:+.3f}, "
                  f"{'trustworthy' if r['adaptive_lime_trustworthy'] else 'NOT trustworthy'}), "
                  f"edge detector {r['edge_spearman']:+.3f}" + (f"; cascade {r['lime_cascade']}" if "lime_cascade" in r
                                                                else ""))
    if "resnet18_224" in report:
        t = report["resnet18_224"]
        print(f"\n== ResNet-18 (random weights), 224 px, {t['samples']} samples, ~{np.mean(t['superpixels']):.0f} "
              f"superpixels: {t['examples_per_second']:.3f} examples/s ({t['seconds'] / t['examples']:.1f} s per "
              f"example); outside forward calls {t['outside_share']:.1%} (target < {OUTSIDE_TARGET:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
