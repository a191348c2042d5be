"""The vocabulary the text demo and ``bench/sst2.py`` learn is a function of the texts alone.

The ``tokenizers`` library's WordPiece trainer broke ties between merges differently in each
process, so the demo's BERT, and which slice ranked first, moved between CI runs of the same
commit. Two fresh processes on the shipped sentences must now give the same vocabulary.
"""

from __future__ import annotations

import subprocess
import sys

_VOCAB = """
import hashlib, json
from sparsecheck.text.demo import load_demo_sentences
from sparsecheck.text.training import train_wordpiece
tok = train_wordpiece(load_demo_sentences()["sentence"].tolist(), vocab_size=3000)
vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
print(len(vocab), hashlib.sha256(json.dumps(vocab).encode()).hexdigest())
"""


def test_two_processes_learn_the_same_vocabulary():
    runs = [subprocess.run([sys.executable, "-c", _VOCAB], capture_output=True, text=True, timeout=300, check=True)
            for _ in range(2)]
    first, second = (r.stdout.split() for r in runs)
    assert first == second
    assert int(first[0]) == 3000


def test_a_word_outside_the_vocabulary_is_spelled_not_lost():
    from sparsecheck.text.training import train_wordpiece

    tok = train_wordpiece(["a fine film", "a dull film", "a fine film", "a dull film"], vocab_size=40)
    assert tok.tokenize("a fine film") == ["a", "fine", "film"]
    assert tok.tokenize("dim") == ["d", "##i", "##m"]  # seen letters, no whole word
    assert tok.tokenize("zebra") == ["[UNK]"]  # no 'z' was ever seen
