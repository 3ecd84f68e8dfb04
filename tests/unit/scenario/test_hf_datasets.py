"""Local Hugging Face datasets as prompt sources: saved directories and data files, column
mapping, blank rows skipped and counted, one-line errors; never the Hub."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from bench.errors import BenchInputError
from bench.scenario.hf_datasets import read_hf_prompts
from bench.scenario.schema import DatasetColumns

ROWS = {"instruction": ["Write a haiku.", "   ", "Name three primes."], "budget": [12, 5, 7]}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    datasets.Dataset.from_dict(ROWS).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def test_a_saved_dataset_and_its_parquet_give_the_same_prompts(saved, tmp_path):
    datasets.load_from_disk(str(saved)).to_parquet(str(tmp_path / "rows.parquet"))
    columns = DatasetColumns(prompt="instruction", output_tokens="budget")
    for path in (saved, tmp_path / "rows.parquet"):
        prompts = read_hf_prompts(path, columns)
        assert [(p.text, p.max_tokens) for p in prompts.prompts] == [("Write a haiku.", 12), ("Name three primes.", 7)]
        assert (prompts.records, prompts.skipped) == (3, {"empty_text": 1})


def test_usual_column_names_are_found_and_messages_columns_are_read(tmp_path):
    directory = tmp_path / "jsonl"
    directory.mkdir()
    chats = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}"}],
              "max_tokens": 3 + i} for i in range(3)]
    (directory / "a.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats[:2]))
    (directory / "b.jsonl").write_text(json.dumps(chats[2]) + "\n")
    prompts = read_hf_prompts(directory, None)
    assert [p.messages for p in prompts.prompts] == [c["messages"] for c in chats]
    assert [p.max_tokens for p in prompts.prompts] == [3, 4, 5]


def test_a_dict_of_splits_takes_the_named_one(tmp_path):
    both = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["a"]}),
                                 "test": datasets.Dataset.from_dict({"prompt": ["b", "c"]})})
    both.save_to_disk(str(tmp_path / "dd"))
    assert [p.text for p in read_hf_prompts(tmp_path / "dd", DatasetColumns(split="test")).prompts] == ["b", "c"]
    with pytest.raises(BenchInputError, match=r"requests.columns.split: no split 'dev' \(it has train, test\)"):
        read_hf_prompts(tmp_path / "dd", DatasetColumns(split="dev"))


@pytest.mark.parametrize(("rows", "columns", "problem"), [
    ({"body": ["x"]}, None, "requests.columns: say which column holds the prompt (columns: body)"),
    ({"prompt": ["x"]}, DatasetColumns(prompt="text"), "requests.columns.prompt: no column 'text' (the dataset has prompt)"),
    ({"prompt": ["x", "y"], "n": [4, -1]}, DatasetColumns(output_tokens="n"), "row 2: column 'n': -1 is not a positive integer"),
    ({"prompt": [" ", ""]}, None, "no usable prompt among 2 rows"),
    ({"messages": [[{"role": "user", "x": 1}]]}, None, "row 1: column 'messages': expected a list of {role, content}"),
])
def test_bad_datasets_are_one_line_naming_the_file_row_and_column(tmp_path, rows, columns, problem):
    path = tmp_path / "d.parquet"
    datasets.Dataset.from_dict(rows).to_parquet(str(path))
    with pytest.raises(BenchInputError) as err:
        read_hf_prompts(path, columns)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_missing_broken_and_mixed_inputs_are_one_line(tmp_path):
    with pytest.raises(BenchInputError, match="dataset not found"):
        read_hf_prompts(tmp_path / "nope", None)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BenchInputError, match="cannot read dataset"):
        read_hf_prompts(tmp_path / "bad.parquet", None)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.jsonl").write_text('{"prompt": "x"}\n')
    (mixed / "b.csv").write_text("prompt\ny\n")
    with pytest.raises(BenchInputError, match="nor files of one kind"):
        read_hf_prompts(mixed, None)
