"""Benchmark: choosing what to label on the demo's planted task, BAL against uncertainty and random.

The demo model (the planted corner-mark shortcut on sevens, trained on 2% light backgrounds and a
mislabelling annotator) meets an unlabelled pool from deployment (:func:`sparsecheck.demo.make_demo_pool`:
400 tracks of 5 frames, the mark on 30% of frames of every class, 15% of tracks on a light
background), checked with the demo config's assertions (``same-track`` consistency and
``no-flicker`` over the tracks, ``robust-to-noise`` invariance). For each seed (a fresh pool), each
budget (a share of the pool) and each strategy, labelling is simulated in ``--rounds`` rounds with
the ground truth as the oracle:

1. score the pool with the current head (the deep features stay: only the head changes), run the
   assertions (:func:`sparsecheck.select.check_pool`) and select ``budget / rounds`` examples
   (:func:`sparsecheck.select.select_examples`, given the labels of earlier rounds, as
   ``sparsecheck select --labelled`` would be);
2. label them from the truth, and retrain the head: the model's linear head, from its weights,
   on the train split's features plus every acquired example (each counted ``--weight`` times),
   full-batch Adam.

Reported per budget and strategy, as mean ± standard deviation over the seeds:

- **precision**: the share of selected examples that were model errors when selected;
- **confident mistakes caught**: of the pool's mistakes the original model made with max
  probability ≥ ``--confident`` (0.9), the share that was selected; the same at ≥ 0.5 (a mistake
  the model thought more likely than not); the pool's counts are printed;
- **accuracy after retraining** on a held-out pool from the same distribution (true labels),
  next to the original model's and to a head retrained on the train split alone (what the
  retraining does without acquired labels).

Usage::

    python bench/labelling.py                       # builds the demo (about a minute), 3 seeds
    python bench/labelling.py --demo sparsecheck-demo/data --seeds 5
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

STRATEGIES = ("bal", "uncertainty", "random")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, help="a built demo's data directory (default: build one)")
    parser.add_argument("--workdir", type=Path, help="where the demo and caches go (default: a temporary directory)")
    parser.add_argument("--seeds", type=int, default=3, help="pools (seeds 0..N-1)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.01, 0.02, 0.05], help="shares of the pool")
    parser.add_argument("--rounds", type=int, default=2, help="labelling rounds per budget")
    parser.add_argument("--tracks", type=int, default=400, help="tracks per pool (5 frames each)")
    parser.add_argument("--confident", type=float, default=0.9, help="max probability of a confident mistake")
    parser.add_argument("--weight", type=float, default=10.0, help="weight of an acquired example in retraining")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps of each head retraining")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from sparsecheck.config import load_config
    from sparsecheck.data import load_dataset
    from sparsecheck.demo import build_demo

    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="bench-select-")) if temporary else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        config_path = (args.demo / "config.yaml") if args.demo else build_demo(work / "data")
        cfg = load_config(config_path)
        cfg.features.cache_dir = work / "cache"
        model = cfg.model.load()
        spec = cfg.model.input_spec(model)
        train = load_dataset(cfg.data.train, name="train")
        x_train, _ = _features(cfg, model, spec, train)
        head0 = _head(model)
        rows, counts = [], []
        for seed in range(args.seeds):
            held_x, held_y = _pool_features(cfg, model, spec, work, 1000 + seed, args.tracks)[:2]
            px, py, ds, meta = _pool_features(cfg, model, spec, work, seed, args.tracks)
            logits0 = _logits(px, head0)
            p0 = _softmax(logits0)
            wrong0 = p0.argmax(1) != py
            conf = {t: wrong0 & (p0.max(1) >= t) for t in (args.confident, 0.5)}
            counts.append({"errors": int(wrong0.sum()), **{f"confident_{t:g}": int(m.sum()) for t, m in conf.items()}})
            base = _retrain(head0, x_train, train.labels, np.zeros((0, px.shape[1])), np.zeros(0, np.int64),
                            args.weight, args.steps)
            rows.append({"seed": seed, "budget": 0.0, "strategy": "original", "accuracy": _accuracy(head0, held_x, held_y)})
            rows.append({"seed": seed, "budget": 0.0, "strategy": "retrained, no labels",
                         "accuracy": _accuracy(base, held_x, held_y)})
            for share in args.budgets:
                budget = max(1, int(round(share * len(py))))
                for strategy in STRATEGIES:
                    picked, errors, head = _simulate(cfg, model, spec, ds, meta, px, py, x_train, train.labels,
                                                     head0, strategy, budget, args, seed)
                    rows.append({"seed": seed, "budget": share, "strategy": strategy, "n": len(picked),
                                 "precision": float(np.mean(errors)),
                                 **{f"caught_{t:g}": (float(conf[t][picked].sum() / conf[t].sum())
                                                      if conf[t].sum() else math.nan) for t in conf},
                                 "accuracy": _accuracy(head, held_x, held_y)})
            print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        _print(pd.DataFrame(rows), pd.DataFrame(counts), args, len(py))
        print(f"\n{time.perf_counter() - start:.0f} s in all")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _features(cfg, model, spec, ds):
    from sparsecheck.features.extraction import extract_features

    fs = extract_features(model, ds, spec, layer=cfg.model.feature_layer, batch_size=cfg.features.batch_size,
                          device="cpu", num_workers=0, cache_dir=cfg.features.cache_dir, desc=ds.name)
    return np.asarray(fs.features, dtype=np.float64), np.asarray(fs.logits, dtype=np.float64)


def _pool_features(cfg, model, spec, work: Path, seed: int, tracks: int):
    """A pool's features, true labels, dataset (for the invariance assertion) and metadata."""
    from sparsecheck.data import ImageDataset
    from sparsecheck.demo import make_demo_pool

    pool = make_demo_pool(seed=seed, n_tracks=tracks)
    ds = ImageDataset.from_arrays(pool.x, None, pool.ids, name=f"pool{seed}")
    x, logits = _features(cfg, model, spec, ds)
    assert np.allclose(_logits(x, _head(model)), logits, atol=1e-3)  # the head is the model's last layer
    return x, pool.true_y, ds, pool.metadata


def _head(model) -> tuple[np.ndarray, np.ndarray]:
    head = model.module.get_submodule("head")
    return head.weight.detach().double().numpy().copy(), head.bias.detach().double().numpy().copy()


def _set_head(model, head) -> None:
    import torch

    module = model.module.get_submodule("head")
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(head[0], dtype=module.weight.dtype))
        module.bias.copy_(torch.as_tensor(head[1], dtype=module.bias.dtype))


def _logits(x: np.ndarray, head) -> np.ndarray:
    return x @ head[0].T + head[1]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _accuracy(head, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(_logits(x, head).argmax(1) == y))


def _retrain(head0, x_train, y_train, x_new, y_new, weight: float, steps: int):
    """The head, from its weights, on train ∪ acquired (acquired counted ``weight`` times)."""
    import torch

    torch.manual_seed(0)
    x = torch.as_tensor(np.concatenate([x_train, x_new]), dtype=torch.float32)
    y = torch.as_tensor(np.concatenate([y_train, y_new]).astype(np.int64))
    w = torch.as_tensor(np.r_[np.ones(len(y_train)), np.full(len(y_new), weight)], dtype=torch.float32)
    W = torch.tensor(head0[0], dtype=torch.float32, requires_grad=True)
    b = torch.tensor(head0[1], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(x @ W.T + b, y, reduction="none") * w).sum() / w.sum()
        loss.backward()
        opt.step()
    return W.detach().double().numpy(), b.detach().double().numpy()


def _simulate(cfg, model, spec, ds, meta, px, py, x_train, y_train, head0, strategy, budget, args, seed):
    """Rounds of select → label → retrain; returns the acquired rows, whether each was a model error
    when selected, and the last head."""
    from sparsecheck.pipeline.context import RunContext, SplitView
    from sparsecheck.select import check_pool, failures_table, select_examples

    head = head0
    acquired = pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=np.int64)})
    row_of = pd.Series(np.arange(len(py)), index=ds.ids)
    per_round = np.diff(np.linspace(0, budget, args.rounds + 1).round().astype(int))
    errors = []
    try:
        for r, n in enumerate(per_round):
            if n == 0:
                continue
            _set_head(model, head)  # the invariance assertion runs the model itself
            ctx = RunContext(config=cfg, class_names=list(cfg.data.class_names), device="cpu",
                             splits={"pool": SplitView("pool", ds.ids, None, px, _logits(px, head), meta)})
            table = ctx.prediction_table("pool")
            names, suite, _ = check_pool(cfg, table, class_names=list(cfg.data.class_names), model=model,
                                         dataset=ds, input_spec=spec, device="cpu")
            sel = select_examples(table, failures_table(suite), int(n), strategy=strategy, labelled=acquired,
                                  assertions=[a.name for a in names], seed=1000 * seed + r)
            rows = row_of[sel.rows["id"]].to_numpy()
            errors += list(sel.rows["prediction"].to_numpy() != py[rows])
            acquired = pd.concat([acquired, sel.rows[["id", "prediction", "assertions"]].assign(label=py[rows])],
                                 ignore_index=True)
            picked = row_of[acquired["id"]].to_numpy()
            head = _retrain(head0, x_train, y_train, px[picked], py[picked], args.weight, args.steps)
    finally:
        _set_head(model, head0)
    return row_of[acquired["id"]].to_numpy(), np.asarray(errors), head


def _print(rows: pd.DataFrame, counts: pd.DataFrame, args, n_pool: int) -> None:
    def cell(values: pd.Series, pct: bool = True) -> str:
        v = values.dropna()
        if v.empty:
            return "n/a"
        scale = 100 if pct else 1
        return f"{scale * v.mean():.1f} ± {scale * v.std(ddof=1):.1f}" if len(v) > 1 else f"{scale * v.mean():.1f}"

    c = args.confident
    print(f"pool: {n_pool} examples ({args.tracks} tracks × 5 frames); {args.seeds} seeds; {args.rounds} rounds per "
          f"budget; retraining: head from its weights, {args.steps} Adam steps, acquired ×{args.weight:g}")
    print(f"original model on the pool: {counts['errors'].mean():.0f} mistakes, of them "
          f"{counts[f'confident_{c:g}'].mean():.1f} with max probability ≥ {c:g} and "
          f"{counts['confident_0.5'].mean():.1f} with ≥ 0.5 (means over seeds)")
    held = rows[rows["budget"] == 0].groupby("strategy")["accuracy"]
    print("accuracy on a held-out pool: original " + cell(held.get_group("original"))
          + ", head retrained without acquired labels " + cell(held.get_group("retrained, no labels")) + " (%)\n")
    head = (f"{'budget':>12}  {'strategy':<12} {'precision %':>13} {f'caught ≥{c:g} %':>13} {'caught ≥0.5 %':>14} "
            f"{'accuracy %':>13}")
    print(head)
    print("-" * len(head))
    sel = rows[rows["budget"] > 0]
    for share, group in sel.groupby("budget", sort=True):
        n = int(group["n"].iloc[0])
        for strategy in STRATEGIES:
            g = group[group["strategy"] == strategy]
            print(f"{f'{share:.0%} ({n})':>12}  {strategy:<12} {cell(g['precision']):>13} "
                  f"{cell(g[f'caught_{c:g}']):>13} {cell(g['caught_0.5']):>14} {cell(g['accuracy']):>13}")
        prec = group.groupby("strategy")["precision"].mean()
        ratio = prec["bal"] / prec["random"] if prec["random"] > 0 else math.inf
        print(f"{'':>12}  BAL precision / random: {ratio:.1f}×, / uncertainty: {prec['bal'] / prec['uncertainty']:.2f}×")


if __name__ == "__main__":
    sys.exit(main())
