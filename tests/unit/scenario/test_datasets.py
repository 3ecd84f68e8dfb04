import json
from pathlib import Path

import pytest

from bench.errors import BenchInputError
from bench.scenario.datasets import read_sharegpt, sharegpt_prompts

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


# --- empty or whitespace-only turns are never sent (issue 14, condition 7) ---------------

def test_a_blank_first_human_turn_gives_way_to_the_first_usable_one(tmp_path):
    from bench.scenario.datasets import sharegpt_dataset

    records = [
        {"conversations": [  # blank first turn, usable later one
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": ""}, {"from": "gpt", "value": "Say something?"},
            {"from": "human", "value": "Name a fish."}, {"from": "gpt", "value": "A trout, say."},
            {"from": "human", "value": " \t"}, {"from": "gpt", "value": "..."},
            {"from": "human", "value": "And a bird?"}, {"from": "gpt", "value": ""},
        ]},
        {"conversations": [{"from": "human", "value": "   "}, {"from": "gpt", "value": "Hm?"}]},  # nothing usable
        {"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "x"},
                           {"from": "human", "value": "no reply follows"}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello there"}]},
        {"text": "not a conversation"},
    ]
    dataset = sharegpt_dataset(_write(tmp_path, "sg.json", json.dumps(records)))
    assert dataset.source == "file" and dataset.records == 5
    assert dataset.skipped == {"empty_text": 1, "no_reply": 1, "malformed": 1}
    fish, hi = dataset.prompts
    assert fish.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fish."}]
    assert fish.max_tokens == 3  # "A trout, say."
    # later turns skip the blank one; an empty reply leaves the turn's max_tokens open
    later = [(t.messages, t.max_tokens) for t in fish.later_turns]
    assert later == [([{"role": "user", "content": "And a bird?"}], None)]
    assert hi.messages == [{"role": "user", "content": "Hi"}] and hi.max_tokens == 2 and hi.later_turns == ()


def test_a_sharegpt_file_of_blank_turns_only_is_one_line_naming_it(tmp_path):
    from bench.scenario.datasets import sharegpt_dataset

    records = [{"conversations": [{"from": "human", "value": " " * k}, {"from": "gpt", "value": "?"}]}
               for k in range(3)]
    path = _write(tmp_path, "blank.json", json.dumps(records))
    with pytest.raises(BenchInputError) as exc:
        sharegpt_dataset(path)
    assert _one_line(exc) == (f"{path}: no usable conversation among 3 records (first problem: record 1: no user turn "
                              "has text (every one is empty or only whitespace))")


def test_jsonl_records_with_blank_text_are_skipped_and_counted(tmp_path):
    from bench.scenario.prompts import read_jsonl_prompts

    lines = ['{"prompt": "one"}', '{"prompt": ""}', '"  "', '"two"',
             '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": " "}]}',
             '{"messages": [{"role": "user", "content": "three"}, {"role": "assistant", "content": ""}]}',
             '[{"role": "system", "content": ""}]']
    dataset = read_jsonl_prompts(_write(tmp_path, "p.jsonl", "\n".join(lines)))
    assert (dataset.records, dataset.skipped) == (7, {"empty_text": 4})
    assert [p.text or p.messages[0]["content"] for p in dataset.prompts] == ["one", "two", "three"]
    blank = _write(tmp_path, "blank.jsonl", '{"prompt": " "}\n""\n')
    with pytest.raises(BenchInputError) as exc:
        read_jsonl_prompts(blank)
    assert _one_line(exc).startswith(f"{blank}: no usable prompt among 2 records")
