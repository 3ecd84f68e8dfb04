"""Synthetic prompts never repeat within a run (issue 14, condition 10): not under
`order: random`, not with variants beyond their block, not across worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from bench.runner.shards import ShardedSource
from bench.scenario.loader import validate_scenario
from bench.scenario.prompts import SyntheticPrompts, TokenModel, sample_lengths
from bench.scenario.schema import Uniform
from bench.workload.requests import Workload

PROMPT = {"dist": "uniform", "min": 5, "max": 60}


def _workload(order: str = "random", variants: dict | None = None, turns: int | None = None) -> Workload:
    requests: dict = {"synthetic": {"prompt_tokens": PROMPT, "output_tokens": 4}, "order": order}
    if turns:
        requests["conversation"] = {"turns": turns}
    scenario = validate_scenario({"seed": 11, "requests": requests, "variants": variants or {},
                                  "load": {"rate": 1, "max_requests": 1}}, "test")
    return Workload(scenario, Path("test.yaml"), "m")


def _text(spec) -> str:
    return orjson.loads(spec.body)["messages"][-1]["content"]


@pytest.mark.parametrize("order", ["random", "cycle"])
def test_a_thousand_synthetic_requests_carry_a_thousand_distinct_prompts(order):
    workload = _workload(order)
    specs = [workload.next_spec() for _ in range(1000)]
    assert len({_text(s) for s in specs}) == 1000
    assert [s.prompt_index for s in specs] == list(range(1000))
    assert [_text(s).split()[0] for s in specs[:3]] == ["0", "1", "2"]


def test_variants_share_a_prompt_within_their_block_only():
    workload = _workload(variants={"a": {"temperature": 0.0}, "b": {"temperature": 1.0}})
    specs = [workload.next_spec() for _ in range(1000)]
    by_block: dict[int, set[str]] = {}
    for spec in specs:
        by_block.setdefault(spec.block, set()).add(_text(spec))
    assert len(by_block) == 500 and all(len(texts) == 1 for texts in by_block.values())
    assert len({_text(s) for s in specs}) == 500
    assert sorted(s.variant for s in specs) == ["a"] * 500 + ["b"] * 500


def test_synthetic_conversations_never_repeat_a_turn():
    workload = _workload(turns=3)
    turns = []
    for _ in range(200):
        spec = workload.next_spec()
        turns.append(_text(spec))
        for _ in range(2):
            spec, _ = workload.follow_up(spec, "reply")
            turns.append(_text(spec))
    assert len(turns) == 600 and len(set(turns)) == 600
    assert turns[1].split()[0] == "0.1" and turns[5].split()[0] == "1.2"


@pytest.mark.parametrize("variants", [None, {"a": {}, "b": {}, "c": {}}])
def test_worker_shards_send_disjoint_shares_of_the_single_process_sequence(variants):
    reference = _workload(variants=variants)
    single = [(_text(s), s.variant) for s in (reference.next_spec() for _ in range(900))]
    count = 4
    shards = [ShardedSource(_workload(variants=variants), k, count) for k in range(count)]
    for k, shard in enumerate(shards):
        own = [shard.next_spec() for _ in range(225)]
        assert [(_text(s), s.variant) for s in own] == single[k::count]
    blocks = 900 // len(variants or [""])
    assert len({text for text, _ in single}) == blocks


def test_a_prompt_does_not_depend_on_which_others_were_asked_for():
    model = TokenModel(overhead=3.0, per_word=1.5)
    dist = Uniform(**PROMPT)
    walked = SyntheticPrompts(dist, None, 5, model)
    seen = [walked[i] for i in range(3000)]
    jumped = SyntheticPrompts(dist, None, 5, model)
    for i in (2999, 7, 1500, 1024, 1023):
        assert jumped[i] == seen[i]
    # the first 1,024 keep the lengths of the former fixed pool, in the server's tokens
    tokens = sample_lengths(dist, 1024, np.random.default_rng([5, 0x5EED]))
    words = [len(p.text.split()) for p in seen[:1024]]
    assert words == [model.words_for(int(t)) for t in tokens]
