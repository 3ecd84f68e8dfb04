"""Synthetic `shared_prefix`: a system prompt of exactly `tokens` words (one token each, the
synthetic prompts' convention), the same for every request of a group, different between groups."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.scenario.loader import validate_scenario
from bench.workload.requests import Workload


def _workload(tokens: int, groups: int, variants: dict | None = None) -> Workload:
    scenario = validate_scenario({
        "seed": 4, "variants": variants or {},
        "requests": {"synthetic": {"prompt_tokens": 12, "output_tokens": 4},
                     "shared_prefix": {"tokens": tokens, "groups": groups}},
        "load": {"rate": 1, "max_requests": 1}}, "test")
    return Workload(scenario, Path("test.yaml"), "m")


@pytest.mark.parametrize("tokens", [1, 2, 3, 57, 300])
def test_every_request_of_a_group_carries_the_same_prefix_of_exactly_its_length(tokens):
    workload = _workload(tokens, groups=3)
    specs = [workload.next_spec() for _ in range(30)]
    messages = [orjson.loads(s.body)["messages"] for s in specs]
    assert all([m["role"] for m in ms] == ["system", "user"] for ms in messages)
    prefixes = [ms[0]["content"] for ms in messages]
    assert all(len(p.split()) == tokens for p in prefixes)
    by_group = {g: {p for i, p in enumerate(prefixes) if i % 3 == g} for g in range(3)}
    assert all(len(group) == 1 for group in by_group.values())  # shared within a group
    assert len(set(prefixes)) == 3  # and distinct between groups
    assert len({ms[1]["content"] for ms in messages}) == 30  # the prompts themselves all differ


def test_variants_of_one_block_share_its_group():
    workload = _workload(20, groups=2, variants={"a": {"temperature": 0.0}, "b": {"temperature": 1.0}})
    specs = [workload.next_spec() for _ in range(8)]
    prefix = {(s.block, s.variant): orjson.loads(s.body)["messages"][0]["content"] for s in specs}
    for block in range(4):
        assert prefix[(block, "a")] == prefix[(block, "b")] == prefix[(block % 2, "a")]
    assert prefix[(0, "a")] != prefix[(1, "a")]
