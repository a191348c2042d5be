"""SST-2 as the paper ran it: a sparse decision layer over a text classifier's deep features.

Trains the small transformer of the text demo (a WordPiece vocabulary learned on the training
phrases, a BERT of ``--layers`` layers built from a config with random weights; no download) on
the full SST-2 in ``../shared/data/text/sst2/`` (GLUE's training phrases split 90/10 into
``train.tsv`` and ``dev.tsv``; ``test.tsv`` is GLUE's labelled dev set of 872 whole sentences),
saves it with ``save_pretrained``, then runs ``sparsecheck run`` on it (``model.huggingface``,
``data.text_column: sentence``, the SST files read in place). The sparse layer is selected on
``dev.tsv`` and scored on ``test.tsv``.

Prints dense vs sparse test accuracy, features per class, the selected point of the path, and for
the top features (by total |weight|) the words and phrases that raise and lower them, with the
path of each feature's card (its word clouds, top texts and LIME highlights), next to the paper's
SST result (Wong, Santurkar & Madry, ICML 2021: a BERT-base sentiment model fine-tuned on SST,
768 deep features; a sparse decision layer of a few dozen features per class stays within a few
points of the dense layer's accuracy, sometimes above it).

    python bench/sst2.py                           # full SST-2, one epoch: about 30 min on 2 loaded CPU cores
    python bench/sst2.py --limit 2000 --epochs 1   # a quick look
    python bench/sst2.py --device cuda             # a GPU, when there is one

Every seed is ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "text" / "sst2"
CLASSES = ["negative", "positive"]
#: what the paper reports for SST (the comparison printed beside ours)
PAPER = ("paper (Wong et al. 2021, SST): BERT-base fine-tuned on SST, 768 deep features; the sparse layer "
         "keeps a few dozen features per class within a few points of the dense layer's accuracy")


def read_split(path: Path) -> pd.DataFrame:
    """One SST-2 file: ``sentence<TAB>label``, no quoting (GLUE's format)."""
    table = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype={"sentence": str, "label": int},
                        keep_default_na=False)
    if list(table.columns) != ["sentence", "label"]:
        raise SystemExit(f"{path}: expected the columns sentence, label; got {list(table.columns)}")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.tsv, dev.tsv, test.tsv")
    p.add_argument("--out", type=Path, default=Path("sst2-bench"), help="model, config and run outputs")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training phrases (shuffled)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--top", type=int, default=4, help="features whose words are printed")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    import torch

    from sparsecheck.config import load_config
    from sparsecheck.logs import setup_logging
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.text.training import small_bert, train_classifier, train_wordpiece

    setup_logging(0, False)
    paths = {name: args.data / f"{name}.tsv" for name in ("train", "dev", "test")}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        print(f"SST-2 not found: {', '.join(missing)} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    splits = {name: read_split(path) for name, path in paths.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    train = splits["train"]
    if args.limit is not None:  # a subset, written beside the outputs; the full files are read in place
        train = train.sample(n=min(args.limit, len(train)), random_state=args.seed).reset_index(drop=True)
        paths["train"] = args.out / "train-subset.tsv"
        train.to_csv(paths["train"], sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
    print(f"SST-2: {len(train)} train, {len(splits['dev'])} dev, {len(splits['test'])} test from {args.data}")

    start = time.perf_counter()
    tokenizer = train_wordpiece(train["sentence"].tolist(), vocab_size=args.vocab)
    tokenizer.model_max_length = args.max_length
    model = small_bert(tokenizer, CLASSES, layers=args.layers, hidden=args.hidden, heads=2,
                       intermediate=2 * args.hidden, max_length=args.max_length, seed=args.seed)
    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    model.to(device)
    report = train_classifier(model, tokenizer, train["sentence"].tolist(),
                              train["label"].tolist(), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              max_length=args.max_length, seed=args.seed,
                              val=(splits["dev"]["sentence"].tolist()[:2000], splits["dev"]["label"].tolist()[:2000]),
                              desc="training the SST-2 model")
    model.to("cpu")
    model.save_pretrained(str(args.out / "model"))
    tokenizer.save_pretrained(str(args.out / "model"))
    train_s = time.perf_counter() - start

    config = {
        "model": {"huggingface": "model"},
        "data": {"modality": "text", "text_column": "sentence", "train": str(paths["train"].resolve()),
                 "val": str(paths["dev"].resolve()), "test": str(paths["test"].resolve())},
        "features": {"batch_size": 256, "cache_dir": "cache"},
        "sparse": {"random_state": args.seed},
        "analysis": {"explain_features": args.top, "lime_examples": 3, "lime_samples": 300, "sanity_features": 1,
                     "sanity_examples": 1, "intervention_samples": 200},
        "assertions": [{"name": "sparse-vs-dense-gap", "type": "sparse_accuracy_gap", "max_gap": 0.05}],
        "mlflow": {"enabled": False},
        "seed": args.seed,
    }
    (args.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    run_pipeline(load_config(args.out / "config.yaml"), args.out / "run", device=args.device, force=True)
    run_s = time.perf_counter() - start
    results = json.loads((args.out / "run" / "results.json").read_text())

    layer = results["sparse_layer"]
    per_class = {c: len(v) for c, v in layer["features_per_class"].items()}
    weight = {}
    for entries in layer["features_per_class"].values():
        for e in entries:
            weight[e["feature"]] = weight.get(e["feature"], 0.0) + abs(e["weight"])
    cards = {c["feature"]: c for c in results["feature_cards"]}
    top = [f for f in sorted(weight, key=lambda f: -weight[f]) if f in cards][:args.top]
    n_features = results["features"]["train"]["dim"]
    record = {
        "train": len(train), "dev": len(splits["dev"]), "test": len(splits["test"]), "epochs": report.epochs,
        "val_accuracy_while_training": report.val_accuracy, "train_s": round(train_s, 1), "run_s": round(run_s, 1),
        "deep_features": n_features, "dense_accuracy": layer["dense_accuracy"],
        "sparse_accuracy": layer["sparse_accuracy"], "features_per_class": per_class,
        "selected_lambda": layer["selected_lambda"], "sparse_val_accuracy": layer["val_accuracy"],
        "top_features": [{"feature": f, "weight": round(weight[f], 4), "card": str(args.out / "run" / cards[f]["image"]),
                          "raise": [w for w, _ in cards[f]["words"]["positive"][:8]],
                          "lower": [w for w, _ in cards[f]["words"]["negative"][:8]]} for f in top],
        "device": results.get("device"),
    }
    print()
    print(f"{'':32} {'test accuracy':>14} {'features per class':>20}")
    print(f"{'dense (all features)':32} {layer['dense_accuracy']:>14.4f} {str(n_features or '-'):>20}")
    print(f"{'sparse (selected on dev)':32} {layer['sparse_accuracy']:>14.4f} "
          f"{', '.join(f'{c} {n}' for c, n in per_class.items()):>20}")
    print(PAPER)
    print(f"training {train_s:.0f} s ({report.epochs} epochs, dev accuracy {report.val_accuracy}); "
          f"sparsecheck run {run_s:.0f} s on {results.get('device')}")
    for t in record["top_features"]:
        print(f"feature {t['feature']} (|weight| {t['weight']}): raise: {', '.join(t['raise'])}")
        print(f"{'':>{len(str(t['feature'])) + 8}} lower: {', '.join(t['lower'])}")
        print(f"{'':>{len(str(t['feature'])) + 8}} card (word clouds, top texts, LIME): {t['card']}")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
