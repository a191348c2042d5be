"""Small text models and splits the text tests run on: real SST-2 sentences (the demo's shipped sample),
tiny BERT-, DistilBERT- and RoBERTa-shaped classifiers built from configs with random weights and a
WordPiece vocabulary trained on the texts, saved with ``save_pretrained``, and a factory text model.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

CLASSES = ["negative", "positive"]
#: the text run settings the tests use: small and quick
FAST_TEXT = {
    "features": {"batch_size": 64, "cache_dir": "cache"},
    "sparse": {"n_lambdas": 30, "lambda_min_ratio": 0.01, "features_per_class": 8},  # a fine grid: never empty
    "analysis": {"top_k": 3, "explain_features": 1, "lime_examples": 1, "lime_samples": 40,
                 "sanity_features": 1, "sanity_examples": 1, "intervention_samples": 64},
    "assertions": [{"name": "features-per-class", "type": "max_features_per_class", "max": 30}],
    "mlflow": {"enabled": False},
}
#: the feature layer each architecture's default is (the input of its last nn.Linear)
EXPECTED_TEXT_LAYER = {"bert": "classifier:input", "distilbert": "classifier:input",
                       "roberta": "classifier.out_proj:input"}


@lru_cache(maxsize=1)
def sentences() -> pd.DataFrame:
    from sparsecheck.text.demo import load_demo_sentences

    return load_demo_sentences()


def texts(n: int, offset: int = 0) -> tuple[list[str], np.ndarray]:
    table = sentences().iloc[offset:offset + n]
    return table["sentence"].tolist(), table["label"].to_numpy(np.int64)


def write_text_splits(root: Path, *, sizes: tuple[int, int, int] = (160, 60, 120), suffix: str = "csv",
                      text_column: str = "text") -> dict[str, str]:
    """train/val/test manifests of real SST-2 sentences, labels by name; returns the data section."""
    out: dict[str, str] = {}
    offset = 0
    for split, n in zip(("train", "val", "test"), sizes):
        t, y = texts(n, offset)
        offset += n
        table = pd.DataFrame({"id": [f"{split}-{i}" for i in range(n)], text_column: t,
                              "label": [CLASSES[v] for v in y]})
        path = root / f"{split}.{suffix}"
        if suffix == "csv":
            table.to_csv(path, index=False)
        elif suffix == "tsv":
            table.to_csv(path, sep="\t", index=False)
        elif suffix == "parquet":
            table.to_parquet(path, index=False)
        elif suffix == "jsonl":
            table.to_json(path, orient="records", lines=True)
        out[split] = path.name
    return {"modality": "text", **out, **({"text_column": text_column} if text_column != "text" else {})}


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    from sparsecheck.text.training import train_wordpiece

    t, _ = texts(600)
    tok = train_wordpiece(t, vocab_size=400)
    tok.model_max_length = 64
    return tok


def hf_model(arch: str, *, seed: int = 0, labels: bool = True) -> Any:
    """A tiny, randomly initialised sequence classifier of ``arch`` over the test vocabulary."""
    from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                              DistilBertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

    tok = tokenizer()
    common = {"num_labels": 2, "pad_token_id": tok.pad_token_id}
    if labels:
        common.update(id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
    torch.manual_seed(seed)
    if arch == "bert":
        return BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                                        num_attention_heads=2, intermediate_size=64,
                                                        max_position_embeddings=64, **common))
    if arch == "distilbert":
        return DistilBertForSequenceClassification(DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=1, n_heads=2,
                                                                    hidden_dim=64, max_position_embeddings=64,
                                                                    **common))
    if arch == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                                              num_attention_heads=2, intermediate_size=64,
                                                              max_position_embeddings=66, **common))
    raise ValueError(arch)


def save_hf(arch: str, directory: Path, **kwargs: Any) -> Path:
    """``save_pretrained`` of a tiny ``arch`` classifier and the test tokenizer into ``directory``."""
    model = hf_model(arch, **kwargs)
    model.save_pretrained(str(directory))
    tokenizer().save_pretrained(str(directory))
    return directory


class BagOfTokens(nn.Module):
    """A factory text model: token ids in, logits out (mean of embeddings, a hidden layer, a head)."""

    def __init__(self, vocab_size: int = 400, dim: int = 24, hidden: int = 16, n_classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.hidden = nn.Linear(dim, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = (input_ids != 0).float() if attention_mask is None else attention_mask.float()
        pooled = (self.embed(input_ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(torch.relu(self.hidden(pooled)))


def make_bag_of_tokens(**kwargs: Any) -> BagOfTokens:
    torch.manual_seed(0)
    return BagOfTokens(**kwargs)
