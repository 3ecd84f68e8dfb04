import json
from pathlib import Path

import pytest

from bench.datasets import read_sharegpt, sharegpt_prompts
from bench.errors import BenchInputError

SHAREGPT = [
    {"id": "a", "conversations": [
        {"from": "human", "value": "What is a river?"},
        {"from": "gpt", "value": "A river is a natural stream of water."},
        {"from": "human", "value": "And a lake?"},
        {"from": "chatgpt", "value": "Standing water."},
    ]},
    {"id": "empty", "conversations": []},
    {"id": "b", "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Name a bird."},
        {"from": "bard", "value": "Robin"},
    ]},
    {"id": "broken", "conversations": [{"from": "human"}]},
    {"id": "alien", "conversations": [{"from": "martian", "value": "hi"}]},
]

OPENAI = [
    {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Two plus two?"},
        {"role": "assistant", "content": "four"},
    ]},
    {"conversations": [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! How can I help you today?"},
    ]},
]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_sharegpt_from_value_maps_roles_and_skips_bad_conversations(tmp_path):
    conversations = read_sharegpt(_write(tmp_path, "sg.json", json.dumps(SHAREGPT)))
    assert len(conversations) == 2
    first, second = conversations
    assert isinstance(first, tuple)
    assert [m["role"] for m in first] == ["user", "assistant", "user", "assistant"]
    assert first[1] == {"role": "assistant", "content": "A river is a natural stream of water."}
    assert [m["role"] for m in second] == ["system", "user", "assistant"]


def test_role_content_variant_with_messages_or_conversations_key(tmp_path):
    conversations = read_sharegpt(_write(tmp_path, "oa.json", json.dumps(OPENAI)))
    assert [len(c) for c in conversations] == [3, 2]
    assert conversations[1][0] == {"role": "user", "content": "Hello there"}


def test_jsonl_variant(tmp_path):
    text = "\n".join(json.dumps(r) for r in SHAREGPT + OPENAI) + "\n\n"
    for name in ("sg.jsonl", "sg.data"):
        assert len(read_sharegpt(_write(tmp_path, name, text))) == 4


def test_prompts_are_first_user_turn_with_system_and_reply_length(tmp_path):
    conversations = read_sharegpt(_write(tmp_path, "sg.json", json.dumps(SHAREGPT + OPENAI)))
    prompts = sharegpt_prompts(conversations)
    assert [p.messages for p in prompts] == [
        [{"role": "user", "content": "What is a river?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a bird."}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Two plus two?"}],
        [{"role": "user", "content": "Hello there"}],
    ]
    assert [p.max_tokens for p in prompts] == [8, 1, 1, 7]
    assert all(p.text is None for p in prompts)


def test_prompts_skip_conversations_without_a_reply_and_keep_min_one_token():
    conversations = [
        ({"role": "user", "content": "alone"},),
        ({"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}),
    ]
    prompts = sharegpt_prompts(conversations)
    assert len(prompts) == 1 and prompts[0].max_tokens == 1
    with pytest.raises(BenchInputError) as exc:
        sharegpt_prompts(conversations[:1], source="data.json")
    assert _one_line(exc).startswith("data.json: no conversation has a user turn")


@pytest.mark.parametrize("name,text,expected", [
    ("d.json", "", "dataset is empty"),
    ("d.json", '[{"conversations": []}, {"conversations": [{"from": "gpt", "value": "x"}]}]',
     "no usable conversation among 2 records (first problem: record 1: conversation is empty or not a list)"),
    ("d.json", '[1, 2]', "no usable conversation among 2 records (first problem: record 1: expected an object"),
    ("d.json", '[{"text": "hi"}]', "record 1: no 'conversations' or 'messages' key"),
    ("d.json", '[{"conversations": [{"from": "wizard", "value": "x"}]}]', "turn 1 has unknown role 'wizard'"),
    ("d.json", '{"conversations": 3}', "conversation is empty or not a list"),
    ("d.json", '"just a string"', "expected a JSON array of conversations, got str"),
    # (orjson versions disagree on the line a trailing comma is reported at: 2 or 3)
    ("d.json", '[{"conversations": [\n{"from": "human", "value": "x"},\n]}]', ": invalid JSON"),
    ("d.jsonl", '{"conversations": [{"from": "human", "value": "x"}]}\n{broken\n', "line 2: invalid JSON"),
    ("d.jsonl", '{"conversations": [{"from": "human", "value": 5}]}\n',
     "first problem: line 1: turn 1 has no text (value/content)"),
])
def test_bad_datasets_give_one_line_naming_the_file(tmp_path, name, text, expected):
    path = _write(tmp_path, name, text)
    with pytest.raises(BenchInputError) as exc:
        read_sharegpt(path)
    message = _one_line(exc)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_dataset(tmp_path):
    with pytest.raises(BenchInputError) as exc:
        read_sharegpt(tmp_path / "none.json")
    assert _one_line(exc) == f"{tmp_path / 'none.json'}: dataset file not found"
