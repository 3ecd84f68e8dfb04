"""A local tokenizer.json, built here with `tokenizers` (no Hub): counts without special
tokens; a file it cannot read is one line of bad input."""

from __future__ import annotations

import pytest
from tokenizers_json import word_tokenizer

from bench.errors import BenchInputError
from bench.target.tokenizer_file import load_tokenizer


def test_counts_each_text_without_special_tokens(tmp_path):
    from tokenizers.processors import TemplateProcessing

    path = word_tokenizer(tmp_path / "tokenizer.json", ["the", "river", "crossed"])
    tokenizer = load_tokenizer(path)
    assert tokenizer.count(["the river", " crossed the unknown  river.", "", "a\nb\tc"]) == [2, 4, 0, 3]
    assert tokenizer.count([]) == []
    # a BOS a prompt would get is no generated token
    from tokenizers import Tokenizer

    with_bos = Tokenizer.from_file(str(path))
    with_bos.post_processor = TemplateProcessing(single="[UNK] $A", special_tokens=[("[UNK]", 0)])
    with_bos.save(str(tmp_path / "bos.json"))
    assert len(with_bos.encode("the river").ids) == 3
    assert load_tokenizer(tmp_path / "bos.json").count(["the river"]) == [2]


def test_many_texts_are_counted_slice_by_slice_in_order(tmp_path, monkeypatch):
    from bench.target import tokenizer_file

    monkeypatch.setattr(tokenizer_file, "_SLICE", 2)
    tokenizer = load_tokenizer(word_tokenizer(tmp_path / "tokenizer.json", ["a"]))
    assert tokenizer.count(["a", "a a", "", "a a a a", "a a a"]) == [1, 2, 0, 4, 3]


def test_a_file_that_is_no_tokenizer_is_one_line(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"version": "1.0", "model": {"type": "Nothing"}}')
    with pytest.raises(BenchInputError) as caught:
        load_tokenizer(bad, "s.yaml: tokens.tokenizer")
    message = str(caught.value)
    assert message.startswith(f"s.yaml: tokens.tokenizer: {bad}: not a tokenizer.json")
    assert "\n" not in message


def test_without_the_library_the_install_command(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails as if not installed
    with pytest.raises(BenchInputError, match=r"tokens.tokenizer: needs the `tokenizers` library: pip install"):
        load_tokenizer(tmp_path / "tokenizer.json")
