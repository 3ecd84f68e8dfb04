"""Prompts from a local Hugging Face dataset (`requests.format: hf`), read by the `datasets`
library: a directory written by `Dataset.save_to_disk`, or parquet, arrow, JSON lines or CSV
files (one file, or a directory of them). Never the Hub: bench sets the libraries offline
before importing them, and a name that is not a local path is an error.

`requests.columns` maps the dataset's columns: `prompt` (a string) or `messages` (a list of
{role, content}), and optionally `output_tokens` (the request's max_tokens). Without it the
first of the usual names present is used. Rows whose text is blank are skipped and counted;
a value of the wrong type is one line naming the file, the row and the column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError
from bench.scenario.prompts import Prompt, PromptSet, blank
from bench.scenario.schema import DatasetColumns

__all__ = ["MESSAGE_NAMES", "OUTPUT_NAMES", "PROMPT_NAMES", "read_hf_prompts"]

PROMPT_NAMES = ("prompt", "text", "instruction", "question", "input", "query")
MESSAGE_NAMES = ("messages", "conversation", "conversations")
OUTPUT_NAMES = ("output_tokens", "max_tokens")
_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def read_hf_prompts(path: Path, columns: DatasetColumns | None) -> PromptSet:
    """One prompt per usable row, in dataset order; BenchInputError (one line) on bad input."""
    table = _load(path, columns.split if columns else "train")
    names = list(table.column_names)
    prompt_col, messages_col, output_col = _pick_columns(path, names, columns)
    prompts: list[Prompt] = []
    skipped = 0
    for row, record in enumerate(table.to_pylist(), 1):
        prompt = _row_prompt(f"{path}: row {row}", record, prompt_col, messages_col, output_col)
        if prompt is None:
            skipped += 1
        else:
            prompts.append(prompt)
    if not prompts:
        raise BenchInputError(f"{path}: no usable prompt among {table.num_rows} rows (every one is blank)")
    return PromptSet("file", prompts, table.num_rows, {"empty_text": skipped} if skipped else {})


def _load(path: Path, split: str) -> Any:
    """The dataset's split as a pyarrow Table."""
    if not path.exists():
        raise BenchInputError(f"{path}: dataset not found (requests.format hf reads local files only)")
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):  # a local read must never reach the Hub
        os.environ.setdefault(name, "1")
    try:
        import datasets
    except ImportError:
        raise BenchInputError(f"{path}: requests.format hf needs the `datasets` library: "
                              "pip install 'llm-bench-harness[datasets]'") from None
    datasets.disable_progress_bars()  # its bars would land in the middle of bench's own output
    try:
        if path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise BenchInputError(f"{path}: requests.columns.split: no split {split!r} "
                                          f"(it has {', '.join(loaded)})")
                loaded = loaded[split]
        else:
            builder, files = _files(path)
            loaded = datasets.load_dataset(builder, data_files=files, split="train", keep_in_memory=True)
    except BenchInputError:
        raise
    except Exception as exc:  # the library's own errors (a bad parquet file, bad JSON, ...) are many
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchInputError(f"{path}: cannot read dataset: {first}") from None
    return loaded.data.table


def _files(path: Path) -> tuple[str, list[str]]:
    candidates = sorted(p for p in path.iterdir() if p.suffix in _BUILDERS) if path.is_dir() else [path]
    kinds = {_BUILDERS.get(p.suffix.lower()) for p in candidates}
    if not candidates or None in kinds or len(kinds) != 1:
        raise BenchInputError(f"{path}: not a saved dataset, nor files of one kind among "
                              f"{', '.join(_BUILDERS)}")
    return str(kinds.pop()), [str(p) for p in candidates]


def _pick_columns(path: Path, names: list[str], columns: DatasetColumns | None) -> tuple[str | None, str | None,
                                                                                          str | None]:
    given = columns or DatasetColumns()
    for field in ("prompt", "messages", "output_tokens"):
        chosen = getattr(given, field)
        if chosen is not None and chosen not in names:
            raise BenchInputError(f"{path}: requests.columns.{field}: no column {chosen!r} "
                                  f"(the dataset has {', '.join(names)})")
    if given.prompt is None and given.messages is None:
        prompt = next((n for n in PROMPT_NAMES if n in names), None)
        messages = None if prompt else next((n for n in MESSAGE_NAMES if n in names), None)
        if prompt is None and messages is None:
            raise BenchInputError(f"{path}: requests.columns: say which column holds the prompt (columns: "
                                  f"{', '.join(names)})")
        return prompt, messages, given.output_tokens or next((n for n in OUTPUT_NAMES if n in names), None)
    return given.prompt, given.messages, given.output_tokens


def _row_prompt(where: str, record: dict[str, Any], prompt_col: str | None, messages_col: str | None,
                output_col: str | None) -> Prompt | None:
    max_tokens = record.get(output_col) if output_col else None
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise BenchInputError(f"{where}: column {output_col!r}: {max_tokens!r} is not a positive integer")
    if prompt_col is not None:
        text = record.get(prompt_col)
        if text is None or (isinstance(text, str) and blank(text)):
            return None
        if not isinstance(text, str):
            raise BenchInputError(f"{where}: column {prompt_col!r}: expected text, got {type(text).__name__}")
        return Prompt(messages=None, text=text, max_tokens=max_tokens)
    assert messages_col is not None
    messages = record.get(messages_col)
    ok = isinstance(messages, list) and messages and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages)
    if not ok or not isinstance(messages, list):
        raise BenchInputError(f"{where}: column {messages_col!r}: expected a list of {{role, content}} strings")
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    if any(m["role"] == "user" and blank(m["content"]) for m in turns) or all(blank(m["content"]) for m in turns):
        return None
    return Prompt(messages=turns, text=None, max_tokens=max_tokens)
