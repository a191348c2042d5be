"""Text classifiers and their tokenisers: where they come from, and how texts become their input.

Three sources (:func:`sparsecheck.models.load_model` calls the loaders here and wraps what they
return in a :class:`~sparsecheck.models.Model` with its ``tokenizer`` and, when the model declares
them, its class names):

=====================  ==========================================================================
source                 what is read
=====================  ==========================================================================
``huggingface: DIR``   an ``AutoModelForSequenceClassification`` saved with ``save_pretrained``,
                       its tokenizer in the same directory (or ``tokenizer: DIR``)
``factory`` +          your own torch model (token ids in, logits out) and its state_dict, with the
``weights``            tokenizer ``tokenizer:`` names (a directory saved with ``save_pretrained``,
                       or a ``tokenizer.json`` of the ``tokenizers`` library)
``uri``                an MLflow model of the ``transformers`` flavour (model and tokenizer read
                       from the logged directories), or of the ``pytorch`` flavour with
                       ``tokenizer:``
=====================  ==========================================================================

Nothing a user hands over runs code unless asked: ``trust_remote_code`` stays False (a
directory whose config or tokenizer needs custom code is refused, naming it), and a weights file
that is a pickle (``pytorch_model.bin``) must pass torch's restricted ``weights_only`` unpickler
(:mod:`sparsecheck.model_archives`), unless ``trust_pickle``. Safetensors files are preferred.

:class:`TextInput` is the text modality's input transform: it tokenises a batch of texts with
padding to the longest text of the batch and truncation at the model's maximum length, and
:meth:`TextInput.truncated` counts the texts that truncation shortens. The feature layer defaults
to the input of the last ``nn.Linear``, the classification head's input: DistilBERT's
``pre_classifier`` output (after its ReLU), BERT's pooled output, RoBERTa's ``classifier.dense``
output (after its tanh).

Examples
--------
>>> from sparsecheck.text.training import train_wordpiece
>>> tok = train_wordpiece(["a fine film", "a dull film"], vocab_size=40)
>>> spec = TextInput(tok, max_length=4)
>>> x = spec.transform(["a fine film", "a"])
>>> sorted(x), tuple(x["input_ids"].shape), spec.truncated(["a fine film", "a"])
(['attention_mask', 'input_ids'], (2, 4), 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from sparsecheck._runtime import one_line
from sparsecheck.errors import ModelError

logger = logging.getLogger(__name__)

__all__ = ["TextInput", "TokenBatch", "load_tokenizer", "load_text_huggingface", "text_class_names",
           "is_text_model_dir", "DEFAULT_MAX_LENGTH", "check_weights_dir", "find_transformers_dirs"]

#: the longest input when neither the config, the tokenizer nor the model says
DEFAULT_MAX_LENGTH = 512
#: characters of a text handed to the tokenizer per token of ``max_length``: a token covers at most
#: a few dozen characters, so clipping there never changes the first ``max_length`` tokens and keeps
#: a hostile megabyte-long text from costing a megabyte of tokenisation
_CHARS_PER_TOKEN = 64
_TOKEN_FIELDS = ("input_ids", "attention_mask", "token_type_ids")


class TokenBatch(dict):
    """Named token tensors for one batch (``input_ids``, ``attention_mask``, ...), passed to the
    model as keyword arguments, or ``input_ids`` alone as the one positional argument of a model
    whose ``forward`` takes no ``input_ids`` keyword (:attr:`positional`; see
    :func:`~sparsecheck.features.model_input.call_model`)."""

    positional: bool = False


class TextInput:
    """Texts → a :class:`TokenBatch` on a device: tokenised, padded to the batch's longest text,
    truncated at ``max_length`` tokens (special tokens included).

    Parameters
    ----------
    tokenizer : a ``transformers`` tokenizer (fast or slow)
    max_length : int
        Tokens per text at most.
    fields : sequence of str, optional
        The tensors the model's ``forward`` takes among ``input_ids``, ``attention_mask``,
        ``token_type_ids`` (default the first two); without ``input_ids`` among its keywords the
        ids go in as its one positional argument.

    Its ``repr`` names the tokenizer's vocabulary hash and ``max_length``: part of the feature
    cache key.
    """

    modality = "text"

    def __init__(self, tokenizer: Any, max_length: int = DEFAULT_MAX_LENGTH,
                 fields: Sequence[str] = ("input_ids", "attention_mask"), positional: bool = False) -> None:
        if int(max_length) < 2:
            raise ModelError(f"model.max_length must be at least 2 tokens, got {max_length}")
        if getattr(tokenizer, "pad_token", None) is None:
            raise ModelError("the tokenizer has no padding token; give it one (tokenizer.pad_token) and save it again")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.fields = tuple(f for f in fields if f in _TOKEN_FIELDS) or ("input_ids",)
        self.positional = bool(positional)
        self._vocab_hash: str | None = None

    @classmethod
    def for_model(cls, tokenizer: Any, module: Any, max_length: int | None = None) -> "TextInput":
        """The transform that fits ``module``'s ``forward`` (which tensors it takes) and its length
        limit: ``max_length``, else the smaller of the tokenizer's ``model_max_length`` and the
        model's ``max_position_embeddings`` (less RoBERTa's padding offset), else
        :data:`DEFAULT_MAX_LENGTH`."""
        fields, positional = _forward_fields(module)
        return cls(tokenizer, max_length or model_max_length(tokenizer, module), fields, positional)

    def __repr__(self) -> str:
        return (f"TextInput(tokenizer={type(self.tokenizer).__name__}:{self.vocab_hash()}, "
                f"max_length={self.max_length}, fields={list(self.fields)}, positional={self.positional})")

    def vocab_hash(self) -> str:
        if self._vocab_hash is None:
            vocab = self.tokenizer.get_vocab()
            h = hashlib.sha256(json.dumps(sorted(vocab.items())).encode())
            h.update(repr(getattr(self.tokenizer, "do_lower_case", None)).encode())
            self._vocab_hash = h.hexdigest()[:12]
        return self._vocab_hash

    def _clip(self, texts: Any) -> list[str]:
        limit = self.max_length * _CHARS_PER_TOKEN
        return [str(t)[:limit] for t in (texts.tolist() if isinstance(texts, np.ndarray) else texts)]

    def transform(self, raw: Any, device: str | torch.device = "cpu") -> TokenBatch:
        """Token tensors of the texts in ``raw`` (a sequence or object array of ``str``) on ``device``."""
        texts = self._clip(raw)
        enc = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_token_type_ids="token_type_ids" in self.fields)
        batch = TokenBatch({k: enc[k].to(device) for k in self.fields if k in enc})
        batch.positional = self.positional
        return batch

    def lengths(self, raw: Any) -> np.ndarray:
        """Tokens of each text before truncation (special tokens included)."""
        enc = self.tokenizer(self._clip(raw), truncation=False, padding=False, verbose=False)
        return np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)

    def truncated(self, raw: Any, batch_size: int = 4096) -> int:
        """How many texts of ``raw`` truncation at :attr:`max_length` shortens."""
        texts = list(raw)
        return int(sum(int((self.lengths(texts[i:i + batch_size]) > self.max_length).sum())
                       for i in range(0, len(texts), batch_size)))

    def tokens(self, text: str) -> list[str]:
        """The model's tokens of one text (for highlighting), without special tokens."""
        return list(self.tokenizer.tokenize(self._clip([text])[0])[: self.max_length])


def _forward_fields(module: Any) -> tuple[tuple[str, ...], bool]:
    try:
        params = inspect.signature(getattr(module, "forward", module)).parameters
    except (TypeError, ValueError):
        return ("input_ids", "attention_mask"), False
    names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if "input_ids" not in names:  # forward(self, tokens): ids as the one positional argument
        return ("input_ids",), True
    return tuple(f for f in _TOKEN_FIELDS if f in names), False


def model_max_length(tokenizer: Any, module: Any = None) -> int:
    limits = []
    m = getattr(tokenizer, "model_max_length", None)
    if isinstance(m, int) and 1 < m < 1_000_000:
        limits.append(m)
    config = getattr(module, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 2:
        offset = (getattr(config, "pad_token_id", 0) or 0) + 1 if getattr(config, "model_type", "") in (
            "roberta", "xlm-roberta", "camembert") else 0
        limits.append(positions - offset)
    return min(limits) if limits else DEFAULT_MAX_LENGTH


# --------------------------------------------------------------------------- safety checks
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"unreadable JSON: {one_line(exc)}", path=path) from exc
    if not isinstance(data, dict):
        raise ModelError("not a JSON object", path=path)
    return data


def _refuse_remote_code(directory: Path) -> None:
    """A config or tokenizer config that maps to custom code (``auto_map``) would need
    ``trust_remote_code``, which sparsecheck never sets."""
    for name in ("config.json", "tokenizer_config.json"):
        path = directory / name
        if path.is_file() and _read_json(path).get("auto_map"):
            raise ModelError(f"{name} maps to custom code (auto_map), which loading would run; sparsecheck never "
                             f"sets trust_remote_code: use a model of a built-in transformers architecture", path=path)


def check_weights_dir(directory: Path, *, trust_pickle: bool = False) -> None:
    """Refuse pickle weights (``*.bin``, ``*.pt``) that torch's ``weights_only`` unpickler refuses
    when no safetensors file is there to be read instead."""
    from sparsecheck.model_archives import _weights_only_refusal, warn_unpickling

    if any(directory.glob("*.safetensors")):
        return
    pickles = sorted([*directory.glob("*.bin"), *directory.glob("*.pt"), *directory.glob("*.pth")])
    for path in pickles:
        if trust_pickle:
            warn_unpickling(path, "its weights")
            continue
        why = _weights_only_refusal(path.read_bytes())
        if why is not None:
            raise ModelError(f"a pickle that torch's weights_only unpickler refuses ({why}); refused, as loading "
                             f"would run it as code: save the model with safetensors, or pass --trust-pickle "
                             f"(model.trust_pickle: true) only if you trust who made it", path=path)


# --------------------------------------------------------------------------- loading
def is_text_model_dir(directory: Path) -> bool:
    """True for a Hugging Face directory of a text classifier (a ``*ForSequenceClassification``
    architecture, or a tokenizer saved next to the model)."""
    cfg = directory / "config.json"
    if not cfg.is_file():
        return False
    archs = [str(a) for a in (_read_json(cfg).get("architectures") or [])]
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return True
    if any(a.endswith("ForImageClassification") for a in archs):
        return False
    return any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))


def load_tokenizer(source: str | Path) -> Any:
    """A ``transformers`` tokenizer from a directory saved with ``save_pretrained`` or from a
    ``tokenizers`` JSON file (``tokenizer.json``); never runs custom code."""
    path = Path(source)
    try:
        import transformers
    except ImportError as exc:
        raise ModelError("text models need transformers: pip install 'sparsecheck[text]'") from exc
    if path.is_file():
        if path.suffix != ".json":
            raise ModelError("a tokenizer file must be a tokenizers JSON file (tokenizer.json); or name the "
                             "directory saved with save_pretrained", path=path)
        try:
            tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
        except Exception as exc:
            raise ModelError(f"not a tokenizers JSON file: {one_line(exc)}", path=path) from exc
        if tok.pad_token is None:
            vocab = tok.get_vocab()
            pad = next((p for p in ("[PAD]", "<pad>", "<PAD>") if p in vocab), None)
            if pad is None:
                raise ModelError("the tokenizer has no padding token ([PAD] or <pad>)", path=path)
            tok.pad_token = pad
        return tok
    if not path.is_dir():
        raise ModelError("tokenizer not found", path=path)
    _refuse_remote_code(path)
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"transformers cannot load a tokenizer from it: {one_line(exc)}", path=path) from exc


def text_class_names(module: Any) -> list[str] | None:
    """The model's ``id2label`` as class names, unless they are transformers' placeholders
    (``LABEL_0``, ``LABEL_1``, ...)."""
    config = getattr(module, "config", None)
    mapping = getattr(config, "id2label", None)
    if not mapping:
        return None
    names = [str(mapping[k]) for k in sorted(mapping, key=int)]
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def load_text_huggingface(directory: Path, *, tokenizer: str | Path | None = None,
                          trust_pickle: bool = False) -> tuple[Any, Any, list[str] | None]:
    """``(module, tokenizer, class names)``: an ``AutoModelForSequenceClassification`` and its
    tokenizer from a ``save_pretrained`` directory (``tokenizer`` overrides where the tokenizer is
    read from), and its ``id2label`` unless that is transformers' placeholder."""
    if not directory.is_dir() or not (directory / "config.json").is_file():
        raise ModelError("not a Hugging Face model directory (no config.json)", path=directory)
    try:
        import transformers
    except ImportError as exc:
        raise ModelError("model.huggingface text models need transformers: pip install 'sparsecheck[text]'") from exc
    _refuse_remote_code(directory)
    check_weights_dir(directory, trust_pickle=trust_pickle)
    tok_source = Path(tokenizer) if tokenizer is not None else directory
    if tokenizer is None and not any((directory / f).is_file() for f in
                                     ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")):
        raise ModelError("no tokenizer saved with the model (tokenizer.json or tokenizer_config.json): save it with "
                         "tokenizer.save_pretrained(DIR), or name it as model.tokenizer", path=directory)
    tok = load_tokenizer(tok_source)
    try:
        with _no_progress_bars():  # transformers' "Loading weights" bar is noise on the user's stderr
            module = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(directory), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelError(f"transformers cannot load a sequence classifier from it: {one_line(exc)}",
                         path=directory) from exc
    module.eval()
    return module, tok, text_class_names(module)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers' progress bars off for the ``with`` block, as they were after it."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def find_transformers_dirs(local: Path, flavor: Mapping[str, Any]) -> tuple[Path, Path | None]:
    """The model and tokenizer directories of a downloaded MLflow ``transformers`` model."""
    model_dir = local / str(flavor.get("model_binary", "model"))
    tok_dir = local / "components" / "tokenizer"
    if not (model_dir / "config.json").is_file():
        raise ModelError("an MLflow transformers model without its weights (saved with save_pretrained=False, a "
                         "reference to the Hub): log it with save_pretrained=True", path=str(local))
    return model_dir, tok_dir if tok_dir.is_dir() else None
