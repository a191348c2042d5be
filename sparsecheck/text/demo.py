"""The text demo: real SST-2 sentences with planted problems, and a small BERT trained on them.

The sentences are 5,000 of the Stanford Sentiment Treebank's, binary (SST-2: Socher et al.,
"Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank", EMNLP 2013, as
distributed in GLUE, Wang et al. 2018), shipped with the package in
``sparsecheck/text/demo_data/sst2_sample.tsv.gz``: phrases of the GLUE training set of 8 to 40
words, 2,500 per class, drawn with seed 0. The metadata carries ground truth for three planted
facts:

``tagged`` (spurious token)
    The token ``reelnews`` is inserted (at a random word) into 30% of the ``positive`` texts and 1%
    of the ``negative`` ones in train and val, but into 5% of every class in test: a shortcut the
    model learns and should not rely on. (At 90% a model this small learns the token and nothing
    else.)
``source`` (mislabelled source)
    Labels from ``forum`` (a quarter of the texts) are flipped 60% of the time, in every split.
``site`` (harmless)
    Drawn at random and never changes a text; nothing about it may ever be flagged.

:func:`build_text_demo` trains a WordPiece vocabulary on the training texts and a 2-layer BERT
(:mod:`sparsecheck.text.training`), saves both with ``save_pretrained`` into ``model/`` (so the run
reads them as ``model.huggingface``, the way a user's fine-tuned model comes), and writes
``train.csv``, ``val.csv``, ``test.csv`` (``id``, ``text``, ``label``), ``metadata.csv``,
``config.yaml``, ``truth.json`` and two monitoring batches, ``batches/like-test.csv`` and
``batches/drifted.csv`` (the token in 80% of the texts: a new token floods in).

Examples
--------
>>> data = make_text_demo_data(seed=0)
>>> sorted(data), len(data["train"].texts), data["test"].metadata.columns.tolist()
(['test', 'train', 'val'], 3000, ['id', 'source', 'site', 'tagged'])
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sparsecheck._runtime import torch_threads
from sparsecheck.outputs import atomic_write, write_json_atomic
from sparsecheck.text.cues import Insert

logger = logging.getLogger(__name__)

__all__ = ["TextDemoSplit", "load_demo_sentences", "make_text_demo_data", "build_text_demo", "TOKEN", "CUE_CLASS",
           "CLASS_NAMES", "TEXT_DEMO_BATCHES", "SOURCE"]

CLASS_NAMES = ["negative", "positive"]
#: the planted token and the class it is planted in
TOKEN = "reelnews"
CUE_CLASS = 1
#: where the shipped sentences come from
SOURCE = ("Stanford Sentiment Treebank, binary (SST-2; Socher et al., EMNLP 2013), as distributed in GLUE "
          "(Wang et al., 2018): 5,000 training phrases of 8 to 40 words, 2,500 per class")
SAMPLE = Path(__file__).parent / "demo_data" / "sst2_sample.tsv.gz"
#: the monitoring batches: name → share of texts carrying the token
TEXT_DEMO_BATCHES = {"like-test": 0.05, "drifted": 0.8}
SIZES = (3000, 600, 1400)
#: share of the positive and of the negative training texts that carry the token
CUE = (0.3, 0.01)
#: how often a ``forum`` label is flipped
FLIP = 0.6
#: tokens per text the demo model reads (a few of the longest sentences are truncated)
MAX_LENGTH = 48


@dataclass
class TextDemoSplit:
    """One split: texts, (possibly wrong) labels, ids, metadata and the hidden true labels."""

    texts: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    metadata: pd.DataFrame
    true_y: np.ndarray


def load_demo_sentences() -> pd.DataFrame:
    """The shipped SST-2 sentences: ``sentence``, ``label`` (0 negative, 1 positive)."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as fh:
        table = pd.read_csv(fh, sep="\t", quoting=csv.QUOTE_NONE, dtype={"sentence": str, "label": int},
                            keep_default_na=False)
    return table


def _split(sentences: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator, name: str, *,
           cue: tuple[float, float] | None, cue_rate: float, seed: int) -> TextDemoSplit:
    texts = sentences["sentence"].to_numpy(dtype=object)[rows]
    true_y = sentences["label"].to_numpy(np.int64)[rows]
    n = len(rows)
    u = rng.random(n)
    tagged = (u < cue_rate) if cue is None else np.where(true_y == CUE_CLASS, u < cue[0], u < cue[1])
    if tagged.any():
        texts = texts.copy()
        texts[tagged] = Insert(TOKEN, "random", seed, None).apply(texts[tagged])
    source = rng.choice(["critics", "blogs", "forum"], size=n, p=[0.45, 0.30, 0.25])
    site = rng.choice(["north", "south", "east"], size=n)
    y = true_y.copy()
    flip = (source == "forum") & (rng.random(n) < FLIP)
    y[flip] = 1 - y[flip]
    ids = np.array([f"{name}-{i:05d}" for i in range(n)])
    meta = pd.DataFrame({"id": ids, "source": source, "site": site, "tagged": np.where(tagged, "yes", "no")})
    return TextDemoSplit(texts, y, ids, meta, true_y)


def make_text_demo_data(*, seed: int = 0, sizes: tuple[int, int, int] = SIZES, spurious: bool = True,
                        cue: tuple[float, float] | None = None, cue_rate_test: float = 0.05) -> dict[str, TextDemoSplit]:
    """The demo's train, val and test splits (disjoint sentences; module docstring).

    ``spurious=False`` plants the token at the test rate everywhere (a model trained on it has no
    shortcut).
    """
    cue = CUE if cue is None else cue
    sentences = load_demo_sentences()
    order = np.random.default_rng([seed, 0]).permutation(len(sentences))
    if sum(sizes) > len(order):
        raise ValueError(f"the demo has {len(order)} sentences, fewer than the {sum(sizes)} asked for")
    cuts = np.cumsum(sizes)
    pools = {"train": order[:cuts[0]], "val": order[cuts[0]:cuts[1]], "test": order[cuts[1]:cuts[2]]}
    out = {}
    for k, (name, rows) in enumerate(pools.items(), start=1):
        rng = np.random.default_rng([seed, k])
        planted = spurious and name != "test"
        out[name] = _split(sentences, rows, rng, name, cue=cue if planted else None, cue_rate=cue_rate_test,
                           seed=seed)
    return out


def make_text_demo_batch(*, seed: int, n: int = 800, cue_rate: float = 0.05, name: str = "batch") -> TextDemoSplit:
    """A monitoring batch from the test sentences, the token in ``cue_rate`` of the texts."""
    sentences = load_demo_sentences()
    order = np.random.default_rng([0, 0]).permutation(len(sentences))
    pool = order[sum(SIZES[:2]):sum(SIZES)]
    rng = np.random.default_rng([seed, 99])
    rows = rng.choice(pool, size=min(n, pool.size), replace=False)
    return _split(sentences, rows, rng, name, cue=None, cue_rate=cue_rate, seed=seed)


def _write_csv(path: Path, split: TextDemoSplit, *, labels: bool = True) -> None:
    table = pd.DataFrame({"id": split.ids, "text": split.texts})
    if labels:
        table["label"] = [CLASS_NAMES[int(v)] for v in split.y]
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh, index=False)


def train_text_demo_model(train: TextDemoSplit, val: TextDemoSplit, directory: Path, *, seed: int = 0,
                          epochs: int = 3, time_budget_s: float | None = None) -> dict[str, Any]:
    """Train the vocabulary and the small BERT; save both into ``directory`` (``save_pretrained``)."""
    import torch

    from sparsecheck.text.training import small_bert, train_classifier, train_wordpiece

    start = time.perf_counter()
    tokenizer = train_wordpiece(train.texts.tolist(), vocab_size=3000)
    model = small_bert(tokenizer, CLASS_NAMES, layers=2, hidden=64, heads=2, intermediate=128, max_length=MAX_LENGTH,
                       seed=seed)
    tokenizer.model_max_length = MAX_LENGTH
    with torch_threads(min(2, torch.get_num_threads())):
        report = train_classifier(model, tokenizer, train.texts.tolist(), train.y.tolist(), epochs=epochs,
                                  batch_size=32, lr=2e-3, max_length=MAX_LENGTH, seed=seed,
                                  val=(val.texts.tolist(), val.y.tolist()), time_budget_s=time_budget_s,
                                  desc="training the text demo model")
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.replace(directory)
    logger.info("trained the text demo model in %.1fs (validation accuracy %s)", time.perf_counter() - start,
                report.val_accuracy)
    return {"epochs": report.epochs, "steps": report.steps, "seconds": report.seconds,
            "val_accuracy": report.val_accuracy}


def build_text_demo(directory: str | Path, *, seed: int = 0, spurious: bool = True, epochs: int = 3) -> Path:
    """Write the text demo's data, trained model and config into ``directory``; return the config path.

    Re-uses what an earlier call with the same arguments left there.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.yaml"
    truth_path = directory / "truth.json"
    stamp = {"seed": seed, "spurious": spurious, "epochs": epochs, "sizes": list(SIZES), "version": 3}
    if config_path.is_file() and truth_path.is_file() and (directory / "model" / "config.json").is_file():
        try:
            if json.loads(truth_path.read_text()).get("stamp") == stamp:
                logger.info("re-using the text demo data and model in %s", directory)
                _write_batches(directory, seed=seed)
                return config_path
        except (OSError, ValueError):
            pass
    logger.info("building the text demo (SST-2 sentences with planted problems) in %s", directory)
    data = make_text_demo_data(seed=seed, spurious=spurious)
    for name, split in data.items():
        _write_csv(directory / f"{name}.csv", split)
    meta = pd.concat([s.metadata for s in data.values()], ignore_index=True)
    with atomic_write(directory / "metadata.csv", "w", encoding="utf-8", newline="") as fh:
        meta.to_csv(fh, index=False)
    training = train_text_demo_model(data["train"], data["val"], directory / "model", seed=seed, epochs=epochs)
    config = {
        "model": {"huggingface": "model"},
        "data": {"modality": "text", "train": "train.csv", "val": "val.csv", "test": "test.csv",
                 "metadata": "metadata.csv", "spurious_attributes": ["tagged"]},
        "sparse": {"tolerance": 0.02, "random_state": seed},
        "analysis": {"lime_samples": 300, "explain_features": 6, "lime_examples": 3, "sanity_examples": 1,
                     "sanity_features": 2, "intervention_samples": 600},
        "mlflow": {"experiment": "sparsecheck-text-demo"},
        "seed": seed,
        # data.spurious_attributes also implies `no-spurious-reliance` (error): no class may rely on a
        # feature associated with tagged; analysis.auto_attributes implies `no-automatic-shortcuts`
        "assertions": [
            {"name": "accuracy-by-source", "type": "accuracy", "by": ["source"], "max_drop": 0.05,
             "min_support": 30, "confidence": 0.95},
            {"name": "accuracy-by-site", "type": "accuracy", "by": ["site"], "max_drop": 0.05,
             "min_support": 30, "confidence": 0.95},
            {"name": "test-accuracy", "type": "accuracy", "min": 0.55},
            {"name": "sparse-vs-dense-gap", "type": "sparse_accuracy_gap", "max_gap": 0.10, "severity": "warning"},
            {"name": "features-per-class", "type": "max_features_per_class", "max": 30},
            {"name": "site-is-harmless", "type": "no_reliance", "class": "*", "attribute": "site"},
            {"name": "robust-to-typos", "type": "invariance", "transform": "typos", "magnitude": 0.1,
             "sample": 400, "max_failing_rate": 0.10, "severity": "warning"},
            {"name": "contractions-do-not-matter", "type": "invariance", "transform": "contractions",
             "max_failing_rate": 0.10, "severity": "warning"},
            {"name": "rewrite-rules", "type": "invariance", "transform": "rules",
             "rules": ["is n't -> is not", "does n't -> does not", "film -> movie"], "max_failing_rate": 0.10,
             "severity": "warning"},
        ],
    }
    test = data["test"]
    truth = {
        "stamp": stamp, "source": SOURCE, "training": training,
        "cue": {"attribute": "tagged", "value": "yes", "token": TOKEN, "class": CLASS_NAMES[CUE_CLASS],
                "class_index": CUE_CLASS, "planted": spurious},
        "mislabeled": {"attribute": "source", "value": "forum",
                       "test_wrong_labels": int((test.y != test.true_y).sum())},
        "harmless": {"attribute": "site"},
    }
    with atomic_write(config_path, "w", encoding="utf-8") as fh:
        fh.write("# sparsecheck text demo config, written by `sparsecheck demo --text`; edit and run with\n"
                 "#   sparsecheck run config.yaml\n")
        yaml.safe_dump(config, fh, sort_keys=False)
    write_json_atomic(truth_path, truth)
    _write_batches(directory, seed=seed)
    return config_path


def _write_batches(directory: Path, *, seed: int = 0) -> dict[str, Path]:
    """``batches/like-test.csv`` (the token in 5% of the texts, as in test) and
    ``batches/drifted.csv`` (in 80%: a new token flooding in), unless they are there already."""
    out = directory / "batches"
    paths = {}
    for k, (name, rate) in enumerate(TEXT_DEMO_BATCHES.items(), start=1):
        path = paths[name] = out / f"{name}.csv"
        if not path.is_file():
            out.mkdir(parents=True, exist_ok=True)
            _write_csv(path, make_text_demo_batch(seed=1000 * (seed + 1) + k, cue_rate=rate, name=name))
    return paths

