"""A word-level tokenizer.json built in the test (no Hub): one token per whitespace-separated
word, as the simulator counts them (`bench.sim.text`). Import as `from tokenizers_json import ...`."""

from __future__ import annotations

from pathlib import Path


def word_tokenizer(path: Path, words: list[str]) -> Path:
    """A WordLevel tokenizer splitting on whitespace only, knowing `words` (any other word is
    [UNK], still one token), saved as `path`."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(dict.fromkeys(words))}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    tokenizer.save(str(path))
    return path
