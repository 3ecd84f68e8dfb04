"""Counting text tokens with a local Hugging Face tokenizer file (`tokenizer.json`), read by
the `tokenizers` library: the file is all it reads, never the Hub."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError

__all__ = ["LocalTokenizer", "load_tokenizer"]

_SLICE = 4096


class LocalTokenizer:
    """A loaded tokenizer.json. `count` gives the tokens of each text as the model would
    generate them: without the special tokens (BOS) a prompt would get."""

    def __init__(self, path: Path, tokenizer: Any) -> None:
        self.path = path
        self._tokenizer = tokenizer

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text (an empty text: 0), encoded in slices of _SLICE texts (the
        library keeps every encoding of a batch: ids, offsets, masks)."""
        out: list[int] = []
        for start in range(0, len(texts), _SLICE):
            batch = self._tokenizer.encode_batch(list(texts[start:start + _SLICE]), add_special_tokens=False)
            out += [len(encoding.ids) for encoding in batch]
        return out


def load_tokenizer(path: Path, where: str = "tokens.tokenizer") -> LocalTokenizer:
    """The tokenizer in `path`; BenchInputError (one line: `where` names the scenario file and
    field, then the tokenizer file and the problem) when the `tokenizers` library is missing or
    the file is not a tokenizer it can read."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise BenchInputError(f"{where}: needs the `tokenizers` library: "
                              "pip install 'llm-bench-harness[tokenizer]'") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises a bare Exception for every bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchInputError(f"{where}: {path}: not a tokenizer.json the tokenizers library can read: "
                              f"{reason}") from None
    return LocalTokenizer(path, tokenizer)
