"""Prompt sources end to end, checked on what a loopback server actually received.

- empty or whitespace-only user turns are never sent; skipped records are counted in
  run.json and in the summary notes;
- synthetic prompts never repeat within a run, with worker processes too (each sized with
  the parent's calibrated token model); dataset prompts drawn with replacement may, and
  the run counts the repeats.
"""

from __future__ import annotations

import json

import numpy as np
from benchtest import run_in_process
from faultserver import PROMPT_TOKENS_OVERHEAD, PROMPT_TOKENS_PER_WORD, RecordingServer, prompt_text
from test_prompt_token_probe import synthetic_scenario

from bench.commands.cli import main
from bench.scenario.prompts import sample_lengths
from bench.scenario.schema import Uniform

SHAREGPT = [
    {"id": "blank-first", "conversations": [
        {"from": "system", "value": "Answer briefly."},
        {"from": "human", "value": ""},
        {"from": "gpt", "value": "It seems your message was empty."},
        {"from": "human", "value": "   "},
        {"from": "gpt", "value": "Still empty."},
        {"from": "human", "value": "What is a river?"},
        {"from": "gpt", "value": "A natural stream of water."},
    ]},
    {"id": "all-blank", "conversations": [
        {"from": "human", "value": " \n\t"},
        {"from": "gpt", "value": "Hello?"},
        {"from": "human", "value": ""},
        {"from": "gpt", "value": "Anyone?"},
    ]},
    {"id": "plain", "conversations": [
        {"from": "human", "value": "Name a bird."},
        {"from": "gpt", "value": "Robin"},
    ]},
]


def _user_texts(bodies: list[dict]) -> list[str]:
    return [m["content"] for b in bodies for m in b["messages"] if m["role"] == "user"]


def test_sharegpt_blank_human_turns_are_never_sent_and_skips_are_counted(scenario_dir, capsys):
    (scenario_dir / "sg.json").write_text(json.dumps(SHAREGPT))
    with RecordingServer() as server:
        result = run_in_process(scenario_dir, {
            "seed": 2, "target": {"base_url": server.base_url, "model": "m"},
            "requests": {"file": "sg.json", "order": "cycle"},
            "load": {"concurrency": 2, "max_requests": 6}})
        bodies = list(server.bodies)
    assert result.ended == "completed" and len(bodies) == 6
    users = _user_texts(bodies)
    assert len(users) == 6 and all(text.strip() for text in users)
    assert sorted(set(users)) == ["Name a bird.", "What is a river?"]
    river = next(b for b in bodies if b["messages"][-1]["content"] == "What is a river?")
    # the conversation's system prompt stays; max_tokens is the length of the reply that followed
    assert river["messages"] == [{"role": "system", "content": "Answer briefly."},
                                 {"role": "user", "content": "What is a river?"}]
    assert river["max_tokens"] == 5
    info = json.loads((result.run.path / "run.json").read_text())["workload"]
    assert info == {"source": "file", "records": 3, "prompts": 2, "skipped": 1,
                    "skipped_reasons": {"empty_text": 1}, "drawn": 6, "repeated": 4}
    assert main(["summary", str(result.run.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "note: dataset: 1 of 3 records skipped, never sent (1 because its user text is empty or only " \
           "whitespace); 2 prompts used" in out
    assert "note: prompts: 4 of 6 prompt draws repeated a prompt already sent in this run (2 prompts, " \
           "cycled past their number, order: cycle)" in out
    assert main(["report", str(result.run.path), "--format", "md"]) == 0
    report = (result.run.path / "report.md").read_text()
    assert "- note: dataset: 1 of 3 records skipped, never sent" in report


def test_multi_turn_chats_skip_blank_later_turns(scenario_dir):
    data = [{"conversations": [
        {"from": "human", "value": "first question"}, {"from": "gpt", "value": "one"},
        {"from": "human", "value": "  "}, {"from": "gpt", "value": "two"},
        {"from": "human", "value": "third question"}, {"from": "gpt", "value": "three"},
    ]}]
    (scenario_dir / "chat.json").write_text(json.dumps(data))
    with RecordingServer() as server:
        result = run_in_process(scenario_dir, {
            "target": {"base_url": server.base_url, "model": "m"},
            "requests": {"file": "chat.json", "conversation": {"turns": 3}},
            "load": {"concurrency": 1, "max_requests": 2}})
        bodies = list(server.bodies)
    assert result.ended == "completed"
    # turn 1 was blank: the chat goes on with the next user turn that has text
    assert [len(b["messages"]) for b in bodies] == [1, 3]
    assert _user_texts(bodies) == ["first question", "first question", "third question"]


def test_dataset_drawn_with_replacement_counts_its_repeats(scenario_dir, capsys):
    lines = [json.dumps({"prompt": f"question {i}"}) for i in range(5)] + [json.dumps({"prompt": " "})]
    (scenario_dir / "p.jsonl").write_text("\n".join(lines) + "\n")
    with RecordingServer() as server:
        result = run_in_process(scenario_dir, {
            "seed": 1, "target": {"base_url": server.base_url, "model": "m", "endpoint": "completions"},
            "requests": {"file": "p.jsonl"},
            "load": {"concurrency": 4, "max_requests": 40}})
        sent = [b["prompt"] for b in server.bodies]
    assert len(sent) == 40 and all(p.strip() for p in sent)
    repeats = len(sent) - len(set(sent))  # what the server saw
    info = result.run.manifest.workload
    assert info is not None and (info.records, info.prompts, info.skipped) == (6, 5, 1)
    assert info.drawn == 40 and info.repeated == repeats >= 35
    assert main(["summary", str(result.run.path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"note: prompts: {repeats} of 40 prompt draws repeated a prompt already sent in this run (5 prompts, " \
           "drawn with replacement, order: random)" in out


def test_synthetic_prompts_are_unique_across_worker_processes_and_calibrated(scenario_dir):
    # the server fails its first two requests: the calibration probe tries again
    with RecordingServer(fail_first=2, tokens=2) as server:
        result = run_in_process(scenario_dir, synthetic_scenario(server.base_url, 1000, workers=2))
        bodies = list(server.bodies)
    assert result.ended == "completed"
    assert result.run.manifest.client.worker_count == 2
    model = result.run.manifest.client.prompt_tokens_model
    assert model is not None and model.model_dump() == {"overhead": PROMPT_TOKENS_OVERHEAD,
                                                       "per_word": PROMPT_TOKENS_PER_WORD}
    probes = [b for b in bodies if prompt_text(b).startswith("calibration")]
    assert len(probes) == 4  # two failed, then one of each size
    sent = [prompt_text(b) for b in bodies if b not in probes]
    assert len(sent) == 1000 and len(set(sent)) == 1000
    req = result.run.requests
    assert (req["status"] == "ok").all() and req["prompt_index"].is_unique
    info = result.run.manifest.workload
    assert info is not None and (info.source, info.drawn, info.repeated) == ("synthetic", 1000, 0)
    # every worker sized its prompts with the parent's token model: the server counted what was asked
    wanted = sample_lengths(Uniform(dist="uniform", min=20, max=120), 1024, np.random.default_rng([3, 0x5EED]))
    got = req["prompt_tokens"].to_numpy(dtype=float)
    assert np.abs(got - wanted[req["prompt_index"].to_numpy()]).max() <= PROMPT_TOKENS_PER_WORD / 2
