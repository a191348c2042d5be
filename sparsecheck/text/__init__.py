"""Text classifiers: splits of texts, tokenisers and models, LIME text, word clouds, automatic
text attributes, token interventions and invariance transforms (the text modality's parts).

* :mod:`~sparsecheck.text.data`: manifests (CSV, TSV, Parquet, JSONL) and ``datasets`` directories;
* :mod:`~sparsecheck.text.models`: Hugging Face, factory and MLflow text models, :class:`TextInput`;
* :mod:`~sparsecheck.text.training`: a WordPiece vocabulary and a small BERT trained on the spot.
"""

from sparsecheck.text.data import TextDataset, is_text_source, load_text_dataset
from sparsecheck.text.models import TextInput, TokenBatch, load_tokenizer

__all__ = ["TextDataset", "load_text_dataset", "is_text_source", "TextInput", "TokenBatch", "load_tokenizer"]
