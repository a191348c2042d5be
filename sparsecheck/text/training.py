"""Small text classifiers trained on the spot: a WordPiece vocabulary and a BERT of a few layers.

No weights or vocabularies are downloaded: :func:`train_wordpiece` learns a vocabulary from the
corpus with the ``tokenizers`` library, :func:`small_bert` builds a randomly initialised
``BertForSequenceClassification`` from a config, and :func:`train_classifier` fits it with AdamW.
The text demo, ``bench/sst2.py`` and the tests use them; the result is saved with
``save_pretrained`` (model and tokenizer), so it is read back through ``model.huggingface``.

Examples
--------
>>> tok = train_wordpiece(["a fine film", "a dull film"] * 3, vocab_size=60)
>>> tok.tokenize("A DULL film?"), tok.pad_token
(['a', 'dull', 'film', '[UNK]'], '[PAD]')
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from sparsecheck._runtime import progress

logger = logging.getLogger(__name__)

__all__ = ["train_wordpiece", "small_bert", "train_classifier", "TrainReport", "predict_logits"]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Sequence[str], *, vocab_size: int = 4000, min_frequency: int = 2,
                    lowercase: bool = True) -> Any:
    """A BERT-style WordPiece tokenizer (``BertTokenizerFast``) learned on ``texts``.

    Whitespace and punctuation pre-tokenisation, optional lower-casing, ``[CLS] ... [SEP]``
    around each text. The vocabulary is learned as the ``tokenizers`` library's WordPiece trainer
    learns it, by byte-pair merges over the words' characters (a word's first piece, then ``##``
    continuations), the most frequent pair first, until ``vocab_size`` or until no pair is seen
    ``min_frequency`` times; here ties are broken alphabetically, so the same texts always give
    the same vocabulary (that trainer breaks them differently in each process, and a model trained
    on its vocabulary is not reproducible). Words are split into the longest pieces from the left,
    as in BERT; a word with a character never seen is ``[UNK]``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True, handle_chinese_chars=True,
                                            strip_accents=None)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for t in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(str(t))))
    vocab = _merges(words, int(vocab_size), int(min_frequency))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)


def _merges(words: Counter[str], vocab_size: int, min_frequency: int) -> list[str]:
    """The special tokens, the characters (most frequent first), then byte-pair merges: the most
    frequent adjacent pair of pieces over ``words`` (word → count), ties alphabetical, merged into
    one piece, until ``vocab_size`` pieces or the best pair is seen fewer than ``min_frequency`` times.

    >>> _merges(Counter({"low": 5, "lower": 2, "newest": 6}), 20, 2)[len(SPECIAL_TOKENS):]
    ['##e', '##w', '##o', 'l', '##s', '##t', 'n', '##r', '##we', 'lo', '##ewe', '##ewes', '##ewest', 'newest', 'low']
    """
    chars: Counter[str] = Counter()
    split: dict[str, list[str]] = {}
    for w, n in words.items():
        split[w] = [w[0], *("##" + c for c in w[1:])]
        for piece in split[w]:
            chars[piece] += n
    vocab = list(SPECIAL_TOKENS) + sorted(chars, key=lambda c: (-chars[c], c))
    known = set(vocab)
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[str]] = {}
    for w, pieces in split.items():
        for pair in zip(pieces, pieces[1:]):
            pairs[pair] += words[w]
            where.setdefault(pair, set()).add(w)
    heap = [(-n, a, b) for (a, b), n in pairs.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < vocab_size:
        n, a, b = heapq.heappop(heap)
        if -n != pairs.get((a, b), 0):
            continue  # a stale count: the pair's count changed since it was pushed
        if -n < min_frequency:
            break
        merged = a + b.removeprefix("##")
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        change: Counter[tuple[str, str]] = Counter()  # the pairs' counts that the merge moves
        for w in where.pop((a, b), set()):
            old, k = split[w], words[w]
            for pair in zip(old, old[1:]):
                change[pair] -= k
            new, i = [], 0
            while i < len(old):
                if i + 1 < len(old) and (old[i], old[i + 1]) == (a, b):
                    new.append(merged)
                    i += 2
                else:
                    new.append(old[i])
                    i += 1
            split[w] = new
            for pair in zip(new, new[1:]):
                change[pair] += k
                where.setdefault(pair, set()).add(w)
        for pair, d in change.items():
            if d == 0:
                continue  # a pair beside the merge in no word: its count and heap entry stand
            pairs[pair] += d
            if pairs[pair] > 0:
                heapq.heappush(heap, (-pairs[pair], *pair))
            else:
                del pairs[pair]
    return vocab


def small_bert(tokenizer: Any, class_names: Sequence[str], *, layers: int = 2, hidden: int = 128, heads: int = 2,
               intermediate: int = 256, max_length: int = 128, seed: int = 0) -> Any:
    """A randomly initialised ``BertForSequenceClassification`` of ``layers`` layers over
    ``tokenizer``'s vocabulary, with ``class_names`` as its ``id2label``."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=int(hidden), num_hidden_layers=int(layers),
                        num_attention_heads=int(heads), intermediate_size=int(intermediate),
                        max_position_embeddings=int(max_length), pad_token_id=tokenizer.pad_token_id,
                        num_labels=len(class_names), id2label=dict(enumerate(map(str, class_names))),
                        label2id={str(c): i for i, c in enumerate(class_names)})
    torch.manual_seed(int(seed))
    return BertForSequenceClassification(config)


@dataclass
class TrainReport:
    """How training went: epochs, steps, seconds, the last epoch's mean loss, and the validation
    accuracy after each epoch (when a validation set was given)."""

    epochs: int
    steps: int
    seconds: float
    loss: float
    val_accuracy: list[float]


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _device_of(module: Any) -> torch.device:
    """Where ``module``'s parameters are (the batches go there)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def predict_logits(module: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int = 128,
                   batch_size: int = 256) -> np.ndarray:
    """The model's logits on ``texts`` (eval mode, no gradients)."""
    module.eval()
    device = _device_of(module)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), padding="longest", truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            logits = module(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def train_classifier(module: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], *,
                     epochs: int = 3, batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.01,
                     max_length: int = 128, seed: int = 0, val: tuple[Sequence[str], Sequence[int]] | None = None,
                     time_budget_s: float | None = None, desc: str = "training") -> TrainReport:
    """Fit ``module`` (a sequence classifier taking ``input_ids`` and ``attention_mask``) on the
    texts with AdamW, a linear warm-up over the first 10% of the steps and a linear decay.

    Batches are drawn from ``numpy.random.default_rng(seed)``. With ``time_budget_s`` training
    stops after the first step that passes it (logged). Batches go to the device of the module's
    parameters. Leaves the module in eval mode.
    """
    texts = [str(t) for t in texts]
    device = _device_of(module)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(device)
    rng = np.random.default_rng(int(seed))
    torch.manual_seed(int(seed))
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    total = max(1, steps_per_epoch * int(epochs))
    warm = max(1, total // 10)
    opt = torch.optim.AdamW(module.parameters(), lr=float(lr), weight_decay=float(weight_decay))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    start = time.perf_counter()
    step, losses, accs = 0, [], []
    stop = False
    with progress(total=total, desc=desc, unit="step") as bar:
        for epoch in range(int(epochs)):
            module.train()
            losses = []
            for rows in _batches(len(texts), batch_size, rng):
                enc = tokenizer([texts[i] for i in rows], padding="longest", truncation=True, max_length=max_length,
                                return_tensors="pt").to(device)
                out = module(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=y[rows])
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opt.step()
                sched.step()
                losses.append(float(out.loss.detach()))
                step += 1
                bar.update(1)
                if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                    logger.info("%s: stopped after %d steps, the time budget of %.0f s", desc, step, time_budget_s)
                    stop = True
                    break
            if val is not None:
                logits = predict_logits(module, tokenizer, list(val[0]), max_length=max_length)
                accs.append(float(np.mean(logits.argmax(1) == np.asarray(val[1]))))
                logger.info("%s: epoch %d, loss %.3f, validation accuracy %.3f", desc, epoch + 1,
                            float(np.mean(losses)), accs[-1])
            if stop:
                break
    module.eval()
    return TrainReport(epoch + 1, step, round(time.perf_counter() - start, 2),
                       float(np.mean(losses)) if losses else float("nan"), accs)
